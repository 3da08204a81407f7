"""A synthetic stand-in for the NoScope videos (N1-N4): a fixed camera over a street.

People walk along the pavement; cars, buses and trucks drive along two lanes, entering,
crossing and leaving the view, with stretches where nothing is in sight. Every kind appears,
so the task's object (config data.object) has distractors of the other kinds. Alongside the
video comes a label CSV in NoScope's format: frame,object_name,confidence,xmin,ymin,xmax,ymax
(one row per visible object per frame, like the detector output NoScope used).

The camera films one frame every STRIDE steps of the street (--stride). A car takes about 75
steps to cross, so each 1000-frame chunk of the split holds some 180 independent car
crossings, as a chunk of a real hours-long video does; a continuous video (--stride 1) holds
about 6, few enough for a model to memorize.

    python -m datasets.noscope_synth night --out data/noscope-synth        # video + CSV only
    python -m datasets.noscope_synth night --build --out data/             # the whole chain
    python -m datasets.noscope_synth all --build                           # N1-N4 into data/

--build runs synthesis -> scripts/noscope_video_save.py's frame dump -> scripts/noscope_split.py's
split, leaving the image folders in <out>/<name>/ and the video, CSV and frames in
<out>/noscope-synth/.
"""
import argparse
import csv
import hashlib
import json
import os
import re
import zlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models import load_config, model_names
from util.args import nonnegative_int, positive_int
from util.errors import UserError, cli_main
from util.files import atomic_path, atomic_write_json, check_output_dir, check_replaceable, claim_dir, remove_owned_dir

from .noscope import format_stats, save_video_frames, split_frames

KINDS = ("person", "car", "bus", "truck")
# Length in frame widths, speed in frame widths per step (x1000), and how often a kind is
# sent across: the task's object busier than the distractors, each of which is labelled
# about a tenth of the time (at 0.3, buses or trucks are in view in two thirds of the frames
# and the quick N2 model took a quarter of those without a car for one). Overlapping crossings
# make the share of positive frames somewhat lower (45-55% with the defaults).
LENGTH = {"person": 0.1, "car": 0.3, "bus": 0.55, "truck": 0.45}
SPEED = {"person": (5, 9), "car": (9, 18), "bus": (6, 11), "truck": (7, 13)}
TARGET_PRESENCE, DISTRACTOR_PRESENCE = 0.5, 0.1
FOURCC, VIDEO_SUFFIX = "mp4v", ".mp4"
# A label row once the object shows VISIBLE of a typical length of its kind (in its lane): like a
# detector, the label depends on what is in the frame. (A share of the object's own length would
# hang on the part outside: the same sliver of a long car and of a short one labelled apart.)
VISIBLE = 0.4
FRAMES_PER_CHUNK = 1000  # so every split has 1000 frames
STRIDE = 30  # steps of the street per video frame (see the top of this file)
GENERATOR_ID = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]


def _rgb(rng, lo=0, hi=255):
    return tuple(int(c) for c in rng.integers(lo, hi, 3))


