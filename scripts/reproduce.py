"""`make reproduce`: the paper end to end at a size this machine can afford.

    python -m scripts.reproduce [--datasets ...] [--folds 1 2 3 4] [--scale 0.05]
                                [--profile quick|paper] [--data-root data] [--out results] [--jobs N]

1. makes the data that is missing (game tasks with datasets.game_synth, NoScope tasks with
   datasets.noscope_synth; real data under --data-root is used as it is),
2. trains the original and folded models and the baselines a user could run instead, the
   narrow CNN of each f and the compound-scaled CNN of game models (train.py --baselines
   narrow compound, the chosen profile, --jobs at once),
3. measures inference throughput on the fastest backend here, of the baselines too
   (run_inference.sh),
4. measures the roofline: the machine's peaks and every backend's place under them
   (scripts.roofline; ROOFLINE_BACKENDS="eager onnxruntime" in the environment picks backends),
5. OCCAM's partitioning and the ReLU sparsity of the trained models (scripts.occam,
   scripts.relu_sparsity),
6. plots the results and writes OUT/REPORT.md with its accuracy-throughput chart
   (scripts.plot_results, scripts.report).
Each step is the same command a user would type, printed before it runs. Every step reuses
finished work, so rerunning after an interruption continues where it stopped.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import datasets
import models
from models.flops import load_model_map, ops_key
from datasets.game_synth import split_counts
from fold_trainer import PROFILES, job_dir
from models import occam
from util import backends
from util.args import nonnegative_int, positive_float, positive_int
from util.errors import UserError, cli_main
from util.files import atomic_savefig, check_output_dir
from util.job_folder import images_seen_curve

plt.switch_backend("Agg")  # files only

# V1, one more game task and NoScope night: every cell of the report trained (about 30 min on 2 cores).
DEFAULT_DATASETS = ["lol-gold1", "apex-count", "night"]
# Inference settings per device: a GPU gets the paper's protocol, a CPU a short one.
# The environment overrides them (e.g. `make reproduce TRIALS=3`).
GPU_SWEEP = {"TRIALS": "3", "NUM_WARMUP": "100", "NUM_ITERATION": "2000"}
CPU_SWEEP = {"TRIALS": "1", "NUM_WARMUP": "1", "NUM_ITERATION": "3"}
REPO = Path(__file__).resolve().parent.parent  # every step runs from the repository root


STUDY_CURVES = REPO / "docs" / "recipe_curves.png"


def job_curve(job, name, data_root, fold, start=0):
    """(thousands of training images seen, val top-1 %) after each epoch of a finished job
    (a curriculum's early epochs too), counted from `start` images; None if the job has not
    finished."""
    if not (job / "done.json").is_file():
        return None
    cap = json.loads((job / "done.json").read_text())["recipe"]["max_train_per_class"]
    points = images_seen_curve(job, datasets.class_counts(name, data_root, cap), fold, every_epoch=True)
    return [(start + seen) / 1000 for seen, _ in points], [100 * top1 for _, top1 in points]


def plot_learning_curves(runs, name, folds, data_root, path):
    """Validation top-1 against training images seen of `name`'s jobs, one line per f; a
    folded model that started from its narrow CNN continues that CNN's (dashed) curve."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for fold in folds:
        done = job_dir(runs, name, fold) / "done.json"
        from_narrow = done.is_file() and json.loads(done.read_text())["recipe"].get("init") == "narrow"
        narrow = job_curve(job_dir(runs, name, fold, "narrow"), name, data_root, 1) if fold > 1 and from_narrow else None
        folded = job_curve(job_dir(runs, name, fold), name, data_root, fold, 1000 * narrow[0][-1] if narrow else 0)
        if folded is None:
            continue
        line, = ax.plot(*folded, marker=".", label="original" if fold == 1 else f"f={fold}")
        if narrow and folded:
            ax.plot(*narrow, ls="--", color=line.get_color(), lw=1, label=f"narrow f={fold}, then f={fold} dense")
    cfg = models.load_config(name)
    ax.axhline(100 / len(cfg["classes"]), color="grey", lw=0.8)
    ax.set(title=f"{cfg['id']} ({name}): validation top-1 while training; grey: chance",
           xlabel="training images seen (thousands)", ylabel="top-1 (%)", ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def step(title, command, env=None):
    print(f"\n==> {title}\n$ {' '.join(shlex.quote(str(c)) for c in command)}", flush=True)
    proc = subprocess.run([str(c) for c in command], cwd=REPO, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise UserError(f"step '{title}' failed (exit {proc.returncode}); fix the error above and rerun "
                        f"`make reproduce`: finished steps are reused")


def game_scale(name, scale, min_train_per_class):
    """The --scale of a game task: `scale`, raised so that training has at least
    `min_train_per_class` images per class (capped at the full set)."""
    per_class = models.load_config(name)["data"]["per_class"]["train"]
    return min(1.0, max(float(scale), min_train_per_class / per_class))


def make_data(names, scale, data_root, min_train_per_class=0, eval_scale=1.0):
    for name in names:
        cfg = models.load_config(name)
        if cfg["family"] == "game" and not (Path(data_root) / cfg["data"]["source"]).is_dir():
            make_game_data(cfg, scale, data_root, min_train_per_class, eval_scale)
            continue
        try:  # real data, or a family without scale options
            datasets.dataset_dir(name, data_root)
            print(f"==> data for {name}: found under {data_root}, reused", flush=True)
            continue
        except UserError as missing:
            family = models.family_of(cfg)
            if family.synthesize is None:
                raise UserError(f"{missing}; no generator makes {family.name} data here, so make it or leave "
                                f"{name} out of DATASETS") from None
        step(f"synthesize {name}", [sys.executable, "-m", *(arg.format(name=name, root=data_root)
                                                           for arg in family.synthesize)])


def make_game_data(cfg, scale, data_root, min_train_per_class, eval_scale):
    """Synthetic data of a game task at these sizes: reused if there, else (re)generated."""
    scale = game_scale(cfg["name"], scale, min_train_per_class)
    marker = Path(data_root) / cfg["name"] / ".complete"
    try:
        found = json.loads(marker.read_text())["per_class"]
    except (OSError, ValueError, KeyError, TypeError):  # none, or damaged: the generator decides
        found = None
    if found == split_counts(cfg, scale, eval_scale):
        print(f"==> data for {cfg['name']}: found under {data_root}, reused", flush=True)
        return
    step(f"generate {cfg['name']}", [sys.executable, "-m", "datasets.game_synth", cfg["name"], "--scale",
                                     f"{scale:g}", "--eval-scale", f"{eval_scale:g}", "--out", data_root])


def check_flop_table(names, folds):
    """Before any training: the inference sweep reads each (model, fold)'s FLOPs from
    config/model_map.json, so a fold it lacks would fail only after the training."""
    table = load_model_map()
    for name in names:
        missing = [f for f in folds if ops_key(f) not in table.get(name, {})]
        if missing:
            held = sorted(int(k[4:-4]) if k.startswith("fold") else 1 for k in table.get(name, {}) if k != "efficientnet_ops")
            raise UserError(f"FOLDS: f={missing[0]} has no FLOP count for {name} in config/model_map.json (it holds "
                            f"f = {' '.join(map(str, held)) or 'none'}), which the inference sweep needs: "
                            "choose FOLDS among those")


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS, help="default: %(default)s")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=list(models.FOLDS), help="default: 1 2 3 4")
    parser.add_argument("--scale", type=positive_float, default=0.05,
                        help="size of generated game training sets (default %(default)s)")
    parser.add_argument("--min-train-per-class", type=nonnegative_int, default=500,
                        help="raise --scale per game task to at least this many training images per class "
                             "(default %(default)s: V1 has it at scale 0.05, V2 needs 0.5)")
    parser.add_argument("--eval-scale", type=positive_float, default=1.0,
                        help="size of generated game val/test sets (default %(default)s: whole, so that "
                             "accuracies are measured on 100-200 images per class whatever --scale)")
    parser.add_argument("--profile", choices=list(PROFILES), default="quick",
                        help="training profile (fold_trainer.PROFILES; default %(default)s, minutes per job)")
    parser.add_argument("--data-root", default="data", help="generated or real data (default %(default)s)")
    parser.add_argument("--out", default="results", help="report folder (default %(default)s)")
    parser.add_argument("--jobs", type=positive_int, default=1 if torch.cuda.is_available() else os.cpu_count() or 1,
                        help="training jobs at once (train.py --jobs; default: one per CPU core without a GPU, "
                             "where each quick job uses one thread, else 1)")
    args = parser.parse_args(argv)
    names = [models.load_config(n)["name"] for n in args.datasets]
    folds = sorted(set(args.folds) | {1})  # speedups and accuracy changes are relative to f = 1
    # Checked, not created: a run that fails before training leaves no empty folder behind.
    out = check_output_dir(args.out, "results folder")
    check_output_dir(args.data_root, "data folder")
    check_flop_table(names, folds)

    make_data(names, args.scale, args.data_root, args.min_train_per_class, args.eval_scale)

    runs = out / "runs"
    step("train", [sys.executable, "train.py", runs, "--datasets", *names, "--folds", *folds,
                   "--profile", args.profile, "--data-root", args.data_root, "--jobs", args.jobs,
                   "--baselines", *models.BASELINES])
    shutil.copyfile(runs / "summary.csv", out / "summary.csv")
    plot_learning_curves(runs, names[0], folds, args.data_root, out / "learning_curves.png")
    if STUDY_CURVES.is_file():  # the paper's recipe beside the quick one, from docs/recipe.md
        shutil.copyfile(STUDY_CURVES, out / STUDY_CURVES.name)

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
                          "--folds", *folds, "--trials", timing["TRIALS"], "--num-warmup", timing["NUM_WARMUP"],
                          "--num-iteration", timing["NUM_ITERATION"], *(["--backends", *chosen] if chosen else [])])

    chains = [n for n in names if occam.supports(n)]  # OCCAM's analysis covers chains of layers
    if chains:
        step("OCCAM partitioning", [sys.executable, "-m", "scripts.occam", *chains, "--out", out])
    step("ReLU sparsity", [sys.executable, "-m", "scripts.relu_sparsity", runs, "--data-root", args.data_root,
                           "--out", out, "--no-progress"])

    precision_csv = out / "precision_accuracy.csv"  # test top-1 in the sweep's precision beside fp32
    if precision_csv.is_file():
        print(f"\n==> accuracy in the inference precision: {precision_csv} found, reused", flush=True)
    else:
        step("accuracy in the inference precision", [sys.executable, "-m", "scripts.precision_accuracy", runs,
                                                      "--engine", backend, "--out", precision_csv, "--data-root",
                                                      args.data_root])

    step("plots", [sys.executable, "-m", "scripts.plot_results", out / "results.csv", "--outdir", out])
    plots = sorted(p.name for p in out.glob("*.png"))
    report = out / "REPORT.md"
    step("report", [sys.executable, "-m", "scripts.report", "--summary", out / "summary.csv",
                    "--results", out / "results.csv", "--out", report, "--backend", backend,
                    "--scale", args.scale, "--profile", args.profile, "--roofline", roofline,
                    "--occam", out / "occam.csv", "--sparsity", out / "relu_sparsity.csv", "--plots", *plots,
                    "--precision-accuracy", precision_csv])
    print(f"\n==> report: {report}\n")
    print(report.read_text())


if __name__ == "__main__":
    main()
