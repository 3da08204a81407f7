"""Synthetic game-scraping datasets V1-V6 (appendix A.1, figures 1-6).

Each image is a crop of a game HUD: text that follows its task's template ("14.7k" for the
League of Legends gold count, "10,438" for Sea of Thieves coins, ...) drawn with a random
font, size, position, colour and HUD effect (outline, shadow, glow, gradient fill) over a
random background, then shrunk to the model's input size. Only the part of the text a task
reads is fixed by the class; the rest varies, so a model has to find the right characters.
Class "other" is the same region with no text (background and clutter only).

    python -m datasets.game_synth lol-gold1 --scale 0.01 --out data/
    python -m datasets.game_synth all

writes <out>/<name>/{train,val,test}/<class>/<n>.png (the layout of the original tarball),
labels.csv (split,class,file,text) and examples.png (a labelled grid of validation images).
"""
import argparse
import csv
import hashlib
import importlib.util
import json
import math
import multiprocessing
import os
import re
import zlib
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from datasets import SPLITS
from models import load_config, model_names
from util.args import nonnegative_int, positive_float, positive_int
from util.errors import UserError, cli_main
from util.files import check_output_dir, check_replaceable, claim_dir, remove_owned_dir, writing

OTHER = "other"
SUPERSAMPLE = 3  # draw at 3x the output size, then INTER_AREA down: anti-aliased HUD text
GENERATOR_ID = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------
# Text templates, keyed by the original dataset (config data.source). `cls` is the class
# name, which is exactly the characters the task reads; everything else is random.

def _digits(rng, n):
    return "".join(str(d) for d in rng.integers(0, 10, n))


def _gold_integer(rng):
    """The integer part of a gold count: one digit or a zero-padded pair, as in V5's classes."""
    return _digits(rng, 2 if rng.random() < 0.8 else 1)


TEMPLATES = {
    # V1: "XY.Zk", reads Z.
    "lol/goldnumber-fraction": lambda cls, rng: f"{_gold_integer(rng)}.{cls}k",
    # V2: squads left, the number alone.
    "apex/squad_count_v2": lambda cls, rng: cls,
    # V3: "10,438" coins, reads the thousands.
    "sot/coin_count-digits_3_4-v2": lambda cls, rng: f"{cls},{_digits(rng, 3)}",
    # V4: the arena's 25-minute countdown "M:SS" / "MM:SS" (minutes not zero-padded), reads M.
    "sot/timer3": lambda cls, rng: f"{cls}:{int(rng.integers(0, 60)):02d}",
    # V5: "XY.Zk" / "Y.Zk", reads the integer part ("7" and "07" are different classes).
    "lol/goldnumber-int": lambda cls, rng: f"{cls}.{_digits(rng, 1)}k",
    # V6: the game clock "MM:SS", reads MM.
    "lol/timer-minutes": lambda cls, rng: f"{cls}:{int(rng.integers(0, 60)):02d}",
}


def text_for(cfg, cls, rng):
    """The string drawn for class `cls` of task `cfg` ("" for "other")."""
    if cls == OTHER:
        return ""
    source = cfg["data"]["source"]
    if source not in TEMPLATES:
        raise UserError(f"no text template for {cfg['name']} (data.source {source!r}); "
                        f"add one to TEMPLATES in {Path(__file__).name}")
    return TEMPLATES[source](cls, rng)


# ----------------------------------------------------------------------------------------
# Backgrounds: float32 RGB arrays of shape (h, w, 3) in [0, 255].

def _color(rng, lo=0, hi=255):
    return rng.uniform(lo, hi, 3).astype(np.float32)


def _dark_or_any(rng):
    """Most HUD regions sit on dark panels or scenery; some on bright scenery."""
    return _color(rng, 0, 90) if rng.random() < 0.6 else _color(rng, 0, 255)


def _bg_flat(rng, h, w):
    return np.broadcast_to(_dark_or_any(rng), (h, w, 3)).copy()


def _bg_gradient(rng, h, w):
    """A two-colour gradient at a random angle: a 2x2 patch of corner colours, bilinearly
    enlarged (linear across the middle, flat near the edges; cheap)."""
    angle = rng.uniform(0, 2 * math.pi)
    t = np.array([[0, math.cos(angle)], [math.sin(angle), math.cos(angle) + math.sin(angle)]], np.float32)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = _dark_or_any(rng), _dark_or_any(rng)
    corners = c0 + (c1 - c0) * t[..., None]
    return cv2.resize(corners, (w, h), interpolation=cv2.INTER_LINEAR)


