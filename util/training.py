"""Training one (dataset, fold) job: the recipe, the on-device data pipeline, the loop,
checkpoints and resume. `fold_trainer.py` and `train.py` are thin command lines over
`train_job`.

A job lives in `<savedir>/<dataset>/fold<f>/`:
    metrics.csv   one row per finished epoch (train loss, top-1/top-5 of train, val, test)
    best.pth      the model at the best validation top-1 (what distillation uses as teacher)
    current.pth   everything needed to continue: model, optimizer, scheduler, curriculum,
                  every RNG state, epoch, metrics; written every `checkpoint_every` epochs
    done.json     the result summary of a finished job (a rerun skips the job)
Every file is replaced atomically (temporary file + os.replace), so a job killed at any
moment, even with SIGKILL, resumes from its last checkpoint; on CPU the resumed run ends
bitwise equal to an uninterrupted one (shuffling and augmentation draw from explicit
torch.Generator objects whose states are checkpointed).

Grouping (reference.md section 2): training batches are a fresh random order of the
(active-class) training images, cut into batches that are a multiple of f; the < f images
left over at the end of an epoch sit that epoch out. Validation and test are shuffled once
with a fixed seed (`EVAL_GROUPING_SEED`) and grouped in that order; when the image count is
not a multiple of f, the last group is padded with the first images of the order and the
padding's predictions are discarded, so every image is scored exactly once.
"""
import argparse
import csv
import io
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import datasets
import models
from datasets.curriculum import Curriculum, active_indices, curriculum_for, per_fold_epochs
from datasets.distill import distillation_loss, find_teacher, load_teacher
from util.errors import UserError
from util.files import atomic_torch_save, atomic_write_bytes, atomic_write_json

EVAL_GROUPING_SEED = 0  # the one fixed shuffle of validation and test sets
EVAL_BATCH_IMAGES = 1024
METRIC_COLUMNS = ["epoch", "classes", "lr", "train_loss", "train_top1", "train_top5",
                  "val_top1", "val_top5", "test_top1", "test_top5"]
# Recipe fields that may change between runs of one job directory (more epochs continue it).
RESUMABLE_CHANGES = {"epochs"}
# train_job options that resolve_recipe takes (the rest only say where and how to run).
RECIPE_OPTIONS = ("epochs", "batch_size", "lr", "seed", "max_train_per_class", "scale_data", "curriculum",
                  "curriculum_epochs", "distill")


# ----------------------------------------------------------------------------------------
# The recipe: the config's `train` section with the caller's overrides applied.

