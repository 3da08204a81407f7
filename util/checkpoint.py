"""Reading the .pth files of training (best.pth, current.pth) or a bare state_dict, with a
one-line UserError that names the file when it is missing, damaged or of another model."""
import torch

from util.errors import UserError


def read_checkpoint(path, what="checkpoint"):
    """The object saved in `path`, on the CPU."""
    try:
        # Not weights_only: training checkpoints also hold RNG states (numpy objects).
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found") from None
    except Exception as err:  # a truncated or foreign file: name it
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot read {what} {path}: {first}") from None


def load_weights(model, path, what="checkpoint", mismatch="does not fit this model"):
    """Load into `model` the weights of `path`: a dict with a "model" state_dict (what training
    writes) or a bare state_dict. Returns the model."""
    saved = read_checkpoint(path, what)
    state = saved["model"] if isinstance(saved, dict) and isinstance(saved.get("model"), dict) else saved
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        recipe = saved.get("recipe") if isinstance(saved, dict) else None
        if isinstance(recipe, dict) and recipe.get("train_bn") and "optimizer" in saved:
            raise UserError(f"{what} {path} is the training checkpoint of a --train_bn job, with its BatchNorm "
                            f"layers not yet folded into the convs: use best.pth of the same job") from None
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{what} {path} {mismatch}: {first}") from None
    return model
