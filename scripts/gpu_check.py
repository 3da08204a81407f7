"""Every CUDA path of the repository end to end, in one command, for the owner of a GPU:

    make gpu-check                       # or: python -m scripts.gpu_check [--device cuda:1]

1. the test suite's CUDA-only tests (pytest -m cuda: backends against float32, TensorRT and
   its engine cache, dedicated streams, training and its CUDA-graph step, resume), on the
   --device GPU alone (CUDA_VISIBLE_DEVICES);
2. a short real training run on the GPU (generated V2 data, f=2), eager and --cuda_graph;
3. the training-throughput benchmark (steps/s and images/s per step variant);
4. a short GPU inference benchmark (V1 and N2 at f = 1 and 4 with the cudagraph backend,
   the compile backend in Inductor's default mode, and TensorRT where it imports) with its
   roofline table.

It prints its estimated time on an H100 first (under 10 minutes; util/gpu_estimate.py),
then each step's command and output. Every run writes into a new folder under --out, so a
rerun redoes every step; whatever does not run is named on a SKIPPED line with the reason,
and the last lines say which steps passed. On a machine without a GPU it stops with an
error instead.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import models
from infer import sweep_work
from util.args import device_string
from util.device import resolve_device
from util.errors import UserError, cli_main
from util.files import check_output_dir
from util.gpu_estimate import estimate_seconds, format_estimate

REPO = Path(__file__).resolve().parent.parent
# The inference benchmark's workloads: every backend on these, briefly.
BENCH_MODELS, BENCH_FOLDS, BENCH_BATCH = ["V1", "N2"], [1, 4], 1024
BENCH_TRIALS, BENCH_WARMUP, BENCH_ITERATIONS = 1, 20, 500
# Seconds on an H100 host of the steps that time no inference workload (util/gpu_estimate.py):
# the CUDA tests build three TensorRT engines and compile twice; the training runs are 3
# epochs of 100 images per class.
STEP_SECONDS = {"CUDA-only tests": 180, "generate V2 data": 15, "train on the GPU": 30,
                "train with --cuda-graph": 30, "training throughput": 45}


def tensorrt_missing():
    """Why TensorRT cannot be checked here, or None where it imports."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as error:
        return f"the tensorrt Python package does not import ({error}); run in the NGC container (README)"
    return None


def bench_backends(trt_missing):
    return ["cudagraph", "compile"] + ([] if trt_missing else ["tensorrt"])


def visible_devices(device, environ=os.environ):
    """The CUDA_VISIBLE_DEVICES that shows `device` alone (as cuda:0), whatever the caller's
    CUDA_VISIBLE_DEVICES already hides."""
    index = device.index or 0
    shown = [d.strip() for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return shown[index] if index < len(shown) else str(index)


def steps(device, out, trt_missing):
    """(name, command, extra environment) of every check, in order."""
    python = sys.executable
    data, runs = out / "data", out / "runs"
    train = [python, "fold_trainer.py", "V2", "2", None, "--data-root", str(data), "--epochs", "3",
             "--max-train-per-class", "100", "--batch-size", "32", "--device", str(device), "--no-progress"]
    return [
        ("CUDA-only tests", [python, "-m", "pytest", "-q", "-rs", "-m", "cuda", "tests"],
         {"CUDA_VISIBLE_DEVICES": visible_devices(device)}),
        ("generate V2 data", [python, "-m", "datasets.game_synth", "apex-count", "--scale", "0.1",
                              "--out", str(data)], {}),
        ("train on the GPU", [str(runs / "eager") if a is None else a for a in train], {}),
        ("train with --cuda-graph", [str(runs / "graph") if a is None else a for a in train] + ["--cuda-graph"], {}),
        ("training throughput", [python, "-m", "scripts.bench_training", "--device", str(device),
                                 "--steps", "300"], {}),
        ("inference benchmark", [python, "-m", "scripts.gpu_benchmark", "--out", str(out / "gpu"),
                                 "--device", str(device), "--backends", *bench_backends(trt_missing),
                                 "--compile-mode", "default", "--models", *BENCH_MODELS,
                                 "--folds", *map(str, BENCH_FOLDS), "--trials", str(BENCH_TRIALS),
                                 "--num-warmup", str(BENCH_WARMUP), "--num-iteration", str(BENCH_ITERATIONS),
                                 "--no-narrow"], {}),  # a check of the CUDA paths: the narrow CNNs add none
    ]


def skipped(trt_missing):
    """(what, why) of each part of the check that will not run."""
    if not trt_missing:
        return []
    return [("the TensorRT tests and the tensorrt backend of the inference benchmark", trt_missing)]


def estimate(trt_missing):
    """Seconds of the whole check on an H100 (util/gpu_estimate.py)."""
    names = [models.load_config(n)["name"] for n in BENCH_MODELS]
    work = [w for backend in bench_backends(trt_missing)
            for w in sweep_work(names, BENCH_FOLDS, BENCH_BATCH, BENCH_TRIALS, backend, BENCH_WARMUP,
                                BENCH_ITERATIONS, narrow=False)]
    return estimate_seconds(work, sum(STEP_SECONDS.values()))


def new_run_folder(base):
    """A folder under `base` that no earlier run has used, named by the UTC time."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for suffix in [""] + [f"-{i}" for i in range(2, 100)]:
        folder = base / f"{stamp}{suffix}"
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise UserError(f"{base} already holds runs named {stamp}-2 to -99: clear it out")


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=device_string, default="cuda", help="the GPU to check (default cuda)")
    parser.add_argument("--out", default="results/gpu-check",
                        help="folder under which each run gets a new folder for its data, runs and tables")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type != "cuda":
        raise UserError(f"the GPU check needs a CUDA GPU, not {device}")
    out = new_run_folder(check_output_dir(args.out))
    trt_missing = tensorrt_missing()
    print(f"checking the CUDA paths on {torch.cuda.get_device_name(device)}; outputs in {out}", flush=True)
    print(format_estimate(estimate(trt_missing), "make gpu-check"), flush=True)
    for what, why in skipped(trt_missing):
        print(f"SKIPPED {what}: {why}", flush=True)
    results = []
    for name, command, env in steps(device, out, trt_missing):
        print(f"\n=== {name}: {' '.join([f'{k}={v}' for k, v in env.items()] + command)}", flush=True)
        started = time.perf_counter()
        code = subprocess.run(command, cwd=REPO, env={**os.environ, **env}).returncode
        results.append((name, code, time.perf_counter() - started))
    print("\n=== summary")
    for name, code, seconds in results:
        print(f"{'ok  ' if code == 0 else 'FAIL'} {name} ({seconds:.0f}s)")
    for what, why in skipped(trt_missing):
        print(f"SKIPPED {what}: {why}")
    if any(code for _, code, _ in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
