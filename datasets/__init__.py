"""Datasets of every task as uint8 image tensors: `load_split(name, split, data_root)`.

Game-scraping (V1-V6) and NoScope (N1-N4) splits are image folders (`image_folder.py`);
CIFAR-10/100 are read from their python batch files (`cifar.py`). Synthetic sources live in
`game_synth.py` (V1-V6) and `noscope_synth.py` (N1-N4); the NoScope splitter in `noscope.py`.
"""
from pathlib import Path

from models import family_of, load_config
from util.errors import UserError

from .cifar import load_cifar
from .image_folder import load_image_folder

SPLITS = ("train", "val", "test")


def _load_image_folder(cfg, split, data_root):
    folder = dataset_dir(cfg["name"], data_root) / split
    return load_image_folder(folder, cfg["classes"], cfg["input"]["height"], cfg["input"]["width"])


# How each data format of a model family (models.Family.data_format) is read: (cfg, split, data_root).
LOADERS = {"image_folder": _load_image_folder, "cifar": load_cifar}


def dataset_dir(name, data_root="data"):
    """The folder holding the dataset `name` under `data_root`; a UserError says how to make it."""
    cfg = load_config(name)
    family, root = family_of(cfg), Path(data_root)
    candidates = [root / folder for folder in family.data_folders(cfg)]
    for folder in candidates:
        if folder.is_dir():
            return folder
    make = family.make_data.format(name=cfg["name"], root=root, folder=candidates[0],
                                   source=cfg["data"].get("source", ""))
    raise UserError(f"no data for {cfg['name']} at {candidates[0]}; create it with: {make}")


def load_split(name, split, data_root="data"):
    """(images uint8 (N, C, H, W), labels int64 (N,)) of split "train", "val" or "test".

    Labels index config["classes"]. Image folders are decoded once and cached next to the split.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    cfg = load_config(name)
    return LOADERS[family_of(cfg).data_format](cfg, split, data_root)


def normalization(name):
    """(mean, std) per channel for inputs scaled to [0, 1], or None if the recipe uses none."""
    data = load_config(name)["data"]
    if "mean" in data and "std" in data:
        return tuple(data["mean"]), tuple(data["std"])
    return None


def class_counts(name, data_root, max_per_class=None):
    """Training images per class that a job of `name` uses."""
    _, labels = load_split(name, "train", data_root)
    counts = labels.bincount(minlength=len(load_config(name)["classes"])).tolist()
    return [min(c, max_per_class or c) for c in counts]


__all__ = ["SPLITS", "dataset_dir", "load_split", "normalization", "class_counts"]
