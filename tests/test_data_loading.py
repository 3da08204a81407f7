"""load_split: image folders through the cache, the real tarball layout, CIFAR, clear errors."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import datasets
from datasets import game_synth
from models import load_config
from util.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    game_synth.generate("lol-time", root, scale=0.003, seed=0)
    return root


@pytest.fixture
def root(generated, tmp_path):
    """A private copy of the generated data, free to break."""
    shutil.copytree(generated, tmp_path / "data")
    return tmp_path / "data"


def decode_folder(split_dir, classes):
    """What load_split must return, read the plain way: sorted files, BGR -> RGB, NCHW."""
    images, labels = [], []
    for index, cls in enumerate(classes):
        for path in sorted((split_dir / cls).iterdir()):
            images.append(cv2.imread(str(path))[..., ::-1].transpose(2, 0, 1))
            labels.append(index)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


def test_cache_matches_direct_decoding_and_follows_changes(root):
    classes = load_config("lol-time")["classes"]
    expected_x, expected_y = decode_folder(root / "lol-time" / "train", classes)
    x, y = datasets.load_split("lol-time", "train", root)
    assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.shape == (3 * 62, 3, 15, 35)
    assert torch.equal(x, expected_x) and torch.equal(y, expected_y)
    cache = root / "lol-time" / "train.cache.pt"
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    x2, y2 = datasets.load_split("V6", "train", root)  # by id, from the cache
    assert torch.equal(x2, x) and torch.equal(y2, y) and cache.stat().st_mtime_ns == stamp
    # Overwrite one image: the cache is re-packed with the new pixels.
    changed = root / "lol-time" / "train" / "07" / "1.png"
    cv2.imwrite(str(changed), np.full((15, 35, 3), (10, 20, 30), np.uint8))
    os.utime(changed, ns=(stamp + 10**9, stamp + 10**9))
    x3, _ = datasets.load_split("lol-time", "train", root)
    assert cache.stat().st_mtime_ns != stamp
    assert x3[7 * 3 + 1].tolist() == np.broadcast_to(np.array([30, 20, 10])[:, None, None], (3, 15, 35)).tolist()
    val_x, val_y = datasets.load_split("lol-time", "val", root)
    assert len(val_x) == 62 and val_y.tolist() == list(range(62))


def test_real_tarball_layout_loads_without_conversion(root):
    source = load_config("lol-time")["data"]["source"]  # lol/timer-minutes
    (root / source).parent.mkdir(parents=True)
    os.replace(root / "lol-time", root / source)
    assert datasets.dataset_dir("lol-time", root) == root / source
    x, y = datasets.load_split("lol-time", "test", root)
    assert x.shape == (62, 3, 15, 35) and y.tolist() == list(range(62))


def test_noscope_split_loads(tmp_path):
    result = subprocess.run([sys.executable, "-m", "datasets.noscope_synth", "night", "--build", "--frames", "800",
                             "--size", "96x72", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    x, y = datasets.load_split("night", "train", tmp_path)
    assert x.shape == (100, 3, 50, 50) and set(y.tolist()) == {0, 1}
    assert datasets.normalization("night") is None


def test_normalization_from_config():
    mean, std = datasets.normalization("cifar10")
    assert mean == (0.4914, 0.4822, 0.4465) and std == (0.2023, 0.1994, 0.2010)
    assert datasets.normalization("V1") is None


def one_line_error(call, *fragments):
    with pytest.raises(UserError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_dataset_names_the_command(tmp_path):
    one_line_error(lambda: datasets.load_split("lol-gold2", "train", tmp_path),
                   str(tmp_path / "lol-gold2"), "python -m datasets.game_synth lol-gold2")
    one_line_error(lambda: datasets.load_split("night", "val", tmp_path),
                   "python -m datasets.noscope_synth night --build")
    one_line_error(lambda: datasets.load_split("lol-time", "dev", tmp_path), "unknown split")


def test_cifar_absent_says_where_to_put_it(tmp_path):
    one_line_error(lambda: datasets.load_split("cifar10", "train", tmp_path), "cifar-10-batches-py", str(tmp_path))
    one_line_error(lambda: datasets.load_split("cifar100", "test", tmp_path), "cifar-100-python")


def test_broken_folders_give_one_clear_error(root):
    train = root / "lol-time" / "train"
    for png in (train / "33").iterdir():
        png.unlink()
    one_line_error(lambda: datasets.load_split("lol-time", "train", root), str(train / "33"), "no images")
    shutil.rmtree(train / "33")
    (train / "61").mkdir()
    one_line_error(lambda: datasets.load_split("lol-time", "train", root), str(train), "missing: ['33']",
                   "unexpected: ['61']")
    val = root / "lol-time" / "val"
    (val / "05" / "0.png").write_bytes(b"not a png")
    one_line_error(lambda: datasets.load_split("lol-time", "val", root), str(val / "05" / "0.png"), "not a readable image")
    test = root / "lol-time" / "test"
    cv2.imwrite(str(test / "05" / "0.png"), np.zeros((16, 35, 3), np.uint8))
    one_line_error(lambda: datasets.load_split("lol-time", "test", root), str(test / "05" / "0.png"), "16x35")
