"""Train a sweep of (dataset, fold) jobs one after another and summarize them.

    python train.py runs/quick                                   # every dataset, f = 1..4
    python train.py runs/quick --datasets V1 V2 V3 V4 --folds 1 2 3 4
    python train.py runs/paper --profile paper --datasets cifar10 --folds 1 2
    python train.py runs/quick --datasets V1 --baselines narrow compound

Each job trains in SAVEDIR/<dataset>/fold<f>/ (see fold_trainer.py); f = 1 runs first, finished
jobs are skipped and unfinished ones resume, so rerunning the command continues a sweep.
--baselines adds what a user could run instead of a FoldedCNN, trained with the original's
recipe on the same data: `narrow`, the original CNN with its layers narrowed by 1/sqrt(f)
for every folded f (SAVEDIR/<dataset>/narrow<f>/), and `compound`, the EfficientNet-style
shrunken CNN (SAVEDIR/<dataset>/compound/; game models). A folded job of the quick profile
starts from its narrow CNN (--init narrow), which then trains first in any case.
SAVEDIR/summary.csv collects every finished job of SAVEDIR; this process alone writes it, once
at the end (also when interrupted), and prints it.

Parallel sweeps (util/launch.py):
    python train.py runs/quick --datasets V1 V2 --folds 1 2 --jobs 2       # 2 jobs at once here
    python train.py runs/paper --profile paper --launcher slurm --partition gpu --jobs 48
With --jobs N > 1 or --launcher slurm each job is its own `fold_trainer.py` process, logged
to SAVEDIR/logs/ (local) or SAVEDIR/submitit/ (slurm). The jobs run in two waves: every
f = 1 job, then the folded jobs, which distill from their f = 1 model. A failed job is
reported with its log; the others still finish.

Profiles (PROFILES in fold_trainer.py, which fold_trainer.py reads too): `paper` is the
original recipe of each config (the original FoldedCNNs repository: batch 32, 1500 epochs
for game models, curriculum E = 60, ...). `quick` (the default without a GPU) is a recipe
that closes most of the folded models' accuracy gap in a few CPU minutes per job:
block-diagonal init, BatchNorm while training (folded into the convs when saved, so the model
is still the paper's), a larger learning rate with warm-up and cosine decay, and
distillation from the f = 1 model. The inference architecture is the paper's either way.
Every field of a profile can be overridden on the command line (--epochs, --lr, ...). How
the quick profile was chosen: docs/recipe.md.
"""
import argparse
import time
from pathlib import Path

import torch

import datasets
import models
from fold_trainer import (DEFAULT_PROFILE, PROFILES, RECIPE_OPTIONS, add_job_arguments, finished_results,
                          format_seconds, job_command, job_label, job_options, job_stem, split_options,
                          starts_from_narrow, train_job, untrained_narrow, untrained_teacher)
from util.args import positive_int
from util.device import resolve_device
from util.errors import UserError, cli_main
from util.files import check_output_dir
from util.launch import (Job, add_launcher_arguments, check_launcher, cpu_slots, gpu_slots, run_jobs,
                         submitit_parameters)
from util.results import write_summary

data_root = "data"


def plan_jobs(names, folds, savedir, options, baselines=()):
    """[(dataset, fold, variant)] in training order (originals, baselines, folded models),
    checked up front: names, folds and every recipe are validated and the data must exist,
    so that a typo fails before hours of training. A folded job's f = 1 teacher and narrow
    starting point join the plan where they are not trained yet."""
    if not names or not folds:
        raise UserError("nothing to train: give at least one dataset and one fold")
    jobs = []
    for name in dict.fromkeys(models.load_config(n)["name"] for n in names):
        datasets.dataset_dir(name, options["data_root"])
        name_folds = sorted(set(folds))
        folded = [f for f in name_folds if f > 1]
        if 1 not in name_folds and any(untrained_teacher(name, f, savedir, options) for f in folded):
            print(f"{name}: folded jobs distill from the f=1 model, which is not trained yet: training it first")
            name_folds = [1] + name_folds
        narrow = folded if "narrow" in baselines else [f for f in folded if untrained_narrow(name, f, savedir, options)]
        if narrow and "narrow" not in baselines:
            print(f"{name}: folded jobs start from the narrow CNNs of f={','.join(map(str, narrow))}, which are not "
                  f"trained yet: training them first")
        jobs += [(name, 1, None)] if 1 in name_folds else []
        jobs += [(name, f, "narrow") for f in narrow]
        if "compound" in baselines:
            if models.has_compound_scaled(name):
                jobs.append((name, 1, "compound"))
            else:
                print(f"{name}: no compound-scaled baseline (the paper compares one for game models only)")
        jobs += [(name, f, None) for f in folded]
    for name, fold, variant in jobs:
        split_options(options)[0].resolve(name, fold, variant)
    return jobs


