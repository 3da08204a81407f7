"""CIFAR-10/100 through torchvision (no download), split into train / val / test.

The original recipe holds out `data.val_images` training images as a validation set, chosen
with a fixed seed; "train" is the rest of the training set and "test" the official test set.
"""
from pathlib import Path

import numpy as np
import torch

from util.errors import UserError

HOLDOUT_SEED = 0


def load_cifar(cfg, split, data_root):
    """(uint8 images (N, 3, 32, 32), int64 labels (N,)) of a CIFAR split."""
    import torchvision  # slow to import; only CIFAR needs it

    source = cfg["data"]["source"]
    folder = Path(data_root) / source
    dataset_class = {"cifar-10-batches-py": torchvision.datasets.CIFAR10,
                     "cifar-100-python": torchvision.datasets.CIFAR100}[source]
    try:
        dataset = dataset_class(root=str(data_root), train=split != "test", download=False)
    except RuntimeError:
        raise UserError(f"{cfg['name']}: {folder} is missing or incomplete; put the extracted "
                        f"'{source}' folder (from the CIFAR python tarball) under {data_root}/") from None
    if list(dataset.classes) != cfg["classes"]:
        raise UserError(f"{folder}: class names differ from config/{cfg['name']}.json")
    images = torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    if split == "test":
        return images, labels
    held_out = torch.randperm(len(labels), generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    held_out = held_out[:cfg["data"]["val_images"]]
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    is_val[held_out] = True
    keep = is_val if split == "val" else ~is_val
    return images[keep], labels[keep]
