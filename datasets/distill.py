"""Distillation (reference.md section 4): a folded student learns the logits of a trained
original (f = 1) model of the same dataset instead of the labels.

The teacher sees exactly the images the student sees in the same step (after augmentation),
runs in eval mode without gradients, and the loss is the MSE between the student's unfolded
logits and the teacher's logits. The paper does this for folded CIFAR-10 models.
"""
from pathlib import Path

import torch
import torch.nn.functional as F

import models
from util.errors import UserError

MODEL_FILES = Path(__file__).resolve().parent.parent / "model_files"


def teacher_candidates(name, savedir):
    """Where a teacher of `name` is looked for, in order: the f = 1 job of the same sweep,
    then a pretrained file `model_files/<name>.pth`."""
    return [Path(savedir) / name / "fold1" / "best.pth", MODEL_FILES / f"{name}.pth"]


def find_teacher(name, savedir, explicit=None):
    """The teacher file to use: `explicit` if given (it must exist), else the first candidate
    that exists; a UserError saying how to train one if there is none."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise UserError(f"teacher file {explicit} does not exist; pass the best.pth of a trained fold-1 job")
        return Path(explicit)
    for path in teacher_candidates(name, savedir):
        if path.is_file():
            return path
    raise UserError(f"distillation needs a trained original {name} model: train it first with "
                    f"`python fold_trainer.py {name} 1 {savedir}` or pass --teacher PATH")


def load_teacher(name, path, device):
    """The f = 1 model of `name` with the weights of `path` (a best.pth/current.pth of ours,
    or a bare state dict), in eval mode and frozen."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which one
        raise UserError(f"cannot read teacher file {path}: {err}") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    teacher = models.build_model(name, fold=1)
    try:
        teacher.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"teacher file {path} does not hold an original (f=1) {name} model: {first}") from None
    teacher.to(device).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def distillation_loss(student_logits, teacher_logits):
    """MSE between the student's (unfolded, (N, K)) logits and the teacher's (N, K) logits."""
    return F.mse_loss(student_logits, teacher_logits)
