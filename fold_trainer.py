"""The trainer: one (dataset, fold) job, the original CNN (fold 1) or a FoldedCNN (fold > 1).

    python fold_trainer.py lol-gold1 2 runs/paper
    python fold_trainer.py V1 4 runs/quick --epochs 20 --batch_size 64 --lr 1e-3 --curriculum_epochs 1

As a module: `from fold_trainer import train_job` (train.py runs sweeps of jobs with it).
The recipe defaults to the config's `train` section, the original FoldedCNNs repository's
recipe; curriculum learning (datasets/curriculum.py) and distillation are wired in here, the
data pipeline and the grouping of images into folded inputs live in datasets/batches.py.

A job lives in `<savedir>/<dataset>/fold<f>/`:
    metrics.csv   one row per finished epoch (train loss, top-1/top-5 of train, val, test)
    best.pth      the model at the best validation top-1 (what distillation uses as teacher)
    current.pth   everything needed to continue: model, optimizer, scheduler, curriculum,
                  every RNG state, epoch, metrics; written every `checkpoint_every` epochs
    done.json     the result summary of a finished job (a rerun skips the job)
Every file is replaced atomically (util/files.py), so a job killed at any moment, even with
SIGKILL, resumes from its last checkpoint; rerunning the same command continues an
unfinished job and skips a finished one. On CPU the resumed run ends bitwise equal to an
uninterrupted one (shuffling and augmentation draw from explicit torch.Generator objects
whose states are checkpointed). On a GPU it continues the same shuffling and augmentation,
but cuDNN's backward is not bitwise reproducible, so the weights differ in the last bits.

On a GPU the update is fused Adam (one kernel), and `--cuda_graph` replays the whole step
(forward, loss, backward, update) from a CUDA graph: these models are small enough that
launching their kernels one by one, not the GPU, bounds the step otherwise
(scripts/bench_training.py measures both).
"""
import argparse
import csv
import io
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import models
from datasets.batches import AUGMENTATIONS, evaluation_order, load_job_data, training_batches
from datasets.curriculum import Curriculum, curriculum_for, per_fold_epochs
from util.checkpoint import load_weights, read_checkpoint
from util.args import device_string, finite_float, fraction, nonnegative_int, positive_float, positive_int
from util.cuda_graphs import GraphedStep
from util.device import on_device, resolve_device, set_threads
from util.errors import UserError, cli_main
from util.files import (atomic_torch_save, atomic_write_bytes, atomic_write_json, check_output_dir, check_output_file,
                        exclusive_lock)
from util.results import SUMMARY_COLUMNS

EVAL_BATCH_IMAGES = 1024
METRIC_COLUMNS = ["epoch", "classes", "lr", "train_loss", "train_top1", "train_top5",
                  "val_top1", "val_top5", "test_top1", "test_top5"]
# Recipe fields that may change between runs of one job directory (more epochs continue it).
RESUMABLE_CHANGES = {"epochs"}
# train_job options that resolve_recipe takes (the rest only say where and how to run).
RECIPE_OPTIONS = ("epochs", "batch_size", "lr", "seed", "max_train_per_class", "scale_data", "curriculum",
                  "curriculum_epochs", "distill", "optimizer", "augment", "init", "keep_blocks", "train_bn", "lr_warmup_epochs", "lr_decay",
                  "distill_loss", "distill_temperature", "distill_weight")
# Options of the training recipe beyond the paper's (docs/recipe.md); the paper's values.
OPTIMIZERS = ("adam", "rmsprop")
INITS = ("paper", "block")
LR_DECAYS = ("none", "cosine")
DISTILL_LOSSES = ("mse", "kl")
MODEL_FILES = Path(__file__).resolve().parent / "model_files"
LOCK_FILE = ".lock"


# ----------------------------------------------------------------------------------------
# The recipe: the config's `train` section with the caller's overrides applied.
#
# Recipe options beyond the paper's (docs/recipe.md measures them; each defaults to the
# paper's recipe): optimizer and augment override the config's; init="block" starts a folded
# model block-diagonal (models.folding.block_diagonal_) and keep_blocks keeps it so (no
# gradient flows across images: f per-image networks in one FoldedCNN); train_bn trains with
# a BatchNorm after every conv, folded into the convs whenever the model is saved
# (models/batchnorm.py); the learning rate rises linearly over `lr_warmup_epochs` and with
# lr_decay="cosine" falls to zero along a half cosine over the whole run (replacing the
# config's step schedule); a distilling student minimizes
# (1 - distill_weight) * cross-entropy + distill_weight * distill_loss, where "mse" is the
# paper's MSE on raw logits and "kl" the KL divergence between the teacher's and the
# student's softmax at `distill_temperature`, times its square (Hinton et al. 2015).

