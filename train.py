"""Train a sweep of (dataset, fold) jobs one after another and summarize them.

    python train.py runs/quick                                   # every dataset, f = 1..4
    python train.py runs/quick --datasets V1 V2 V3 V4 --folds 1 2 3 4
    python train.py runs/paper --profile paper --datasets cifar10 --folds 1 2

Each job trains in SAVEDIR/<dataset>/fold<f>/ (see fold_trainer.py); f = 1 runs first, finished
jobs are skipped and unfinished ones resume, so rerunning the command continues a sweep.
SAVEDIR/summary.csv collects every finished job of SAVEDIR and is printed at the end.

Profiles: `paper` is the original recipe of each config (the original FoldedCNNs
repository: batch 32, 1500 epochs for game models, curriculum E = 60, ...). `quick` (the
default without a GPU) scales epochs and data down so that a laptop CPU trains V1-V4 at
f = 1..4 in minutes; it is a smoke test of the whole pipeline, not the paper's recipe: expect
f = 1 and 2 to learn and f = 3 and 4 to lag (folded models sit on a long plateau and need the
long schedule). Every field of a profile can be overridden on the command line (--epochs,
--lr, ...). How the quick profile was chosen: README, "Training profiles".
"""
import argparse
import time
from pathlib import Path

import torch

import datasets
import models
from fold_trainer import (RECIPE_OPTIONS, add_job_arguments, format_seconds, job_options, resolve_recipe,
                          teacher_candidates, train_job, write_summary)
from util.args import positive_int
from util.errors import UserError, cli_main
from util.files import check_output_dir

# -----------------------------------------------------------------------------------------
# Defaults. Edit here, or override any field on the command line.
PROFILES = {
    # The original recipe: each config's `train` section, unchanged.
    "paper": {},
    # CPU smoke run: V1-V4 x f=1..4 in well under 30 minutes on 2 cores. Not the paper's recipe:
    # - 40 epochs on at most 100 training images per class (val and test stay whole);
    # - batch 16 at lr 2e-4: the fastest setting at which f=2 leaves its plateau on all of V1-V4
    #   within 40 epochs (smaller batches take more steps per epoch);
    # - no curriculum: a short run leaves each stage too few steps to learn even the first
    #   classes, so it only costs epochs here (`--curriculum --curriculum_epochs N` restores it);
    # - one CPU thread: these tiny models gain little from a second thread and lose much when
    #   other processes share the cores.
    "quick": {"epochs": 40, "batch_size": 16, "lr": 2e-4, "max_train_per_class": 100, "curriculum": False,
              "threads": 1},
}
DEFAULT_PROFILE = "paper" if torch.cuda.is_available() else "quick"
data_root = "data"


def plan_jobs(names, folds, savedir, options):
    """[(dataset, fold)] in training order, checked up front: names, folds and every recipe
    are validated and the data must exist, so that a typo fails before hours of training."""
    if not names or not folds:
        raise UserError("nothing to train: give at least one dataset and one fold")
    recipe_options = {k: v for k, v in options.items() if k in RECIPE_OPTIONS}
    jobs = []
    for name in dict.fromkeys(models.load_config(n)["name"] for n in names):
        datasets.dataset_dir(name, options["data_root"])
        name_folds = sorted(set(folds))
        distills = any(resolve_recipe(name, f, **recipe_options)["distill"] for f in name_folds)
        has_teacher = options.get("teacher") or any(p.is_file() for p in teacher_candidates(name, savedir))
        if distills and 1 not in name_folds and not has_teacher:
            print(f"{name}: folded jobs distill from the f=1 model, which is not trained yet: training it first")
            name_folds = [1] + name_folds
        jobs += [(name, f) for f in name_folds]
    return jobs


@cli_main
def main(datasets_to_run, folds, argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("savedir", help="root folder of the sweep's jobs")
    parser.add_argument("--datasets", nargs="+", default=datasets_to_run,
                        help="dataset names or ids (default: datasets_to_run in train.py)")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=folds, help="folds f (default: 1 2 3 4)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE,
                        help=f"recipe profile (default here: {DEFAULT_PROFILE}; paper with a GPU, quick without)")
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    overrides = job_options(args)
    options = {"data_root": data_root, **PROFILES[args.profile], **overrides}
    check_output_dir(args.savedir, "SAVEDIR")
    jobs = plan_jobs(args.datasets, args.folds, args.savedir, options)
    # What the jobs run with: the profile's fields and the recipe options given on the command line.
    shown = dict.fromkeys([*PROFILES[args.profile], *(k for k in overrides if k in RECIPE_OPTIONS)])
    settings = ", ".join(f"{k}={options[k]}" for k in shown) or "config recipes"
    given = [k for k in shown if k in overrides]
    print(f"profile {args.profile}: {settings}" + (f" ({', '.join(given)} from the command line)" if given else "")
          + f"; {len(jobs)} jobs")

    started = time.perf_counter()
    for i, (name, fold) in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {name} f={fold}")
        train_job(name, fold, args.savedir, **options)
        write_summary(args.savedir)
    table = write_summary(args.savedir)
    print(f"\n{Path(args.savedir) / 'summary.csv'} (this sweep took {format_seconds(time.perf_counter() - started)}):")
    print(table)


if __name__ == "__main__":
    datasets_to_run = models.model_names()  # edit to train fewer, e.g. ["lol-gold1", "apex-count"]
    folds = [1, 2, 3, 4]
    main(datasets_to_run, folds)
