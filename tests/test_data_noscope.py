"""NoScope pipeline: synthetic video -> scripts/noscope_video_save.py -> scripts/noscope_split.py."""
import csv
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import pytest

from datasets.noscope_synth import synthesize
from models import load_config
from scripts import noscope_split, noscope_video_save

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 400  # 8 chunks of 50 frames, 16 of 25


def run(*args):
    """A script as a user runs it (a fresh interpreter; slow, so only for the main paths)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def call(main, args, capsys):
    """A script's main() in this process: (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noscope")
    return synthesize("night", folder / "night.mp4", folder / "night.csv", frames=FRAMES, size=(96, 72), seed=3)


@pytest.fixture(scope="module")
def frames(video, tmp_path_factory):
    out = tmp_path_factory.mktemp("frames") / "night-frames"
    result = run("-m", "scripts.noscope_video_save", str(video[0]), str(out))
    assert result.returncode == 0, result.stderr
    return out


def objects_per_frame(labels_csv):
    seen = defaultdict(set)
    with open(labels_csv, newline="") as f:
        for row in csv.DictReader(f):
            seen[int(row["frame"])].add(row["object_name"])
    return seen


def test_synthetic_video_reads_back_with_labels(video):
    cap = cv2.VideoCapture(str(video[0]))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == FRAMES
    with open(video[1], newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["frame", "object_name", "confidence", "xmin", "ymin", "xmax", "ymax"]
        rows = list(reader)
    for row in rows:
        assert 0 <= int(row["xmin"]) < int(row["xmax"]) < 96 and 0 <= int(row["ymin"]) < int(row["ymax"]) < 72
    seen = objects_per_frame(video[1])
    cars = sum("car" in s for s in seen.values())
    assert 0.2 * FRAMES < cars < 0.8 * FRAMES  # the object comes and goes
    assert any(s and "car" not in s for s in seen.values())  # distractors alone in some frames
    assert len(seen) < FRAMES  # and some frames are empty


def label_rows(labels_csv):
    """{frame: sorted (object, box) rows}, the detector's confidence left out."""
    rows = defaultdict(list)
    with open(labels_csv, newline="") as f:
        for row in csv.DictReader(f):
            rows[int(row["frame"])].append((row["object_name"], row["xmin"], row["ymin"], row["xmax"], row["ymax"]))
    return {frame: sorted(r) for frame, r in rows.items()}


def test_strided_video_films_every_stride_th_step_of_the_continuous_one(tmp_path):
    stride, frames = 6, 40
    strided = synthesize("night", tmp_path / "s.mp4", tmp_path / "s.csv", frames=frames, size=(64, 48), seed=5,
                         stride=stride)
    again = synthesize("night", tmp_path / "a.mp4", tmp_path / "a.csv", frames=frames, size=(64, 48), seed=5,
                       stride=stride)
    continuous = synthesize("night", tmp_path / "c.mp4", tmp_path / "c.csv", frames=frames * stride, size=(64, 48),
                            seed=5, stride=1)
    assert strided[1].read_bytes() == again[1].read_bytes()  # deterministic from the seed
    filmed, every = label_rows(strided[1]), label_rows(continuous[1])
    assert filmed and filmed == {f // stride: rows for f, rows in every.items() if f % stride == stride - 1}


def car_crossings(labels_csv, frames):
    """Cars that come into view: frames where more cars are labelled than in the frame before."""
    rows = label_rows(labels_csv)
    cars = [sum(o == "car" for o, *_ in rows.get(frame, ())) for frame in range(frames)]
    return sum(max(now - before, 0) for before, now in zip([0, *cars], cars))


def test_default_stride_films_many_independent_crossings(video, tmp_path):
    continuous = synthesize("night", tmp_path / "c.mp4", tmp_path / "c.csv", frames=FRAMES, size=(96, 72), seed=3,
                            stride=1)
    # A car takes about 75 steps to cross and one arrives every 157 or so: 400 continuous
    # frames show two or three, the 400 frames of the default stride dozens.
    assert car_crossings(continuous[1], FRAMES) <= 4
    assert car_crossings(video[1], FRAMES) >= 30


def test_video_save_writes_every_frame_50x50_nearest(video, frames):
    written = sorted(int(p.stem) for p in frames.glob("*.png"))
    assert written == list(range(FRAMES))
    cap = cv2.VideoCapture(str(video[0]))
    for index in range(12):
        ok, frame = cap.read()
        if index in (0, 11):
            expected = cv2.resize(frame, (50, 50), interpolation=cv2.INTER_NEAREST)
            assert (cv2.imread(str(frames / f"{index}.png")) == expected).all()


def test_video_save_resumes_and_honours_the_range(video, frames, tmp_path, capsys):
    for index in (5, 77):
        (frames / f"{index}.png").unlink()
    code, out, _ = call(noscope_video_save.main, [str(video[0]), str(frames)], capsys)
    assert code == 0 and "wrote 2 new frames" in out
    part = tmp_path / "part"
    assert call(noscope_video_save.main, [str(video[0]), str(part), "--start", "30", "--end", "40"], capsys)[0] == 0
    assert sorted(int(p.stem) for p in part.glob("*.png")) == list(range(30, 40))


@pytest.mark.parametrize("name", ["night", "taipei"])
def test_split_takes_the_configured_chunks_and_labels(video, frames, tmp_path, name):
    cfg = load_config(name)
    out = tmp_path / name
    result = run("-m", "scripts.noscope_split", name, str(out), "--infile", str(video[1]), "--indir", str(frames),
                 "--print_stats", "--link")
    assert result.returncode == 0, result.stderr
    per_chunk = FRAMES // cfg["data"]["chunks"]
    seen = objects_per_frame(video[1])
    for split in ("train", "val", "test"):
        k = cfg["data"]["split"][split]
        expected = set(range((k - 1) * per_chunk, k * per_chunk))
        by_label = {label: {int(p.stem) for p in (out / split / label).glob("*.png")} for label in "01"}
        assert by_label["0"] | by_label["1"] == expected and not by_label["0"] & by_label["1"]
        assert by_label["1"] == {f for f in expected if cfg["data"]["object"] in seen[f]}
        positives = len(by_label["1"])
        assert f"{split}: {per_chunk} frames, {positives} positive" in result.stdout
    sample = next((out / "train").glob("*/*.png"))
    assert sample.stat().st_ino == (frames / sample.name).stat().st_ino  # --link: hard links


def test_split_rerun_skips_and_copies_by_default(video, frames, tmp_path, capsys):
    out = tmp_path / "night"
    args = ["night", str(out), "--infile", str(video[1]), "--indir", str(frames)]
    assert call(noscope_split.main, args, capsys)[0] == 0
    sample = next((out / "val").glob("*/*.png"))
    assert sample.stat().st_ino != (frames / sample.name).stat().st_ino
    stamp = (out / ".complete").stat().st_mtime_ns
    assert call(noscope_split.main, args, capsys)[0] == 0 and (out / ".complete").stat().st_mtime_ns == stamp


def test_split_errors_are_one_line(video, frames, tmp_path, capsys):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("frame,label\n1,car\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    cases = [
        (["night", str(tmp_path / "o2"), "--infile", str(bad_csv), "--indir", str(frames)], "missing column"),
        (["night", str(tmp_path / "taken"), "--infile", str(video[1]), "--indir", str(frames)], "was not written by datasets.noscope"),
        (["cifar10", str(tmp_path / "o3"), "--infile", str(video[1]), "--indir", str(frames)], "invalid choice"),
    ]
    for args, message in cases:
        code, _, err = call(noscope_split.main, args, capsys)
        assert code == 2 and message in err.splitlines()[-1], err
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
    # As a user sees it: exit code 2, one line, no traceback.
    result = run("-m", "scripts.noscope_split", "night", str(tmp_path / "o1"), "--infile", str(video[1]),
                 "--indir", str(tmp_path / "none"))
    assert result.returncode == 2 and result.stderr.startswith("error: frames folder") and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    code, _, err = call(noscope_video_save.main, [str(tmp_path / "missing.mp4"), str(tmp_path / "f")], capsys)
    assert code == 2 and err == f"error: video {tmp_path / 'missing.mp4'} does not exist\n"
