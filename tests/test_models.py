"""The model zoo: every family at every fold, the folding layout, the width rule, the registry."""
import json
import math

import pytest
import torch
import torch.nn as nn

import models
from models.registry import read_configs
from util.errors import UserError

NAMES = models.model_names()
FOLDS = models.FOLDS


def convs_and_linears(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_registry_covers_the_paper():
    ids = {models.load_config(n)["id"] for n in NAMES}
    assert {"V1", "V2", "V3", "V4", "V5", "V6", "N1", "N2", "N3", "N4", "cifar10", "cifar100"} <= ids  # and any added
    assert models.load_config("v1")["name"] == "lol-gold1"
    assert models.load_config("N2")["name"] == "night"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fold", FOLDS)
def test_folded_batch_maps_to_one_row_of_logits_per_image(name, fold):
    cfg = models.load_config(name)
    model = models.build_model(name, fold).eval()
    images = torch.rand(2 * fold, cfg["input"]["channels"], cfg["input"]["height"], cfg["input"]["width"])
    folded = models.fold_inputs(images, fold)
    assert tuple(folded.shape[1:]) == models.input_shape(name, fold)
    with torch.no_grad():
        logits = model(folded)
    assert logits.shape == (2, fold * len(cfg["classes"]))
    assert models.unfold_outputs(logits, fold).shape == (2 * fold, len(cfg["classes"]))


def test_fold_layout_puts_image_j_in_channels_j():
    images = torch.randn(12, 3, 5, 7)
    for fold in FOLDS:
        folded = models.fold_inputs(images, fold)
        for g in range(12 // fold):
            for j in range(fold):
                assert torch.equal(folded[g, 3 * j:3 * (j + 1)], images[g * fold + j])


@pytest.mark.parametrize("fold", FOLDS)
def test_unfold_of_folded_linear_probe_keeps_image_order(fold):
    """A block-diagonal linear probe applies the same per-image probe P to each image of a
    group; unfolding its output must give P(image) in the original image order."""
    torch.manual_seed(fold)
    c, h, w, k = 3, 4, 6, 5
    probe = torch.randn(k, c * h * w)
    images = torch.randn(4 * fold, c, h, w)
    folded_probe = nn.Linear(fold * c * h * w, fold * k, bias=False)
    with torch.no_grad():
        folded_probe.weight.copy_(torch.block_diag(*[probe] * fold))
        logits = folded_probe(models.fold_inputs(images, fold).flatten(1))
    expected = images.flatten(1) @ probe.T
    torch.testing.assert_close(models.unfold_outputs(logits, fold), expected)


def test_fold_errors_are_clear():
    with pytest.raises(UserError, match="multiple of 3"):
        models.fold_inputs(torch.zeros(4, 3, 8, 8), 3)
    with pytest.raises(UserError, match="fold must be"):
        models.fold_inputs(torch.zeros(4, 3, 8, 8), 0)
    with pytest.raises(UserError, match="f\\*K"):
        models.unfold_outputs(torch.zeros(2, 7), 2)


def test_width_rule_truncates_like_the_original():
    assert [models.folded_width(32, f) for f in FOLDS] == [32, 45, 55, 64]
    assert [models.folded_width(16, f) for f in FOLDS] == [16, 22, 27, 32]
    assert [models.folded_width(64, f) for f in FOLDS] == [64, 90, 110, 128]
    assert [models.folded_width(128, f) for f in FOLDS] == [128, 181, 221, 256]
    assert models.folded_width(32, 4, channel_mult=1.5) == 48
    assert models.folded_width(64, 2, align=8) == 96


def test_original_game_cnn_is_the_papers_architecture():
    """V1 at f=1: C32 -> M(3,s2) -> B -> M(3,s1) -> C8 -> M(3,s2) -> F11 on 22x52 inputs."""
    model = models.build_model("V1", 1)
    layers = convs_and_linears(model)
    assert [m.out_channels for m in layers[:-1]] == [32, 32, 32, 32, 8]
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) and m.bias is not None for m in layers[:-1])
    # 22x52 -> pool(3,s2) 10x25 -> pool(3,s1) 8x23 -> pool(3,s2) 3x11
    assert (layers[-1].in_features, layers[-1].out_features) == (8 * 3 * 11, 11)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 0), (3, 1, 0), (3, 2, 0)]
    v4 = convs_and_linears(models.build_model("V4", 1))
    assert len(v4) == 1 + 3 * 2 + 1 + 1  # two B units


