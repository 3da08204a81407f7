"""The baselines a user could run instead of a FoldedCNN (narrow<f>, compound) and the dense
recipe that starts a folded model from its narrow CNN: exact tiling, real short training
runs, resume after SIGKILL, skipping, and one-line errors."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import fold_trainer
import models
from models.folding import block_masks, cross_image_share, tile_narrow_
from tests.helpers import REPO, assert_clean_error, run_cli
from util.errors import UserError

NAME = "apex-count"  # V2, 22 classes
TINY = ["--max-train-per-class", "20", "--device", "cpu", "--threads", "1", "--no-progress"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(v2_data):
    return v2_data


def plain_models():
    return [n for n in models.model_names() if models.family_of(n).batchnorm_while_training]


@pytest.mark.parametrize("fold", [2, 3, 4])
@pytest.mark.parametrize("name", plain_models())
def test_a_folded_model_tiled_from_the_narrow_cnn_computes_it_on_each_image(name, fold):
    torch.manual_seed(fold)
    narrow = models.insert_batchnorm(models.build_variant(name, "narrow", fold))
    for layer in narrow.modules():  # trained-looking BatchNorms, so that a slot mix-up shows
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.normal_()
            layer.running_var.uniform_(0.5, 2)
            layer.weight.data.normal_()
            layer.bias.data.normal_()
    folded = tile_narrow_(models.insert_batchnorm(models.build_model(name, fold)), narrow, fold)
    narrow.eval(), folded.eval()
    images = torch.randn(3 * fold, *models.input_shape(name))
    with torch.no_grad():
        want = narrow(images)
        got = models.unfold_outputs(folded(models.fold_inputs(images, fold)), fold)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    assert cross_image_share(folded, fold) == 0


def test_cross_image_share_of_a_dense_random_model_is_about_1_minus_1_over_f():
    torch.manual_seed(0)
    for fold in (2, 4):
        share = cross_image_share(models.build_model("V1", fold), fold)
        assert abs(share - (1 - 1 / fold)) < 0.1, (fold, share)


def test_variant_shapes_and_widths():
    narrow = models.build_variant("V1", "narrow", 4)
    assert [m.out_channels for m in narrow if isinstance(m, torch.nn.Conv2d)] == [16, 16, 16, 16, 4]
    assert models.variant_input_shape("V1", "narrow", 4) == (3, 22, 52)
    assert models.variant_input_shape("V1", "compound") == models.compound_scaled_input_shape("V1")
    assert models.images_per_input("narrow", 4) == 1 and models.images_per_input(None, 4) == 4


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_dense_recipe_job_trains_its_narrow_cnn_first_and_leaves_nonzero_cross_image_weights(data_root, tmp_path):
    proc = run_cli("fold_trainer.py", NAME, "2", tmp_path, "--epochs", "2", "--data-root", data_root, *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "starts from the narrow CNN of f=2, which is not trained yet: training it first" in proc.stdout
    job, narrow_job = tmp_path / NAME / "fold2", tmp_path / NAME / "narrow2"
    done = json.loads((job / "done.json").read_text())
    assert done["variant"] == "folded" and done["recipe"]["init"] == "narrow"
    assert done["recipe"]["narrow_sha256"] == sha256(narrow_job / "current.pth")
    assert done["recipe"]["epochs"] == 1  # the quick profile's dense phase: half of --epochs
    assert json.loads((narrow_job / "done.json").read_text())["variant"] == "narrow"

    model = models.build_model(NAME, 2)
    model.load_state_dict(torch.load(job / "best.pth", weights_only=False)["model"])
    across = [w[(m == 0).expand_as(w)] for w, m in block_masks(model, 2).items()]
    nonzero = sum(int((a != 0).sum()) for a in across) / sum(a.numel() for a in across)
    assert nonzero > 0.9  # trained: almost every weight between the images moved off zero
    share = cross_image_share(model, 2)
    assert 0 < share < 0.5 and done["cross_image_share"] == pytest.approx(share)
    summary = (tmp_path / "summary.csv")
    assert not summary.exists()  # fold_trainer.py trains one job; train.py writes summaries


def test_init_narrow_without_a_trained_narrow_cnn_names_the_command_that_trains_it(data_root, tmp_path):
    with pytest.raises(UserError, match=r"narrow2 does not hold yet: train it first .*--variant narrow"):
        fold_trainer.train_job(NAME, 2, tmp_path, profile="quick", data_root=str(data_root), epochs=1,
                               distill=False, progress=False)


@pytest.mark.parametrize("args, fragment", [
    ([NAME, "2", "{tmp}", "--variant", "compound"], "give fold 1"),
    ([NAME, "1", "{tmp}", "--variant", "narrow"], "give a fold f >= 2"),
    (["N2", "1", "{tmp}", "--variant", "compound"], "exists for game models only"),
])
def test_bad_variants_are_one_line_errors(args, fragment, tmp_path, data_root):
    proc = run_cli("fold_trainer.py", *[a.replace("{tmp}", str(tmp_path)) for a in args], "--data-root", data_root,
                   *TINY)
    assert proc.returncode == 2
    assert_clean_error(proc, fragment)


def checkpoint_epoch(path):
    return torch.load(path, weights_only=False)["epoch"] if path.is_file() else 0


def test_baseline_jobs_resume_after_sigkill_and_are_skipped_like_any_job(data_root, tmp_path):
    """train.py --baselines narrow compound: a sweep killed inside the compound job resumes
    it (ending where an uninterrupted run ends) and skips what finished; a third run skips
    every job."""
    epochs = 6
    args = ["train.py", tmp_path / "killed", "--datasets", NAME, "--folds", "1", "2", "--baselines", "narrow",
            "compound", "--epochs", str(epochs), "--data-root", data_root, *TINY]
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / NAME / "compound" / "current.pth"
    while proc.poll() is None and checkpoint_epoch(checkpoint) < 2:
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "killed" / NAME / "narrow2" / "done.json").is_file()
    assert not (tmp_path / "killed" / NAME / "compound" / "done.json").exists()

    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "compound: resuming after epoch" in rerun.stdout
    assert rerun.stdout.count("skipping") == 2  # f=1 and narrow f=2
    whole = fold_trainer.train_job(NAME, 1, tmp_path / "whole", variant="compound", profile="quick",
                                   data_root=str(data_root), epochs=epochs, max_train_per_class=20, progress=False,
                                   device="cpu", threads=1)
    resumed = json.loads((tmp_path / "killed" / NAME / "compound" / "done.json").read_text())
    timing = {"wall_time_s", "train_images_per_s", "recipe"}
    assert {k: v for k, v in resumed.items() if k not in timing} == {k: v for k, v in whole.items() if k not in timing}
    compound = models.build_variant(NAME, "compound")  # the saved model is the baseline's own architecture
    compound.load_state_dict(torch.load(tmp_path / "killed" / NAME / "compound" / "best.pth",
                                        weights_only=False)["model"])

    again = run_cli(*args)
    assert again.returncode == 0 and again.stdout.count("skipping") == 4
    rows = (tmp_path / "killed" / "summary.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1:3] for r in rows] == [["1", "original"], ["2", "folded"], ["2", "narrow"],
                                                 ["1", "compound"]]
