"""ONNX Runtime: the model exported to ONNX with static shapes (cached in engines/onnx,
util.onnx_export) and run by an InferenceSession with every graph optimization on. On a
CPU that means Conv+ReLU fusion and the NCHWc blocked layout of its convolution kernels,
which is what makes it the fastest engine on the CPUs we measured; on a GPU the session
uses the CUDA execution provider when the installed build has it (onnxruntime-gpu).

The session runs on `torch.get_num_threads()` intra-op threads, so `--threads` holds for
it as for PyTorch. Input and output buffers are bound once, so a call runs the graph only.
"""
import numpy as np
import torch

from util.errors import UserError
from util.onnx_export import cached_export

from .common import place

NEEDS_CUDA = False
CHANNELS_LAST = False  # ONNX graphs are NCHW; the CPU kernels pick their blocked layout
NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UserError("the onnxruntime backend needs the `onnxruntime` package: "
                        "pip install onnxruntime (onnxruntime-gpu on a CUDA machine)") from None
    return onnxruntime


def session_options(ort, threads):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # a CNN is one chain of layers
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def providers(ort, device):
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UserError("the installed onnxruntime has no CUDA execution provider: pip install onnxruntime-gpu, "
                        "or use --device cpu")
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


class SessionRunner:
    """A session bound to fixed input and output buffers, which it keeps alive (onnxruntime
    holds only their addresses); calling it runs the graph once."""

    def __init__(self, session, x, output, device):
        self.session, self.x, self.output = session, x, output
        self.binding = session.io_binding()
        for name, tensor in (("input", x), ("output", output)):
            bind = self.binding.bind_input if name == "input" else self.binding.bind_output
            bind(name, device.type, device.index or 0, NUMPY_DTYPES[tensor.dtype], list(tensor.shape),
                 tensor.data_ptr())

    def __call__(self):
        self.session.run_with_iobinding(self.binding)
        return self.output


def prepare(model, inputs, precision, device, channels_last=False):
    ort = import_onnxruntime()
    if precision == "bf16" or (precision == "fp16" and device.type == "cpu"):
        raise UserError(f"the onnxruntime backend runs {precision} only where it has kernels for it: "
                        f"use --precision fp32{' or fp16 on a GPU' if precision == 'bf16' else ''}")
    model, x = place(model, inputs, precision, device, channels_last=False)
    with torch.no_grad():
        output = torch.empty_like(model(x))
    path = cached_export(model.cpu(), x.cpu())
    session = ort.InferenceSession(str(path), session_options(ort, torch.get_num_threads()),
                                   providers=providers(ort, device))
    return SessionRunner(session, x, output, device)
