"""Folding: the input/output layout of a FoldedCNN and the width rule for its layers.

A batch of N images (N, C, H, W) becomes N/f folded inputs (N/f, f*C, H, W): image j of
each group of f consecutive images fills channels [j*C, (j+1)*C). The model emits
(N/f, f*K) logits and logits [j*K, (j+1)*K) belong to image j. Both maps are views.
"""
import math

import torch
import torch.nn as nn

from util.errors import UserError

FOLDS = (1, 2, 3, 4)  # the folds the paper trains and times (section 5)


def check_fold(fold):
    """Return `fold` as an int, or raise a UserError if it is not a whole number >= 1."""
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
        raise UserError(f"fold must be a whole number >= 1, got {fold!r}")
    return fold


def fold_inputs(x: torch.Tensor, fold: int) -> torch.Tensor:
    """(N, C, H, W) images -> (N/f, f*C, H, W) folded inputs; f consecutive images per group."""
    check_fold(fold)
    if x.dim() != 4:
        raise UserError(f"fold_inputs expects a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if n % fold:
        raise UserError(f"a batch of {n} images cannot be folded with f={fold}: "
                        f"use a batch size that is a multiple of {fold}")
    return x.reshape(n // fold, fold * c, h, w)


def unfold_outputs(y: torch.Tensor, fold: int) -> torch.Tensor:
    """(N/f, f*K) logits -> (N, K): block j of each row belongs to image j of that group."""
    check_fold(fold)
    if y.dim() != 2 or y.shape[1] % fold:
        raise UserError(f"unfold_outputs expects (N/f, f*K) logits for f={fold}, "
                        f"got shape {tuple(y.shape)}")
    return y.reshape(y.shape[0] * fold, y.shape[1] // fold)


def width_multiplier(fold, channel_mult=None):
    """How much a FoldedCNN widens its internal layers: sqrt(f) unless overridden."""
    check_fold(fold)
    if channel_mult is None:
        return math.sqrt(fold)
    if channel_mult <= 0:
        raise UserError(f"channel_mult must be positive, got {channel_mult!r}")
    return float(channel_mult)


def folded_width(width, fold, channel_mult=None, align=1):
    """The width rule: int(width * sqrt(f)) (truncated, as the original system did),
    then rounded up to a multiple of `align` (8 avoids GPU tile-quantization slowdowns)."""
    if isinstance(align, bool) or not isinstance(align, int) or align < 1:
        raise UserError(f"align must be a whole number >= 1, got {align!r}")
    widened = int(width * width_multiplier(fold, channel_mult))
    return -(-widened // align) * align


def channel_groups(channels, fold):
    """Which image (0 .. f-1) each of `channels` channels belongs to at the start of
    training with block-diagonal init: f contiguous, near-equal runs (widths such as
    int(32 * sqrt(2)) = 45 need not divide by f). For a folded input this is exactly its
    layout: image j owns channels [j*C, (j+1)*C)."""
    return torch.arange(channels) * fold // channels


def block_masks(model, fold):
    """{weight: 0/1 mask of its shape}: 1 where a conv or linear weight connects a channel
    group to the same image's group. A linear layer after a flatten takes the group of the
    channel each feature came from."""
    masks = {}
    channels = None  # output channels of the last conv/linear seen: the layout of what follows
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            out_features, in_features = module.weight.shape[:2]
            if isinstance(module, nn.Linear) and channels and in_features != channels and in_features % channels == 0:
                source = channel_groups(channels, fold).repeat_interleave(in_features // channels)
            else:
                source = channel_groups(in_features, fold)
            same = channel_groups(out_features, fold)[:, None] == source[None, :]
            masks[module.weight] = same.view(*same.shape, *[1] * (module.weight.dim() - 2)).to(module.weight)
            channels = out_features
    return masks


@torch.no_grad()
def block_diagonal_(model, fold):
    """Initialize a folded model as f independent narrow networks, in place.

    Every conv and linear weight that connects different images' channel groups is zeroed,
    and the rest is scaled by sqrt(f) to keep the activation scale of the full fan-in (each
    unit now sees 1/f of its inputs). f = 1 is unchanged.
    """
    fold = check_fold(fold)
    if fold > 1:
        for weight, mask in block_masks(model, fold).items():
            weight.mul_(mask * math.sqrt(fold))
    return model


@torch.no_grad()
def cross_image_share(model, fold):
    """The share of a folded model's conv and linear weight norm^2 that connects different
    images' channel groups (channel_groups): 0 for f independent networks (block-diagonal,
    kept blocks), about 1 - 1/f for a dense model whose weights ignore the layout."""
    masks = block_masks(model, check_fold(fold))
    total = sum(float(w.pow(2).sum()) for w in masks)
    across = sum(float((w * (1 - m)).pow(2).sum()) for w, m in masks.items())
    return across / total if total else 0.0


def slot_channels(folded_channels, narrow_channels, fold):
    """[f index tensors]: where slot j's `narrow_channels` channels sit among a folded layer's
    `folded_channels`: the first ones of channel group j (channel_groups). A group may hold
    one channel more than the narrow layer (int(32 * sqrt(2)) = 45 = 23 + 22 > 2 * 22)."""
    groups = channel_groups(folded_channels, fold)
    slots = [torch.nonzero(groups == j).squeeze(1)[:narrow_channels] for j in range(fold)]
    if any(len(s) < narrow_channels for s in slots):
        raise UserError(f"a folded layer of {folded_channels} channels cannot hold {fold} copies of "
                        f"{narrow_channels} channels")
    return slots


@torch.no_grad()
def tile_narrow_(folded, narrow, fold):
    """Make `folded` compute `narrow` on each of its f images, in place: slot j's conv,
    linear and BatchNorm entries are the narrow CNN's, every weight across images is zero,
    and a group's channel beyond the narrow width is dead (zero weights in and out, which a
    BatchNorm maps to zero). `narrow` is the original CNN at channel_mult 1/sqrt(f) with
    the same layers (models.build_variant(name, "narrow", f), with BatchNorm if `folded`
    has it). Training on from here may use the weights across images (the dense recipe)."""
    fold = check_fold(fold)
    pairs = list(zip(folded.modules(), narrow.modules()))
    if len(list(folded.modules())) != len(list(narrow.modules())) or any(
            type(a) is not type(b) for a, b in pairs):
        raise UserError("the narrow model does not have the folded model's layers (another model, or one "
                        "trained with and one without BatchNorm?)")
    slots, channels = None, None  # the previous layer's slots and folded channel count
    for big, small in pairs:
        if isinstance(big, (nn.Conv2d, nn.Linear)):
            out_folded, in_folded = big.weight.shape[:2]
            out_narrow, in_narrow = small.weight.shape[:2]
            if slots is None:  # the input: image j's channels
                slots, channels = slot_channels(in_folded, in_narrow, fold), in_folded
            if isinstance(big, nn.Linear) and in_folded != channels:  # after a flatten: channel-major features
                spatial = in_folded // channels
                slots = [(s[:, None] * spatial + torch.arange(spatial)).flatten() for s in slots]
            out_slots = slot_channels(out_folded, out_narrow, fold)
            big.weight.zero_()
            if big.bias is not None:
                big.bias.zero_()
            for rows, cols in zip(out_slots, slots):
                big.weight[rows[:, None], cols[None, :]] = small.weight
                if big.bias is not None:
                    big.bias[rows] = small.bias
            slots, channels = out_slots, out_folded
        elif isinstance(big, nn.BatchNorm2d):
            big.reset_parameters()
            big.num_batches_tracked.copy_(small.num_batches_tracked)
            for rows in slots:
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(big, name)[rows] = getattr(small, name)
    return folded
