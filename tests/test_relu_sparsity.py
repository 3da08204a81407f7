"""ReLU sparsity (models/sparsity.py, scripts/relu_sparsity.py): the counts on a model whose
zero activations are known by hand, and the tool on a tiny real trained sweep."""
import csv

import pytest
import torch
import torch.nn as nn

import datasets
import models
from datasets import game_synth
from datasets.batches import DeviceSplit
from fold_trainer import train_job
from models.flops import flops_per_input
from models.sparsity import compare_folds, count_sparsity
from scripts import relu_sparsity

NAME = "apex-count"  # V2

pytestmark = pytest.mark.usefixtures("one_thread")


def known_zeros_model():
    """conv1 copies the image to channel 0 and its negative to channel 1 (centre taps 1 and -1);
    conv2 sums all 18 taps with weight 1; then a linear layer."""
    conv1, conv2 = nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.Conv2d(2, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv1.weight.zero_()
        conv1.weight[0, 0, 1, 1], conv1.weight[1, 0, 1, 1] = 1, -1
        conv2.weight.fill_(1)
    return nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU(), nn.Flatten(), nn.Linear(16, 1))


def test_counts_on_a_model_with_known_zeros():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0], x[0, 0, 3, 3] = 1, -2  # two nonzero pixels, in opposite corners
    count = count_sparsity(known_zeros_model(), [x])
    # ReLU 1: relu(x) and relu(-x): one nonzero in each channel, 30 of 32 outputs zero.
    # ReLU 2: sum of |x| over 3x3 windows: nonzero at the 4 pixels next to each corner, 8 of 16 zero.
    assert count.relu_zeros == [30, 8] and count.relu_elements == [32, 16]
    assert count.zero_shares == [30 / 32, 8 / 16] and count.zero_share == 38 / 48
    # Dense: conv1 16 positions x 2 out channels x 1 in channel x 9 taps; conv2 16 x 1 x 2 x 9; linear 16 x 1.
    assert count.dense == 288 + 288 + 16
    # Zeros skipped: conv1 reads the image, dense (288); conv2 only multiplies the 2 nonzero
    # inputs, each a corner pixel inside 2 x 2 = 4 output windows (8); the linear layer 8 nonzeros.
    assert count.sparse == 288 + 8 + 8
    assert count.inputs == 1


def test_counts_add_over_batches_and_respect_groups():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    model = nn.Sequential(nn.Conv2d(4, 4, 1), conv)
    x = torch.randn(3, 4, 7, 7)
    whole = count_sparsity(model, [x])
    split = count_sparsity(model, [x[:1], x[1:]])
    assert (whole.dense, whole.sparse, whole.inputs) == (split.dense, split.sparse, 3)
    # conv's input (the 1x1 conv's output) has no zeros: only the padding taps are skipped. Its
    # 4 x 4 outputs see 4, 6 or 9 in-bounds taps (corner, edge, inside): 100 per image and group,
    # times 2 input channels per group, 3 output channels per group, 2 groups, 3 images.
    assert whole.sparse == 3 * 49 * 4 * 4 + (4 * 4 + 8 * 6 + 4 * 9) * 2 * 3 * 2 * 3
    assert whole.dense == 3 * 49 * 4 * 4 + 3 * 16 * 6 * 2 * 9


def test_compare_folds_says_which_way_the_numbers_fall():
    assert "are sparser than" in compare_folds({("V1", 1): 0.5, ("V1", 2): 0.6, ("V1", 4): 0.7, ("N2", 1): 0.5})
    assert "are denser than" in compare_folds({("V1", 1): 0.5, ("V1", 2): 0.4})
    assert "0 of 2 folded models have more zeros" in compare_folds({("V1", 1): 0.5, ("V1", 2): 0.4, ("V1", 4): 0.3})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A tiny real sweep: V2 at f = 1 and 2, one epoch on 10 images per class."""
    data, runs = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("runs")
    game_synth.generate(NAME, data, scale=0.02, seed=0, eval_scale=0.1)
    for fold in (1, 2):
        train_job(NAME, fold, runs, data_root=data, epochs=1, max_train_per_class=10, batch_size=16, lr=1e-3,
                  curriculum=False, progress=False, device="cpu")
    return data, runs


def test_relu_sparsity_on_a_trained_sweep(sweep, tmp_path, capsys):
    data, runs = sweep
    relu_sparsity.main([str(runs), "--data-root", str(data), "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "relu_sparsity.csv").open()))
    assert [(r["model"], int(r["fold"])) for r in rows] == [("V2", 1), ("V2", 2)]
    images, labels = datasets.load_split(NAME, "test", data)
    for r in rows:
        fold = int(r["fold"])
        assert int(r["test_images"]) == len(labels) // fold * fold
        shares = [float(s) for s in r["relu_zero_shares"].split()]
        assert len(shares) == 5 and all(0 <= s <= 1 for s in shares)  # V2's five conv+ReLU layers
        assert float(r["dense_per_image"]) == pytest.approx(flops_per_input(NAME, fold) / 2 / fold, abs=1)
        assert int(r["sparse_per_image"]) < int(r["dense_per_image"])
    # The first ReLU's share at f = 1, computed directly from the trained model on every test image.
    model = models.build_model(NAME, 1)
    model.load_state_dict(torch.load(runs / NAME / "fold1" / "best.pth", weights_only=True)["model"])
    x, _ = DeviceSplit(images, labels, "cpu").batch(torch.arange(len(labels)))
    with torch.no_grad():
        first = (model[:2](x) == 0).float().mean().item()
    assert float(rows[0]["relu_zero_shares"].split()[0]) == pytest.approx(first, abs=1e-4)
    assert "| V2 | 2 |" in out and ("are sparser than" in out or "are denser than" in out or "neither" in out)


def test_relu_sparsity_errors_are_one_line(tmp_path, capsys):
    for argv, message in (([str(tmp_path)], "no trained models under"),
                          ([str(tmp_path / "nope")], "is not a folder")):
        with pytest.raises(SystemExit) as exit_:
            relu_sparsity.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "Traceback" not in err and message in err.strip().splitlines()[-1]
