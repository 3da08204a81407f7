"""The roofline of a machine (Williams et al. 2009), measured: its peak FLOP/s (a large matmul
in the benchmark's precision: fp32 on a CPU, fp16 tensor cores on a GPU) and its memory
bandwidth (a large copy, bytes read + written per second). A workload of arithmetic
intensity I (FLOPs per byte) can reach at most min(peak, I x bandwidth); the ridge point
peak / bandwidth separates memory-bound intensities (left) from compute-bound ones (right).

The matmul runs through every backend being compared, and the machine's peak is the
fastest of them: on a CPU the libraries differ several-fold (PyTorch's MKL sgemm takes a
slow path on AMD CPUs, onnxruntime's MLAS does not), and a roof below what one engine
reaches would not be a roof. On a GPU the probes run like the timed workloads (on the
device, on a stream of their own: util.device.on_device) and are timed with CUDA events
over many back-to-back calls of an 8192^3 matmul, so that launch latency does not lower the
peak.
"""
import contextlib
import statistics
import time

import torch
import torch.nn as nn

from util import backends
from util.device import cuda_seconds_per_call, on_device


class MatMul(nn.Module):
    """x @ w for a square n x n weight: 2 n^3 FLOPs on an n x n input."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n, generator=torch.Generator().manual_seed(0)) / n ** 0.5,
                                   requires_grad=False)

    def forward(self, x):
        return x @ self.weight


# Calls timed per probe: a GPU call (an 8192^3 matmul, a 1 GiB copy) takes about a
# millisecond, so launch and synchronisation latency vanish over many; a CPU call takes long.
PROBE_REPS = {"cuda": 50, "cpu": 3}
# The matmul probe's size: 8192 fills an H100's tensor cores; 2048 is plenty for a CPU.
MATMUL_N = {"cuda": 8192, "cpu": 2048}


def seconds_per_call(run, device, reps=None):
    """Seconds per call of `run` after one untimed call: on a GPU the mean of `reps` calls
    back to back, between CUDA events recorded around the whole loop on the current stream;
    on a CPU the median of `reps` calls timed one by one. Call under util.device.on_device."""
    reps = PROBE_REPS[device.type] if reps is None else reps
    run()
    if device.type == "cuda":
        return cuda_seconds_per_call(run, reps)
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def copy_bandwidth(device, mib=1024, reps=None):
    """Bytes/s of a `mib` MiB copy on `device` (read + write), on its own stream."""
    with on_device(device):
        src = torch.empty(mib << 20, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        return 2 * src.numel() / seconds_per_call(lambda: dst.copy_(src), device, reps)


class MatmulProbe:
    """An n x n x n matmul (2 n^3 FLOPs) prepared by `backend` and timed, like every timed
    workload, with its device current and on a dedicated CUDA stream of its own."""

    def __init__(self, backend, precision, device, n=None):
        self.device, self.stream = device, None
        n = MATMUL_N[device.type] if n is None else n
        self.flops = 2 * n ** 3
        x = torch.randn(n, n, generator=torch.Generator().manual_seed(1))
        with self.on_device(), torch.inference_mode():
            self.run = backends.BACKENDS[backend].prepare(MatMul(n), x, precision, device, False)

    @contextlib.contextmanager
    def on_device(self):
        with on_device(self.device, self.stream) as stream:
            self.stream = stream
            yield

    def flops_per_s(self, reps=None):
        with self.on_device(), torch.inference_mode():
            return self.flops / seconds_per_call(self.run, self.device, reps)


def matmul_flops(backend, precision, device, n=None, reps=None):
    """FLOP/s of an n x n x n matmul through `backend` (n: MATMUL_N of the device)."""
    return MatmulProbe(backend, precision, device, n).flops_per_s(reps)


def roofline_point(flops_per_s, intensity, peak_flops, bandwidth):
    """Where a measured workload sits: its fraction of the FLOP peak, the roof at its
    intensity, its fraction of that roof, and which roof bounds it."""
    ridge = peak_flops / bandwidth
    roof = min(peak_flops, intensity * bandwidth)
    return {"flop_fraction": flops_per_s / peak_flops, "roof": roof, "roof_fraction": flops_per_s / roof,
            "ridge": ridge, "bound": "memory" if intensity < ridge else "compute"}
