"""Training: fold grouping, evaluation, checkpoint/resume (also after SIGKILL), a short real
training run on generated data, distillation, and clear errors for bad arguments."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn

import models
from tests.helpers import REPO, assert_clean_error, run_cli
from datasets.batches import DeviceSplit, evaluation_order, load_job_data, random_crop_flip, training_batches
import fold_trainer
from fold_trainer import evaluate, train_job
from util.job_folder import read_metrics

NAME = "apex-count"  # V2: 22 classes (chance 4.5%); at scale 0.1, 100/10/10 images per class
# f = 1 learns in a few epochs at batch 32, lr 1e-3; f = 2 sits on a plateau for about 8
# epochs and learns at batch 16, lr 5e-4 (lr 1e-3 can stall it); see train.py's quick profile.
# On the CPU, where a resumed run is bitwise equal to an uninterrupted one (tests/test_gpu.py
# has the GPU's counterparts).
F1 = dict(epochs=6, batch_size=32, lr=1e-3, progress=False, device="cpu")
F2 = dict(epochs=16, batch_size=16, lr=5e-4, curriculum=False, progress=False, device="cpu")
TINY = dict(max_train_per_class=20, batch_size=16, lr=1e-3, curriculum_epochs=1, progress=False, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(v2_data):
    return v2_data


@pytest.fixture(scope="module")
def trained_f1(data_root, tmp_path_factory):
    """A short real f = 1 run; also the teacher of the distillation test."""
    savedir = tmp_path_factory.mktemp("runs")
    return savedir, train_job(NAME, 1, savedir, data_root=data_root, **F1)


def class_sorted_labels(classes=10, per_class=40):
    return torch.arange(classes).repeat_interleave(per_class)  # as an image folder lists them


def mixed_fraction(labels, order, fold):
    groups = labels[order[: len(order) // fold * fold]].view(-1, fold)
    return (groups != groups[:, :1]).any(dim=1).float().mean().item()


@pytest.mark.parametrize("fold", [2, 4])
def test_training_groups_mix_classes(fold):
    labels = class_sorted_labels()
    batches = training_batches(labels, batch_size=32, fold=fold, generator=torch.Generator().manual_seed(0))
    assert all(len(b) % fold == 0 for b in batches)
    order = torch.cat(batches)
    assert len(set(order.tolist())) == len(labels)  # 400 images: every one used once
    # Random groups of f from 10 classes are single-class with probability 10^(1-f).
    assert mixed_fraction(labels, order, fold) > 0.8
    again = torch.cat(training_batches(labels, 32, fold, torch.Generator().manual_seed(0)))
    later = torch.cat(training_batches(labels, 32, fold, torch.Generator().manual_seed(1)))
    assert torch.equal(order, again) and not torch.equal(order, later)


@pytest.mark.parametrize("fold", [2, 3, 4])
def test_evaluation_groups_are_one_fixed_shuffle_and_pad_the_remainder(fold):
    labels = class_sorted_labels(per_class=25)  # 250 images: not a multiple of 3 or 4
    order, count = evaluation_order(labels, fold)
    assert count == 250 and len(order) % fold == 0 and len(order) - count < fold
    assert sorted(order[:count].tolist()) == list(range(250))
    assert mixed_fraction(labels, order, fold) > 0.8
    assert torch.equal(order, evaluation_order(labels, fold)[0])


class ReadsTheLabelOffThePixels(nn.Module):
    """A folded 'model' that is right exactly when image j of a group has pixel value = label."""

    def __init__(self, fold, classes):
        super().__init__()
        self.fold, self.classes = fold, classes

    def forward(self, x):
        value = x.view(x.shape[0], self.fold, -1).mean(dim=2) * 255  # (N/f, f)
        logits = -(value[:, :, None] - torch.arange(self.classes)).abs()
        return logits.reshape(x.shape[0], self.fold * self.classes)


@pytest.mark.parametrize("fold", [1, 3, 4])
def test_evaluate_scores_every_image_once_in_its_own_slot(fold):
    labels = class_sorted_labels(classes=5, per_class=7)  # 35 images
    images = labels.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).to(torch.uint8)
    wrong = torch.tensor([0, 17])  # two images whose pixels say another class
    images = images.clone()
    images[wrong] = ((labels[wrong] + 1) % 5).view(-1, 1, 1, 1).to(torch.uint8)
    split = DeviceSplit(images, labels, "cpu")
    model = ReadsTheLabelOffThePixels(fold, 5)
    top1, top5 = evaluate(model, split, fold)
    assert top1 == pytest.approx(33 / 35) and top5 == 1.0
    top1, _ = evaluate(model, split, fold, num_active=2)  # classes 0 and 1: 14 images, one wrong
    assert top1 == pytest.approx(13 / 14)


def test_crop_flip_moves_pixels_within_the_padded_frame():
    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    centred = random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    assert all(torch.equal(c, i) or torch.equal(c, i.flip(2)) for c, i in zip(centred, x))
    assert any(torch.equal(c, i.flip(2)) for c, i in zip(centred, x))


def test_short_training_run_beats_chance_at_f1(trained_f1):
    savedir, result = trained_f1
    rows = read_metrics(savedir / NAME / "fold1" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(F1["epochs"]))
    assert float(rows[-1]["train_loss"]) < 0.7 * float(rows[0]["train_loss"])
    assert result["test_top1"] > 0.3 and result["best_val_top1"] > 0.3  # chance: 0.045
    best = max(rows, key=lambda r: float(r["val_top1"]))
    assert result["best_epoch"] == int(best["epoch"]) and result["test_top1"] == pytest.approx(float(best["test_top1"]), abs=1e-6)
    assert torch.load(savedir / NAME / "fold1" / "best.pth", weights_only=True)["epoch"] == result["best_epoch"]


def test_short_training_run_beats_chance_at_f2(data_root, tmp_path):
    result = train_job(NAME, 2, tmp_path, data_root=data_root, **F2)
    assert result["test_top1"] > 0.15 and result["best_val_top1"] > 0.15  # chance: 0.045


def test_curriculum_run_trains_and_scores_the_scheduled_classes(data_root, tmp_path):
    result = train_job(NAME, 2, tmp_path, epochs=4, data_root=data_root, **TINY)
    rows = read_metrics(tmp_path / NAME / "fold2" / "metrics.csv")
    assert [int(r["classes"]) for r in rows] == [2, 4, 6, 8]  # I = max(22 // 10, 2), delta = 2
    checkpoint = torch.load(tmp_path / NAME / "fold2" / "current.pth", weights_only=False)
    assert checkpoint["curriculum"] == {"num_classes": 22, "initial": 2, "delta": 2, "epochs_per_step": 1}
    assert result["classes_at_best"] == 8  # a model scored on more classes wins selection


def fold_trainer_args(data_root, savedir, epochs):
    return ["fold_trainer.py", NAME, "2", savedir, "--profile", "paper", "--data-root", data_root, "--epochs", epochs,
            "--max_train_per_class", TINY["max_train_per_class"], "--batch_size", TINY["batch_size"],
            "--lr", TINY["lr"], "--curriculum_epochs", TINY["curriculum_epochs"], "--device", "cpu", "--threads", "1",
            "--no-progress"]


def assert_same_run(dir_a, dir_b):
    assert (dir_a / "metrics.csv").read_text() == (dir_b / "metrics.csv").read_text()
    a = torch.load(dir_a / "current.pth", weights_only=False)
    b = torch.load(dir_b / "current.pth", weights_only=False)
    assert a["metrics"] == b["metrics"] and a["best"] == b["best"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["rng"]["shuffle"], b["rng"]["shuffle"])
    done_a, done_b = (json.loads((d / "done.json").read_text()) for d in (dir_a, dir_b))
    timing = {"wall_time_s", "train_images_per_s"}
    assert {k: v for k, v in done_a.items() if k not in timing} == {k: v for k, v in done_b.items() if k not in timing}


def checkpoint_epoch(path):
    """Epochs done in the checkpoint `path` (written atomically: never read half-written); 0 before
    the first one."""
    return torch.load(path, weights_only=False)["epoch"] if path.is_file() else 0


def test_resume_after_sigkill_equals_an_uninterrupted_run(data_root, tmp_path):
    epochs = 12
    whole = tmp_path / "whole"
    train_job(NAME, 2, whole, epochs=epochs, data_root=data_root, **TINY)

    killed = tmp_path / "killed"
    args = [sys.executable, *map(str, fold_trainer_args(data_root, killed, epochs))]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / NAME / "fold2" / "current.pth"
    while proc.poll() is None and checkpoint_epoch(checkpoint) < 3:  # however slow the machine
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    job = killed / NAME / "fold2"
    assert not (job / "done.json").exists() and (job / "current.pth").is_file()
    assert torch.load(job / "current.pth", weights_only=False)["epoch"] < epochs

    rerun = run_cli(*fold_trainer_args(data_root, killed, epochs))
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming after epoch" in rerun.stdout
    assert_same_run(whole / NAME / "fold2", job)
    again = run_cli(*fold_trainer_args(data_root, killed, epochs))
    assert again.returncode == 0 and "skipping" in again.stdout


def test_continue_from_file_and_more_epochs_equal_an_uninterrupted_run(data_root, tmp_path):
    whole = tmp_path / "whole"
    train_job(NAME, 2, whole, epochs=5, checkpoint_every=2, data_root=data_root, **TINY)
    short = tmp_path / "short"
    train_job(NAME, 2, short, epochs=3, data_root=data_root, **TINY)
    saved = tmp_path / "epoch3.pth"
    shutil.copy(short / NAME / "fold2" / "current.pth", saved)
    # metrics.csv rows past the checkpoint are dropped when a run continues from it.
    with open(short / NAME / "fold2" / "metrics.csv", "a") as fh:
        fh.write("3,5,0.1,9,9,9,9,9,9,9\n")
    train_job(NAME, 2, short, epochs=5, continue_from_file=saved, data_root=data_root, **TINY)
    assert_same_run(whole / NAME / "fold2", short / NAME / "fold2")


def student_teacher_mse(student, teacher, split, fold):
    order, _ = evaluation_order(split.labels_cpu, fold)
    x, _ = split.batch(order)
    with torch.no_grad():
        return nn.functional.mse_loss(models.unfold_outputs(student(models.fold_inputs(x, fold)), fold),
                                      teacher(x)).item()


def trained_student_mse(savedir, teacher, split):
    student = models.build_model(NAME, 2)
    student.load_state_dict(torch.load(savedir / NAME / "fold2" / "current.pth", weights_only=False)["model"])
    return student_teacher_mse(student.eval(), teacher, split, 2)


def test_distillation_pulls_the_student_to_the_teachers_logits(data_root, trained_f1, tmp_path):
    savedir, _ = trained_f1
    teacher = models.build_model(NAME, 1)
    teacher.load_state_dict(torch.load(savedir / NAME / "fold1" / "best.pth", weights_only=True)["model"])
    teacher.eval()
    train, _, _ = load_job_data(NAME, data_root, "cpu", max_per_class=50)
    torch.manual_seed(0)
    before = student_teacher_mse(models.build_model(NAME, 2).eval(), teacher, train, 2)

    recipe = {**F2, "epochs": 8, "lr": 1e-3, "max_train_per_class": 50}
    result = train_job(NAME, 2, savedir, distill=True, data_root=data_root, **recipe)
    assert result["recipe"]["distill"]
    after = trained_student_mse(savedir, teacher, train)
    assert after < 0.35 * before, (before, after)
    rows = read_metrics(savedir / NAME / "fold2" / "metrics.csv")
    assert float(rows[-1]["train_loss"]) < 0.6 * float(rows[0]["train_loss"])  # the loss is this MSE
    # The control: the same seed and recipe trained on the labels alone ends much further away
    # (measured: 20 with distillation, 95 without, 95 untrained).
    train_job(NAME, 2, tmp_path, distill=False, data_root=data_root, **recipe)
    without = trained_student_mse(tmp_path, teacher, train)
    assert after < 0.5 * without, (after, without)


@pytest.mark.parametrize("args, message", [
    (["no-such-model", "1"], "unknown dataset/model 'no-such-model'"),
    ([NAME, "4", "--batch_size", "3"], "batch size 3 is smaller than the fold 4"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, data_root, args, message):
    proc = run_cli("fold_trainer.py", args[0], args[1], tmp_path, "--data-root", data_root, *args[2:])
    assert proc.returncode == 2
    assert_clean_error(proc, message)


def test_missing_data_names_the_command_that_makes_it(tmp_path):
    proc = run_cli("fold_trainer.py", "sot-coin", "1", tmp_path / "runs", "--data-root", tmp_path)
    assert proc.returncode == 2
    assert_clean_error(proc, "no data for sot-coin", "python -m datasets.game_synth")
    proc = run_cli("train.py", tmp_path / "runs", "--datasets", "V1", "V2", "--folds", "1", "--data-root", tmp_path)
    assert proc.returncode == 2
    assert_clean_error(proc, "no data for lol-gold1")


def test_train_py_runs_a_sweep_skips_finished_jobs_and_writes_the_summary(data_root, tmp_path):
    args = ["train.py", tmp_path, "--datasets", "V2", "--folds", "2", "1", "--epochs", "1",
            "--max_train_per_class", "10", "--data-root", data_root, "--device", "cpu", "--threads", "1",
            "--no-progress"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    # the quick profile's folded job starts from the narrow CNN of f, which trains before it
    assert first.stdout.index("apex-count f=1") < first.stdout.index("apex-count narrow f=2") \
        < first.stdout.index("apex-count f=2")
    assert "profile quick: epochs=1, " in first.stdout  # the header shows the --epochs that overrode the profile's
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert summary[0] == ("dataset,fold,variant,epochs,best_val_top1,test_top1,test_images,delta_vs_f1,wall_time_s,"
                          "train_images_per_s,cross_image_share")
    assert [line.split(",")[:4] for line in summary[1:]] == [[NAME, "1", "original", "1"], [NAME, "2", "folded", "1"],
                                                             [NAME, "2", "narrow", "1"]]
    done = [json.loads((tmp_path / NAME / f"fold{f}" / "done.json").read_text()) for f in (1, 2)]
    f1, f2 = (dict(zip(summary[0].split(","), line.split(","))) for line in summary[1:3])
    assert (f1["test_top1"], f2["test_top1"]) == tuple(f"{d['test_top1']:.4f}" for d in done)
    assert f1["delta_vs_f1"] == "+0.0000" and f2["delta_vs_f1"] == f"{done[1]['test_top1'] - done[0]['test_top1']:+.4f}"
    assert "delta_vs_f1" in first.stdout  # the table is printed
    second = run_cli(*args)
    assert second.returncode == 0 and second.stdout.count("skipping") == 2  # the narrow job is not planned again
    other = run_cli(*args[:-1], "--lr", "0.5")
    assert_clean_error(other, "holds a run with other settings", "lr")


def test_fold_trainer_uses_train_pys_default_profile_and_records_it(data_root, tmp_path):
    """`python fold_trainer.py V2 2 DIR --epochs 1` runs the profile train.py would (quick
    without a GPU), training the f = 1 teacher its distillation needs first."""
    proc = run_cli("fold_trainer.py", NAME, "2", tmp_path, "--epochs", "1", "--max-train-per-class", "10",
                   "--data-root", data_root, "--device", "cpu", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "distills from the f=1 model, which is not trained yet: training it first" in proc.stdout
    for fold in (1, 2):
        done = json.loads((tmp_path / NAME / f"fold{fold}" / "done.json").read_text())
        assert done["profile"] == fold_trainer.DEFAULT_PROFILE
        expected = fold_trainer.PROFILES[fold_trainer.DEFAULT_PROFILE].get("init", "paper")
        assert done["recipe"]["init"] == expected and done["recipe"]["epochs"] == 1
