"""The training-recipe study: recipe options side by side at a fixed budget of training images.

    python -m scripts.recipe_study --data-root data --runs runs/study --datasets V1 --folds 1 2 4 \\
        --options paper adam block_bn quick --images 165000 --out docs

Every (option, dataset, fold) is one fold_trainer job in RUNS/<option>/<dataset>/fold<f>/, so an
interrupted study resumes and a finished cell is reused; f = 1 trains first, and an option
that distills learns from its own f = 1 model. The budget is the number of training images a
job sees (epochs = budget / training images per epoch, rounded up). Writes OUT/recipe.md
(test top-1 at the best validation top-1 with its 95% interval, images seen, wall time) and
OUT/recipe_curves.png (validation top-1 against images seen, one line per option and f). OUT
is RUNS unless given: the repository's docs/ change only with `--out docs`, and a file there
that this script did not write (the committed ones included) is replaced only with --force.

The options (fold_trainer.resolve_recipe) build up from the paper's recipe (section 4) to
train.py's quick profile; `paper` shortens its curriculum with the budget (E = 60 of 1500
epochs, the same share of the run).
"""
import argparse
import math
from pathlib import Path

import matplotlib.pyplot as plt

import datasets
import models
from fold_trainer import PROFILES, train_job, untrained_narrow
from util.args import positive_int
from util.errors import cli_main
from util.files import add_study_flags, atomic_savefig, atomic_write_bytes, study_outputs
from util.job_folder import images_seen_curve
from util.results import wilson_interval

plt.switch_backend("Agg")  # files only

BASE = {"curriculum": False, "threads": 1, "progress": False}
OPTIONS = {
    "paper": {"threads": 1, "progress": False},
    "adam": {**BASE, "lr": 1e-3},
    "block_bn": {**BASE, "lr": 1e-3, "init": "block", "train_bn": True},
    "kept_blocks": {**BASE, "lr": 1e-3, "init": "block", "keep_blocks": True, "train_bn": True},
    "quick": {**PROFILES["quick"], "progress": False},
}
DESCRIPTIONS = {
    "paper": "the paper's recipe: Adam 1e-4, batch 32, curriculum for folded models",
    "adam": "Adam 1e-3, no curriculum",
    "block_bn": "`adam` + block-diagonal init (`--init block`) + BatchNorm while training (`--train-bn`)",
    "kept_blocks": "`block_bn` keeping the per-image paths apart for the whole run (`--keep-blocks`)",
    "quick": "train.py's quick profile: Adam 2e-3 with 1 epoch of warm-up and cosine decay, BatchNorm while "
             "training, KL distillation from the f = 1 model (T = 4, weight 0.5), at most 500 training images per "
             "class; a folded model starts as f copies of the narrow CNN of f, trained first on the same budget "
             "(`--init narrow`), then trains dense for half the epochs at a tenth of the learning rate",
}
WRITER = "scripts/recipe_study.py"  # the mark of the files this script wrote
DOC_TITLE = "# Training recipe study"
OUTPUTS = ["recipe.md", "recipe_curves.png"]
PAPER_CURRICULUM_SHARE = 60 / 1500  # epochs per curriculum step over epochs (section 4)


def cell_options(option, name, data_root, budget):
    """train_job options of one cell: the option's recipe, epochs from the image budget."""
    options = dict(OPTIONS[option])
    options["epochs"] = max(1, math.ceil(budget / sum(datasets.class_counts(name, data_root, options.get("max_train_per_class")))))
    if option == "paper":
        options["curriculum_epochs"] = max(1, round(options["epochs"] * PAPER_CURRICULUM_SHARE))
    return options


def table_and_curves(results, out, data_root):
    """The markdown table of finished cells and {(option, name, fold): curve}."""
    lines = ["| option | dataset | f | test top-1 [95% interval], images | best val top-1 | "
             "images seen | wall time | train img/s |", "|---|---|---|---|---|---|---|---|"]
    curves = {}
    for (option, name, fold), result in results.items():
        counts = datasets.class_counts(name, data_root, OPTIONS[option].get("max_train_per_class"))
        points = images_seen_curve(out / option / name / f"fold{fold}", counts, fold)
        curves[(option, name, fold)] = points
        n = len(datasets.load_split(name, "test", data_root)[1])
        low, high = wilson_interval(round(result["test_top1"] * n) / n, n)
        lines.append(f"| {option} | {models.load_config(name)['id']} | {fold} | "
                     f"{100 * result['test_top1']:.1f}% [{100 * low:.1f}, {100 * high:.1f}], {n} | "
                     f"{100 * result['best_val_top1']:.1f}% | {points[-1][0] if points else 0:,} | "
                     f"{result['wall_time_s'] / 60:.1f} min | {result['train_images_per_s']:.0f} |")
    return lines, curves


