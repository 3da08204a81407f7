"""`make reproduce`: the paper end to end at a size this machine can afford.

    python -m scripts.reproduce [--datasets ...] [--folds 1 2 3 4] [--scale 0.05]
                                [--profile quick|paper] [--data-root data] [--out results]

1. makes the data that is missing (game tasks with datasets.game_synth, NoScope tasks with
   datasets.noscope_synth; real data under --data-root is used as it is),
2. trains the original and folded models (train.py, the chosen profile),
3. measures inference throughput on the fastest backend here (run_inference.sh),
4. measures the roofline: the machine's peaks and every backend's place under them
   (scripts.roofline; ROOFLINE_BACKENDS="eager onnxruntime" in the environment picks backends),
5. plots the results and writes OUT/REPORT.md (scripts.plot_results, scripts.report).
Each step is the same command a user would type, printed before it runs. Every step reuses
finished work, so rerunning after an interruption continues where it stopped.
"""
import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import torch

import datasets
import models
from util import backends
from util.args import positive_float, positive_int
from util.errors import UserError, cli_main
from util.files import check_output_dir

DEFAULT_DATASETS = ["lol-gold1", "apex-count", "sot-coin", "sot-time", "night"]
# Inference settings per device: a GPU gets the paper's protocol, a CPU a short one.
# The environment overrides them (e.g. `make reproduce TRIALS=3`).
GPU_SWEEP = {"TRIALS": "3", "NUM_WARMUP": "100", "NUM_ITERATION": "2000"}
CPU_SWEEP = {"TRIALS": "1", "NUM_WARMUP": "1", "NUM_ITERATION": "3"}
REPO = Path(__file__).resolve().parent.parent  # every step runs from the repository root


def step(title, command, env=None):
    print(f"\n==> {title}\n$ {' '.join(shlex.quote(str(c)) for c in command)}", flush=True)
    proc = subprocess.run([str(c) for c in command], cwd=REPO, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise UserError(f"step '{title}' failed (exit {proc.returncode}); fix the error above and rerun "
                        f"`make reproduce`: finished steps are reused")


def make_data(names, scale, data_root):
    for name in names:
        try:
            datasets.dataset_dir(name, data_root)
            print(f"==> data for {name}: found under {data_root}, reused", flush=True)
            continue
        except UserError:
            pass
        family = models.load_config(name)["family"]
        if family == "game":
            step(f"generate {name}", [sys.executable, "-m", "datasets.game_synth", name,
                                      "--scale", scale, "--out", data_root])
        elif family == "noscope":
            step(f"synthesize NoScope {name}", [sys.executable, "-m", "datasets.noscope_synth", name,
                                                "--build", "--out", data_root])
        else:
            raise UserError(f"{name}: CIFAR cannot be downloaded here; put its files under {data_root} "
                            f"(see data/README.md) or leave it out of DATASETS")


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS, help="default: %(default)s")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=list(models.FOLDS), help="default: 1 2 3 4")
    parser.add_argument("--scale", type=positive_float, default=0.05,
                        help="size of generated game data (default %(default)s)")
    parser.add_argument("--profile", choices=["quick", "paper"], default="quick")
    parser.add_argument("--data-root", default="data", help="generated or real data (default %(default)s)")
    parser.add_argument("--out", default="results", help="report folder (default %(default)s)")
    args = parser.parse_args(argv)
    names = [models.load_config(n)["name"] for n in args.datasets]
    folds = sorted(set(args.folds) | {1})  # speedups and accuracy changes are relative to f = 1
    # Checked, not created: a run that fails before training leaves no empty folder behind.
    out = check_output_dir(args.out, "results folder")
    check_output_dir(args.data_root, "data folder")

    make_data(names, args.scale, args.data_root)

    runs = out / "runs"
    step("train", [sys.executable, "train.py", runs, "--datasets", *names, "--folds", *folds,
                   "--profile", args.profile, "--data-root", args.data_root])
    shutil.copyfile(runs / "summary.csv", out / "summary.csv")

    gpu = torch.cuda.is_available()
    backend = backends.default_backend("cuda" if gpu else "cpu")
    timing = {key: os.environ.get(key, value) for key, value in (GPU_SWEEP if gpu else CPU_SWEEP).items()}
    sweep_env = {"MODELS": " ".join(names), "FOLDS": " ".join(map(str, folds)), "BACKEND": backend, **timing}
    print("\n" + " ".join(f"{k}={shlex.quote(v)}" for k, v in sweep_env.items()) + " ./run_inference.sh ...")
    step("inference throughput", ["bash", "run_inference.sh", out / "results.csv"], env=sweep_env)

    roofline = out / "roofline.csv"
    if roofline.is_file():
        print(f"\n==> roofline: {roofline} found, reused", flush=True)
    else:
        chosen = os.environ.get("ROOFLINE_BACKENDS", "").split()
        step("roofline", [sys.executable, "-m", "scripts.roofline", "--out", out, "--models", *names,
                          "--folds", *folds, "--trials", timing["TRIALS"], "--num_warmup", timing["NUM_WARMUP"],
                          "--num_iteration", timing["NUM_ITERATION"], *(["--backends", *chosen] if chosen else [])])

    step("plots", [sys.executable, "-m", "scripts.plot_results", out / "results.csv", "--outdir", out])
    plots = sorted(p.name for p in out.glob("*.png"))
    report = out / "REPORT.md"
    step("report", [sys.executable, "-m", "scripts.report", "--summary", out / "summary.csv",
                    "--results", out / "results.csv", "--out", report, "--backend", backend,
                    "--scale", args.scale, "--profile", args.profile, "--roofline", roofline, "--plots", *plots])
    print(f"\n==> report: {report}\n")
    print(report.read_text())


if __name__ == "__main__":
    main()
