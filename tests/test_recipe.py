"""Recipe options beyond the paper's: BatchNorm while training folded away at save, the
block-diagonal init, warm-up and cosine decay, KL distillation, a short real run with all of
them whose saved model is the paper's architecture, train.py's quick profile beating chance
by a wide margin at f = 1 and f = 4, and every recipe option a flag of both command lines."""
import argparse
import csv
import dataclasses
import math

import pytest
import torch
import torch.nn as nn

import models
import fold_trainer
from datasets import game_synth
from datasets.batches import evaluation_order, load_job_data
from fold_trainer import PROFILES, distillation_loss, evaluate, resolve_recipe, train_job
from tests.helpers import REPO, run_cli
from util.args import device_string, finite_float, fraction, positive_float
from util.errors import UserError
from util.job_folder import read_metrics

NAME = "apex-count"  # V2: small 19x25 images, 22 classes
PLAIN_MODELS = ["lol-gold1", "sot-time", "night", "roundabout"]  # both families, 1 and 2 units / 2 and 4 convs


pytestmark = pytest.mark.usefixtures("one_thread")


def trained_bn_model(name, fold):
    """build_model(name, fold) with BatchNorm after each conv whose running statistics and
    affine parameters are far from the identity (a few training-mode passes on shifted data)."""
    torch.manual_seed(fold)
    model = models.insert_batchnorm(models.build_model(name, fold))
    shape = models.input_shape(name, fold)
    with torch.no_grad():
        for _ in range(3):
            model(2 * torch.randn(8, *shape) + 0.5)
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("fold", [1, 2, 3, 4])
@pytest.mark.parametrize("name", PLAIN_MODELS)
def test_batchnorm_folds_into_the_papers_architecture_with_equal_outputs(name, fold):
    trained = trained_bn_model(name, fold)
    plain = models.build_model(name, fold)
    plain.load_state_dict(models.fold_batchnorm(trained).state_dict())  # strict: same keys and shapes
    assert str(plain) == str(models.build_model(name, fold))  # same inference graph, no BatchNorm
    x = torch.randn(4 * fold, *models.input_shape(name, fold))
    with torch.no_grad():
        expected, got = trained(x), plain.eval()(x)
    assert expected.abs().max() > 0.01
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_batchnorm_is_refused_for_resnet():
    with pytest.raises(Exception, match="BatchNorm already"):
        models.insert_batchnorm(models.build_model("cifar10", 1))


@pytest.mark.parametrize("fold", [2, 3, 4])
@pytest.mark.parametrize("name", ["lol-gold1", "night"])
def test_block_init_keeps_each_image_on_its_own_path(name, fold):
    model = models.block_diagonal_(models.build_model(name, fold), fold)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    groups = models.folding.channel_groups
    cross = groups(first.out_channels, fold)[:, None] != groups(first.in_channels, fold)[None, :]
    assert (first.weight[cross] == 0).all() and (first.weight[~cross] != 0).all()
    # Changing image 1 of each group changes its own logits and nobody else's.
    images = torch.randn(2 * fold, *models.input_shape(name, 1))
    changed = images.clone()
    changed[1::fold] = torch.randn_like(changed[1::fold])
    with torch.no_grad():
        before, after = (models.unfold_outputs(model(models.fold_inputs(x, fold)), fold) for x in (images, changed))
    others = [i for i in range(2 * fold) if i % fold != 1]
    assert torch.equal(before[others], after[others])
    assert not torch.allclose(before[1::fold], after[1::fold])


def test_block_init_scales_the_kept_weights_and_leaves_f1_alone():
    torch.manual_seed(0)
    reference = models.build_model("lol-gold1", 4)
    torch.manual_seed(0)
    blocked = models.block_diagonal_(models.build_model("lol-gold1", 4), 4)
    kept = blocked[0].weight != 0
    torch.testing.assert_close(blocked[0].weight[kept], 2 * reference[0].weight[kept])  # sqrt(4)
    torch.manual_seed(0)
    original = models.build_model("lol-gold1", 1)
    torch.manual_seed(0)
    unchanged = models.block_diagonal_(models.build_model("lol-gold1", 1), 1)
    for a, b in zip(original.state_dict().values(), unchanged.state_dict().values()):
        assert torch.equal(a, b)