def game_params(cfg, fold):
    """Parameter count from the architecture, with the width rule int(w * sqrt(f))."""
    m = math.sqrt(fold)
    inner, last = int(cfg["arch"]["conv_width"] * m), int(cfg["arch"]["last_conv_width"] * m)
    h, w = cfg["input"]["height"], cfg["input"]["width"]
    h, w = (h - 3) // 2 + 1, (w - 3) // 2 + 1
    convs = [(3 * fold, inner)] + [(inner, inner)] * (3 * cfg["arch"]["units"]) + [(inner, last)]
    for _ in range(cfg["arch"]["units"]):
        h, w = h - 2, w - 2
    h, w = (h - 3) // 2 + 1, (w - 3) // 2 + 1
    k = len(cfg["classes"]) * fold
    return sum(ci * co * 9 + co for ci, co in convs) + last * h * w * k + k


def noscope_params(cfg, fold):
    m = math.sqrt(fold)
    n1, n2, d = int(cfg["arch"]["filters"] * m), int(2 * cfg["arch"]["filters"] * m), int(cfg["arch"]["dense"] * m)
    convs = [(3 * fold, n1), (n1, n1)] + ([(n1, n2), (n2, n2)] if cfg["arch"]["four_convs"] else [])
    side = 12 if cfg["arch"]["four_convs"] else 25
    last = convs[-1][1]
    return sum(ci * co * 9 + co for ci, co in convs) + last * side * side * d + d + d * 2 * fold + 2 * fold


@pytest.mark.parametrize("name", [n for n in NAMES if models.load_config(n)["family"] != "cifar"])
@pytest.mark.parametrize("fold", FOLDS)
def test_parameter_counts_follow_the_width_rule(name, fold):
    cfg = models.load_config(name)
    expected = (game_params if cfg["family"] == "game" else noscope_params)(cfg, fold)
    assert sum(p.numel() for p in models.build_model(name, fold).parameters()) == expected


@pytest.mark.parametrize("fold", FOLDS)
def test_resnet18_widths(fold):
    model = models.build_model("cifar10", fold)
    widths = sorted({m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)})
    assert widths == [int(w * math.sqrt(fold)) for w in (64, 128, 256, 512)]
    assert model.stem[0].in_channels == 3 * fold and model.fc.out_features == 10 * fold
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name", ["V1", "N4", "cifar10"])
def test_align_rounds_internal_widths_up(name):
    for fold in (2, 3):
        plain = [m.out_channels for m in models.build_model(name, fold).modules() if isinstance(m, nn.Conv2d)]
        aligned = [m.out_channels for m in models.build_model(name, fold, align=8).modules()
                   if isinstance(m, nn.Conv2d)]
        assert all(a % 8 == 0 and p <= a < p + 8 for p, a in zip(plain, aligned))
        assert any(p % 8 for p in plain)  # the truncated widths were not aligned already


def test_initialization_matches_the_recipe():
    model = models.build_model("V1", 2)
    conv, linear = model[0], model[-1]
    bound = nn.init.calculate_gain("relu") * math.sqrt(6 / ((conv.in_channels + conv.out_channels) * 9))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert abs(linear.weight.std().item() - 0.01) < 0.002
    assert conv.bias.abs().sum() == 0 and linear.bias.abs().sum() == 0