class Street:
    """The fixed scene: sky, buildings, pavement, a two-lane road; geometry in pixels."""

    def __init__(self, rng, width, height):
        self.w, self.h = width, height
        self.horizon = int(height * rng.uniform(0.28, 0.38))
        self.pavement = int(height * rng.uniform(0.56, 0.62))  # where people walk
        self.lanes = (int(height * 0.74), int(height * 0.94))  # wheel lines of the two lanes
        light = rng.uniform(0.35, 1.0)  # dusk to daylight
        img = np.zeros((height, width, 3), np.float32)
        sky_top, sky_low = np.array(_rgb(rng, 60, 200)), np.array(_rgb(rng, 120, 255))
        t = np.linspace(0, 1, self.horizon)[:, None, None]
        img[:self.horizon] = sky_top + (sky_low - sky_top) * t
        x = 0
        while x < width:  # a skyline of buildings with lit windows
            bw, bh = int(rng.integers(width // 12, width // 5)), int(rng.integers(self.horizon // 3, self.horizon))
            wall = _rgb(rng, 40, 200)
            cv2.rectangle(img, (x, self.horizon - bh), (x + bw, self.pavement), wall, -1)
            for wy in range(self.horizon - bh + 6, self.pavement - 10, 12):
                for wx in range(x + 4, x + bw - 6, 10):
                    cv2.rectangle(img, (wx, wy), (wx + 4, wy + 5), _rgb(rng, 150, 255) if rng.random() < 0.5 else (40, 40, 50), -1)
            x += bw + int(rng.integers(0, width // 20))
        cv2.rectangle(img, (0, self.pavement - height // 30), (width, self.lanes[0] - height // 10), _rgb(rng, 120, 190), -1)
        road = _rgb(rng, 50, 110)
        cv2.rectangle(img, (0, self.lanes[0] - height // 10), (width, height), road, -1)
        noise = cv2.resize(rng.random((height // 8, width // 8)).astype(np.float32), (width, height))
        img *= (0.85 + 0.3 * noise)[..., None]
        lane_mark = (self.lanes[0] + self.lanes[1]) // 2 - height // 20
        for mx in range(0, width, width // 8):
            cv2.rectangle(img, (mx, lane_mark), (mx + width // 16, lane_mark + 2), (230, 230, 220), -1)
        self.background = np.clip(img * light, 0, 255)
        self.light = light


def _draw_vehicle(img, kind, x0, base, length, color, facing_right, light):
    """A side view of a car, bus or truck with its wheels on `base`; returns its box."""
    L = length
    dark, glass = (25, 25, 25), tuple(int(c * light) for c in (150, 185, 210))
    color = tuple(int(c * light) for c in color)

    def along(f):
        """x of the point a fraction f along the vehicle, from its rear (0) to its front (1)."""
        return x0 + (f if facing_right else 1 - f) * L

    def xs(a, b):
        """Pixel span between fractions a and b, whichever way the vehicle faces."""
        return int(min(along(a), along(b))), int(max(along(a), along(b)))

    if kind == "car":
        top, wheel_x, r = base - 0.52 * L, (0.2, 0.8), 0.1 * L
        a, b = xs(0.0, 1.0)
        cv2.rectangle(img, (a, int(base - 0.33 * L)), (b, int(base - 0.1 * L)), color, -1, cv2.LINE_AA)
        cabin = np.array([[along(0.22), base - 0.33 * L], [along(0.32), top], [along(0.68), top],
                          [along(0.82), base - 0.33 * L]], np.int32)
        cv2.fillPoly(img, [cabin], color, cv2.LINE_AA)
        for wa, wb in ((0.35, 0.49), (0.52, 0.66)):
            a, b = xs(wa, wb)
            cv2.rectangle(img, (a, int(top + 0.04 * L)), (b, int(base - 0.35 * L)), glass, -1)
    elif kind == "bus":
        top, wheel_x, r = base - 0.4 * L, (0.15, 0.82), 0.065 * L
        a, b = xs(0.0, 1.0)
        cv2.rectangle(img, (a, int(top)), (b, int(base - 0.06 * L)), color, -1, cv2.LINE_AA)
        for f in np.arange(0.05, 0.9, 0.1):
            a, b = xs(f, f + 0.07)
            cv2.rectangle(img, (a, int(top + 0.05 * L)), (b, int(top + 0.17 * L)), glass, -1)
        a, b = xs(0.9, 0.97)
        cv2.rectangle(img, (a, int(top + 0.05 * L)), (b, int(base - 0.1 * L)), glass, -1)  # door
    else:  # truck: a cab and a box trailer
        top, wheel_x, r = base - 0.38 * L, (0.1, 0.62, 0.82), 0.07 * L
        a, b = xs(0.0, 0.72)
        cv2.rectangle(img, (a, int(top)), (b, int(base - 0.08 * L)), (int(215 * light),) * 3, -1)
        a, b = xs(0.75, 1.0)
        cv2.rectangle(img, (a, int(base - 0.28 * L)), (b, int(base - 0.08 * L)), color, -1, cv2.LINE_AA)
        a, b = xs(0.85, 0.97)
        cv2.rectangle(img, (a, int(base - 0.25 * L)), (b, int(base - 0.17 * L)), glass, -1)
    for f in wheel_x:
        cv2.circle(img, (int(along(f)), int(base - r)), max(1, int(r)), dark, -1, cv2.LINE_AA)
        cv2.circle(img, (int(along(f)), int(base - r)), max(1, int(r * 0.45)), (130, 130, 130), -1, cv2.LINE_AA)
    lamp = xs(0.97, 1.0)
    cv2.rectangle(img, (lamp[0], int(base - 0.25 * L)), (lamp[1], int(base - 0.2 * L)), (255, 240, 170), -1)
    return x0, top, x0 + L, base


def _draw_person(img, x0, base, height, shirt, trousers, skin, phase, light):
    """A walking person seen from the side; returns the box."""
    h = height
    cx = x0 + 0.2 * h
    shirt, trousers, skin = (tuple(int(c * light) for c in col) for col in (shirt, trousers, skin))
    hip, shoulder = base - 0.48 * h, base - 0.8 * h
    swing = 0.18 * h * np.sin(phase)
    thick = max(1, int(0.11 * h))
    for s in (swing, -swing):
        cv2.line(img, (int(cx), int(hip)), (int(cx + s), int(base)), trousers, thick, cv2.LINE_AA)
        cv2.line(img, (int(cx), int(shoulder + 0.05 * h)), (int(cx - 0.7 * s), int(hip - 0.02 * h)), skin,
                 max(1, thick // 2), cv2.LINE_AA)
    cv2.rectangle(img, (int(cx - 0.13 * h), int(shoulder)), (int(cx + 0.13 * h), int(hip)), shirt, -1, cv2.LINE_AA)
    cv2.circle(img, (int(cx), int(shoulder - 0.09 * h)), max(1, int(0.09 * h)), skin, -1, cv2.LINE_AA)
    return cx - 0.2 * h, base - h, cx + 0.2 * h, base


class Mover:
    """One object crossing the view at constant speed."""

    def __init__(self, rng, kind, street):
        self.kind = kind
        w = street.w
        self.right = bool(rng.random() < 0.5)
        if kind == "person":
            typical = street.h * 0.39 * 0.4
            self.height = street.h * rng.uniform(0.36, 0.42)
            self.length = self.height * 0.4
            self.base = street.pavement + rng.uniform(-0.02, 0.04) * street.h
            self.colors = (_rgb(rng), _rgb(rng, 20, 120), _rgb(rng, 90, 230))
        else:
            lane = 1 if self.right else 0  # right-hand traffic, the far lane smaller
            typical = w * LENGTH[kind] * (1.0 if lane else 0.8)
            self.length = typical * rng.uniform(0.85, 1.15)
            self.base = street.lanes[lane]
            self.colors = (_rgb(rng, 30, 255),)
        self.min_visible = VISIBLE * typical  # pixels in view for a label row
        self.speed = w * rng.uniform(*SPEED[kind]) / 1000
        self.x = -self.length if self.right else float(w)
        self.phase = rng.uniform(0, 2 * np.pi)

    def step(self):
        self.x += self.speed if self.right else -self.speed
        self.phase += self.speed * 0.25

    def gone(self, width):
        return self.x > width if self.right else self.x < -self.length

    def draw(self, img, light):
        if self.kind == "person":
            return _draw_person(img, self.x, self.base, self.height, *self.colors, self.phase, light)
        return _draw_vehicle(img, self.kind, self.x, self.base, self.length, self.colors[0], self.right, light)


def _mean_gap(kind, presence, width):
    """Mean steps between arrivals so that a kind is labelled about `presence` of the time:
    the steps it is labelled in (from VISIBLE in view on entry to VISIBLE in view on exit, a
    distance of width + (1 - 2 VISIBLE) length) over the share of time it should be labelled."""
    mean_speed = width * sum(SPEED[kind]) / 2000
    return width * (1 + (1 - 2 * VISIBLE) * LENGTH[kind]) / mean_speed / presence


def _noscope_config(name):
    cfg = load_config(name)
    if cfg["family"] != "noscope":
        raise UserError(f"{cfg['name']} is not a NoScope task")
    return cfg


def _frame_count(cfg, frames):
    chunks = cfg["data"]["chunks"]
    frames = FRAMES_PER_CHUNK * chunks if frames is None else frames
    if frames < chunks:
        raise UserError(f"--frames must be at least {chunks} (one per chunk of {cfg['name']}), got {frames}")
    return frames


OWNER = "datasets.noscope_synth"


def _frame_files(relative):
    return re.fullmatch(r"\d+\.png", relative) is not None


def _read_marker(path):
    """The parameters in a marker this generator wrote, else None (missing, damaged, foreign)."""
    try:
        marker = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "generator" in marker else None


def synthesize(name, video_path, labels_path, frames=None, size=(320, 240), fps=30, seed=0, force=False,
               stride=STRIDE):
    """Write the synthetic video of NoScope task `name` and its label CSV (atomically), and next
    to the video a marker (<video>.json) with the parameters. `frames` defaults to
    FRAMES_PER_CHUNK per chunk of the task's split; one frame is kept of every `stride` steps
    of the street. A video or CSV in the way that no marker claims is the user's: a UserError,
    unless `force`."""
    cfg = _noscope_config(name)
    frames = _frame_count(cfg, frames)
    video_path, labels_path = Path(video_path), Path(labels_path)
    marker = video_path.with_suffix(".json")
    if not force and _read_marker(marker) is None:
        for path in (video_path, labels_path, marker):
            if path.exists():
                raise UserError(f"{path} exists and was not written by {OWNER}: move it away, choose another "
                                f"--out, or pass --force to replace it")
    params = {"frames": frames, "size": list(size), "fps": fps, "seed": seed, "stride": stride,
              "generator": GENERATOR_ID}
    target = cfg["data"]["object"]
    if target not in KINDS:
        raise UserError(f"{cfg['name']}: no synthetic drawing for object {target!r}; known: {', '.join(KINDS)}")
    width, height = size
    rng = np.random.default_rng([seed, zlib.crc32(cfg["name"].encode())])
    # The street's own draws (scene, arrivals, objects) apart from each filmed frame's (sensor
    # noise, detector confidence): every stride films the same street, frame for frame.
    frame_rng = np.random.default_rng([seed, zlib.crc32(cfg["name"].encode()), 1])
    street = Street(rng, width, height)
    gaps = {k: _mean_gap(k, TARGET_PRESENCE if k == target else DISTRACTOR_PRESENCE, width) for k in KINDS}
    # Arrivals are spread more evenly than a Poisson process so that every chunk of the video
    # gets a similar share of positives.
    arrival = {k: rng.uniform(0, gaps[k]) for k in KINDS}
    video_path.parent.mkdir(parents=True, exist_ok=True)
    labels_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {**params, "finished": False})  # ours, but not these parameters yet
    tmp_video = video_path.with_name(f".{video_path.stem}.tmp{os.getpid()}{video_path.suffix}")
    try:
        rows = _render_video(tmp_video, (rng, frame_rng), street, gaps, arrival, cfg, frames, fps, stride)
        with atomic_path(labels_path) as tmp_labels, open(tmp_labels, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["frame", "object_name", "confidence", "xmin", "ymin", "xmax", "ymax"])
            out.writerows(rows)
        os.replace(tmp_video, video_path)
    finally:
        tmp_video.unlink(missing_ok=True)
    atomic_write_json(marker, params)
    return video_path, labels_path


def _advance(rng, street, movers, gaps, arrival, time):
    """The street one step on from `time`: new arrivals enter, everything moves, the gone leave."""
    for kind in KINDS:
        if time >= arrival[kind]:
            movers.append(Mover(rng, kind, street))
            arrival[kind] += gaps[kind] * rng.uniform(0.5, 1.5)
    for mover in movers:
        mover.step()
    movers[:] = [m for m in movers if not m.gone(street.w)]


def _render_video(path, rngs, street, gaps, arrival, cfg, frames, fps, stride):
    """Draw the street video into `path`, one frame every `stride` steps; returns its label rows.
    `rngs`: the street's generator and the filmed frames'."""
    (rng, frame_rng), (width, height) = rngs, (street.w, street.h)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
    if not writer.isOpened():
        raise UserError(f"OpenCV cannot write {FOURCC} video to {path}")
    rows, movers = [], []
    for frame in tqdm(range(frames), desc=f"{cfg['name']} video", unit="frame"):
        for time in range(frame * stride, (frame + 1) * stride):  # only the last step is filmed
            _advance(rng, street, movers, gaps, arrival, time)
        img = street.background.copy()
        # Far things first, so nearer objects cover them.
        for mover in sorted(movers, key=lambda m: m.base):
            x0, y0, x1, y1 = mover.draw(img, street.light)
            visible = min(x1, width) - max(x0, 0)
            if visible >= mover.min_visible:  # a detector would see it
                rows.append((frame, mover.kind, round(float(frame_rng.uniform(0.5, 1.0)), 3),
                             int(max(x0, 0)), int(max(y0, 0)), int(min(x1, width - 1)), int(min(y1, height - 1))))
        img *= 1 + 0.03 * np.sin(time / 1500)  # slow lighting drift
        img += frame_rng.normal(0, 2, img.shape).astype(np.float32)  # sensor noise
        writer.write(np.clip(img, 0, 255).astype(np.uint8)[..., ::-1].copy())
    writer.release()
    return rows


def build(name, out_root="data", frames=None, size=(320, 240), fps=30, seed=0, force=False, stride=STRIDE):
    """Synthetic video -> 50x50 frames -> train/val/test split in <out_root>/<name>; returns
    that folder and the split stats. Each step is skipped when its output is already there;
    only files this generator wrote are replaced, unless `force`."""
    cfg = _noscope_config(name)
    frames = _frame_count(cfg, frames)
    raw = Path(out_root) / "noscope-synth"
    video, labels, frames_dir = raw / f"{cfg['name']}{VIDEO_SUFFIX}", raw / f"{cfg['name']}.csv", raw / f"{cfg['name']}-frames"
    params = {"frames": frames, "size": list(size), "fps": fps, "seed": seed, "stride": stride,
              "generator": GENERATOR_ID}
    if not (_read_marker(video.with_suffix(".json")) == params and video.is_file() and labels.is_file()):
        check_replaceable(frames_dir, OWNER, _frame_files, force)
        synthesize(cfg["name"], video, labels, frames, size, fps, seed, force, stride)
        remove_owned_dir(frames_dir, OWNER, _frame_files, force)  # frames of an older video
    if not frames_dir.exists():
        claim_dir(frames_dir, OWNER)
    save_video_frames(video, frames_dir)
    out = Path(out_root) / cfg["name"]
    return out, split_frames(cfg["name"], out, labels, frames_dir, link=True, force=force)


def _size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 320x240, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError("the video must be at least 32x32")
    return w, h


@cli_main
def main(argv=None):
    tasks = [n for n in model_names() if load_config(n)["family"] == "noscope"]
    parser = argparse.ArgumentParser(
        prog="python -m datasets.noscope_synth",
        description="Synthesize a NoScope-style street video and its label CSV (optionally build the split).")
    parser.add_argument("name", help=f"NoScope task ({', '.join(tasks)}, or its id), or 'all'")
    parser.add_argument("--frames", type=positive_int, default=None,
                        help=f"video length in frames (default {FRAMES_PER_CHUNK} per chunk of the task's split)")
    parser.add_argument("--size", type=_size, default=(320, 240), help="video size WxH (default 320x240)")
    parser.add_argument("--fps", type=positive_int, default=30, help="frames per second (default 30)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--stride", type=positive_int, default=STRIDE,
                        help=f"steps of the street per video frame (default {STRIDE}: every chunk spans many "
                             f"independent crossings; 1: a continuous video)")
    parser.add_argument("--out", default="data", help="output folder (default data/)")
    parser.add_argument("--build", action="store_true",
                        help="also dump frames and split them: image folders in OUT/<name>/")
    parser.add_argument("--force", action="store_true",
                        help="replace files and folders in the way even if this generator did not write them")
    args = parser.parse_args(argv)
    names = tasks if args.name == "all" else [load_config(args.name)["name"]]
    check_output_dir(args.out)
    for name in names:
        if args.build:
            folder, stats = build(name, args.out, args.frames, args.size, args.fps, args.seed, args.force,
                                  args.stride)
            print(f"{folder}:\n{format_stats(stats)}")
        else:
            video, labels = synthesize(name, Path(args.out) / f"{name}{VIDEO_SUFFIX}", Path(args.out) / f"{name}.csv",
                                       args.frames, args.size, args.fps, args.seed, args.force, args.stride)
            print(f"wrote {video} and {labels}")


if __name__ == "__main__":
    main()
