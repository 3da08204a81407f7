"""Inference backends behind one interface, registered in BACKENDS below (the only list).

A backend is a module with:
- `prepare(model, inputs, precision, device, channels_last) -> run`: takes a float32 model
  and a batch of (folded) inputs on the CPU, does its one-time work (compilation, graph
  capture, engine build) in `precision` ("fp32", "fp16" or "bf16"; common.DTYPES) and
  returns a function of no arguments that runs the model on those inputs and returns the
  outputs on `device`. Calling `run` is what gets timed, so it does nothing but inference.
  A precision or device it cannot serve is a one-line UserError naming what to use instead.
- `NEEDS_CUDA`: True if it runs on a CUDA GPU only (check_device refuses it elsewhere).
- `CHANNELS_LAST`: its default tensor layout, True or False (the CLIs' --channels-last turns
  it on), or None where the engine picks its own layouts and the flag changes nothing.
- Optional engines (onnxruntime, TensorRT, ...) imported inside `prepare` (or a helper it
  calls), never at the top of the module, so that importing util.backends works without them
  and a missing engine is a UserError that says how to install it.
Both `prepare` and `run` are called under torch.inference_mode() and util.device.on_device
(the device current, a dedicated CUDA stream): the caller's job (infer.Prepared). Adding a
backend is one module here plus its entry in BACKENDS; tests/test_families.py runs every
registered backend on a tiny model.
"""
import importlib.util

import torch

from util.device import resolve_device
from util.errors import UserError

from . import cudagraph, eager, ort_session, torch_compile, trt_engine
from .common import DTYPES  # noqa: F401  (re-exported for the CLIs)

BACKENDS = {"tensorrt": trt_engine, "cudagraph": cudagraph, "onnxruntime": ort_session, "compile": torch_compile,
            "eager": eager}


def default_backend(device):
    """The fastest backend this machine has: CUDA graphs on a GPU; on a CPU onnxruntime,
    which ran V1 and N2 1.3-2.3x faster than torch.compile on a 2-core AMD EPYC (README)."""
    if torch.device(device).type == "cuda":
        return "cudagraph"
    return "onnxruntime" if importlib.util.find_spec("onnxruntime") else "eager"


def default_precision(device):
    """Half precision on a GPU, as the paper measured; float32 on a CPU, where it is fastest."""
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


def channels_last(backend, requested=None):
    """The layout a record states for `backend`: its default, or `requested`; None where the
    engine picks its own layouts (CHANNELS_LAST = None) and no flag changes them."""
    default = BACKENDS[backend].CHANNELS_LAST
    return default if default is None or requested is None else requested


def check_device(backend, device):
    """Raise a one-line UserError if `backend` cannot run on `device` on this machine."""
    device = resolve_device(device)
    if BACKENDS[backend].NEEDS_CUDA and device.type != "cuda":
        reason = "PyTorch sees no CUDA GPU here" if not torch.cuda.is_available() else f"--device is {device}"
        raise UserError(f"the {backend} backend needs a CUDA GPU but {reason}; "
                        f"use --backend onnxruntime, compile or eager on a CPU")
    return device

