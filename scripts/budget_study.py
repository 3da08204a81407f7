"""The budget study: does a dense FoldedCNN ever beat the narrow CNN, given longer training?

    python -m scripts.budget_study --data-root data --runs runs/budget --budgets 1 3 10 --out docs

At fold f (default 4) on each dataset (default V1 V2) and at each budget (a multiple of the
quick profile's epochs: 1x = 20 epochs on at most 500 training images per class), four routes
to a model that classifies f images for the FLOPs of one original CNN per image:

- paper: the dense FoldedCNN from the paper's init (section 3), the quick profile otherwise;
- dense: the quick profile as is: the narrow CNN of f trained, then f copies of it trained dense
  (the cross-image weights free) for half the epochs at a tenth of the learning rate;
- kept_blocks: block-diagonal init with the blocks kept for the whole run (f narrow CNNs
  inside one FoldedCNN, no weight across images);
- narrow: the narrow CNN of f (the original's channels times 1/sqrt(f), one image per input).

The folded routes distill from one f = 1 teacher per dataset, trained once at 1x with the
quick profile. Job folders: RUNS/teacher/<dataset>/fold1 and RUNS/x<budget>/<route>/<dataset>/
fold<f>; the narrow route's job is also the dense route's first phase,
RUNS/x<budget>/dense/<dataset>/narrow<f>, trained once for both. Rerunning the command
continues unfinished jobs and reuses finished ones. Before training it prints an estimate of
the time left, from a probe of a few training steps of every model. Jobs run one at a time on
one thread each; on two cores, run one process per dataset (`--datasets V1`, `--datasets V2`,
the same --runs) side by side, then the full command, which reuses all their jobs and writes
the section with every dataset.

Writes OUT/budget_study.md (a section that docs/recipe.md links: per dataset, test top-1 at
the best validation epoch with its 95% Wilson interval, images seen, the cross-image share of
the weight norm^2, wall time, and whether some budget makes a dense route beat narrow with
intervals apart) and OUT/budget_curves.png (test top-1 against the training images the route
saw, the dense route's narrow phase included). OUT is RUNS unless given: the repository's
docs/ change only with `--out docs`, and a file there that this script did not write is
replaced only with --force.
"""
import argparse
import dataclasses
import time
from collections import namedtuple
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import EngFormatter, NullFormatter
from tqdm import tqdm

import datasets
import models
from fold_trainer import (PROFILES, build_training_model, format_seconds, job_dir, make_loss, make_optimizer,
                          make_train_step, split_options, train_job)
from util.args import positive_float, positive_int
from util.device import cpu_name, set_threads
from util.errors import UserError, cli_main
from util.files import add_study_flags, atomic_savefig, atomic_write_bytes, study_outputs
from util.job_folder import images_seen_curve, read_metrics
from util.results import wilson_interval

plt.switch_backend("Agg")  # files only

QUICK = PROFILES["quick"]
ROUTES = {  # route: (variant, options over the quick profile's)
    "paper": (None, {"init": "paper"}),
    "dense": (None, {}),
    "kept_blocks": (None, {"init": "block", "keep_blocks": True}),
    "narrow": ("narrow", {}),
}
DENSE_ROUTES = ("paper", "dense")  # the FoldedCNNs whose weights across images train
DESCRIPTIONS = {
    "paper": "the dense FoldedCNN from the paper's init (`--init paper`), the quick profile otherwise",
    "dense": f"the quick profile's dense recipe (`--init narrow`): the `narrow` job's model copied into the f "
             f"slots, then every weight trained for {QUICK['dense_epoch_share']:g} of the epochs at "
             f"{QUICK['dense_lr_scale']:g} of the learning rate; its images seen and wall time include the "
             f"narrow phase",
    "kept_blocks": "block-diagonal init with the blocks kept (`--init block --keep-blocks`): f narrow CNNs "
                   "in one FoldedCNN, no weight across images",
    "narrow": "the narrow CNN of f (channels x 1/sqrt(f), one image per input, no distillation)",
}
WRITER = "scripts/budget_study.py"  # the mark of the files this script wrote
DOC_TITLE = "## Budget study: does mixing ever pay?"
OUTPUTS = ["budget_study.md", "budget_curves.png"]
PROBE_STEPS = 3  # timed training steps per model for the estimate (after one warm-up step)
PROBE_EVAL_IMAGES = 128

