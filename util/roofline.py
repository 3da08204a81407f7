"""The roofline of a machine (Williams et al. 2009), measured: its peak FLOP/s (a large matmul
in the benchmark's precision: fp32 on a CPU, fp16 tensor cores on a GPU) and its memory
bandwidth (a large copy, bytes read + written per second). A workload of arithmetic
intensity I (FLOPs per byte) can reach at most min(peak, I x bandwidth); the ridge point
peak / bandwidth separates memory-bound intensities (left) from compute-bound ones (right).

The matmul runs through every backend being compared, and the machine's peak is the
fastest of them: on a CPU the libraries differ several-fold (PyTorch's MKL sgemm takes a
slow path on AMD CPUs, onnxruntime's MLAS does not), and a roof below what one engine
reaches would not be a roof.
"""
import statistics
import time

import torch
import torch.nn as nn

from util import backends


class MatMul(nn.Module):
    """x @ w for a square n x n weight: 2 n^3 FLOPs on an n x n input."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n, generator=torch.Generator().manual_seed(0)) / n ** 0.5,
                                   requires_grad=False)

    def forward(self, x):
        return x @ self.weight


def median_seconds(run, device, reps):
    """Median seconds of `reps` calls of `run` after one untimed call."""
    run()
    seconds = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def copy_bandwidth(device, mib=1024, reps=10):
    """Bytes/s of a `mib` MiB copy on `device` (read + write)."""
    src = torch.empty(mib << 20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() / median_seconds(lambda: dst.copy_(src), device, reps)


def matmul_probe(backend, precision, device, n=2048):
    """(run, FLOPs per call): an n x n x n matmul prepared by `backend`."""
    x = torch.randn(n, n, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        run = backends.BACKENDS[backend].prepare(MatMul(n), x, precision, device, False)
    return run, 2 * n ** 3


def matmul_flops(backend, precision, device, n=2048, reps=5):
    run, flops = matmul_probe(backend, precision, device, n)
    with torch.inference_mode():
        return flops / median_seconds(run, device, reps)


def roofline_point(flops_per_s, intensity, peak_flops, bandwidth):
    """Where a measured workload sits: its fraction of the FLOP peak, the roof at its
    intensity, its fraction of that roof, and which roof bounds it."""
    ridge = peak_flops / bandwidth
    roof = min(peak_flops, intensity * bandwidth)
    return {"flop_fraction": flops_per_s / peak_flops, "roof": roof, "roof_fraction": flops_per_s / roof,
            "ridge": ridge, "bound": "memory" if intensity < ridge else "compute"}
