"""Image-folder splits (game-scraping and NoScope) as uint8 tensors.

A split is `<dataset>/<split>/<class>/<image>`: the layout of the original game tarball, of
`python -m datasets.game_synth` and of `python -m scripts.noscope_split`. The first load decodes every
image and packs the split into `<dataset>/<split>.cache.pt`; later loads read that file. The
cache remembers the folder's file list and a digest of the files' contents and is re-packed
when they change (an image edited in place with its size and mtime kept included) or when it
is damaged.
"""
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from util.errors import UserError
from util.files import atomic_torch_save, content_digest

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def _list_images(split_dir, classes):
    """[(path, class index)] sorted like an image folder; checks the class folders first."""
    if not split_dir.is_dir():
        raise UserError(f"{split_dir} does not exist: the dataset has no such split folder")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if found != sorted(classes):
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        raise UserError(f"{split_dir}: class folders do not match the config "
                        f"(missing: {missing or 'none'}, unexpected: {extra or 'none'})")
    files = []
    for index, cls in enumerate(classes):
        images = sorted(e.path for e in os.scandir(split_dir / cls)
                        if not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)
        if not images:
            raise UserError(f"{split_dir / cls} holds no images: every class needs at least one "
                            f"(regenerate the dataset or remove the split)")
        files += [(path, index) for path in images]
    return files


def _fingerprint(files):
    """The split's file list, labels and contents (image files are small: read whole)."""
    labels = hashlib.sha1("".join(f"{path}\0{index}\n" for path, index in files).encode()).hexdigest()
    return f"{labels}-{content_digest(path for path, _ in files)}"


def _decode_all(files, height, width):
    images = np.empty((len(files), height, width, 3), np.uint8)

    def decode(i):
        path = files[i][0]
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{path}: not a readable image (delete or replace the file)")
        if img.shape[:2] != (height, width):
            raise UserError(f"{path}: image is {img.shape[0]}x{img.shape[1]} (HxW) but the config "
                            f"expects {height}x{width}")
        cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=images[i])

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(tqdm(pool.map(decode, range(len(files)), chunksize=256), total=len(files),
                  desc="decoding images", unit="img", leave=False, disable=len(files) < 5000))
    return images


def load_image_folder(split_dir, classes, height, width):
    """(uint8 images (N, 3, H, W), int64 labels (N,)) of one split folder, through the cache."""
    split_dir = Path(split_dir)
    files = _list_images(split_dir, classes)
    fingerprint = _fingerprint(files)
    cache = split_dir.parent / f"{split_dir.name}.cache.pt"
    packed = _read_cache(cache)
    if packed is not None and packed["fingerprint"] == fingerprint:
        return packed["images"], packed["labels"]
    images = torch.from_numpy(_decode_all(files, height, width)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([index for _, index in files], dtype=torch.int64)
    try:
        atomic_torch_save({"fingerprint": fingerprint, "images": images, "labels": labels}, cache)
    except UserError as err:  # a read-only dataset still loads, just without a cache
        print(f"note: {err}; decoding the images every time", file=sys.stderr)
    return images, labels


def _read_cache(cache):
    """The packed split in `cache`, or None if there is none. A damaged cache (truncated, or not
    ours) is derived data: say so and return None, so that the split is decoded and re-packed."""
    if not cache.is_file():
        return None
    try:
        packed = torch.load(cache, weights_only=True)
        if isinstance(packed, dict) and {"fingerprint", "images", "labels"} <= packed.keys():
            return packed
        problem = "not a split cache"
    except Exception as err:  # torch raises many types for a damaged file
        problem = (str(err).strip().splitlines() or [type(err).__name__])[0]
    print(f"note: the cache {cache} is damaged ({problem}); rebuilding it", file=sys.stderr)
    return None