def _bg_noise(rng, h, w):
    img = _bg_flat(rng, h, w) + rng.normal(0, rng.uniform(5, 30), (h, w, 1)).astype(np.float32)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0))


def _bg_texture(rng, h, w):
    """Value noise (a coarse random grid, smoothly upsampled) mixing two colours."""
    gh, gw = int(rng.integers(2, 8)), int(rng.integers(3, 14))
    if rng.random() < 0.3:  # brushed metal / wood grain: stretched along one axis
        gh, gw = (gh * 6, 2) if rng.random() < 0.5 else (2, gw * 6)
    field = cv2.resize(rng.random((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    field += rng.normal(0, 0.08, (h, w)).astype(np.float32)
    c0, c1 = _dark_or_any(rng), _dark_or_any(rng)
    return c0 + (c1 - c0) * np.clip(field, 0, 1)[..., None]


def _bg_shapes(rng, h, w):
    """Out-of-focus game scenery: random blobs and boxes, blurred."""
    img = _bg_flat(rng, h, w)
    for _ in range(int(rng.integers(3, 12))):
        color = tuple(float(c) for c in _color(rng))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(h // 6 + 1, h + 1))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), size, color, -1)
        else:
            cv2.rectangle(img, (cx - size, cy - size // 2), (cx + size, cy + size // 2), color, -1)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(h / 20, h / 5))


def _bg_panel(rng, h, w):
    """A HUD plate: dark gradient with a thin bright border or bevel partly in view."""
    img = _bg_gradient(rng, h, w) * 0.5
    color = tuple(float(c) for c in _color(rng, 60, 220))
    t = int(rng.integers(1, SUPERSAMPLE + 1))
    x0, y0 = int(rng.integers(-w // 4, w // 6)), int(rng.integers(-h // 3, h // 6))
    x1, y1 = int(rng.integers(w * 5 // 6, w * 5 // 4)), int(rng.integers(h * 5 // 6, h * 4 // 3))
    cv2.rectangle(img, (x0, y0), (x1, y1), color, t, cv2.LINE_AA)
    return img


BACKGROUNDS = (_bg_flat, _bg_gradient, _bg_noise, _bg_texture, _bg_shapes, _bg_panel)


def _clutter(rng, img):
    """Faint non-text marks that HUD crops pick up: separators, icon edges, specks."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        color = tuple(float(c) for c in _color(rng))
        alpha = rng.uniform(0.15, 0.45)
        layer = img.copy()
        kind = rng.random()
        if kind < 0.4:
            x = int(rng.integers(0, w))
            cv2.line(layer, (x, 0), (x + int(rng.integers(-w // 8, w // 8 + 1)), h), color,
                     int(rng.integers(1, SUPERSAMPLE + 1)), cv2.LINE_AA)
        elif kind < 0.7:
            y = int(rng.integers(0, h))
            cv2.line(layer, (0, y), (w, y), color, int(rng.integers(1, SUPERSAMPLE + 1)), cv2.LINE_AA)
        else:
            cv2.circle(layer, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                       int(rng.integers(2, h // 3 + 3)), color, -1, cv2.LINE_AA)
        img = cv2.addWeighted(layer, alpha, img, 1 - alpha, 0)
    return img


# ----------------------------------------------------------------------------------------
# Text: a coverage mask (float32 in [0, 1]) per layer, composited over the background.

HERSHEY_FACES = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX,
                 cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL,
                 cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX)
# TrueType faces that ship with matplotlib (a requirement), so every machine has them.
TTF_DIR = Path(importlib.util.find_spec("matplotlib").origin).parent / "mpl-data" / "fonts" / "ttf"
TTF_FACES = ("DejaVuSans-Bold.ttf", "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono-Bold.ttf",
             "DejaVuSerif-Bold.ttf", "DejaVuSans.ttf", "STIXGeneralBol.ttf", "cmss10.ttf")
# HUD palette (RGB): LoL gold, white, greys, pale yellow, cyan, orange, red, green.
TEXT_COLORS = np.array([(240, 200, 110), (255, 255, 255), (215, 215, 215), (170, 170, 175),
                        (255, 240, 160), (120, 220, 255), (255, 160, 60), (235, 70, 60),
                        (120, 235, 120)], np.float32)


def _luma(rgb):
    return float(np.dot(rgb, (0.299, 0.587, 0.114)))


def _text_box(rng, tw, th, h, w):
    """Random top-left corner for a tw x th text box inside h x w (position jitter)."""
    return int(rng.integers(0, max(1, w - tw))), int(rng.integers(0, max(1, h - th)))


def _hershey_masks(rng, text, h, w, pad):
    """Fill and outline masks (uint8) of `text` in a random Hershey face, size and place."""
    face = int(HERSHEY_FACES[rng.integers(len(HERSHEY_FACES))]) | (cv2.FONT_ITALIC if rng.random() < 0.25 else 0)
    thickness = max(1, int(round(rng.uniform(0.8, 1.6) * SUPERSAMPLE)))  # 0.8-1.6 output pixels
    (tw, th), _ = cv2.getTextSize(text, face, 1.0, thickness)
    scale = min(rng.uniform(0.5, 0.8) * h / th, rng.uniform(0.75, 0.95) * w / tw)
    (tw, th), _ = cv2.getTextSize(text, face, scale, thickness)
    x, y = _text_box(rng, tw + thickness, th + thickness, h, w)
    fill, outline = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    cv2.putText(fill, text, (x, y + th), face, scale, 255, thickness, cv2.LINE_AA)
    cv2.putText(outline, text, (x, y + th), face, scale, 255, thickness + 2 * pad, cv2.LINE_AA)
    return fill, outline


@lru_cache(maxsize=None)
def _truetype(file, size):
    return ImageFont.truetype(str(TTF_DIR / file), size)


def _truetype_masks(rng, text, h, w, pad):
    """Fill and outline masks (uint8) of `text` in a random TrueType face (bold HUD-like fonts)."""
    file = TTF_FACES[rng.integers(len(TTF_FACES))]
    bold = int(rng.integers(0, SUPERSAMPLE // 2 + 1))  # extra stroke in the fill colour
    left, top, right, bottom = _truetype(file, 100).getbbox(text, stroke_width=bold + pad)
    size = int(100 * min(rng.uniform(0.55, 0.85) * h / (bottom - top), rng.uniform(0.75, 0.95) * w / (right - left)))
    font = _truetype(file, max(size, 6))
    left, top, right, bottom = font.getbbox(text, stroke_width=bold + pad)
    x, y = _text_box(rng, right - left, bottom - top, h, w)
    canvas = Image.new("L", (w, h))
    ImageDraw.Draw(canvas).text((x - left, y - top), text, fill=255, font=font, stroke_width=bold)
    fill = np.asarray(canvas)
    # The outline is the fill grown by `pad` (a dilation costs less than a second render).
    return fill, cv2.dilate(fill, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pad + 1, 2 * pad + 1)))


def _over(img, mask, color):
    """`color` painted over `img` with coverage `mask` (cv2.blendLinear: 3x faster than numpy)."""
    paint = np.empty_like(img)
    paint[:] = color
    return cv2.blendLinear(img, paint, 1 - mask, mask)


def _draw_text(rng, img, text):
    """`text` composited over `img` in a random font, colour and HUD style, always readable."""
    h, w = img.shape[:2]
    pad = int(rng.integers(1, SUPERSAMPLE + 1))  # outline width, at most one output pixel
    draw = _truetype_masks if rng.random() < 0.5 else _hershey_masks
    fill, outline = (m.astype(np.float32) / 255 for m in draw(rng, text, h, w, pad))
    color = TEXT_COLORS[rng.integers(len(TEXT_COLORS))] if rng.random() < 0.8 else _color(rng, 60, 255)
    dark, light = rng.uniform(0, 50, 3).astype(np.float32), rng.uniform(200, 255, 3).astype(np.float32)
    background = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[fill > 0.25]
    effect = rng.random()
    edge = dark if _luma(color) > 110 else light
    # A HUD keeps its text readable: text that barely stands out from the background under
    # it gets an outline that does.
    if np.percentile(np.abs(background - _luma(color)), 25) < 60:
        effect, edge = 0.0, (dark if background.mean() > 110 else light)
        outline = np.maximum(outline, cv2.dilate(fill, np.ones((3, 3), np.uint8), iterations=SUPERSAMPLE // 2))
    if effect < 0.35:  # outline
        img = _over(img, outline, edge)
    elif effect < 0.55:  # drop shadow
        d = int(rng.integers(1, 2 * SUPERSAMPLE + 1))
        shadow = np.roll(np.roll(outline, d, 0), d, 1)
        img = _over(img, cv2.GaussianBlur(shadow, (0, 0), SUPERSAMPLE / 2), edge)
    elif effect < 0.65:  # glow
        img = _over(img, cv2.GaussianBlur(outline, (0, 0), SUPERSAMPLE) * 0.8, color * 0.6)
    if rng.random() < 0.3:  # vertical gradient fill, like LoL's gold numbers
        top = np.clip(color * rng.uniform(1.0, 1.3), 0, 255)
        bottom = color * rng.uniform(0.55, 0.85)
        paint = top + (bottom - top) * np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        return cv2.blendLinear(img, np.ascontiguousarray(np.broadcast_to(paint, img.shape)), 1 - fill, fill)
    return _over(img, fill, color)


# ----------------------------------------------------------------------------------------
# One image.

def render(cfg, cls, rng):
    """(uint8 RGB image of the config's size, rendered text) for class `cls`."""
    h, w = cfg["input"]["height"], cfg["input"]["width"]
    text = text_for(cfg, cls, rng)
    H, W = h * SUPERSAMPLE, w * SUPERSAMPLE
    img = BACKGROUNDS[rng.integers(len(BACKGROUNDS))](rng, H, W).astype(np.float32)
    if rng.random() < 0.5:
        img = _clutter(rng, img)
    if text:
        img = _draw_text(rng, img, text)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.3:  # sensor/stream noise
        img = img + rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:  # the frames come from compressed video streams
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 95))])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img, text


def image_rng(seed, name, split, class_index, index):
    """The generator of one image: depends on nothing but its identity, so worker order is moot."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), SPLITS.index(split), class_index, index])


# ----------------------------------------------------------------------------------------
# A whole dataset.

def split_counts(cfg, scale, eval_scale=None):
    """Images per class of each split: config data.per_class times `scale` for train and
    `eval_scale` (default: `scale`) for val and test, at least 1."""
    eval_scale = scale if eval_scale is None else eval_scale
    return {s: max(1, int(round(cfg["data"]["per_class"][s] * (scale if s == "train" else eval_scale))))
            for s in SPLITS}


def _render_chunk(job):
    """Worker: render and write a list of images; return their (split, class, file, text) rows."""
    cv2.setNumThreads(1)
    name, seed, folder, items = job
    cfg = load_config(name)
    rows = []
    for split, class_index, index in items:
        cls = cfg["classes"][class_index]
        img, text = render(cfg, cls, image_rng(seed, name, split, class_index, index))
        rel = f"{split}/{cls}/{index}.png"
        ok, buf = cv2.imencode(".png", img[..., ::-1])  # RGB -> BGR for OpenCV
        Path(folder, rel).write_bytes(buf.tobytes())
        rows.append((split, cls, rel, text))
    return rows


def _params(cfg, scale, seed, eval_scale=None):
    return {"name": cfg["name"], "scale": scale, "seed": seed, "generator": GENERATOR_ID,
            "per_class": split_counts(cfg, scale, eval_scale)}


OWNER = "datasets.game_synth"


def _owned_files(cfg):
    """Whether a path relative to a dataset folder is one this generator (or the split cache
    of image_folder.py) writes: a folder holding anything else is not replaced without --force."""
    pattern = re.compile(r"(labels\.csv|examples\.png|\.complete|(%s)\.cache\.pt(\.tmp\d+)?|(%s)/(%s)/\d+\.png)" % (
        "|".join(SPLITS), "|".join(SPLITS), "|".join(map(re.escape, cfg["classes"]))))
    return lambda relative: pattern.fullmatch(relative) is not None


def _read_marker(marker):
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):  # missing or damaged: the folder is not finished
        return None


def generate(name, out_root, scale=1.0, seed=0, workers=None, force=False, eval_scale=None):
    """Write the synthetic dataset `name` to <out_root>/<name> and return that folder.

    A finished folder holds a `.complete` marker with the parameters; a call with the same
    parameters returns at once, anything else regenerates into a fresh folder (built under
    <name>.partial and swapped in at the end, so an interrupted run never looks finished).
    Only folders this generator wrote are replaced (see util/files.py); `force` replaces
    any folder in the way.
    """
    cfg = load_config(name)
    if cfg["family"] != "game":
        raise UserError(f"{cfg['name']} is not a game-scraping task; synthetic data exists for "
                        f"{', '.join(game_task_names())}")
    if not (0 < scale < math.inf):
        raise UserError(f"--scale must be a positive number, got {scale}")
    if eval_scale is not None and not (0 < eval_scale < math.inf):
        raise UserError(f"--eval-scale must be a positive number, got {eval_scale}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    out_root = Path(out_root)
    final = out_root / cfg["name"]
    params = _params(cfg, scale, seed, eval_scale)
    if _read_marker(final / ".complete") == params:
        return final
    check_output_dir(out_root)
    owned = _owned_files(cfg)
    check_replaceable(final, OWNER, owned, force)
    partial = out_root / f"{cfg['name']}.partial"
    remove_owned_dir(partial, OWNER, owned, force)
    claim_dir(partial, OWNER)
    counts = split_counts(cfg, scale, eval_scale)
    items = []
    for split in SPLITS:
        for class_index, cls in enumerate(cfg["classes"]):
            (partial / split / cls).mkdir(parents=True)
            items += [(split, class_index, i) for i in range(counts[split])]
    workers = workers or os.cpu_count()
    chunk = max(16, min(256, len(items) // (8 * workers)))  # big enough to amortize, small enough to balance
    jobs = [(cfg["name"], seed, str(partial), items[i:i + chunk]) for i in range(0, len(items), chunk)]
    rows = []
    with writing(f"the dataset {final}", remove_on_failure=partial):
        # Workers come from a fork server, not from this process: one forked while another
        # thread here (tqdm's monitor, after the first task's bar) holds a lock starts with that
        # lock held forever, and the pool hangs. The server imports this module once.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["datasets.game_synth"])
        pool = context.Pool(workers)
        with pool, tqdm(total=len(items), desc=f"{cfg['name']}", unit="img") as bar:
            for chunk_rows in pool.imap(_render_chunk, jobs):
                rows += chunk_rows
                bar.update(len(chunk_rows))
        with open(partial / "labels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["split", "class", "file", "text"])
            writer.writerows(rows)
        write_examples(partial, cfg, seed)
        (partial / ".complete").write_text(json.dumps(params, indent=1) + "\n")
    remove_owned_dir(final, OWNER, owned, force)
    os.replace(partial, final)
    return final


def write_examples(folder, cfg, seed, max_tiles=40, grid_width=1000):
    """examples.png: random validation images (up to 4 per class; a random subset of the
    classes, "other" always among them, when there are more than `max_tiles`), enlarged with
    nearest neighbour so the pixels show, class name under each."""
    rng = np.random.default_rng([seed, 1])
    classes = cfg["classes"]
    if len(classes) > max_tiles:
        keep = set(rng.choice(len(classes) - 1, max_tiles - 1, replace=False)) | {classes.index(OTHER)}
        classes = [c for i, c in enumerate(classes) if i in keep]
    per_class = max(1, min(4, max_tiles // len(classes)))
    h, w = cfg["input"]["height"], cfg["input"]["width"]
    zoom = max(2, round(66 / h))
    tiles = []
    for cls in classes:
        files = sorted(Path(folder, "val", cls).glob("*.png"))
        for path in rng.choice(files, min(per_class, len(files)), replace=False):
            img = cv2.resize(cv2.imread(str(path)), (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST)
            label = np.full((18, w * zoom, 3), 255, np.uint8)
            cv2.putText(label, cls, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            tiles.append(cv2.copyMakeBorder(np.vstack([img, label]), 3, 3, 3, 3, cv2.BORDER_CONSTANT,
                                            value=(255, 255, 255)))
    cols = max(1, min(len(tiles), grid_width // tiles[0].shape[1]))
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % cols)
    grid = np.vstack([np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)])
    ok, buf = cv2.imencode(".png", grid)
    Path(folder, "examples.png").write_bytes(buf.tobytes())


def game_task_names():
    return [n for n in model_names() if load_config(n)["family"] == "game"]


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m datasets.game_synth",
        description="Generate a synthetic game-scraping dataset (V1-V6) as an image folder.")
    parser.add_argument("name", help="task name or id (e.g. lol-gold1 or V1), or 'all'")
    parser.add_argument("--scale", type=positive_float, default=1.0,
                        help="multiply the per-class image counts of the config (default 1)")
    parser.add_argument("--eval-scale", type=positive_float, default=None,
                        help="multiply the val and test counts instead (default: --scale); 1 keeps them "
                             "whole, so that accuracies of small training sets are still measured on enough images")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default="data", help="output root (default data/)")
    parser.add_argument("--workers", type=positive_int, default=None, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true",
                        help="replace OUT/<name> even if this generator did not write it (deletes its files)")
    args = parser.parse_args(argv)
    names = game_task_names() if args.name == "all" else [args.name]
    for name in names:
        folder = generate(name, args.out, args.scale, args.seed, args.workers, args.force, args.eval_scale)
        print(f"{folder}: {sum(1 for _ in folder.glob('*/*/*.png'))} images, examples in {folder / 'examples.png'}")


if __name__ == "__main__":
    main()
