"""The synthetic game-scraping datasets (V1-V6): layout, counts, labels, determinism, CLI."""
import csv
import hashlib
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets import game_synth
from models import load_config, model_names
from util.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SCALE = 0.002  # V1: 20 training images per class, 1 val, 1 test
GAME = [n for n in model_names() if load_config(n)["family"] == "game"]

# How to read each original dataset's text, written independently of the generator:
# a pattern for the whole string and the group holding the characters the task reads.
READS = {
    "lol/goldnumber-fraction": (r"(\d{1,2})\.(\d)k", 2),
    "lol/goldnumber-int": (r"(\d{1,2})\.(\d)k", 1),
    "apex/squad_count_v2": (r"(\d{1,2})", 1),
    "sot/coin_count-digits_3_4-v2": (r"(\d{1,2}),(\d{3})", 1),
    "sot/timer3": (r"(\d{1,2}):([0-5]\d)", 1),
    "lol/timer-minutes": (r"(\d{2}):([0-5]\d)", 1),
}


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def file_hashes(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*/*/*.png"))}


@pytest.fixture(scope="module")
def all_tasks(tmp_path_factory):
    """Every game task at a tiny scale, written through the CLI's 'all'."""
    out = tmp_path_factory.mktemp("game")
    result = run("-m", "datasets.game_synth", "all", "--scale", str(SCALE), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("name", GAME)
def test_layout_resolution_and_counts(all_tasks, name):
    cfg = load_config(name)
    folder = all_tasks / name
    assert json.loads((folder / ".complete").read_text())["scale"] == SCALE
    counts = game_synth.split_counts(cfg, SCALE)
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (folder / split).iterdir()) == sorted(cfg["classes"])
        for cls in cfg["classes"]:
            files = sorted((folder / split / cls).glob("*.png"))
            assert len(files) == counts[split] >= 1
            img = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
            assert img.shape == (cfg["input"]["height"], cfg["input"]["width"], 3)
    grid = cv2.imread(str(folder / "examples.png"))
    assert grid is not None and grid.shape[1] > 2 * cfg["input"]["width"]


@pytest.mark.parametrize("name", GAME)
def test_rendered_text_matches_the_class(all_tasks, name):
    cfg = load_config(name)
    pattern, group = READS[cfg["data"]["source"]]
    folder = all_tasks / name
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(list(folder.glob("*/*/*.png")))
    unread = defaultdict(set)  # the characters the task does not read, per class
    for row in rows:
        assert (folder / row["file"]).is_file()
        assert Path(row["file"]).parts[:2] == (row["split"], row["class"])
        if row["class"] == "other":
            assert row["text"] == "", row  # blank region: no text at all
            continue
        match = re.fullmatch(pattern, row["text"])
        assert match and match.group(group) == row["class"], row
        unread[row["class"]].add(match.group(0)[:match.start(group)] + match.group(0)[match.end(group):])
    if re.compile(pattern).groups > 1:
        assert max(len(v) for v in unread.values()) > 1  # the unread part varies


def stroke_energy(image):
    """How much text-like ink an RGB or BGR image holds: the 90th percentile of the absolute
    Laplacian of its grey levels (thin high-contrast strokes score ~100+, blurred scenery ~10-20)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype("float32")
    return float(np.percentile(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), 90))


@pytest.mark.parametrize("name", GAME)
def test_the_pixels_of_text_classes_hold_strokes_and_those_of_other_do_not(all_tasks, name):
    """Read back from the PNG files: images of the text classes are full of strokes, those of
    "other" (background and clutter only) are not (medians apart by over 3x; measured 4-30x)."""
    files = list((all_tasks / name).glob("*/*/*.png"))
    other = [stroke_energy(cv2.imread(str(p))) for p in files if p.parent.name == "other"]
    text = [stroke_energy(cv2.imread(str(p))) for p in files if p.parent.name != "other"]
    assert len(other) >= 4 and np.median(other) < np.median(text) / 3, (np.median(other), np.median(text))


def test_other_draws_no_text():
    """50 renders each: "other" returns no text and draws no strokes; class "3" draws them."""
    cfg = load_config("lol-gold1")
    other, three = [], []
    for i in range(50):
        img, text = game_synth.render(cfg, "other", game_synth.image_rng(0, "lol-gold1", "val", 10, i))
        assert text == "" and img.shape == (22, 52, 3)
        other.append(stroke_energy(img))
        img, text = game_synth.render(cfg, "3", game_synth.image_rng(0, "lol-gold1", "val", 3, i))
        assert re.fullmatch(r"\d{1,2}\.3k", text)
        three.append(stroke_energy(img))
    assert np.median(other) < np.median(three) / 3 and np.percentile(other, 90) < np.median(three)


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = game_synth.generate("apex-count", tmp_path / "a", scale=0.005, seed=0, workers=2)
    b = game_synth.generate("apex-count", tmp_path / "b", scale=0.005, seed=0, workers=1)
    c = game_synth.generate("apex-count", tmp_path / "c", scale=0.005, seed=1, workers=2)
    ha, hb, hc = file_hashes(a), file_hashes(b), file_hashes(c)
    assert ha == hb  # worker count and order do not matter
    assert (a / "labels.csv").read_bytes() == (b / "labels.csv").read_bytes()
    assert ha.keys() == hc.keys()
    assert sum(ha[k] != hc[k] for k in ha) > 0.9 * len(ha)
    assert len(set(ha.values())) == len(ha)  # no two images alike


def test_rerun_skips_and_changed_or_interrupted_runs_regenerate(tmp_path):
    folder = game_synth.generate("lol-time", tmp_path, scale=0.002, seed=0)
    marker = folder / ".complete"
    stamp = marker.stat().st_mtime_ns
    assert game_synth.generate("lol-time", tmp_path, scale=0.002, seed=0) == folder
    assert marker.stat().st_mtime_ns == stamp  # same parameters: nothing rewritten
    game_synth.generate("lol-time", tmp_path, scale=0.003, seed=0)
    assert len(list((folder / "train" / "00").glob("*.png"))) == 3
    # An interrupted run leaves no marker: the next run rebuilds from scratch.
    (folder / "train" / "00" / "999.png").write_bytes(b"")
    marker.unlink()
    game_synth.generate("lol-time", tmp_path, scale=0.003, seed=0)
    assert not (folder / "train" / "00" / "999.png").exists() and marker.is_file()
    assert not (tmp_path / "lol-time.partial").exists()


def test_bad_seed_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--seed must be >= 0"):
        game_synth.generate("V2", tmp_path, scale=0.01, seed=-1)


@pytest.mark.parametrize("args, message", [
    (["no-such-task"], "unknown dataset/model"),
    (["cifar10"], "not a game-scraping task"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    result = run("-m", "datasets.game_synth", *args, "--out", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