def test_kl_distillation_is_zero_at_the_teacher_and_keeps_its_gradient_scale():
    torch.manual_seed(0)
    teacher = 5 * torch.randn(16, 11)
    assert distillation_loss(teacher, teacher, "kl", 4.0).abs() < 1e-6
    grads = []
    for temperature in (1.0, 4.0):
        student = (teacher + 0.1 * torch.randn(16, 11)).requires_grad_()
        distillation_loss(student, teacher, "kl", temperature).backward()
        grads.append(student.grad.norm())
    # The T^2 factor keeps the scale (ratio 1.24 here); a factor T would give 0.31, T^3 5.0.
    assert 0.8 < grads[1] / grads[0] < 2.0
    # The paper's MSE on raw logits is the default.
    assert torch.isclose(distillation_loss(teacher + 1, teacher), torch.tensor(1.0))


def test_the_paper_profile_keeps_every_new_option_off():
    recipe = resolve_recipe("lol-gold1", 4, **{k: v for k, v in PROFILES["paper"].items()})
    assert (recipe["init"], recipe["train_bn"], recipe["lr_warmup_epochs"], recipe["lr_decay"]) == \
        ("paper", False, 0.0, "none")
    assert recipe["optimizer"] == "adam" and recipe["lr"] == 1e-4 and recipe["distill"] is False


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    game_synth.generate(NAME, root, scale=0.05, seed=0, eval_scale=0.1)  # 50 train, 10 val/test per class
    return root


QUICK_EPOCHS = 8  # of the profile's 20: f = 1 reaches about 64% test top-1 here, f = 4 about 14%


@pytest.fixture(scope="module")
def quick_runs(data_root, tmp_path_factory):
    """train.py's quick profile, shortened to QUICK_EPOCHS, at f = 1 and f = 4 (which distills
    from f = 1): {fold: summary.csv row}; the f = 1 model is the teacher of the test below."""
    savedir = tmp_path_factory.mktemp("quick")
    proc = run_cli("train.py", savedir, "--datasets", NAME, "--folds", "1", "4", "--profile", "quick",
                   "--epochs", QUICK_EPOCHS, "--data-root", data_root, "--device", "cpu", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    with open(savedir / "summary.csv", newline="") as f:
        return savedir, {int(row["fold"]): row for row in csv.DictReader(f) if row["variant"] in ("original", "folded")}


def test_the_quick_profile_learns_well_above_chance_at_f1_and_f4(quick_runs):
    """On 220 held-out test images of 22 classes (chance 4.5%): f = 1 above 40% and f = 4 above
    twice chance (9.1%) after 8 epochs of 50 images per class; the 95% interval on 220 images
    is about +-6 points at 64% and +-4.5 at 14%, so both margins hold against noise."""
    _, rows = quick_runs
    assert rows[1]["test_images"] == rows[4]["test_images"] == "220"
    assert float(rows[1]["test_top1"]) > 0.40
    assert float(rows[4]["test_top1"]) > 2 / 22
    assert float(rows[4]["best_val_top1"]) > 2 / 22


def test_a_short_run_with_every_option_saves_the_papers_model_and_its_recipe(data_root, quick_runs, tmp_path):
    options = dict(epochs=3, batch_size=16, lr=2e-3, init="block", keep_blocks=True, train_bn=True,
                   lr_warmup_epochs=1.0, lr_decay="cosine", curriculum=False, progress=False)
    teacher = quick_runs[0] / NAME / "fold1" / "best.pth"  # a trained f = 1 model
    result = train_job(NAME, 2, tmp_path, data_root=data_root, distill=True, distill_loss="kl",
                       distill_temperature=4.0, distill_weight=0.5, teacher=teacher, **options)
    assert result["test_top1"] > 2 / 22 and result["best_val_top1"] > 2 / 22  # chance: 1/22
    job = tmp_path / NAME / "fold2"
    best = torch.load(job / "best.pth", weights_only=False)
    current = torch.load(job / "current.pth", weights_only=False)
    for recipe in (result["recipe"], best["recipe"], current["recipe"]):
        assert {k: recipe[k] for k in ("init", "keep_blocks", "train_bn", "lr_warmup_epochs", "lr_decay", "distill",
                                       "distill_loss", "distill_temperature", "distill_weight")} == \
            {"init": "block", "keep_blocks": True, "train_bn": True, "lr_warmup_epochs": 1.0, "lr_decay": "cosine",
             "distill": True, "distill_loss": "kl", "distill_temperature": 4.0, "distill_weight": 0.5}
    assert any("running_mean" in k for k in current["model"])  # training state keeps its BatchNorm
    model = models.build_model(NAME, 2)
    model.load_state_dict(best["model"])  # the saved model is the paper's architecture
    for weight, mask in models.folding.block_masks(model, 2).items():  # trained, still per-image paths
        mask = mask.expand_as(weight)
        assert (weight[mask == 0] == 0).all() and (weight[mask == 1] != 0).any()
    _, val, _ = load_job_data(NAME, data_root, "cpu")
    assert evaluate(model, val, 2)[0] == pytest.approx(result["best_val_top1"], abs=1e-9)
    lrs = [float(row["lr"]) for row in read_metrics(job / "metrics.csv")]
    assert lrs[0] == 0.0  # warm-up starts from zero
    assert lrs[1] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi / 3)))  # then the cosine