Job = namedtuple("Job", "savedir fold variant options")  # the arguments of one train_job


def budget_label(budget):
    return "teacher" if budget is None else f"{budget:g}x"


def teacher_job(runs, settings):
    """The f = 1 teacher of every distilling route: the quick profile at 1x, trained once."""
    return Job(Path(runs) / "teacher", 1, None, settings)


def route_jobs(route, name, fold, budget, runs, settings):
    """The jobs of `route` at `budget`, in training order. The narrow route's job is the dense
    route's start (init narrow reads SAVEDIR/<dataset>/narrow<f>), so both share the savedir
    x<budget>/dense and that job trains once."""
    variant, extra = ROUTES[route]
    options = {**settings, "epochs": max(1, round(settings["epochs"] * budget))}
    savedir = Path(runs) / f"x{budget:g}" / ("dense" if route == "narrow" else route)
    jobs = [Job(savedir, fold, "narrow", options)] if route in ("narrow", "dense") else []
    if variant is None:
        teacher = job_dir(teacher_job(runs, settings).savedir, name, 1) / "best.pth"
        jobs.append(Job(savedir, fold, None, {**options, **extra, "teacher": str(teacher)}))
    return jobs


def study_plan(names, fold, budgets, runs, settings):
    """[(name, budget, route, jobs)]: the teachers first, then the cells, the smallest budget
    first (an interrupted study has its short runs complete)."""
    plan = [(name, None, "teacher", [teacher_job(runs, settings)]) for name in names]
    return plan + [(name, budget, route, route_jobs(route, name, fold, budget, runs, settings))
                   for budget in budgets for name in names for route in ROUTES]


def run_job(name, job):
    return train_job(name, job.fold, job.savedir, variant=job.variant, profile="quick", **job.options)


# ----------------------------------------------------------------------------------------
# The estimate: epochs left per job times the seconds per epoch of its model, measured by a
# few training steps on random images (the real epoch also evaluates val and test).

def epochs_left(name, job):
    epochs = split_options({**QUICK, **job.options})[0].resolve(name, job.fold, job.variant)["epochs"]
    metrics = job_dir(job.savedir, name, job.fold, job.variant) / "metrics.csv"
    return max(0, epochs - (len(read_metrics(metrics)) if metrics.is_file() else 0))


