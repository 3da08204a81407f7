"""Where torch runs: the device, its CPU threads, and the names of the hardware for records."""
import contextlib
import os
import platform
from pathlib import Path

import torch

from util.errors import UserError


def resolve_device(device=None):
    """torch.device of `device` ("cpu", "cuda", "cuda:N"); None means cuda if there is a GPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device {str(device)!r} is not supported here; use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but PyTorch sees no CUDA GPU here; use --device cpu")
    if device.type == "cuda":
        check_cuda_index(device, torch.cuda.device_count())
    return device


def check_cuda_index(device, count):
    """`device` if this machine's `count` GPUs include it, else a UserError naming them."""
    if device.index is not None and device.index >= count:
        gpus = "1 CUDA GPU (cuda:0)" if count == 1 else f"{count} CUDA GPUs (cuda:0 to cuda:{count - 1})"
        raise UserError(f"device {device} requested but this machine has {gpus}; "
                        f"pick one of them with --device, or set CUDA_VISIBLE_DEVICES")
    return device


@contextlib.contextmanager
def on_device(device, stream=None):
    """Run the block with `device` as the current device and, on a GPU, on a dedicated CUDA
    stream (`stream`, or a new one), which it yields (None on a CPU). CUDA events, cuDNN and
    cuBLAS handles, CUDA-graph capture and TensorRT all use the current device, and work on
    the legacy default stream synchronises with every other stream, so timed GPU work runs
    in here."""
    if device.type != "cuda":
        yield None
        return
    with torch.cuda.device(device):
        stream = stream or torch.cuda.Stream(device)
        with torch.cuda.stream(stream):
            yield stream


def set_threads(threads):
    """Set torch's CPU threads (1 is fastest on a CPU shared with other jobs)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a whole number >= 1, got {threads!r}")
    torch.set_num_threads(threads)


def cpu_name():
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device):
    """The GPU's name, or the CPU's with the number of torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{cpu_name()} ({threads} thread{'s' if threads > 1 else ''})"


# CPU matrix instructions that multiply bf16 natively, fastest first: Intel AMX tiles, then
# AVX-512 bf16 dot products (Intel Cooper Lake+, AMD Zen 4+). Keys are /proc/cpuinfo flags.
BF16_ISAS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512_BF16"}
# FOLDEDCNNS_CPU_FLAGS="avx2 fma" (space-separated) stands in for /proc/cpuinfo's flags: to see
# what another CPU would default to, and for tests.
CPU_FLAGS_ENV = "FOLDEDCNNS_CPU_FLAGS"


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags: $FOLDEDCNNS_CPU_FLAGS if set, else /proc/cpuinfo's (Linux;
    an empty set elsewhere)."""
    if os.environ.get(CPU_FLAGS_ENV) is not None:
        return set(os.environ[CPU_FLAGS_ENV].split())
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_isa(flags=None):
    """The widest vector/matrix ISA of the CPU (`flags`, default cpu_flags()) for inference:
    AMX-BF16, AVX512_BF16, AVX-512, AVX2 or SSE."""
    flags = cpu_flags() if flags is None else set(flags)
    for flag, name in [*BF16_ISAS.items(), ("avx512f", "AVX-512"), ("avx2", "AVX2")]:
        if flag in flags:
            return name
    return "SSE"


def native_bf16(flags=None):
    """Whether the CPU multiplies bf16 natively (AMX-BF16 or AVX512_BF16)."""
    return cpu_isa(flags) in BF16_ISAS.values()


def cuda_seconds_per_call(run, calls):
    """Mean seconds per call of `calls` back-to-back calls of `run` on the current CUDA
    stream, between events recorded around the whole loop (no host work between calls, so a
    call of microseconds is timed on the GPU, not bounded by the host)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / calls