def resolve_recipe(name, fold, epochs=None, batch_size=None, lr=None, seed=0,
                   max_train_per_class=None, scale_data=1.0, curriculum=None,
                   curriculum_epochs=None, distill=None):
    """Everything that decides a job's result, as a JSON-able dict (stored in checkpoints).

    None means "the config's value". curriculum=None uses one for folded game models only;
    `curriculum_epochs` overrides the curriculum's epochs per step; distill=None distills
    when the config says so (`train.distill_folded`, CIFAR-10); a student is always folded
    (f > 1): an original model trains on labels.
    """
    cfg = models.load_config(name)
    fold = models.folding.check_fold(fold)
    train = cfg["train"]
    use_curriculum = (fold > 1 and cfg["family"] == "game") if curriculum is None else curriculum
    schedule = curriculum_for(cfg, fold, curriculum_epochs) if use_curriculum else None
    if use_curriculum and schedule is None:
        raise UserError(f"{cfg['name']} has no curriculum in config/{cfg['name']}.json; drop --curriculum")
    if epochs is None:
        epochs = (schedule and per_fold_epochs(cfg, fold)) or train["epochs"]
    batch_size = train["batch_size"] if batch_size is None else batch_size
    for label, value, least in (("epochs", epochs, 1), ("batch size", batch_size, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"{label} must be a whole number >= {least}, got {value!r}")
    if batch_size < fold:
        raise UserError(f"batch size {batch_size} is smaller than the fold {fold}: "
                        f"a batch must hold at least one group of {fold} images")
    if max_train_per_class is not None and max_train_per_class < 1:
        raise UserError(f"max_train_per_class must be >= 1, got {max_train_per_class}")
    if not 0 < scale_data <= 1:
        raise UserError(f"scale-data is the fraction of training images to use: give 0 < s <= 1, got {scale_data}")
    if lr is not None and not lr > 0:
        raise UserError(f"learning rate must be positive, got {lr}")
    if train["augment"] not in AUGMENTATIONS:
        raise UserError(f"config/{cfg['name']}.json: unknown train.augment {train['augment']!r}; "
                        f"use one of {sorted(AUGMENTATIONS)}")
    if train["optimizer"] not in ("adam", "rmsprop"):
        raise UserError(f"config/{cfg['name']}.json: unknown train.optimizer {train['optimizer']!r}; use adam or rmsprop")
    return {
        "dataset": cfg["name"], "fold": fold, "epochs": epochs,
        "batch_size": batch_size // fold * fold,  # rounded down to whole groups of f
        "optimizer": train["optimizer"], "lr": train["lr"] if lr is None else lr,
        "weight_decay": train["weight_decay"], "lr_schedule": train["lr_schedule"],
        "augment": train["augment"], "seed": seed, "max_train_per_class": max_train_per_class,
        "scale_data": scale_data, "curriculum": schedule.state_dict() if schedule else None,
        "distill": fold > 1 and (train["distill_folded"] if distill is None else distill),
    }


def _check_same_recipe(stored, wanted, where):
    changed = [k for k in wanted if k not in RESUMABLE_CHANGES and stored.get(k) != wanted[k]]
    if changed:
        diff = ", ".join(f"{k}: {stored.get(k)!r} there, {wanted[k]!r} now" for k in changed)
        raise UserError(f"{where} holds a run with other settings ({diff}); "
                        f"rerun with the same settings or use another SAVEDIR")


# ----------------------------------------------------------------------------------------
# Data: uint8 splits kept on the training device, turned into float batches there.

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


def load_job_data(name, data_root, device, max_per_class=None, fraction=1.0, seed=0):
    """(train, val, test) DeviceSplits of `name`; train thinned per `max_per_class`/`fraction`."""
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
        splits.append(DeviceSplit(images, labels, device, normalization))
    return splits


# ----------------------------------------------------------------------------------------
# Grouping: which images share a folded input.

def training_batches(labels, batch_size, fold, generator, num_active=None):
    """One epoch of training batches (positions into `labels`): the images of the first
    `num_active` classes (all if None) in a fresh random order, cut into batches of
    `batch_size` (a multiple of f). The < f images left at the end sit this epoch out."""
    pool = torch.arange(len(labels)) if num_active is None else active_indices(labels, num_active)
    order = pool[torch.randperm(len(pool), generator=generator)]
    order = order[: len(order) // fold * fold]
    if len(order) == 0:
        raise UserError(f"fewer than {fold} training images of the active classes: "
                        f"f={fold} needs at least one full group; generate more data")
    return list(order.split(batch_size))


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


# ----------------------------------------------------------------------------------------
# Metrics.

def topk_hits(logits, labels, k=5):
    """(top-1 hits, top-k hits) as tensors; k is capped at the number of classes."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return hits[:, 0].sum(), hits.any(dim=1).sum()


@torch.no_grad()
def evaluate(model, split, fold, num_active=None, desc="eval", progress=False):
    """(top-1, top-5) of `model` on `split` grouped by `evaluation_order`; nan if empty."""
    model.eval()
    order, count = evaluation_order(split.labels_cpu, fold, num_active)
    if count == 0:
        return float("nan"), float("nan")
    chunk = EVAL_BATCH_IMAGES // fold * fold
    top1 = top5 = 0
    bar = tqdm(range(0, len(order), chunk), desc=desc, leave=False, disable=not progress)
    for start in bar:
        x, y = split.batch(order[start:start + chunk])
        logits = models.unfold_outputs(model(models.fold_inputs(x, fold)), fold)
        scored = min(len(y), count - start)  # positions past `count` are padding
        hits1, hits5 = topk_hits(logits[:scored], y[:scored])
        top1, top5 = top1 + hits1.item(), top5 + hits5.item()
        bar.set_description(f"{desc}. Top-1={top1 / min(count, start + scored):.4f}")
    return top1 / count, top5 / count


# ----------------------------------------------------------------------------------------
# Files: atomic writes, metrics.csv, checkpoints.

def _csv_line(row):
    return ",".join(str(row[c]) if isinstance(row[c], int) else f"{row[c]:.6f}" for c in METRIC_COLUMNS) + "\n"


def write_metrics(path, rows):
    """metrics.csv holding exactly `rows` (what the checkpoint knows)."""
    atomic_write_bytes(path, (",".join(METRIC_COLUMNS) + "\n" + "".join(map(_csv_line, rows))).encode())


def read_metrics(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _rng_states(generators):
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
              **{name: gen.get_state() for name, gen in generators.items()}}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states, generators):
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    for name, gen in generators.items():
        gen.set_state(states[name])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _load_checkpoint(path):
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a foreign or damaged file: name it
        raise UserError(f"cannot read checkpoint {path}: {err}") from None
    if not isinstance(checkpoint, dict) or "recipe" not in checkpoint:
        raise UserError(f"{path} is not a training checkpoint written by fold_trainer.py")
    return checkpoint


def _make_optimizer(recipe, params):
    if recipe["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    return torch.optim.RMSprop(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"])


def _make_scheduler(recipe, optimizer):
    schedule = recipe["lr_schedule"]
    if schedule is None:
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=schedule["step_epochs"], gamma=schedule["gamma"])


def resolve_device(device=None):
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but no CUDA GPU is available; use --device cpu")
    return device


def set_threads(threads):
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a whole number >= 1, got {threads!r}")
    torch.set_num_threads(threads)


def job_dir(savedir, name, fold):
    return Path(savedir) / models.load_config(name)["name"] / f"fold{fold}"


# ----------------------------------------------------------------------------------------
# The job.

def train_job(name, fold, savedir, *, epochs=None, batch_size=None, lr=None, seed=0,
              max_train_per_class=None, scale_data=1.0, curriculum=None, curriculum_epochs=None,
              distill=None, teacher=None, continue_from_file=None, checkpoint_every=1,
              data_root="data", device=None, threads=None, progress=True):
    """Train `name` folded `fold` times in `<savedir>/<name>/fold<fold>/` and return the
    result summary (also written to done.json). A finished job is skipped; an unfinished one
    continues from its current.pth (or from `continue_from_file`).

    None means the config's recipe (reference.md section 4); `curriculum_epochs` overrides the
    curriculum's epochs per step; `teacher` is the f = 1 model file to distill from (default:
    `<savedir>/<name>/fold1/best.pth`, else `model_files/<name>.pth`). `threads` sets
    torch's CPU threads (a resumed run is bitwise equal to an uninterrupted one when both
    use the same count).
    """
    session_start = time.perf_counter()
    recipe = resolve_recipe(name, fold, epochs, batch_size, lr, seed, max_train_per_class, scale_data,
                            curriculum, curriculum_epochs, distill)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise UserError(f"checkpoint_every must be a whole number >= 1, got {checkpoint_every!r}")
    name, epochs = recipe["dataset"], recipe["epochs"]
    out = job_dir(savedir, name, fold)
    done_path, current_path = out / "done.json", out / "current.pth"
    if done_path.is_file() and continue_from_file is None:
        done = json.loads(done_path.read_text())
        _check_same_recipe(done["recipe"], recipe, out)
        if done["epochs"] >= epochs:
            print(f"{name} f={fold}: finished earlier ({out}), skipping")
            return done

    checkpoint = None
    if continue_from_file is not None:
        if not Path(continue_from_file).is_file():
            raise UserError(f"checkpoint {continue_from_file} does not exist")
        checkpoint = _load_checkpoint(continue_from_file)
        _check_same_recipe(checkpoint["recipe"], recipe, continue_from_file)
    elif current_path.is_file():
        checkpoint = _load_checkpoint(current_path)
        _check_same_recipe(checkpoint["recipe"], recipe, out)

    device = resolve_device(device)
    if threads is not None:
        set_threads(threads)
    num_classes = len(models.load_config(name)["classes"])
    schedule = Curriculum.from_state_dict(recipe["curriculum"]) if recipe["curriculum"] else None
    teacher_model = None
    if recipe["distill"]:
        teacher_model = load_teacher(name, find_teacher(name, savedir, teacher), device)
    train, val, test = load_job_data(name, data_root, device, max_train_per_class, scale_data, seed)

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    model = models.build_model(name, fold).to(device)
    optimizer = _make_optimizer(recipe, model.parameters())
    scheduler = _make_scheduler(recipe, optimizer)
    generators = {"shuffle": torch.Generator().manual_seed(seed),
                  "augment": torch.Generator(device=device).manual_seed(seed + 1)}
    augment = AUGMENTATIONS[recipe["augment"]]
    state = {"epoch": 0, "metrics": [], "best": None, "best_model": None,
             "wall_time_s": 0.0, "train_time_s": 0.0, "train_images": 0}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        _restore_rng_states(checkpoint["rng"], generators)
        state = {key: checkpoint[key] for key in state}
        print(f"{name} f={fold}: resuming after epoch {state['epoch']} of {epochs}")

    # Files past the checkpoint (written after it, before a kill) are rolled back to it.
    out.mkdir(parents=True, exist_ok=True)
    done_path.unlink(missing_ok=True)
    write_metrics(out / "metrics.csv", state["metrics"])
    if state["best_model"] is not None:
        atomic_torch_save({"model": state["best_model"], **state["best"], "recipe": recipe}, out / "best.pth")
    else:
        (out / "best.pth").unlink(missing_ok=True)

    wall_before = state["wall_time_s"]

    def save_checkpoint():
        state["wall_time_s"] = wall_before + time.perf_counter() - session_start
        atomic_torch_save({
            "recipe": recipe, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "curriculum": schedule.state_dict() if schedule else None,
            "rng": _rng_states(generators), **state}, current_path)

    for epoch in range(state["epoch"], epochs):
        num_active = schedule.active_classes(epoch) if schedule else None
        batches = training_batches(train.labels_cpu, recipe["batch_size"], fold, generators["shuffle"], num_active)
        lr_now = optimizer.param_groups[0]["lr"]
        model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        hits1 = torch.zeros((), dtype=torch.int64, device=device)
        hits5 = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        bar = tqdm(batches, desc=f"Epoch {epoch}. train", leave=False, disable=not progress)
        for step, positions in enumerate(bar):
            x, y = train.batch(positions, augment, generators["augment"])
            logits = models.unfold_outputs(model(models.fold_inputs(x, fold)), fold)
            if teacher_model is not None:
                with torch.no_grad():
                    target = teacher_model(x)
                loss = distillation_loss(logits, target)
            else:
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                top1, top5 = topk_hits(logits, y)
                loss_sum += loss.detach() * len(y)
                hits1 += top1
                hits5 += top5
            seen += len(y)
            if progress and (step % 20 == 0 or step == len(batches) - 1):
                bar.set_description(f"Epoch {epoch}. train. Top-1={hits1.item() / seen:.4f}, "
                                    f"Top-5={hits5.item() / seen:.4f}, Loss={loss_sum.item() / seen:.4f}")
        if scheduler is not None:
            scheduler.step()
        state["train_time_s"] += time.perf_counter() - started
        state["train_images"] += seen

        val_top1, val_top5 = evaluate(model, val, fold, num_active, f"Epoch {epoch}. val", progress)
        test_top1, test_top5 = evaluate(model, test, fold, num_active, f"Epoch {epoch}. test", progress)
        classes = num_active or num_classes
        row = {"epoch": epoch, "classes": classes, "lr": lr_now, "train_loss": loss_sum.item() / seen,
               "train_top1": hits1.item() / seen, "train_top5": hits5.item() / seen,
               "val_top1": val_top1, "val_top5": val_top5, "test_top1": test_top1, "test_top5": test_top5}
        state["metrics"].append(row)
        with open(out / "metrics.csv", "a") as fh:
            fh.write(_csv_line(row))
        # Model selection: best validation top-1; while a curriculum grows, a model scored on
        # more classes beats any scored on fewer (100% on 2 classes says little).
        best = state["best"]
        if best is None or (classes, val_top1) > (best["classes"], best["val_top1"]):
            state["best"] = {"epoch": epoch, "classes": classes, "val_top1": val_top1, "test_top1": test_top1,
                             "test_top5": test_top5}
            state["best_model"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            atomic_torch_save({"model": state["best_model"], **state["best"], "recipe": recipe}, out / "best.pth")
        print(f"Epoch {epoch}. {name} f={fold}. Loss={row['train_loss']:.4f}. Top-1 train={row['train_top1']:.4f} "
              f"val={val_top1:.4f} test={test_top1:.4f} ({classes}/{num_classes} classes)", flush=True)
        state["epoch"] = epoch + 1
        if state["epoch"] % checkpoint_every == 0 or state["epoch"] == epochs:
            save_checkpoint()

    if not current_path.is_file():  # nothing left to train after --continue_from_file
        save_checkpoint()
    best = state["best"]
    result = {
        "dataset": name, "fold": fold, "epochs": state["epoch"], "best_epoch": best["epoch"],
        "best_val_top1": best["val_top1"], "test_top1": best["test_top1"], "test_top5": best["test_top5"],
        "classes_at_best": best["classes"], "num_classes": num_classes,
        "wall_time_s": round(state["wall_time_s"], 2),
        "train_images_per_s": round(state["train_images"] / max(state["train_time_s"], 1e-9), 1),
        "recipe": recipe,
    }
    atomic_write_json(done_path, result)
    return result


# ----------------------------------------------------------------------------------------
# Command-line options shared by fold_trainer.py and train.py.

def add_job_arguments(parser):
    """The per-job options; every default is None so that callers can layer profiles."""
    add = parser.add_argument
    add("--epochs", type=int, help="training epochs (default: the config's recipe)")
    add("--batch_size", "--batch-size", type=int, help="images per batch, rounded down to a multiple of f")
    add("--lr", type=float, help="learning rate (default: the config's)")
    add("--seed", type=int, help="seed of initialization, shuffling and augmentation (default 0)")
    add("--data-root", "--data_root", dest="data_root", help="folder holding the datasets (default data)")
    add("--scale-data", "--scale_data", dest="scale_data", type=float,
        help="fraction of each class's training images to use, 0 < s <= 1 (default 1)")
    add("--max_train_per_class", "--max-train-per-class", type=int,
        help="cap on training images per class (default: no cap)")
    add("--curriculum", action=argparse.BooleanOptionalAction, default=None,
        help="curriculum learning on/off (default: on for folded game models)")
    add("--curriculum_epochs", "--curriculum-epochs", type=int,
        help="curriculum epochs per step E (default: the config's, 60)")
    add("--distill", action=argparse.BooleanOptionalAction, default=None,
        help="train folded students on the logits of the trained f=1 model (default: folded CIFAR-10)")
    add("--teacher", help="teacher model file (default SAVEDIR/<dataset>/fold1/best.pth, else model_files/<dataset>.pth)")
    add("--checkpoint_every", "--checkpoint-every", type=int, help="epochs between current.pth checkpoints (default 1)")
    add("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    add("--threads", type=int, help="CPU threads of torch (default: torch's; 1 is faster on a CPU shared with other jobs)")
    add("--no-progress", dest="progress", action="store_false", default=None, help="no tqdm bars")


JOB_OPTIONS = ("epochs", "batch_size", "lr", "seed", "data_root", "scale_data", "max_train_per_class",
               "curriculum", "curriculum_epochs", "distill", "teacher", "checkpoint_every", "device", "threads", "progress")


def job_options(args):
    """train_job keyword arguments given on the command line (unset ones left out)."""
    return {key: getattr(args, key) for key in JOB_OPTIONS if getattr(args, key, None) is not None}


# ----------------------------------------------------------------------------------------
# Sweep summary (train.py).

SUMMARY_COLUMNS = ["dataset", "fold", "epochs", "best_val_top1", "test_top1", "delta_vs_f1",
                   "wall_time_s", "train_images_per_s"]


def summary_rows(savedir):
    """One row per finished job under `savedir`, in registry order then fold; delta_vs_f1 is
    the test top-1 minus that of the same dataset's f = 1 job (empty without one)."""
    order = {name: i for i, name in enumerate(models.model_names())}
    done = [json.loads(p.read_text()) for p in Path(savedir).glob("*/fold*/done.json")]
    done.sort(key=lambda d: (order.get(d["dataset"], len(order)), d["dataset"], d["fold"]))
    original = {d["dataset"]: d["test_top1"] for d in done if d["fold"] == 1}
    rows = []
    for d in done:
        delta = d["test_top1"] - original[d["dataset"]] if d["dataset"] in original else None
        rows.append({"dataset": d["dataset"], "fold": d["fold"], "epochs": d["epochs"],
                     "best_val_top1": f"{d['best_val_top1']:.4f}", "test_top1": f"{d['test_top1']:.4f}",
                     "delta_vs_f1": "" if delta is None else f"{delta:+.4f}",
                     "wall_time_s": f"{d['wall_time_s']:.1f}", "train_images_per_s": f"{d['train_images_per_s']:.0f}"})
    return rows


def write_summary(savedir):
    """Write `<savedir>/summary.csv` (atomically) and return it as a printable table."""
    rows = summary_rows(savedir)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(Path(savedir) / "summary.csv", text.getvalue().encode())
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in SUMMARY_COLUMNS}
    lines = ["  ".join(c.rjust(widths[c]) for c in SUMMARY_COLUMNS)]
    lines += ["  ".join(str(r[c]).rjust(widths[c]) for c in SUMMARY_COLUMNS) for r in rows]
    return "\n".join(lines)


def format_seconds(seconds):
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s" if seconds >= 60 else f"{seconds:.1f}s"


__all__ = ["train_job", "resolve_recipe", "job_dir", "training_batches", "evaluation_order", "evaluate",
           "random_crop_flip", "DeviceSplit", "load_job_data", "select_training_images",
           "add_job_arguments", "job_options", "read_metrics", "summary_rows", "write_summary"]
