"""scripts/recipe_study.py on a tiny budget in a temporary folder (its table and curves equal
its jobs' metrics), and what its `block_bn` option shows: a folded model trained without kept
blocks is dense, so the images of a group interact."""
import re

import matplotlib.image
import pytest
import torch

import models
from datasets import game_synth
from util.job_folder import read_metrics
from tests.helpers import run_cli
from util.checkpoint import load_weights

NAME = "apex-count"  # V2: 22 classes
PER_CLASS = 20  # training images per class at data scale 0.02
BUDGET = 2 * 22 * PER_CLASS  # two epochs per job


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    game_synth.generate(NAME, root / "data", scale=0.02, seed=0, eval_scale=0.05)
    args = ["-m", "scripts.recipe_study", "--data-root", root / "data", "--runs", root / "runs", "--datasets", "V2",
            "--folds", "2", "--options", "adam", "block_bn", "--images", BUDGET, "--out", root / "doc"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc.stdout


def test_recipe_study_writes_its_table_and_curves_from_its_jobs(study):
    root, stdout = study
    doc = (root / "doc" / "recipe.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| adam") or line.startswith("| block_bn")]
    assert [tuple(c.strip() for c in r.split("|")[1:4]) for r in rows] == [
        ("adam", "V2", "1"), ("adam", "V2", "2"), ("block_bn", "V2", "1"), ("block_bn", "V2", "2")]
    for row in rows:
        option, _, fold = (c.strip() for c in row.split("|")[1:4])
        metrics = read_metrics(root / "runs" / option / NAME / f"fold{fold}" / "metrics.csv")
        assert len(metrics) == 2  # the budget: two epochs of 440 images
        best = max(metrics, key=lambda r: float(r["val_top1"]))
        test_cell, val_cell, seen = (c.strip() for c in row.split("|")[4:7])
        assert test_cell.startswith(f"{100 * float(best['test_top1']):.1f}% [") and test_cell.endswith(", 110")
        low, high = map(float, re.search(r"\[([\d.]+), ([\d.]+)\]", test_cell).groups())
        assert low <= 100 * float(best["test_top1"]) <= high
        assert val_cell == f"{100 * float(best['val_top1']):.1f}%" and seen == f"{BUDGET:,}"
        assert f"{option} {NAME} f={fold}: test top-1 {float(best['test_top1']):.4f}" in stdout
    assert "![validation top-1 against training images seen](recipe_curves.png)" in doc
    assert matplotlib.image.imread(root / "doc" / "recipe_curves.png").shape[1] > 500


def test_without_kept_blocks_a_trained_folded_model_mixes_its_images(study):
    """block_bn starts as f separate networks but lets training fill the cross-image weights:
    after training they are non-zero, and moving image j changes the other image's logits."""
    root, _ = study
    fold = 2
    model = models.build_model(NAME, fold)
    load_weights(model, root / "runs" / "block_bn" / NAME / "fold2" / "best.pth").eval()
    for weight, mask in models.folding.block_masks(model, fold).items():
        cross = weight[mask.expand_as(weight) == 0]
        assert cross.abs().max() > 1e-3, weight.shape
    torch.manual_seed(0)
    images = torch.rand(fold, *models.input_shape(NAME, 1))
    moved = images.clone()
    moved[1] = torch.rand_like(moved[1])
    with torch.no_grad():
        before, after = (models.unfold_outputs(model(models.fold_inputs(x, fold)), fold) for x in (images, moved))
    assert not torch.allclose(before[0], after[0], rtol=0, atol=1e-4)