def resolve_recipe(name, fold, epochs=None, batch_size=None, lr=None, seed=0,
                   max_train_per_class=None, scale_data=1.0, curriculum=None,
                   curriculum_epochs=None, distill=None, optimizer=None, augment=None, init="paper", keep_blocks=False, train_bn=False,
                   lr_warmup_epochs=0.0, lr_decay="none", distill_loss="mse", distill_temperature=1.0,
                   distill_weight=1.0):
    """Everything that decides a job's result, as a JSON-able dict (stored in checkpoints).

    None means "the config's value". curriculum=None uses one for folded game models only;
    `curriculum_epochs` overrides the curriculum's epochs per step; distill=None distills
    when the config says so (`train.distill_folded`, CIFAR-10); a student is always folded
    (f > 1): an original model trains on labels. The options after `distill` default to
    the paper's recipe (see "Recipe options" above).
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
    augment = train["augment"] if augment is None else augment
    _check_choice("augment", augment, tuple(AUGMENTATIONS))
    if train["optimizer"] not in OPTIMIZERS:
        raise UserError(f"config/{cfg['name']}.json: unknown train.optimizer {train['optimizer']!r}; use adam or rmsprop")
    _check_choice("optimizer", train["optimizer"] if optimizer is None else optimizer, OPTIMIZERS)
    _check_choice("init", init, INITS)
    _check_choice("lr_decay", lr_decay, LR_DECAYS)
    _check_choice("distill_loss", distill_loss, DISTILL_LOSSES)
    if keep_blocks and init != "block":
        raise UserError("--keep_blocks keeps the block-diagonal init's structure: add --init block")
    if not 0 <= lr_warmup_epochs < math.inf:
        raise UserError(f"lr_warmup_epochs must be >= 0, got {lr_warmup_epochs}")
    if lr_warmup_epochs and lr_decay == "none" and train["lr_schedule"] is not None:
        raise UserError(f"lr warm-up does not combine with {cfg['name']}'s step schedule; add --lr_decay cosine")
    if not distill_temperature > 0 or not 0 < distill_weight <= 1:
        raise UserError(f"distillation needs temperature > 0 and 0 < weight <= 1, "
                        f"got {distill_temperature} and {distill_weight}")
    distill = fold > 1 and (train["distill_folded"] if distill is None else distill)
    return {
        "dataset": cfg["name"], "fold": fold, "epochs": epochs,
        "batch_size": batch_size // fold * fold,  # rounded down to whole groups of f
        "optimizer": train["optimizer"] if optimizer is None else optimizer, "lr": train["lr"] if lr is None else lr,
        "weight_decay": train["weight_decay"],
        "lr_schedule": train["lr_schedule"] if lr_decay == "none" else None,
        "lr_warmup_epochs": lr_warmup_epochs, "lr_decay": lr_decay,
        "init": init, "keep_blocks": bool(keep_blocks),
        "train_bn": bool(train_bn) and cfg["family"] != "cifar",  # ResNet-18 has BatchNorm already
        "augment": augment, "seed": seed, "max_train_per_class": max_train_per_class,
        "scale_data": scale_data, "curriculum": schedule.state_dict() if schedule else None,
        "distill": distill,
        "distill_loss": distill_loss if distill else None,
        "distill_temperature": distill_temperature if distill and distill_loss == "kl" else None,
        "distill_weight": distill_weight if distill else None,
    }


def _check_choice(label, value, choices):
    if value not in choices:
        raise UserError(f"unknown {label} {value!r}; use one of {', '.join(choices)}")


def _check_same_recipe(stored, wanted, where):
    changed = [k for k in wanted if k not in RESUMABLE_CHANGES and stored.get(k) != wanted[k]]
    if changed:
        diff = ", ".join(f"{k}: {stored.get(k)!r} there, {wanted[k]!r} now" for k in changed)
        raise UserError(f"{where} holds a run with other settings ({diff}); "
                        f"rerun with the same settings or use another SAVEDIR")


# ----------------------------------------------------------------------------------------
# Where a job lives.

def job_dir(savedir, name, fold):
    return Path(savedir) / models.load_config(name)["name"] / f"fold{fold}"


def best_path(savedir, name, fold):
    """The job's model at its best validation top-1."""
    return job_dir(savedir, name, fold) / "best.pth"


