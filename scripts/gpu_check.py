"""Every CUDA path of the repository end to end, in one command, for the owner of a GPU:

    make gpu-check                       # or: python -m scripts.gpu_check [--device cuda:1]

1. the test suite's CUDA-only tests (pytest -m cuda: backends against float32, TensorRT and
   its engine cache, dedicated streams, training and its CUDA-graph step, resume);
2. a short real training run on the GPU (generated V2 data, f=2), eager and --cuda_graph;
3. the training-throughput benchmark (steps/s and images/s per step variant);
4. a short GPU inference benchmark (V1 and N2 at f = 1, 2, 4 with the cudagraph and compile
   backends, and TensorRT where it is installed) with its roofline table.

Each step prints its output; the last lines say which steps passed. Outputs go to --out.
On a machine without a GPU it stops with an error instead.
"""
import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import torch

from util.args import device_string
from util.device import resolve_device
from util.errors import UserError, cli_main
from util.files import check_output_dir

REPO = Path(__file__).resolve().parent.parent


def steps(device, out):
    """(name, command) of every check, in order."""
    python = sys.executable
    data, runs = out / "data", out / "runs"
    backends = ["cudagraph", "compile"] + (["tensorrt"] if importlib.util.find_spec("tensorrt") else [])
    train = [python, "fold_trainer.py", "V2", "2", None, "--data-root", str(data), "--epochs", "3",
             "--max_train_per_class", "100", "--batch_size", "32", "--device", str(device), "--no-progress"]
    return [
        ("CUDA-only tests", [python, "-m", "pytest", "-q", "-m", "cuda", "tests"]),
        ("generate V2 data", [python, "-m", "datasets.game_synth", "apex-count", "--scale", "0.1",
                              "--out", str(data)]),
        ("train on the GPU", [str(runs / "eager") if a is None else a for a in train]),
        ("train with --cuda_graph", [str(runs / "graph") if a is None else a for a in train] + ["--cuda_graph"]),
        ("training throughput", [python, "-m", "scripts.bench_training", "--device", str(device),
                                 "--steps", "300"]),
        ("inference benchmark", [python, "-m", "scripts.gpu_benchmark", "--out", str(out / "gpu"),
                                 "--device", str(device), "--backends", *backends, "--models", "V1", "N2",
                                 "--folds", "1", "2", "4", "--trials", "1", "--num_warmup", "20",
                                 "--num_iteration", "500"]),
    ]


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=device_string, default="cuda", help="the GPU to check (default cuda)")
    parser.add_argument("--out", default="results/gpu-check", help="folder for data, runs and tables")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type != "cuda":
        raise UserError(f"the GPU check needs a CUDA GPU, not {device}")
    out = check_output_dir(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"checking the CUDA paths on {torch.cuda.get_device_name(device)}; outputs in {out}", flush=True)
    results = []
    for name, command in steps(device, out):
        print(f"\n=== {name}: {' '.join(command)}", flush=True)
        started = time.perf_counter()
        code = subprocess.run(command, cwd=REPO).returncode
        results.append((name, code, time.perf_counter() - started))
    print("\n=== summary")
    for name, code, seconds in results:
        print(f"{'ok  ' if code == 0 else 'FAIL'} {name} ({seconds:.0f}s)")
    if any(code for _, code, _ in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
