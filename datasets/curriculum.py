"""Curriculum learning for folded game models (the original FoldedCNNs repository's recipe).

A folded model first trains on the first `initial` classes (in class-index order) and gains
`delta` more classes every `epochs_per_step` epochs until all K are in. Training batches draw
only from images of active classes, and validation and test look at those classes only (as
the original system did); the model still emits logits for all K classes.

Defaults: initial = max(K // 10, f), delta = max(K // 10, 1), epochs_per_step from the
config's `train.curriculum`; `train.curriculum.per_fold["<f>"]` overrides any of them (V6 at
f=4 uses I=4, delta=3, E=120 and 3000 epochs, appendix footnote 1).
"""
import math
from dataclasses import asdict, dataclass

import torch

from util.errors import UserError


@dataclass(frozen=True)
class Curriculum:
    """Which classes are active at each epoch: the first `active_classes(epoch)` of K."""
    num_classes: int
    initial: int
    delta: int
    epochs_per_step: int

    def __post_init__(self):
        for field in ("num_classes", "initial", "delta", "epochs_per_step"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"curriculum {field} must be a whole number >= 1, got {value!r}")

    def active_classes(self, epoch):
        """How many classes (indices 0 .. n-1) training and evaluation use in `epoch` (0-based)."""
        return min(self.num_classes, self.initial + self.delta * (epoch // self.epochs_per_step))

    def complete_epoch(self):
        """The first epoch at which every class is active."""
        missing = max(0, self.num_classes - self.initial)
        return math.ceil(missing / self.delta) * self.epochs_per_step

    def state_dict(self):
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state):
        return cls(**state)


def curriculum_for(cfg, fold, epochs_per_step=None):
    """The curriculum a `fold`-times folded model of config `cfg` trains with, or None if the
    config has none. `epochs_per_step` overrides E (profiles shorten it with the epochs)."""
    section = cfg["train"].get("curriculum")
    if section is None:
        return None
    num_classes = len(cfg["classes"])
    override = section.get("per_fold", {}).get(str(fold), {})

    def pick(key, default):
        for source in (override, section):
            if source.get(key) is not None:
                return source[key]
        return default

    return Curriculum(
        num_classes=num_classes,
        initial=min(num_classes, pick("initial", max(num_classes // 10, fold))),
        delta=pick("delta", max(num_classes // 10, 1)),
        epochs_per_step=epochs_per_step if epochs_per_step is not None else pick("epochs_per_step", None),
    )


def per_fold_epochs(cfg, fold):
    """The epoch count a config's per-fold curriculum override asks for, or None."""
    section = cfg["train"].get("curriculum") or {}
    return section.get("per_fold", {}).get(str(fold), {}).get("epochs")


def active_indices(labels, num_active):
    """Positions (into `labels`) of the images whose class is among the first `num_active`."""
    return torch.nonzero(labels < num_active).squeeze(1)
