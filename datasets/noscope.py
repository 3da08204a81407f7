"""NoScope datasets (N1-N4): video -> 50x50 frames -> contiguous train/val/test chunks.

`save_video_frames` writes every frame of a video as `<frame>.png` (0-based index, the label
CSV's `frame` column), resized to 50x50 with nearest neighbour like the original system.
`split_frames` cuts the sorted frames into `data.chunks` contiguous chunks (numbered from 1),
takes the chunks named by `data.split` and writes `<out>/{train,val,test}/{0,1}/<frame>.png`;
a frame is 1 when any label row for it names the task's object (`data.object`).
"""
import csv
import json
import os
import re
import shutil
from pathlib import Path

import cv2
from tqdm import tqdm

from datasets import SPLITS
from models import load_config
from util.errors import UserError
from util.files import (atomic_write_bytes, check_output_dir, check_replaceable, claim_dir, content_digest,
                        remove_owned_dir)

FRAME_SIZE = 50


def _write_png_atomic(path, img):
    ok, buf = cv2.imencode(".png", img)
    atomic_write_bytes(path, buf.tobytes())


def save_video_frames(video, out_dir, start=0, end=None, size=FRAME_SIZE):
    """Write frames [start, end) of `video` to out_dir/<frame>.png at size x size; returns the
    number written. Frames already on disk are skipped, so an interrupted run resumes."""
    if not Path(video).is_file():
        raise UserError(f"video {video} does not exist")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise UserError(f"{video}: OpenCV cannot open this video (is it a video file?)")
    if start < 0 or (end is not None and end <= start):
        raise UserError(f"empty frame range --start {start} --end {end}")
    out_dir = check_output_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # may be approximate: only for the progress bar
    stop = end if end is not None else float("inf")
    total = min(stop, count) - start if count > 0 else None
    written, index = 0, 0
    with tqdm(total=total, desc="frames", unit="frame") as bar:
        while index < stop:
            path = out_dir / f"{index}.png"
            if index < start or path.is_file():  # grab() skips the decode of unneeded frames
                if not cap.grab():
                    break
                bar.update(index >= start)
            else:
                ok, frame = cap.read()
                if not ok:
                    break
                _write_png_atomic(path, cv2.resize(frame, (size, size), interpolation=cv2.INTER_NEAREST))
                written += 1
                bar.update()
            index += 1
    cap.release()
    if index <= start:
        raise UserError(f"{video}: no frames at or after frame {start}")
    return written


def positive_frames(labels_csv, object_name):
    """Frame indices with at least one label row naming `object_name`."""
    path = Path(labels_csv)
    if not path.is_file():
        raise UserError(f"label file {path} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"frame", "object_name"} - set(reader.fieldnames or ())
        if missing:
            raise UserError(f"{path}: missing column(s) {sorted(missing)}; NoScope label CSVs have "
                            f"frame,object_name,confidence,xmin,ymin,xmax,ymax")
        try:
            return {int(float(row["frame"])) for row in reader if row["object_name"] == object_name}
        except ValueError as err:
            raise UserError(f"{path}: a frame number is not a number ({err})") from None


def list_frames(frames_dir):
    """Sorted frame indices of the `<frame>.png` files in `frames_dir`."""
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise UserError(f"frames folder {frames_dir} does not exist; write it with `python -m scripts.noscope_video_save`")
    frames = sorted(int(p.stem) for p in frames_dir.glob("*.png") if p.stem.isdigit())
    if not frames:
        raise UserError(f"{frames_dir} holds no <frame>.png files; write them with `python -m scripts.noscope_video_save`")
    return frames


def chunk(frames, chunks, number):
    """Chunk `number` (1-based) of `chunks` contiguous, near-equal pieces of the list `frames`."""
    n = len(frames)
    return frames[(number - 1) * n // chunks: number * n // chunks]


SPLIT_OWNER = "datasets.noscope"
# What a split folder holds: our files and the split caches of image_folder.py.
_SPLIT_FILES = re.compile(r"\.complete|(%s)\.cache\.pt(\.tmp\d+)?|(%s)/[01]/\d+\.png" % ("|".join(SPLITS), "|".join(SPLITS)))


def _split_owns(relative):
    return _SPLIT_FILES.fullmatch(relative) is not None


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):  # missing or damaged: not finished
        return None


def split_frames(name, out_dir, labels_csv, frames_dir, link=False, force=False):
    """Write the train/val/test image folders of NoScope task `name`; return per-split stats
    {split: (frames, positives)}. Built under <out_dir>.partial and swapped in when done; a
    `.complete` marker with the same inputs makes a rerun a no-op. Only a split folder this
    function wrote is replaced (util/files.py); `force` replaces any folder in the way."""
    cfg = load_config(name)
    if cfg["family"] != "noscope":
        raise UserError(f"{cfg['name']} is not a NoScope task")
    out_dir = Path(out_dir)
    frames = list_frames(frames_dir)
    positives = positive_frames(labels_csv, cfg["data"]["object"])
    chunks = cfg["data"]["chunks"]
    if len(frames) < chunks:
        raise UserError(f"{frames_dir} has {len(frames)} frames, fewer than the {chunks} chunks of {cfg['name']}")
    # What the split depends on: the labels and the frames by content (frames can be many
    # and large, so of each its first and last 4 KiB: an edit in place changes the digest).
    params = {"name": cfg["name"], "labels": str(Path(labels_csv).resolve()),
              "labels_digest": content_digest([labels_csv], block=1 << 30),
              "frames": str(Path(frames_dir).resolve()),
              "frames_digest": content_digest((Path(frames_dir) / f"{f}.png" for f in frames), block=4096),
              "first": frames[0], "last": frames[-1], "count": len(frames), "chunks": chunks,
              "split": cfg["data"]["split"], "object": cfg["data"]["object"]}
    marker = _read_json(out_dir / ".complete")
    if isinstance(marker, dict) and marker.get("params") == params and "stats" in marker:
        return {s: tuple(v) for s, v in marker["stats"].items()}
    check_output_dir(out_dir.parent)
    check_replaceable(out_dir, SPLIT_OWNER, _split_owns, force)
    partial = out_dir.with_name(out_dir.name + ".partial")
    remove_owned_dir(partial, SPLIT_OWNER, _split_owns, force)
    claim_dir(partial, SPLIT_OWNER)
    place = os.link if link else shutil.copyfile
    stats, jobs = {}, []
    for split in SPLITS:
        selected = chunk(frames, chunks, cfg["data"]["split"][split])
        for label in ("0", "1"):
            (partial / split / label).mkdir(parents=True)
        jobs += [(f, split, str(int(f in positives))) for f in selected]
        stats[split] = (len(selected), sum(f in positives for f in selected))
    try:
        for frame, split, label in tqdm(jobs, desc=f"{cfg['name']} split", unit="frame"):
            place(Path(frames_dir) / f"{frame}.png", partial / split / label / f"{frame}.png")
    except OSError as err:
        hint = " (--link needs the output on the same filesystem as the frames)" if link else ""
        raise UserError(f"cannot write {partial}: {err.strerror}{hint}") from None
    (partial / ".complete").write_text(json.dumps({"params": params, "stats": stats}, indent=1) + "\n")
    remove_owned_dir(out_dir, SPLIT_OWNER, _split_owns, force)
    os.replace(partial, out_dir)
    return stats


def format_stats(stats):
    return "\n".join(f"{split}: {n} frames, {pos} positive ({pos / max(n, 1):.1%})"
                     for split, (n, pos) in stats.items())
