"""scripts/budget_study.py on a tiny budget (V2 at data scale 0.1, 21 training images per class,
budgets of 1 and 2 epochs): the four routes train, its table equals the job folders' done.json,
its images seen equal the trainer's own count, the folded routes share one teacher, and a rerun
retrains nothing."""
import hashlib
import re

import matplotlib.image
import pytest

from datasets import game_synth
from scripts import budget_study
from util.files import written_by_study
from tests.helpers import one_line_error, run_cli
from util.checkpoint import read_checkpoint
from util.job_folder import read_done, read_metrics
from util.results import wilson_interval

NAME, FOLD = "apex-count", 4  # V2: 22 classes; at data scale 0.1, 100/10/10 images per class
PER_CLASS = 21
TRAIN_IMAGES = 22 * PER_CLASS  # 462: a folded epoch leaves out 2, which fill no group of 4
ROUTES = ("paper", "dense", "kept_blocks", "narrow")
# Epochs of each route's jobs at budgets 1 and 2 (1x = 1 epoch): the dense route's dense phase
# runs half its narrow phase's epochs, at least 1.
EPOCHS = {(route, 1): [1] for route in ROUTES} | {("dense", 1): [1, 1], ("dense", 2): [2, 1],
                                                  ("paper", 2): [2], ("kept_blocks", 2): [2], ("narrow", 2): [2]}


def route_folders(runs, route, budget):
    """The job folders of a route, as the study's docstring lays them out."""
    base = runs / f"x{budget}"
    narrow, folded = base / "dense" / NAME / f"narrow{FOLD}", base / route / NAME / f"fold{FOLD}"
    return {"narrow": [narrow], "dense": [narrow, folded]}.get(route, [folded])


