"""CIFAR-10/100 from the python-version batch files, split into train / val / test.

The files are read as the CIFAR page documents them (pickled dicts: `data`, N x 3072 uint8
rows of red, green, blue 32x32 planes; `labels`, or `fine_labels` for CIFAR-100; class names
in `batches.meta` / `meta`), with no checksum of the official files, so that any copy in
that format loads (torchvision refuses all but the official bytes).
The original recipe holds out `data.val_images` training images as a validation set, chosen
with a fixed seed; "train" is the rest of the training set and "test" the official test set.
"""
import pickle
from pathlib import Path

import numpy as np
import torch

from util.errors import UserError

HOLDOUT_SEED = 0
# source folder: (training files, test files, meta file, class names key, labels key)
LAYOUTS = {
    "cifar-10-batches-py": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                            "label_names", "labels"),
    "cifar-100-python": (["train"], ["test"], "meta", "fine_label_names", "fine_labels"),
}


def _unpickle(path, cfg, source, data_root):
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="latin1")  # the official files were pickled by Python 2
    except FileNotFoundError:
        raise UserError(f"{cfg['name']}: {path} is missing; put the extracted '{source}' folder "
                        f"(from the CIFAR python tarball) under {data_root}/") from None
    except Exception as err:  # a truncated or foreign file: name it
        raise UserError(f"cannot read {path}: {type(err).__name__} ({err}); replace it with the file "
                        f"from the CIFAR python tarball") from None


def read_batches(cfg, train, data_root):
    """(uint8 images (N, 3, 32, 32), int64 labels (N,)) of the training or the test files."""
    source = cfg["data"]["source"]
    folder = Path(data_root) / source
    train_files, test_files, meta_file, names_key, labels_key = LAYOUTS[source]
    meta = _unpickle(folder / meta_file, cfg, source, data_root)
    if list(meta.get(names_key, [])) != cfg["classes"]:
        raise UserError(f"{folder / meta_file}: class names differ from config/{cfg['name']}.json")
    images, labels = [], []
    for file in train_files if train else test_files:
        batch = _unpickle(folder / file, cfg, source, data_root)
        data = np.asarray(batch.get("data", []), dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch.get(labels_key, [])) != len(data):
            raise UserError(f"{folder / file} is not a CIFAR batch (N x 3072 uint8 `data` and N `{labels_key}`)")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(batch[labels_key])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def load_cifar(cfg, split, data_root):
    """(uint8 images (N, 3, 32, 32), int64 labels (N,)) of a CIFAR split."""
    images, labels = read_batches(cfg, split != "test", data_root)
    if split == "test":
        return images, labels
    held_out = torch.randperm(len(labels), generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    held_out = held_out[:cfg["data"]["val_images"]]
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    is_val[held_out] = True
    keep = is_val if split == "val" else ~is_val
    return images[keep], labels[keep]