def probe_seconds(name, job):
    """(training, evaluation) seconds per image of the job's model, teacher and masks included.
    A dense job's model starts block-diagonal here: the same cost, no trained narrow CNN needed."""
    options = split_options({**QUICK, **job.options})[0]
    options = dataclasses.replace(options, init="block") if options.init == "narrow" else options
    recipe = options.resolve(name, job.fold, job.variant)
    per_input = models.images_per_input(job.variant, job.fold)
    model = build_training_model(recipe)
    teacher = models.build_model(name, 1).eval() if recipe["distill"] else None
    masks = models.folding.block_masks(model, per_input) if recipe["keep_blocks"] else None
    step = make_train_step(model, make_optimizer(recipe, model.parameters()), per_input, make_loss(recipe, teacher),
                           masks)
    images = torch.rand(recipe["batch_size"], *models.input_shape(name, 1))
    labels = torch.randint(len(models.load_config(name)["classes"]), (len(images),))
    model.train()
    step(images, labels)
    started = time.perf_counter()
    for _ in range(PROBE_STEPS):
        step(images, labels)
    train_s = (time.perf_counter() - started) / (PROBE_STEPS * len(images))
    model.eval()
    batch = models.fold_inputs(torch.rand(PROBE_EVAL_IMAGES // per_input * per_input, *images.shape[1:]), per_input)
    with torch.no_grad():
        model(batch)
        started = time.perf_counter()
        model(batch)
    return train_s, (time.perf_counter() - started) / (len(batch) * per_input)


def estimate(plan, counts, data_root):
    """{budget: seconds of training left} over the plan's jobs, each job counted once."""
    set_threads(QUICK["threads"])
    evaluated = {name: sum(len(datasets.load_split(name, split, data_root)[1]) for split in ("val", "test"))
                 for name in counts}
    probes, seen, seconds = {}, set(), {}
    for name, budget, _, jobs in plan:
        for job in jobs:
            folder = job_dir(job.savedir, name, job.fold, job.variant)
            left = 0 if folder in seen else epochs_left(name, job)
            seen.add(folder)
            if left:
                key = (name, job.fold, job.variant, job.options.get("keep_blocks", False))
                if key not in probes:
                    probes[key] = probe_seconds(name, job)
                train_s, eval_s = probes[key]
                per_input = models.images_per_input(job.variant, job.fold)
                epoch_s = sum(counts[name]) // per_input * per_input * train_s + evaluated[name] * eval_s
                seconds[budget] = seconds.get(budget, 0.0) + left * epoch_s
    return seconds


def duration(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else format_seconds(seconds)


def print_estimate(seconds):
    total = sum(seconds.values())
    if not total:
        print("every job of the study finished earlier: the table and plot are made from their folders")
        return
    parts = ", ".join(f"{budget_label(budget)} {duration(s)}" for budget, s in seconds.items())
    print(f"estimate: {duration(total)} of training left ({parts}), one job at a time on one thread of "
          f"{cpu_name()}, from {PROBE_STEPS} training steps per model just now; other processes on the CPU slow "
          f"it down", flush=True)


# ----------------------------------------------------------------------------------------
# Results: one cell per (dataset, budget, route), from its jobs' done.json and metrics.csv.

def cell_result(name, budget, route, jobs, dones, counts):
    """The cell's numbers: the last job's result, and its curve of test top-1 against the
    training images seen by the route (each job after the ones before it)."""
    points, seen = [], 0
    for job, done in zip(jobs, dones):
        per_input = models.images_per_input(job.variant, job.fold)
        job_points = images_seen_curve(job_dir(job.savedir, name, job.fold, job.variant), counts, per_input, "test_top1")
        points += [(seen + x, y) for x, y in job_points]
        seen += job_points[-1][0] if job_points else 0
    final, n = dones[-1], dones[-1]["test_images"]
    return {"name": name, "budget": budget, "route": route, "fold": jobs[-1].fold, "points": points, "seen": seen,
            "epochs": [done["epochs"] for done in dones], "test_top1": final["test_top1"], "test_images": n,
            "interval": wilson_interval(round(final["test_top1"] * n) / n, n),
            "cross_image_share": final.get("cross_image_share"),
            "wall_time_s": sum(done["wall_time_s"] for done in dones)}


def accuracy(cell):
    low, high = cell["interval"]
    return f"{100 * cell['test_top1']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def table(cells):
    lines = ["| route | budget | epochs | test top-1 [95% interval], test images | images seen | "
             "cross-image share of weight norm² | wall time |", "|---|---|---|---|---|---|---|"]
    for cell in cells:
        share = "–" if cell["cross_image_share"] is None else f"{100 * cell['cross_image_share']:.3g}%"
        lines.append(f"| {cell['route']} | {budget_label(cell['budget'])} | {' + '.join(map(str, cell['epochs']))} | "
                     f"{accuracy(cell)}, {cell['test_images']} | {cell['seen']:,} | {share} | "
                     f"{cell['wall_time_s'] / 60:.1f} min |")
    return lines


def verdict(label, cells):
    """One sentence: whether, at some budget, a dense route (the paper's init or ours) beats the
    narrow CNN of the same budget with non-overlapping 95% intervals."""
    narrow = {cell["budget"]: cell for cell in cells if cell["route"] == "narrow"}
    pairs = [(cell, narrow[cell["budget"]]) for cell in cells
             if cell["route"] in DENSE_ROUTES and cell["budget"] in narrow]
    if not pairs:
        return f"{label}: no budget holds both a dense route and the narrow CNN, so nothing is compared."
    wins = [(cell, base) for cell, base in pairs if cell["interval"][0] > base["interval"][1]]
    if wins:
        return f"{label}: a dense FoldedCNN beats the narrow CNN with non-overlapping 95% intervals " + "; ".join(
            f"at {budget_label(cell['budget'])}: {cell['route']} {accuracy(cell)} against {accuracy(base)} "
            f"({cell['seen']:,} against {base['seen']:,} images seen)" for cell, base in wins) + "."
    behind = [f"{cell['route']} at {budget_label(cell['budget'])}" for cell, base in pairs
              if cell["interval"][1] < base["interval"][0]]
    budgets = ", ".join(dict.fromkeys(budget_label(cell["budget"]) for cell, _ in pairs))
    rest = (f"; the narrow CNN is ahead with intervals apart for {', '.join(behind)}"
            f"{', and the intervals overlap for the rest' if len(behind) < len(pairs) else ''}" if behind
            else "; every pair's intervals overlap")
    return (f"{label}: no budget ({budgets}) makes a dense FoldedCNN (the paper's init or ours) beat the narrow "
            f"CNN with non-overlapping 95% intervals{rest}.")


def plot_budgets(cells, path):
    """One panel per dataset: test top-1 at the best validation epoch against images seen, one
    line per route through its budgets, with 95% interval bars; faint, each run's test top-1
    after every epoch."""
    names = list(dict.fromkeys(cell["name"] for cell in cells))
    colors = {route: plt.cm.tab10(i) for i, route in enumerate(ROUTES)}
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names):
        mine = [cell for cell in cells if cell["name"] == name]
        for route in ROUTES:
            runs = sorted((cell for cell in mine if cell["route"] == route), key=lambda cell: cell["budget"])
            for cell in (cell for cell in runs if cell["points"]):
                xs, ys = zip(*cell["points"])
                ax.plot(xs, [100 * y for y in ys], color=colors[route], lw=0.7, alpha=0.3)
            if runs:
                ys = [100 * cell["test_top1"] for cell in runs]
                errors = [[y - 100 * cell["interval"][0] for y, cell in zip(ys, runs)],
                          [100 * cell["interval"][1] - y for y, cell in zip(ys, runs)]]
                ax.errorbar([cell["seen"] for cell in runs], ys, yerr=errors, color=colors[route], marker="o",
                            capsize=3, label=route)
                for cell, y in zip(runs, ys):
                    ax.annotate(budget_label(cell["budget"]), (cell["seen"], y), textcoords="offset points",
                                xytext=(4, -11), fontsize=7, color=colors[route])
        low = min(100 * cell["interval"][0] for cell in mine)
        cfg = models.load_config(name)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a log axis collide
        ax.set_ylim(max(0.0, low - 10), min(100.0, max(100 * cell["interval"][1] for cell in mine) + 3))
        ax.set(title=f"{cfg['id']} ({name}), f={mine[0]['fold']}: test top-1 at the best validation epoch",
               xlabel="training images seen by the route (log scale)", ylabel="test top-1 (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, title="route; faint: after every epoch", title_fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110, metadata={"Software": WRITER})
    plt.close(fig)


def write_doc(doc, plot, cells, command, settings):
    """The study's markdown section: how it ran, then per dataset its table and verdict."""
    text = [
        DOC_TITLE, "",
        "The paper's case for folding (section 5) is a better accuracy per FLOP than a smaller CNN. At a",
        "budget we can run, this study asks whether any budget of training makes a dense FoldedCNN beat",
        f"the narrow CNN of the same f. Written by `{WRITER}`, from the run", "",
        f"    {command}", "",
        f"Budget 1x is the quick profile (epochs: {settings['epochs']}, training images per class: at most",
        f"{settings['max_train_per_class']}); Nx multiplies every epoch count. The folded routes distill from one",
        "f = 1 teacher per dataset, trained once at 1x; its images are not counted in any route's images",
        "seen. Test top-1 is read at the epoch of the best validation top-1 (nothing is tuned on test);",
        "the interval is the 95% Wilson interval over the test images. The verdicts compare each dense",
        "route with the narrow CNN of the same budget (the curves compare them at equal images seen).",
        f"Wall times: one job at a time, one thread each, on {cpu_name()}, possibly shared with other",
        "processes: compare them within one run only.", "",
        "Routes:", "",
        *[f"- `{route}`: {DESCRIPTIONS[route]}" for route in ROUTES], "",
    ]
    for name in dict.fromkeys(cell["name"] for cell in cells):
        mine = [cell for cell in cells if cell["name"] == name]
        label = models.load_config(name)["id"]
        teacher = next(cell for cell in mine if cell["route"] == "teacher")
        text += [f"### {label} ({name}), f = {mine[-1]['fold']}", "",
                 f"Teacher (f = 1, 1x): {accuracy(teacher)} on {teacher['test_images']} test images.", "",
                 *table([cell for cell in mine if cell["route"] != "teacher"]), "",
                 verdict(label, mine), ""]
    text += [f"![test top-1 against training images seen, per route]({Path(plot).name})", ""]
    atomic_write_bytes(doc, "\n".join(text).encode())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_flags(parser, "runs/budget", OUTPUTS)
    parser.add_argument("--datasets", nargs="+", default=["V1", "V2"], help="default: %(default)s")
    parser.add_argument("--fold", type=positive_int, default=4, help="f of the folded and narrow CNNs (default 4)")
    parser.add_argument("--budgets", nargs="+", type=positive_float, default=[1.0, 3.0, 10.0],
                        help="multiples of the 1x epochs (default: 1 3 10)")
    parser.add_argument("--epochs", type=positive_int, default=QUICK["epochs"],
                        help="epochs of the 1x budget and of the teacher (default: the quick profile's, %(default)s)")
    parser.add_argument("--max-train-per-class", type=positive_int, default=QUICK["max_train_per_class"],
                        help="training images per class (default: the quick profile's, %(default)s)")
    return parser.parse_args(argv)


def command_line(args):
    return " ".join(["python -m scripts.budget_study", "--data-root", args.data_root, "--runs", args.runs,
                     "--datasets", *args.datasets, "--fold", str(args.fold),
                     "--budgets", *(f"{b:g}" for b in args.budgets), "--epochs", str(args.epochs),
                     "--max-train-per-class", str(args.max_train_per_class)]
                    + (["--out", args.out] if args.out else []))


@cli_main
def main(argv=None):
    args = parse_args(argv)
    runs = Path(args.runs)
    doc, plot = study_outputs(args, OUTPUTS, WRITER, DOC_TITLE)
    if models.folding.check_fold(args.fold) == 1:
        raise UserError("the budget study compares FoldedCNNs with the narrow CNN of f: give --fold 2 or more")
    names = list(dict.fromkeys(models.load_config(n)["name"] for n in args.datasets))
    for name in names:
        datasets.dataset_dir(name, args.data_root)
    settings = {"data_root": args.data_root, "epochs": args.epochs, "max_train_per_class": args.max_train_per_class,
                "progress": False}
    plan = study_plan(names, args.fold, sorted(set(args.budgets)), runs, settings)
    counts = {name: datasets.class_counts(name, args.data_root, args.max_train_per_class) for name in names}
    print_estimate(estimate(plan, counts, args.data_root))
    cells = []
    bar = tqdm(plan, desc="budget study", unit="cell")
    for name, budget, route, jobs in bar:
        bar.set_postfix_str(f"{name} {route} {budget_label(budget)}")
        cell = cell_result(name, budget, route, jobs, [run_job(name, job) for job in jobs], counts[name])
        cells.append(cell)
        print(f"{name} {route}{'' if budget is None else ' ' + budget_label(budget)}: test top-1 {cell['test_top1']:.4f}, "
              f"{cell['seen']:,} images seen", flush=True)
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_budgets([cell for cell in cells if cell["route"] != "teacher"], plot)
    write_doc(doc, plot, cells, command_line(args), settings)
    print(doc.read_text())
    print(f"wrote {doc} and {plot}")


if __name__ == "__main__":
    main()
