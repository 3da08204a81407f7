"""Training data on the training device: each split as uint8 images kept on the device and
turned into float batches there, CIFAR augmentation, and the grouping of images into folded
inputs.

Grouping (the original FoldedCNNs repository): training batches are a fresh random order of
the (active-class) training images, cut into batches that are a multiple of f; the < f images
left over at the end of an epoch sit that epoch out. Validation and test are shuffled once
with a fixed seed (`EVAL_GROUPING_SEED`) and grouped in that order; when the image count is
not a multiple of f, the last group is padded with the first images of the order and the
padding's predictions are discarded, so every image is scored exactly once.
"""
import torch
import torch.nn.functional as F

import datasets
import models
from datasets.curriculum import active_indices
from util.errors import UserError

EVAL_GROUPING_SEED = 0  # the one fixed shuffle of validation and test sets


def random_crop_flip(x, generator, pad=4):
    """CIFAR augmentation on a float batch: zero-pad by `pad`, crop back to H x W at a random
    offset per image, and mirror half of the images; all on x's device, drawn from `generator`."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=x.device)
    flip = torch.rand(n, 1, generator=generator, device=x.device) < 0.5
    rows = dy + torch.arange(h, device=x.device)
    cols = dx + torch.arange(w, device=x.device)
    cols = torch.where(flip, cols.flip(1), cols)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, channel, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


AUGMENTATIONS = {"none": None, "crop_flip": random_crop_flip}


class DeviceSplit:
    """One split as uint8 images and int64 labels on the training device."""

    def __init__(self, images, labels, device, normalization=None):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.labels_cpu = labels.cpu()
        self.mean = self.std = None
        if normalization is not None:
            shape = (1, -1, 1, 1)
            self.mean = torch.tensor(normalization[0], dtype=torch.float32, device=device).view(shape)
            self.std = torch.tensor(normalization[1], dtype=torch.float32, device=device).view(shape)

    def __len__(self):
        return len(self.labels_cpu)

    def batch(self, positions, augment=None, generator=None):
        """(float images in [0, 1], augmented then normalized; labels) of `positions`."""
        positions = positions.to(self.images.device, non_blocking=True)
        x = self.images[positions].float().div_(255)
        if augment is not None:
            x = augment(x, generator)
        if self.mean is not None:
            x = x.sub_(self.mean).div_(self.std)
        return x, self.labels[positions]


def resize_images(images, size):
    """uint8 (N, C, H, W) images resized to `size`, still uint8, in chunks (bounded memory)."""
    return torch.cat([F.interpolate(chunk.float(), size=tuple(size), mode="bilinear", antialias=True,
                                    align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
                      for chunk in images.split(4096)]) if len(images) else images[:, :, :size[0], :size[1]]


def select_training_images(labels, num_classes, max_per_class=None, fraction=1.0, seed=0):
    """Positions of the training images a job uses: per class a seeded random subset of
    min(max_per_class, round(fraction * n)) images (all of them by default), in split order."""
    if max_per_class is None and fraction == 1.0:
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for cls in range(num_classes):
        positions = torch.nonzero(labels == cls).squeeze(1)
        count = min(len(positions), max(1, round(fraction * len(positions))), max_per_class or len(positions))
        keep.append(positions[torch.randperm(len(positions), generator=generator)[:count]])
    return torch.cat(keep).sort().values


def load_job_data(name, data_root, device, max_per_class=None, fraction=1.0, seed=0, size=None):
    """(train, val, test) DeviceSplits of `name`; train thinned per `max_per_class`/`fraction`;
    every image resized to `size` (H, W) if given (bilinear, antialiased: the compound-scaled
    CNN's lower resolution)."""
    cfg = models.load_config(name)
    expected = models.input_shape(name, 1)
    normalization = datasets.normalization(name)
    splits = []
    for split in datasets.SPLITS:
        images, labels = datasets.load_split(name, split, data_root)
        if tuple(images.shape[1:]) != expected:
            raise UserError(f"{name} {split} images under {data_root} have shape {tuple(images.shape[1:])}, "
                            f"the model expects {expected}; regenerate the data")
        if split == "train":
            keep = select_training_images(labels, len(cfg["classes"]), max_per_class, fraction, seed)
            images, labels = images[keep], labels[keep]
        if size is not None and tuple(size) != expected[1:]:
            images = resize_images(images, size)
        splits.append(DeviceSplit(images, labels, device, normalization))
    return splits


def training_batches(labels, batch_size, fold, generator, num_active=None, device="cpu"):
    """One epoch of training batches (positions into `labels`): the images of the first
    `num_active` classes (all if None) in a fresh random order, cut into batches of
    `batch_size` (a multiple of f). The < f images left at the end sit this epoch out.
    The order is drawn on the CPU (`generator`) and moved to `device` in one copy."""
    pool = torch.arange(len(labels)) if num_active is None else active_indices(labels, num_active)
    order = pool[torch.randperm(len(pool), generator=generator)]
    order = order[: len(order) // fold * fold]
    if len(order) == 0:
        raise UserError(f"fewer than {fold} training images of the active classes: "
                        f"f={fold} needs at least one full group; generate more data")
    return list(order.to(device).split(batch_size))


def evaluation_order(labels, fold, num_active=None, seed=EVAL_GROUPING_SEED):
    """(order, count): the evaluation images of the first `num_active` classes (all if None)
    in one fixed seeded shuffle of the whole split, padded to a multiple of f by repeating its
    first images. Only the predictions of the first `count` positions are scored."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    if num_active is not None:
        order = order[labels[order] < num_active]
    count = len(order)
    pad = (-count) % fold
    if pad and count:
        order = torch.cat([order, order.repeat(pad // count + 1)[:pad]])
    return order, count
