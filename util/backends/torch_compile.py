"""torch.compile with Inductor's inference freezing: weights become constants, so Inductor
folds them (BatchNorm into convs), prepacks them for oneDNN on a CPU and fuses ReLU and
pooling around the convolutions. MODE "max-autotune" also benchmarks Inductor's own GEMM
kernels (Triton on a GPU, C++ templates on a CPU) against cuBLAS/oneDNN/MKL. That costs
about 10 s per model on 2 CPU cores and minutes per model on a GPU, where it tries many
Triton configurations; "default" compiles in seconds (scripts/gpu_benchmark.py --compile-mode).

On a GPU the compiled forward is captured in a CUDA graph here, as the cudagraph backend
does, not by Inductor (whose max-autotune mode would): Inductor's graphs copy every input
that is not marked static into their own buffer on every call, and an input marked static
is folded into a constant by freezing, so that the timed call would compute nothing. Our
capture reads the one input buffer in place.
"""
import types

import torch
import torch._inductor.config

from util.cuda_graphs import capture

from .common import place

NEEDS_CUDA = False
CHANNELS_LAST = False  # default; --channels-last turns it on
MODE = "max-autotune"
# The Inductor mode of each MODE on a GPU: the same kernel search, without Inductor's graphs.
GPU_MODES = {"max-autotune": "max-autotune-no-cudagraphs", "default": "default"}


def own_forward(model):
    """`model(x)` as a function with a code object of its own. Dynamo keeps compiled graphs
    per code object and counts them against its recompile limit, and every nn.Sequential
    shares one forward, so a sweep compiling more models than the limit would fail."""
    def forward(x):
        return model(x)

    return types.FunctionType(forward.__code__.replace(), forward.__globals__, "forward", None,
                              forward.__closure__)


def compiled_forward(model, x, mode):
    """`model` compiled in Inductor `mode` for inputs like `x`, weights frozen; compiled here,
    on `x`, outside any timed loop."""
    # fullgraph: a graph break would silently time eager code; dynamic=False: the shape is fixed.
    compiled = torch.compile(own_forward(model), mode=mode, fullgraph=True, dynamic=False)
    with torch._inductor.config.patch(freezing=True):
        compiled(x)
    return compiled


def prepare(model, inputs, precision, device, channels_last=False):
    model, x = place(model, inputs, precision, device, channels_last)
    if device.type != "cuda":
        compiled = compiled_forward(model, x, MODE)
        return lambda: compiled(x)
    compiled = compiled_forward(model, x, GPU_MODES[MODE])
    return capture(lambda: compiled(x), device)
