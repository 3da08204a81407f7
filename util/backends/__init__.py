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
- `CPU_BF16_DEFAULT` (optional): True if it runs bf16 by default on a CPU that multiplies
  bf16 natively (default_precision), as OpenVINO's CPU plugin does.
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

from util.device import native_bf16, resolve_device
from util.errors import UserError

from . import cudagraph, eager, openvino_engine, ort_session, torch_compile, trt_engine
from .common import DTYPES  # noqa: F401  (re-exported for the CLIs)

BACKENDS = {"tensorrt": trt_engine, "cudagraph": cudagraph, "onnxruntime": ort_session, "compile": torch_compile,
            "eager": eager, "openvino": openvino_engine}


def default_backend(device, flags=None):
    """The fastest backend this machine has (README, "Engines on this CPU"): CUDA graphs on a
    GPU; on a CPU that multiplies bf16 natively (util.device.native_bf16 of `flags`, default
    this CPU's) OpenVINO, whose bf16 ran every model faster than any fp32 engine; on other
    CPUs onnxruntime, which ran V1 and N2 1.3-2.3x faster than torch.compile in fp32. Each
    falls back to the next where its package is not installed, down to eager."""
    if torch.device(device).type == "cuda":
        return "cudagraph"
    if native_bf16(flags) and importlib.util.find_spec("openvino"):
        return "openvino"
    return "onnxruntime" if importlib.util.find_spec("onnxruntime") else "eager"


def default_precision(device, backend=None, flags=None):
    """Half precision on a GPU, as the paper measured. On a CPU, bf16 where the CPU multiplies
    it natively (AMX-BF16 or AVX512_BF16 among `flags`, default this CPU's) and `backend`
    (default: default_backend) sets CPU_BF16_DEFAULT, as OpenVINO does, whose own CPU plugin
    defaults to bf16 there; else float32, the default of PyTorch and onnxruntime."""
    if torch.device(device).type == "cuda":
        return "fp16"
    backend = backend or default_backend(device, flags)
    bf16_default = getattr(BACKENDS[backend], "CPU_BF16_DEFAULT", False)
    return "bf16" if bf16_default and native_bf16(flags) else "fp32"


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


def parse_engine(spec, device="cpu"):
    """(backend, precision) of an engine spec "backend:precision" (e.g. openvino:bf16); a bare
    backend runs in its default precision (default_precision)."""
    backend, _, precision = spec.partition(":")
    if backend not in BACKENDS or (precision and precision not in DTYPES):
        raise UserError(f"unknown engine {spec!r}: use BACKEND[:PRECISION] with a backend of "
                        f"{', '.join(BACKENDS)} and a precision of {', '.join(DTYPES)}")
    return backend, precision or default_precision(device, backend)