# ----------------------------------------------------------------------------------------
# Distillation (the paper's folded CIFAR-10 models): a folded student learns the logits of a
# trained original (f = 1) model of the same dataset instead of the labels. The teacher sees
# exactly the images the student sees in the same step (after augmentation), runs in eval
# mode without gradients, and the loss is the MSE between the student's unfolded logits and
# the teacher's logits.

def teacher_candidates(name, savedir):
    """Where a teacher of `name` is looked for, in order: the f = 1 job of the same sweep,
    then a pretrained file `model_files/<name>.pth`."""
    return [best_path(savedir, name, 1), MODEL_FILES / f"{name}.pth"]


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
    teacher = load_weights(models.build_model(name, fold=1), path, "teacher file",
                           f"does not hold an original (f=1) {name} model")
    teacher.to(device).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def distillation_loss(student_logits, teacher_logits, kind="mse", temperature=1.0):
    """How far the student's (unfolded, (N, K)) logits are from the teacher's (N, K) logits:
    "mse" on the raw logits (the paper's), or "kl", the KL divergence from the teacher's
    softmax at `temperature` to the student's, times temperature^2 so that its gradients
    keep their scale across temperatures (Hinton et al. 2015). Raw-logit MSE is large when
    the teacher is confident (logits of +-20), which swamps any cross-entropy beside it."""
    if kind == "mse":
        return F.mse_loss(student_logits, teacher_logits)
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1),
                    log_target=True, reduction="batchmean") * temperature ** 2


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
    order = order.to(split.images.device)  # one copy, not one per chunk
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
# Files: metrics.csv, checkpoints.

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


# What current.pth holds besides the recipe (best.pth holds the model weights only).
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "metrics", "best", "best_model",
                   "wall_time_s", "train_time_s", "train_images")


def _resume_checkpoint(out, recipe, continue_from_file=None):
    """The checkpoint to continue from: `continue_from_file`, else the job's current.pth, else
    None; it must hold a run of the same recipe."""
    if continue_from_file is not None:
        path, where = continue_from_file, continue_from_file
    elif (out / "current.pth").is_file():
        path, where = out / "current.pth", out
    else:
        return None
    fix = "pass the job's current.pth" if continue_from_file is not None else \
        "delete it to train the job from epoch 0, or restore it from a backup"
    try:
        checkpoint = read_checkpoint(path)
    except UserError as err:
        raise UserError(f"{err}; {fix}") from None
    if not isinstance(checkpoint, dict) or "recipe" not in checkpoint:
        raise UserError(f"{path} is not a training checkpoint written by fold_trainer.py; {fix}")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        kind = "model weights only (a best.pth?)" if "model" in checkpoint else "an incomplete checkpoint"
        raise UserError(f"{path} holds {kind}, not the training state ({', '.join(missing)}) to continue from; {fix}")
    _check_same_recipe(checkpoint["recipe"], recipe, where)
    return checkpoint


def build_training_model(recipe):
    """The model a job trains: `models.build_model(name, f)`, block-diagonal at the start if
    the recipe says so, with a BatchNorm after every conv while training if it says so."""
    model = models.build_model(recipe["dataset"], recipe["fold"])
    if recipe["init"] == "block":
        models.block_diagonal_(model, recipe["fold"])
    return models.insert_batchnorm(model) if recipe["train_bn"] else model