def plot_curves(curves, path):
    names = sorted({name for _, name, _ in curves}, key=models.name_rank)
    options = list(dict.fromkeys(option for option, _, _ in curves))
    colors = {option: plt.cm.tab10(i) for i, option in enumerate(options)}
    styles = {1: "-", 2: "--", 3: "-.", 4: ":"}
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 4.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        for (option, cell_name, fold), points in curves.items():
            if cell_name == name and points:
                xs, ys = zip(*points)
                ax.plot([x / 1000 for x in xs], [100 * y for y in ys], styles.get(fold, "-"), marker=".",
                        color=colors[option], label=f"{option}, f={fold}")
        cfg = models.load_config(name)
        ax.axhline(100 / len(cfg["classes"]), color="grey", lw=0.8)
        ax.set(title=f"{cfg['id']} ({name}): validation top-1; grey: chance",
               xlabel="training images seen (thousands)", ylabel="top-1 (%)", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110, metadata={"Software": WRITER})
    plt.close(fig)


def write_doc(doc, plot, lines, command, budget):
    text = [
        DOC_TITLE,
        "",
        "Folded models trained with the paper's recipe (section 4: Adam 1e-4, batch 32, 1500 epochs with a",
        "curriculum) sit on a long plateau; on a CPU budget they stay near chance. This study measures recipe",
        "options that shorten the plateau at a fixed budget of training images per job. Written by",
        f"`{WRITER}`, from the run",
        "",
        f"    {command}",
        "",
        f"Budget: {budget:,} training images per job, one CPU thread per job. Test top-1 is read at the epoch",
        "of the best validation top-1 (nothing is tuned on test); the interval is the 95% Wilson interval",
        "over the test images. Wall times come from a CPU shared with other jobs: compare them within one",
        "run only.",
        "",
        "Why these options, with the single runs that chose them: [recipe_notes.md](recipe_notes.md). Whether",
        "a dense FoldedCNN beats the narrow CNN at longer schedules: the budget study,",
        "[budget_study.md](budget_study.md) (`scripts/budget_study.py`).",
        "",
        "Options (each a set of fold_trainer.py flags):",
        "",
        *[f"- `{option}`: {DESCRIPTIONS[option]}" for option in OPTIONS],
        "",
        *lines,
        "",
        f"![validation top-1 against training images seen]({Path(plot).name})",
        "",
    ]
    atomic_write_bytes(doc, "\n".join(text).encode())


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_flags(parser, "runs/study", OUTPUTS)
    parser.add_argument("--datasets", nargs="+", default=["lol-gold1"], help="default: %(default)s")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=[1, 2, 4], help="default: 1 2 4")
    parser.add_argument("--options", nargs="+", choices=list(OPTIONS), default=list(OPTIONS),
                        help="default: all of them")
    parser.add_argument("--images", type=positive_int, default=165_000,
                        help="training images per job (default %(default)s)")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    doc, plot = study_outputs(args, OUTPUTS, WRITER, DOC_TITLE)
    names = [models.load_config(n)["name"] for n in args.datasets]
    for fold in args.folds:
        models.folding.check_fold(fold)
    folds = sorted(set(args.folds) | {1})  # the reference, and the teacher of distilling options
    results = {}
    for name in names:
        datasets.dataset_dir(name, args.data_root)
        for option in args.options:
            for fold in folds:
                options = cell_options(option, name, args.data_root, args.images)
                if untrained_narrow(name, fold, runs / option, options):  # the dense recipe's start
                    train_job(name, fold, runs / option, variant="narrow", data_root=args.data_root, **options)
                result = train_job(name, fold, runs / option, data_root=args.data_root, **options)
                print(f"{option} {name} f={fold}: test top-1 {result['test_top1']:.4f}", flush=True)
                results[(option, name, fold)] = result
    lines, curves = table_and_curves(results, runs, args.data_root)
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(curves, plot)
    command = " ".join(["python -m scripts.recipe_study", "--data-root", args.data_root, "--runs", args.runs,
                        "--datasets", *args.datasets, "--folds", *map(str, args.folds),
                        "--options", *args.options, "--images", str(args.images)]
                       + (["--out", args.out] if args.out else []))
    write_doc(doc, plot, lines, command, args.images)
    print("\n".join(lines))
    print(f"wrote {doc} and {plot}")

if __name__ == "__main__":
    main()