@cli_main
def main(datasets_to_run, folds, argv=None, baselines=()):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("savedir", help="root folder of the sweep's jobs")
    parser.add_argument("--datasets", nargs="+", default=datasets_to_run,
                        help="dataset names or ids (default: datasets_to_run in train.py)")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=folds, help="folds f (default: 1 2 3 4)")
    parser.add_argument("--baselines", nargs="*", choices=models.BASELINES, default=list(baselines),
                        help="also train what a user could run instead: narrow (the original narrowed by "
                             "1/sqrt(f), for each folded f) and/or compound (EfficientNet-style; game models) "
                             "(default: baselines in train.py)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE,
                        help=f"recipe profile (default here: {DEFAULT_PROFILE}; paper with a GPU, quick without)")
    add_job_arguments(parser)
    add_launcher_arguments(parser)
    args = parser.parse_args(argv)
    overrides = job_options(args)
    options = {"data_root": data_root, **PROFILES[args.profile], **overrides}
    check_output_dir(args.savedir, "SAVEDIR")
    check_launcher(args)
    if args.launcher == "local" and options.get("device"):  # not on a login node without GPUs
        resolve_device(options["device"])
    jobs = plan_jobs(args.datasets, args.folds, args.savedir, options, args.baselines)
    Path(args.savedir).mkdir(parents=True, exist_ok=True)  # summary.csv is written even if no job finishes
    # What the jobs run with: the profile's fields and the recipe options given on the command line.
    shown = dict.fromkeys([*PROFILES[args.profile], *(k for k in overrides if k in RECIPE_OPTIONS)])
    settings = ", ".join(f"{k}={options[k]}" for k in shown) or "config recipes"
    given = [k for k in shown if k in overrides]
    print(f"profile {args.profile}: {settings}" + (f" ({', '.join(given)} from the command line)" if given else "")
          + f"; {len(jobs)} jobs")

    started = time.perf_counter()
    failures = {}
    try:
        if args.launcher == "local" and args.jobs == 1:
            for i, (name, fold, variant) in enumerate(jobs, 1):
                print(f"[{i}/{len(jobs)}] {job_label(name, fold, variant)}")
                train_job(name, fold, args.savedir, variant=variant, profile=args.profile, **options)
        else:
            failures = launch_jobs(jobs, args, options)
    finally:  # once, by this process only, from every finished job
        table = write_summary(Path(args.savedir) / "summary.csv", finished_results(args.savedir))
    print(f"\n{Path(args.savedir) / 'summary.csv'} (this sweep took {format_seconds(time.perf_counter() - started)}):")
    print(table)
    if failures:
        raise UserError(f"{len(failures)} of {len(jobs)} jobs did not finish: "
                        + "; ".join(f"{job}: {why}" for job, why in failures.items()))


def distills_from_f1(name, fold, options):
    return split_options(options)[0].resolve(name, fold)["distill"]


def job_slots(args, options):
    """Local slots (environment per concurrent job) and the options the jobs then run with:
    one GPU per job where there are GPUs, else the CPU threads split between the jobs."""
    if args.launcher != "local":
        return None, options
    device = options.get("device")
    gpus = torch.cuda.device_count() if device in (None, "cuda") else 0
    if gpus:
        slots = gpu_slots(args.jobs, gpus)
        print(f"{len(slots)} jobs at once, one per GPU (CUDA_VISIBLE_DEVICES)")
        return slots, options
    if device is not None and device.startswith("cuda:"):
        raise UserError(f"--device {device} pins every job to one GPU; with --jobs, drop --device "
                        "and each job gets a GPU of its own")
    slots, threads = cpu_slots(args.jobs, options.get("threads"))
    print(f"{len(slots)} jobs at once on the CPU, {threads} thread{'s' if threads > 1 else ''} each")
    return slots, {**options, "threads": threads}


def launch_jobs(jobs, args, options):
    """Run every job as its own fold_trainer.py process in two waves, every f = 1 job and
    baseline and then the folded ones, so a folded job finds its teacher's best.pth and its
    narrow CNN (plain waves work the same on every launcher, where Slurm dependencies would
    not). Returns failures."""
    savedir = Path(args.savedir)
    slots, options = job_slots(args, options)
    options = {**options, "progress": False}  # logs, not bars; the launcher shows a bar over jobs
    parameters = submitit_parameters(args) if args.launcher != "local" else None
    failures = {}
    folded = [j for j in jobs if j[1] > 1 and j[2] is None]
    first = sorted((j for j in jobs if j not in folded), key=lambda j: j[2] is not None)  # teachers first
    waves = {"f=1 jobs and baselines": first, "folded jobs": folded}
    for desc, wave in waves.items():
        runnable = []
        for name, fold, variant in wave:
            label = job_label(name, fold, variant)
            if variant is None and fold != 1:
                if f"{name} f=1" in failures and distills_from_f1(name, fold, options):
                    failures[label] = "not run, as its f=1 teacher did not finish"
                    continue
                if job_label(name, fold, "narrow") in failures and starts_from_narrow(fold, options):
                    failures[label] = "not run, as the narrow CNN it starts from did not finish"
                    continue
            log = savedir / "logs" / f"{job_stem(name, fold, variant)}.log"
            runnable.append(Job(label, job_command(name, fold, args.savedir, options, args.profile, variant), log))
        failures.update(run_jobs(runnable, args.launcher, slots=slots, submitit_folder=savedir / "submitit",
                                 parameters=parameters, desc=desc))
    return failures

if __name__ == "__main__":
    datasets_to_run = models.model_names()  # edit to train fewer, e.g. ["lol-gold1", "apex-count"]
    folds = [1, 2, 3, 4]
    baselines = []  # e.g. ["narrow", "compound"]: the CNNs a user could run instead, trained alike
    main(datasets_to_run, folds, baselines=baselines)