def make_optimizer(recipe, params, fused=False, capturable=False):
    """The recipe's optimizer; `fused`: Adam's single-kernel update (CUDA; RMSprop has none),
    `capturable`: safe to capture in a CUDA graph."""
    if recipe["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                                fused=fused or None, capturable=capturable)
    return torch.optim.RMSprop(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"], capturable=capturable)


def load_optimizer_state(optimizer, state_dict):
    """Load a checkpointed optimizer state, keeping this run's implementation (fused,
    capturable), which may differ from the checkpoint's (another device, --cuda_graph)."""
    keys = [k for k in ("fused", "capturable", "foreach") if k in optimizer.defaults]
    optimizer.load_state_dict(state_dict)
    for group in optimizer.param_groups:
        group.update({k: optimizer.defaults[k] for k in keys})
        step_on_device = group.get("fused") or group.get("capturable")
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if "step" in state:  # a device tensor for fused/capturable updates, else a CPU one
                state["step"] = state["step"].to(param.device if step_on_device else "cpu", torch.float32)


def make_train_step(model, optimizer, fold, loss_fn, grad_masks=None):
    """step(x, y) -> (loss, logits): the folded forward of a batch of images, the loss
    `loss_fn(x, y, logits)` on the unfolded logits, backward and the optimizer's update.
    `grad_masks` ({weight: 0/1 mask}) zero parts of the gradient before the update."""
    def step(x, y):
        logits = models.unfold_outputs(model(models.fold_inputs(x, fold)), fold)
        loss = loss_fn(x, y, logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for weight, mask in (grad_masks or {}).items():
            weight.grad.mul_(mask)
        optimizer.step()
        return loss, logits

    return step


def _make_scheduler(recipe, optimizer):
    schedule = recipe["lr_schedule"]
    if schedule is None:
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=schedule["step_epochs"], gamma=schedule["gamma"])


# ----------------------------------------------------------------------------------------
# The job.

class Job:
    """One job in training: its data, model, optimizer and progress (`state`, which the
    checkpoint holds with the model, optimizer, scheduler and RNG states)."""

    def __init__(self, recipe, out, savedir, teacher, data_root, device, session_start, cuda_graph=False):
        name, fold, seed = recipe["dataset"], recipe["fold"], recipe["seed"]
        self.recipe, self.out, self.device = recipe, out, device
        self.best_file = best_path(savedir, name, fold)
        self.num_classes = len(models.load_config(name)["classes"])
        self.schedule = Curriculum.from_state_dict(recipe["curriculum"]) if recipe["curriculum"] else None
        self.teacher = None
        if recipe["distill"]:
            self.teacher = load_teacher(name, find_teacher(name, savedir, teacher), device)
        self.train, self.val, self.test = load_job_data(name, data_root, device, recipe["max_train_per_class"],
                                                        recipe["scale_data"], seed)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        self.model = build_training_model(recipe).to(device)
        self.optimizer = make_optimizer(recipe, self.model.parameters(), fused=device.type == "cuda",
                                        capturable=cuda_graph)
        self.scheduler = _make_scheduler(recipe, self.optimizer)
        # keep_blocks: no gradient across images, so the weights between them stay zero
        masks = models.folding.block_masks(self.model, fold) if recipe["keep_blocks"] and fold > 1 else None
        self.step = make_train_step(self.model, self.optimizer, fold, self.loss, masks)
        if cuda_graph:
            self.step = GraphedStep(self.step, self.optimizer, recipe["batch_size"], device)
        self.generators = {"shuffle": torch.Generator().manual_seed(seed),
                           "augment": torch.Generator(device=device).manual_seed(seed + 1)}
        self.augment = AUGMENTATIONS[recipe["augment"]]
        self.state = {"epoch": 0, "metrics": [], "best": None, "best_model": None,
                      "wall_time_s": 0.0, "train_time_s": 0.0, "train_images": 0}
        self.session_start = session_start  # the wall time of this run counts from here
        self.wall_before = 0.0

    def restore(self, checkpoint):
        self.model.load_state_dict(checkpoint["model"])
        load_optimizer_state(self.optimizer, checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        _restore_rng_states(checkpoint["rng"], self.generators)
        self.state = {key: checkpoint[key] for key in self.state}
        self.wall_before = self.state["wall_time_s"]
        print(f"{self.recipe['dataset']} f={self.recipe['fold']}: resuming after epoch {self.state['epoch']} "
              f"of {self.recipe['epochs']}")

    def roll_back_files(self):
        """Files past the checkpoint (written after it, before a kill) go back to it."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "done.json").unlink(missing_ok=True)
        write_metrics(self.out / "metrics.csv", self.state["metrics"])
        if self.state["best_model"] is not None:
            self.save_best()
        else:
            self.best_file.unlink(missing_ok=True)

    def save_best(self):
        atomic_torch_save({"model": self.state["best_model"], **self.state["best"], "recipe": self.recipe},
                          self.best_file)

    def save_checkpoint(self):
        self.state["wall_time_s"] = self.wall_before + time.perf_counter() - self.session_start
        atomic_torch_save({
            "recipe": self.recipe, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "curriculum": self.schedule.state_dict() if self.schedule else None,
            "rng": _rng_states(self.generators), **self.state}, self.out / "current.pth")

    def train_epoch(self, epoch, num_active, progress):
        """One pass over the (active-class) training images; the epoch's train metrics."""
        fold, device = self.recipe["fold"], self.device
        batches = training_batches(self.train.labels_cpu, self.recipe["batch_size"], fold,
                                   self.generators["shuffle"], num_active, device)
        self.set_lr(epoch)
        lr_now = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        hits1 = torch.zeros((), dtype=torch.int64, device=device)
        hits5 = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        bar = tqdm(batches, desc=f"Epoch {epoch}. train", leave=False, disable=not progress)
        for step, positions in enumerate(bar):
            self.set_lr(epoch + step / len(batches))
            x, y = self.train.batch(positions, self.augment, self.generators["augment"])
            loss, logits = self.step(x, y)
            with torch.no_grad():
                top1, top5 = topk_hits(logits, y)
                loss_sum += loss.detach() * len(y)
                hits1 += top1
                hits5 += top5
            seen += len(y)
            if progress and (step % 20 == 0 or step == len(batches) - 1):
                bar.set_description(f"Epoch {epoch}. train. Top-1={hits1.item() / seen:.4f}, "
                                    f"Top-5={hits5.item() / seen:.4f}, Loss={loss_sum.item() / seen:.4f}")
        if self.scheduler is not None:
            self.scheduler.step()
        if device.type == "cuda":  # the clock stops when the GPU has finished the epoch's work
            torch.cuda.synchronize(device)
        self.state["train_time_s"] += time.perf_counter() - started
        self.state["train_images"] += seen
        return {"lr": lr_now, "train_loss": loss_sum.item() / seen, "train_top1": hits1.item() / seen,
                "train_top5": hits5.item() / seen}

    def set_lr(self, progress):
        """The learning rate `progress` epochs into the run (a fraction within an epoch):
        linear warm-up, then the cosine decay; untouched without either (a step schedule or
        none)."""
        warmup, decay = self.recipe["lr_warmup_epochs"], self.recipe["lr_decay"]
        if not warmup and decay == "none":
            return
        lr = self.recipe["lr"] * (min(1.0, progress / warmup) if warmup else 1.0)
        if decay == "cosine":
            lr *= 0.5 * (1 + math.cos(math.pi * progress / self.recipe["epochs"]))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def loss(self, x, y, logits):
        """Cross-entropy on the labels; with a teacher, mixed with the distillation loss."""
        if self.teacher is None:
            return F.cross_entropy(logits, y)
        with torch.no_grad():
            target = self.teacher(x)
        recipe = self.recipe
        loss = recipe["distill_weight"] * distillation_loss(logits, target, recipe["distill_loss"],
                                                            recipe["distill_temperature"])
        if recipe["distill_weight"] < 1:
            loss = loss + (1 - recipe["distill_weight"]) * F.cross_entropy(logits, y)
        return loss

    def inference_state(self):
        """The model's weights as `models.build_model` lays them out (BatchNorm folded away)."""
        model = models.fold_batchnorm(self.model) if self.recipe["train_bn"] else self.model
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def finish_epoch(self, epoch, num_active, train_metrics, progress):
        """Evaluate, append the epoch's row to metrics.csv and keep the best model."""
        fold = self.recipe["fold"]
        val_top1, val_top5 = evaluate(self.model, self.val, fold, num_active, f"Epoch {epoch}. val", progress)
        test_top1, test_top5 = evaluate(self.model, self.test, fold, num_active, f"Epoch {epoch}. test", progress)
        classes = num_active or self.num_classes
        row = {"epoch": epoch, "classes": classes, **train_metrics,
               "val_top1": val_top1, "val_top5": val_top5, "test_top1": test_top1, "test_top5": test_top5}
        self.state["metrics"].append(row)
        with open(self.out / "metrics.csv", "a") as fh:
            fh.write(_csv_line(row))
        # Model selection: best validation top-1; while a curriculum grows, a model scored on
        # more classes beats any scored on fewer (100% on 2 classes says little).
        best = self.state["best"]
        if best is None or (classes, val_top1) > (best["classes"], best["val_top1"]):
            self.state["best"] = {"epoch": epoch, "classes": classes, "val_top1": val_top1,
                                  "test_top1": test_top1, "test_top5": test_top5}
            self.state["best_model"] = self.inference_state()
            self.save_best()
        print(f"Epoch {epoch}. {self.recipe['dataset']} f={fold}. Loss={row['train_loss']:.4f}. "
              f"Top-1 train={row['train_top1']:.4f} val={val_top1:.4f} test={test_top1:.4f} "
              f"({classes}/{self.num_classes} classes)", flush=True)

    def check_finite(self, epoch, loss):
        """Stop a diverged job (NaN or inf loss or weights) before it writes anything of the
        epoch: the files keep the last good state and done.json is never written."""
        finite = torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all().item()
        if finite and math.isfinite(loss):
            return
        kept = (f"the last good checkpoint {self.out / 'current.pth'} (after epoch {self.state['epoch']}) is kept"
                if (self.out / "current.pth").is_file() else "no checkpoint was written")
        raise UserError(f"{self.recipe['dataset']} f={self.recipe['fold']}: training diverged in epoch {epoch} "
                        f"(loss {loss}, learning rate {self.recipe['lr']}); {kept}. Rerun with a lower --lr "
                        f"in another SAVEDIR")

    def run(self, checkpoint_every, progress):
        epochs = self.recipe["epochs"]
        for epoch in range(self.state["epoch"], epochs):
            num_active = self.schedule.active_classes(epoch) if self.schedule else None
            train_metrics = self.train_epoch(epoch, num_active, progress)
            self.check_finite(epoch, train_metrics["train_loss"])
            self.finish_epoch(epoch, num_active, train_metrics, progress)
            self.state["epoch"] = epoch + 1
            if self.state["epoch"] % checkpoint_every == 0 or self.state["epoch"] == epochs:
                self.save_checkpoint()
        if not (self.out / "current.pth").is_file():  # nothing left to train after --continue_from_file
            self.save_checkpoint()

    def result(self):
        """The job's summary (done.json)."""
        state, best = self.state, self.state["best"]
        return {
            "dataset": self.recipe["dataset"], "fold": self.recipe["fold"], "epochs": state["epoch"],
            "best_epoch": best["epoch"], "best_val_top1": best["val_top1"], "test_top1": best["test_top1"],
            "val_images": len(self.val), "test_images": len(self.test),
            "test_top5": best["test_top5"], "classes_at_best": best["classes"], "num_classes": self.num_classes,
            "wall_time_s": round(state["wall_time_s"], 2),
            "train_images_per_s": round(state["train_images"] / max(state["train_time_s"], 1e-9), 1),
            "recipe": self.recipe,
        }


DONE_KEYS = ("dataset", "fold", "epochs", "best_val_top1", "test_top1", "wall_time_s", "train_images_per_s",
             "recipe")


def read_done(path):
    """The result summary in a job's done.json; a damaged one is a UserError that says what to do."""
    try:
        done = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        done = None
    if not isinstance(done, dict) or not all(key in done for key in DONE_KEYS):
        raise UserError(f"{path} is damaged (not the summary of a finished job): delete it and rerun, "
                        f"which finishes the job from its current.pth")
    return done


def _finished_result(out, recipe):
    """done.json of a finished job with this recipe and at least its epochs, else None."""
    done_path = out / "done.json"
    if not done_path.is_file():
        return None
    done = read_done(done_path)
    _check_same_recipe(done["recipe"], recipe, out)
    if done["epochs"] < recipe["epochs"]:
        return None
    print(f"{recipe['dataset']} f={recipe['fold']}: finished earlier ({out}), skipping")
    return done


def train_job(name, fold, savedir, *, teacher=None, continue_from_file=None, checkpoint_every=1,
              data_root="data", device=None, threads=None, progress=True, cuda_graph=False, **recipe_options):
    """Train `name` folded `fold` times in `<savedir>/<name>/fold<fold>/` and return the
    result summary (also written to done.json). A finished job is skipped; an unfinished one
    continues from its current.pth (or from `continue_from_file`).

    `recipe_options` are resolve_recipe's (epochs, lr, init, train_bn, ...; the config's
    recipe where left out); `teacher` is the f = 1 model file to distill from (default:
    `<savedir>/<name>/fold1/best.pth`, else `model_files/<name>.pth`). `threads` sets
    torch's CPU threads (a resumed run is bitwise equal to an uninterrupted one when both
    use the same count). `cuda_graph` replays each full batch's step from a CUDA graph.
    """
    session_start = time.perf_counter()
    recipe = resolve_recipe(name, fold, **recipe_options)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise UserError(f"checkpoint_every must be a whole number >= 1, got {checkpoint_every!r}")
    device = resolve_device(device)
    if cuda_graph and device.type != "cuda":
        raise UserError(f"--cuda_graph needs a CUDA GPU, and the device is {device}; drop --cuda_graph")
    out = check_output_dir(job_dir(savedir, recipe["dataset"], fold), "job folder")
    for file in ("done.json", "current.pth", "best.pth", "metrics.csv"):
        check_output_file(out / file)
    # One process per job folder: a second launch of the same job (a rerun while an old sweep
    # still runs) fails in one line instead of both writing the same checkpoint.
    with exclusive_lock(out / LOCK_FILE, f"the job folder {out}"):
        done = _finished_result(out, recipe) if continue_from_file is None else None
        if done is not None:
            return done
        checkpoint = _resume_checkpoint(out, recipe, continue_from_file)
        if threads is not None:
            set_threads(threads)
        with on_device(device):  # the job's GPU current, and a stream of its own
            job = Job(recipe, out, savedir, teacher, data_root, device, session_start, cuda_graph)
            if checkpoint is not None:
                job.restore(checkpoint)
            job.roll_back_files()
            job.run(checkpoint_every, progress)
        result = job.result()
        atomic_write_json(out / "done.json", result)
        return result


# ----------------------------------------------------------------------------------------
# Command-line options shared by fold_trainer.py and train.py.

def add_job_arguments(parser):
    """The per-job options; every default is None so that callers can layer profiles."""
    add = parser.add_argument
    add("--epochs", type=positive_int, help="training epochs (default: the config's recipe)")
    add("--batch_size", "--batch-size", type=positive_int, help="images per batch, rounded down to a multiple of f")
    add("--lr", type=positive_float, help="learning rate (default: the config's)")
    add("--seed", type=nonnegative_int, help="seed of initialization, shuffling and augmentation (default 0)")
    add("--data-root", "--data_root", dest="data_root", help="folder holding the datasets (default data)")
    add("--scale-data", "--scale_data", dest="scale_data", type=fraction,
        help="fraction of each class's training images to use, 0 < s <= 1 (default 1)")
    add("--max_train_per_class", "--max-train-per-class", type=positive_int,
        help="cap on training images per class (default: no cap)")
    add("--curriculum", action=argparse.BooleanOptionalAction, default=None,
        help="curriculum learning on/off (default: on for folded game models)")
    add("--curriculum_epochs", "--curriculum-epochs", type=positive_int,
        help="curriculum epochs per step E (default: the config's, 60)")
    add("--distill", action=argparse.BooleanOptionalAction, default=None,
        help="train folded students on the logits of the trained f=1 model (default: folded CIFAR-10)")
    add("--optimizer", choices=OPTIMIZERS, help="optimizer (default: the config's)")
    add("--augment", choices=sorted(AUGMENTATIONS), help="training augmentation (default: the config's)")
    add("--init", choices=INITS, help="initialization: paper (Xavier/normal) or block (a folded model starts "
        "as f independent per-image networks; default paper)")
    add("--keep_blocks", "--keep-blocks", action=argparse.BooleanOptionalAction, default=None,
        help="with --init block: the weights across images stay zero for the whole run, so the model "
             "trains as f per-image networks (default off: training may mix them)")
    add("--train_bn", "--train-bn", action=argparse.BooleanOptionalAction, default=None,
        help="train with BatchNorm after each conv, folded into the convs when saved (default off)")
    add("--lr_warmup_epochs", "--lr-warmup-epochs", type=finite_float,
        help="epochs of linear learning-rate warm-up (default 0)")
    add("--lr_decay", "--lr-decay", choices=LR_DECAYS, help="learning-rate decay over the run (default none)")
    add("--distill_loss", "--distill-loss", choices=DISTILL_LOSSES,
        help="distillation loss: mse on raw logits (the paper's) or kl on softened ones (default mse)")
    add("--distill_temperature", "--distill-temperature", type=positive_float,
        help="softmax temperature of --distill_loss kl (default 1)")
    add("--distill_weight", "--distill-weight", type=fraction,
        help="weight of the distillation loss; cross-entropy on the labels gets 1 - weight (default 1)")
    add("--teacher", help="teacher model file (default SAVEDIR/<dataset>/fold1/best.pth, else model_files/<dataset>.pth)")
    add("--checkpoint_every", "--checkpoint-every", type=positive_int,
        help="epochs between current.pth checkpoints (default 1)")
    add("--device", type=device_string, help="cpu, cuda or cuda:N (default: cuda if available)")
    add("--threads", type=positive_int, help="CPU threads of torch (default: torch's; 1 is faster on a CPU shared with other jobs)")
    add("--cuda_graph", "--cuda-graph", action="store_true", default=None,
        help="GPU: replay each training step from a CUDA graph (removes the launch overhead of small models)")
    add("--no-progress", dest="progress", action="store_false", default=None, help="no tqdm bars")


JOB_OPTIONS = RECIPE_OPTIONS + ("data_root", "teacher", "checkpoint_every", "device", "threads", "progress",
                                "cuda_graph")


def job_options(args):
    """train_job keyword arguments given on the command line (unset ones left out)."""
    return {key: getattr(args, key) for key in JOB_OPTIONS if getattr(args, key, None) is not None}


def job_command(name, fold, savedir, options):
    """The fold_trainer.py command line that runs train_job(name, fold, savedir, **options):
    the inverse of job_options, for launchers that run each job as its own process."""
    parser = argparse.ArgumentParser(add_help=False)
    add_job_arguments(parser)
    argv = [sys.executable, str(Path(__file__).resolve()), str(name), str(fold), str(savedir)]
    for action in parser._actions:
        value = options.get(action.dest)
        if value is None:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):  # --x / --no-x
            argv.append(action.option_strings[0 if value else 1])
        elif action.nargs == 0:  # store_true / store_false: the flag only when it changes the default
            argv += [action.option_strings[0]] if value == action.const else []
        else:
            argv += [action.option_strings[0], str(value)]
    unknown = set(options) - {action.dest for action in parser._actions}
    if unknown:
        raise UserError(f"no fold_trainer.py flag for {', '.join(sorted(unknown))}")
    return argv


# ----------------------------------------------------------------------------------------
# Sweep summary (train.py).

def summary_rows(savedir):
    """One row per finished job under `savedir`, in registry order then fold; delta_vs_f1 is
    the test top-1 minus that of the same dataset's f = 1 job (empty without one)."""
    done = [read_done(p) for p in Path(savedir).glob("*/fold*/done.json")]
    done.sort(key=lambda d: (models.name_rank(d["dataset"]), d["dataset"], d["fold"]))
    original = {d["dataset"]: d["test_top1"] for d in done if d["fold"] == 1}
    rows = []
    for d in done:
        delta = d["test_top1"] - original[d["dataset"]] if d["dataset"] in original else None
        rows.append({"dataset": d["dataset"], "fold": d["fold"], "epochs": d["epochs"],
                     "best_val_top1": f"{d['best_val_top1']:.4f}", "test_top1": f"{d['test_top1']:.4f}",
                     "test_images": d.get("test_images", ""),
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


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="dataset/model name or id (e.g. lol-gold1 or V1)")
    parser.add_argument("fold", type=positive_int, help="fold f: 1 is the original CNN")
    parser.add_argument("savedir", help="root folder of the runs; the job writes <savedir>/<dataset>/fold<f>/")
    parser.add_argument("--continue_from_file", "--continue-from-file",
                        help="continue from this current.pth instead of the job folder's own")
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    result = train_job(args.name, args.fold, args.savedir, continue_from_file=args.continue_from_file,
                       **job_options(args))
    print(json.dumps({k: v for k, v in result.items() if k != "recipe"}, indent=2))


if __name__ == "__main__":
    main()