def job_files(runs):
    return {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.name in ("done.json", "current.pth", "best.pth",
                                                                           "metrics.csv")}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    game_synth.generate(NAME, root / "data", scale=0.1, seed=0)
    args = ["-m", "scripts.budget_study", "--data-root", root / "data", "--runs", root / "runs", "--datasets", "V2",
            "--budgets", "1", "2", "--epochs", "1", "--max-train-per-class", PER_CLASS, "--out", root / "doc"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, args, proc


def table_rows(doc):
    return [[c.strip() for c in line.split("|")[1:-1]] for line in doc.splitlines()
            if line.startswith(tuple(f"| {route} |" for route in ROUTES))]


def test_the_table_holds_the_jobs_results_and_the_images_the_trainer_saw(study):
    root, _, proc = study
    assert "estimate: " in proc.stdout and "budget study: 100%" in proc.stderr  # the bar over cells
    doc = (root / "doc" / "budget_study.md").read_text()
    rows = table_rows(doc)
    assert [tuple(row[:2]) for row in rows] == [(route, f"{b}x") for b in (1, 2) for route in ROUTES]
    for route, budget, epochs, test_cell, seen, share, wall in rows:
        folders = route_folders(root / "runs", route, int(budget[:-1]))
        dones = [read_done(folder / "done.json") for folder in folders]
        assert epochs == " + ".join(str(d["epochs"]) for d in dones)
        assert [d["epochs"] for d in dones] == EPOCHS[(route, int(budget[:-1]))]
        final = dones[-1]
        assert test_cell.startswith(f"{100 * final['test_top1']:.1f}% [") and test_cell.endswith(
            f"], {final['test_images']}")
        low, high = map(float, re.search(r"\[([\d.]+), ([\d.]+)\]", test_cell).groups())
        assert low <= 100 * final["test_top1"] <= high
        images = 0
        for folder, done in zip(folders, dones):
            metrics = read_metrics(folder / "metrics.csv")
            assert len(metrics) == done["epochs"]
            per_input = 1 if folder.name.startswith("narrow") else FOLD
            images += len(metrics) * (TRAIN_IMAGES // per_input * per_input)
        assert int(seen.replace(",", "")) == images == sum(read_checkpoint(f / "current.pth")["train_images"]
                                                           for f in folders)
        assert wall == f"{sum(d['wall_time_s'] for d in dones) / 60:.1f} min"
        if route == "narrow":
            assert share == "–" and final["cross_image_share"] is None
        else:
            assert float(share.rstrip("%")) == pytest.approx(100 * final["cross_image_share"], rel=5e-3)
            assert (final["cross_image_share"] == 0) == (route == "kept_blocks")
    teacher = read_done(root / "runs" / "teacher" / NAME / "fold1" / "done.json")
    assert f"Teacher (f = 1, 1x): {100 * teacher['test_top1']:.1f}% [" in doc


def test_the_verdict_follows_the_intervals(study):
    root, _, _ = study
    doc = (root / "doc" / "budget_study.md").read_text()

    def interval(route, budget):
        done = read_done(route_folders(root / "runs", route, budget)[-1] / "done.json")
        n = done["test_images"]
        return wilson_interval(round(done["test_top1"] * n) / n, n)

    wins = [(route, b) for b in (1, 2) for route in ("paper", "dense")
            if interval(route, b)[0] > interval("narrow", b)[1]]
    [sentence] = [line for line in doc.splitlines() if line.startswith("V2: ")]
    assert sentence.startswith("V2: a dense FoldedCNN beats the narrow CNN" if wins else
                               "V2: no budget (1x, 2x) makes a dense FoldedCNN (the paper's init or ours) beat")


def cell(route, budget, hits, n=1000):
    """The numbers of a cell that the verdict reads: `hits` of `n` test images right."""
    return {"route": route, "budget": budget, "test_top1": hits / n, "interval": wilson_interval(hits / n, n),
            "seen": 1000 * budget}


@pytest.mark.parametrize("dense_hits, expected", [
    (960, "V1: a dense FoldedCNN beats the narrow CNN with non-overlapping 95% intervals at 3x: dense 96.0%"),
    (905, "V1: no budget (1x, 3x) makes a dense FoldedCNN (the paper's init or ours) beat the narrow CNN with "
          "non-overlapping 95% intervals; the narrow CNN is ahead with intervals apart for paper at 1x, "
          "paper at 3x, and the intervals overlap for the rest."),
    (880, "V1: no budget (1x, 3x) makes a dense FoldedCNN (the paper's init or ours) beat the narrow CNN with "
          "non-overlapping 95% intervals; the narrow CNN is ahead with intervals apart for paper at 1x, "
          "paper at 3x, dense at 3x, and the intervals overlap for the rest."),
])
def test_the_verdict_needs_intervals_apart(dense_hits, expected):
    """Narrow at 93% of 1,000 test images (interval [91.2, 94.4]); paper far behind; dense at
    3x above it with intervals apart (96%), below within the intervals (90.5%) or below with
    intervals apart (88%). Kept blocks at 99% are no dense FoldedCNN: they never count."""
    cells = [cell("narrow", 1, 930), cell("narrow", 3, 930), cell("paper", 1, 500), cell("paper", 3, 500),
             cell("dense", 1, 925), cell("dense", 3, dense_hits), cell("kept_blocks", 3, 990)]
    assert budget_study.verdict("V1", cells).startswith(expected)


def test_the_folded_routes_share_one_teacher_and_dense_starts_from_the_narrow_job(study):
    root, _, _ = study
    runs = root / "runs"
    teacher = hashlib.sha256((runs / "teacher" / NAME / "fold1" / "best.pth").read_bytes()).hexdigest()
    assert not list(runs.glob("x*/*/*/fold1"))
    for budget in (1, 2):
        for route in ("paper", "dense", "kept_blocks"):
            recipe = read_done(route_folders(runs, route, budget)[-1] / "done.json")["recipe"]
            assert recipe["teacher_sha256"] == teacher and recipe["keep_blocks"] == (route == "kept_blocks")
        dense = read_done(route_folders(runs, "dense", budget)[-1] / "done.json")["recipe"]
        assert dense["narrow_path"] == str((route_folders(runs, "narrow", budget)[0] / "current.pth").resolve())


def test_the_plot_is_written_and_linked(study):
    root, _, _ = study
    plot = root / "doc" / "budget_curves.png"
    assert matplotlib.image.imread(plot).shape[1] > 500
    assert written_by_study(plot, budget_study.WRITER, budget_study.DOC_TITLE)
    assert "](budget_curves.png)" in (root / "doc" / "budget_study.md").read_text()


def test_a_rerun_reuses_every_job(study):
    root, args, _ = study
    before, doc = job_files(root / "runs"), (root / "doc" / "budget_study.md").read_text()
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "every job of the study finished earlier" in proc.stdout and "Epoch " not in proc.stdout
    # 11 job runs: the teacher, and per budget paper, kept_blocks, narrow and dense's two
    assert proc.stdout.count(", skipping") == 11
    assert job_files(root / "runs") == before and len(before) == 4 * 9
    assert (root / "doc" / "budget_study.md").read_text() == doc


@pytest.mark.parametrize("argv, message", [
    (["--fold", "1"], "the budget study compares FoldedCNNs with the narrow CNN of f: give --fold 2 or more"),
    (["--out", "{tmp}/docs"], "budget_study.md exists and was not written by scripts/budget_study.py"),
])
def test_bad_requests_stop_before_any_training(tmp_path, capsys, argv, message):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "budget_study.md").write_text("# my notes\n")
    argv = ["--runs", str(tmp_path / "runs")] + [a.format(tmp=tmp_path) for a in argv]
    assert message in one_line_error(budget_study.main, argv, capsys)
    assert not (tmp_path / "runs").exists()
