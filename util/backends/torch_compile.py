"""torch.compile(mode="max-autotune") with Inductor's inference freezing: weights become
constants, so Inductor folds them (BatchNorm into convs), prepacks them for oneDNN on a
CPU and fuses ReLU and pooling around the convolutions. max-autotune benchmarks Inductor's
own GEMM kernels (Triton on a GPU, C++ templates on a CPU) against cuBLAS/oneDNN/MKL;
it is valid on a CPU too and takes about 10 s per model on 2 cores.
"""
import torch
import torch._inductor.config

from .common import place

NEEDS_CUDA = False
CHANNELS_LAST = False  # default; --channels_last turns it on

# A sweep compiles many models, and every nn.Sequential shares one forward code object;
# dynamo counts each compiled model against that code object's recompile limit (default 8).
# (cache_size_limit is that limit's name before PyTorch 2.7 and an alias of it since.)
RECOMPILE_LIMIT = 64


def prepare(model, inputs, precision, device, channels_last=False):
    model, x = place(model, inputs, precision, device, channels_last)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, RECOMPILE_LIMIT)
    # fullgraph: a graph break would silently time eager code; dynamic=False: the shape is fixed.
    compiled = torch.compile(model, mode="max-autotune", fullgraph=True, dynamic=False)
    with torch._inductor.config.patch(freezing=True):
        compiled(x)  # compiles now, outside the timed loop
    return lambda: compiled(x)