@pytest.mark.parametrize("options, message", [
    ({"keep_blocks": True}, "add --init block"),
    ({"init": "diagonal"}, "unknown init 'diagonal'"),
    ({"lr_decay": "cosine", "lr_warmup_epochs": -1.0}, "lr_warmup_epochs must be >= 0"),
    ({"distill": True, "distill_loss": "kl", "distill_temperature": 0.0}, "temperature > 0"),
])
def test_bad_recipe_options_are_clear_errors(options, message):
    with pytest.raises(UserError, match=message):
        resolve_recipe("lol-gold1", 2, **options)


def example_flag(field):
    """A command line that sets `field` away from its default, and the value it then has."""
    flag = "--" + field.name.replace("_", "-")
    if field.default is False or field.default is None and "Optional[bool]" in str(field.type):
        return [flag], True
    if field.default is True:
        return ["--no-" + flag[2:]], False
    if "choices" in field.metadata:
        value = next(c for c in field.metadata["choices"] if c != field.default)
        return [flag, value], value
    kind = field.metadata.get("type", str)
    if kind is device_string:
        return [flag, "cuda:1"], "cuda:1"
    value = kind("0.5") if kind in (fraction, positive_float, finite_float) else kind("3")
    return [flag, str(value)], value


@pytest.mark.parametrize("cls", [fold_trainer.Recipe, fold_trainer.JobSettings])
def test_every_recipe_option_and_job_setting_is_a_flag_of_both_command_lines(cls):
    parser = argparse.ArgumentParser()
    fold_trainer.add_job_arguments(parser)
    assert fold_trainer.job_options(parser.parse_args([])) == {}  # unset flags leave the profile alone
    for field in dataclasses.fields(cls):
        argv, value = example_flag(field)
        assert fold_trainer.job_options(parser.parse_args(argv)) == {field.name: value}, field.name
        if "_" in field.name:  # the underscore spelling of the original command lines still works
            assert fold_trainer.job_options(parser.parse_args([argv[0].replace("-", "_").replace("__", "--", 1),
                                                               *argv[1:]])) == {field.name: value}
    # train.py builds its parser from the same function.
    assert "add_job_arguments(parser)" in (REPO / "train.py").read_text()


def test_profiles_name_known_options_and_make_valid_recipes():
    assert fold_trainer.DEFAULT_PROFILE in fold_trainer.PROFILES
    for name, options in fold_trainer.PROFILES.items():
        assert set(options) <= set(fold_trainer.JOB_OPTIONS), name
        fold_trainer.split_options(options)[0].resolve("lol-gold1", 4)
    with pytest.raises(UserError, match="unknown training option lrr"):
        fold_trainer.split_options({"lrr": 1e-3})
    with pytest.raises(UserError, match="unknown profile 'fast'; use one of paper, quick"):
        fold_trainer.profile_options("fast")


def test_a_trained_checkpoint_through_onnxruntime_gives_pytorchs_predictions(data_root, quick_runs, tmp_path):
    """The quick profile's f = 4 model (best.pth), exported to ONNX and run by onnxruntime on the
    220 real test images, grouped as training scored them: the logits of PyTorch to 1e-4, the
    same top-1 for every image, and so the job's own test top-1."""
    import onnxruntime

    from infer import build_workload
    from util.onnx_export import export_onnx

    savedir, rows = quick_runs
    fold = 4
    model = build_workload(NAME, fold, batch_size=fold, checkpoint=savedir / NAME / "fold4" / "best.pth").model.eval()
    _, _, test = load_job_data(NAME, data_root, "cpu")
    order, count = evaluation_order(test.labels_cpu, fold)  # the groups that training scored
    assert count == len(order) == 220
    images, labels = test.batch(order)
    inputs = models.fold_inputs(images, fold)
    session = onnxruntime.InferenceSession(str(export_onnx(model, inputs, tmp_path / "model.onnx")),
                                           providers=["CPUExecutionProvider"])
    got = models.unfold_outputs(torch.from_numpy(session.run(None, {"input": inputs.numpy()})[0]), fold)
    with torch.no_grad():
        want = models.unfold_outputs(model(inputs), fold)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    assert torch.equal(got.argmax(1), want.argmax(1))
    accuracy = (got.argmax(1) == labels).float().mean().item()
    assert f"{accuracy:.4f}" == rows[fold]["test_top1"]