def test_compound_scaled_baseline_is_smaller():
    for name in ["V1", "V4"]:
        base, small = models.build_model(name), models.build_compound_scaled(name)
        assert len(convs_and_linears(small)) < len(convs_and_linears(base))
        c, h, w = models.compound_scaled_input_shape(name)
        assert h < models.input_shape(name)[1] and w < models.input_shape(name)[2]
        assert small(torch.rand(2, c, h, w)).shape == (2, len(models.load_config(name)["classes"]))
    with pytest.raises(UserError, match="game models only"):
        models.build_compound_scaled("N2")


def test_bad_names_and_folds_are_clear_errors():
    with pytest.raises(UserError, match="unknown dataset/model 'V9'.*lol-gold1 \\(V1\\)"):
        models.build_model("V9")
    for fold in (0, -1, 1.5, True):
        with pytest.raises(UserError, match="fold must be a whole number"):
            models.build_model("V1", fold)
    with pytest.raises(UserError, match="align"):
        models.build_model("V1", 2, align=0)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["input"].pop("height"), "missing field 'input.height'"),
    (lambda c: c["input"].update(height="22"), "field 'input.height' must be int"),
    (lambda c: c["train"].update(lr="fast"), "field 'train.lr' must be int/float"),
    (lambda c: c.update(family="rnn"), "field 'family' must be one of"),
    (lambda c: c["arch"].pop("units"), "missing field 'arch.units'"),
    (lambda c: c.update(classes=["b", "a"]), "sorted"),
    (lambda c: c["input"].update(height=-5), "field 'input.height' must be at least 1, got -5"),
    (lambda c: c["arch"].update(conv_width=0), "field 'arch.conv_width' must be at least 1, got 0"),
    (lambda c: c["train"].update(lr=-0.1), "field 'train.lr' must be a positive number, got -0.1"),
    (lambda c: c["train"].update(lr=float("nan")), "field 'train.lr' must be a positive number, got nan"),
    (lambda c: c["train"].update(epochs=0), "field 'train.epochs' must be at least 1"),
    (lambda c: c["train"].update(weight_decay=-1), "field 'train.weight_decay' must be at least 0"),
    (lambda c: c["data"]["per_class"].update(train=0), "field 'data.per_class.train' must be at least 1"),
])
def test_broken_config_names_file_and_field(tmp_path, repo, edit, message):
    cfg = json.loads((repo / "config" / "lol-gold1.json").read_text())
    edit(cfg)
    (tmp_path / "lol-gold1.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError) as err:
        read_configs(tmp_path)
    assert "lol-gold1.json" in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_json_is_a_clear_error(tmp_path):
    (tmp_path / "night.json").write_text("{not json")
    with pytest.raises(UserError, match="night.json: not valid JSON"):
        read_configs(tmp_path)


def logits_after_moving_image(model, name, fold, moved):
    """(per-image logits of one group of f random images, the same after replacing image `moved`)."""
    images = torch.rand(fold, *models.input_shape(name, 1))
    changed = images.clone()
    changed[moved] = torch.rand_like(changed[moved])
    with torch.no_grad():
        return [models.unfold_outputs(model(models.fold_inputs(x, fold)), fold) for x in (images, changed)]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fold", FOLDS[1:])
def test_each_image_has_its_own_path_at_block_init_and_shares_all_at_paper_init(name, fold):
    """Moving image j of a group changes only row j's logits when the model is f separate
    networks (block init), and every row's in the paper's dense FoldedCNN, ResNet included."""
    torch.manual_seed(fold)
    moved = fold - 1
    blocked = models.block_diagonal_(models.build_model(name, fold), fold).eval()
    before, after = logits_after_moving_image(blocked, name, fold, moved)
    assert torch.equal(before[:moved], after[:moved])
    assert not torch.allclose(before[moved], after[moved])
    dense = models.build_model(name, fold).eval()
    before, after = logits_after_moving_image(dense, name, fold, moved)
    for row in range(fold):
        assert not torch.allclose(before[row], after[row], rtol=0, atol=1e-7), row
