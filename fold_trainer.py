"""The trainer: one (dataset, fold) job, the original CNN (fold 1) or a FoldedCNN (fold > 1).

    python fold_trainer.py V1 4 runs/quick                        # the quick profile (no GPU)
    python fold_trainer.py lol-gold1 2 runs/paper --profile paper
    python fold_trainer.py V1 4 runs/quick --epochs 20 --batch-size 64 --lr 1e-3 --curriculum-epochs 1

As a module: `from fold_trainer import train_job` (train.py runs sweeps of jobs with it).
A job's recipe is a profile (PROFILES below: `paper`, the config's `train` section, i.e. the
original FoldedCNNs repository's recipe; `quick`, the default without a GPU) with the
command line's options over it (Recipe below). Curriculum learning (datasets/curriculum.py)
and distillation are wired in here; the data pipeline and the grouping of images into
folded inputs live in datasets/batches.py.

A job lives in `<savedir>/<dataset>/fold<f>/` (util/job_folder.py): metrics.csv, best.pth,
current.pth (written every `checkpoint_every` epochs) and done.json (the result, with the
recipe and the profile's name). Every file is replaced atomically (util/files.py), so a job
killed at any moment, even with SIGKILL, resumes from its last checkpoint; rerunning the
same command continues an unfinished job and skips a finished one. On CPU the resumed run
ends bitwise equal to an uninterrupted one (shuffling and augmentation draw from explicit
torch.Generator objects whose states are checkpointed). On a GPU it continues the same
shuffling and augmentation, but cuDNN's backward is not bitwise reproducible, so the weights
differ in the last bits.

On a GPU the update is fused Adam (one kernel), and `--cuda-graph` replays the whole step
(forward, loss, backward, update) from a CUDA graph: these models are small enough that
launching their kernels one by one, not the GPU, bounds the step otherwise
(scripts/bench_training.py measures both).
"""
import argparse
import dataclasses
import hashlib
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import models
from datasets.batches import AUGMENTATIONS, evaluation_order, load_job_data, training_batches
from datasets.curriculum import Curriculum, curriculum_for, per_fold_epochs
from util.args import (add_dataclass_flags, add_flag, device_string, finite_float, flag_field, fraction, given_fields,
                       nonnegative_int, positive_float, positive_int)
from util.checkpoint import load_weights
from util.cuda_graphs import GraphedStep
from util.device import on_device, resolve_device, set_threads
from util.errors import UserError, cli_main
from util.files import atomic_write_text
from util.job_folder import JobFolder, read_done
from util.results import result_variant

EVAL_BATCH_IMAGES = 1024
# Options of the training recipe beyond the paper's (docs/recipe.md); the paper's values.
OPTIMIZERS = ("adam", "rmsprop")
INITS = ("paper", "block", "narrow")
LR_DECAYS = ("none", "cosine")
DISTILL_LOSSES = ("mse", "kl")
MODEL_FILES = Path(__file__).resolve().parent / "model_files"


# ----------------------------------------------------------------------------------------
# The recipe: the config's `train` section with the caller's options applied.
#
# Recipe options beyond the paper's (docs/recipe.md measures them; each defaults to the
# paper's recipe): optimizer and augment override the config's; init="block" starts a folded
# model block-diagonal (models.folding.block_diagonal_), init="narrow" starts it as f copies
# of the same sweep's trained narrow CNN of f (models.folding.tile_narrow_; that job trains
# first), and keep_blocks keeps either so (no gradient flows across images: f per-image
# networks in one FoldedCNN, a named variant, not the paper's dense model); train_bn trains with
# a BatchNorm after every conv, folded into the convs whenever the model is saved
# (models/batchnorm.py); the learning rate rises linearly over `lr_warmup_epochs` and with
# lr_decay="cosine" falls to zero along a half cosine over the whole run (replacing the
# config's step schedule); a distilling student minimizes
# (1 - distill_weight) * cross-entropy + distill_weight * distill_loss, where "mse" is the
# paper's MSE on raw logits and "kl" the KL divergence between the teacher's and the
# student's softmax at `distill_temperature`, times its square (Hinton et al. 2015).

@dataclass(frozen=True)
class Recipe:
    """The training options of a job: each field is a flag of fold_trainer.py and train.py
    (--lr, --train-bn, ...) and may be set by a profile (PROFILES). None means the config's
    value; `resolve(name, fold)` applies them to a config. Adding an option is adding a field
    here (and to a profile if it changes one); the trainer then reads it from the recipe."""
    epochs: Optional[int] = flag_field(None, "training epochs (default: the config's recipe)", type=positive_int)
    batch_size: Optional[int] = flag_field(None, "images per batch, rounded down to a multiple of f",
                                           type=positive_int)
    lr: Optional[float] = flag_field(None, "learning rate (default: the config's)", type=positive_float)
    seed: int = flag_field(0, "seed of initialization, shuffling and augmentation (default 0)", type=nonnegative_int)
    max_train_per_class: Optional[int] = flag_field(None, "cap on training images per class (default: no cap)",
                                                    type=positive_int)
    scale_data: float = flag_field(1.0, "fraction of each class's training images to use, 0 < s <= 1 (default 1)",
                                   type=fraction)
    curriculum: Optional[bool] = flag_field(None, "curriculum learning on/off (default: the model family's, on for "
                                                  "folded game models)")
    curriculum_epochs: Optional[int] = flag_field(None, "curriculum epochs per step E (default: the config's, 60)",
                                                  type=positive_int)
    distill: Optional[bool] = flag_field(None, "train folded students on the logits of the trained f=1 model "
                                               "(default: the config's, on for folded CIFAR-10)")
    optimizer: Optional[str] = flag_field(None, "optimizer (default: the config's)", choices=OPTIMIZERS)
    augment: Optional[str] = flag_field(None, "training augmentation (default: the config's)",
                                        choices=sorted(AUGMENTATIONS))
    init: str = flag_field("paper", "initialization of a folded model: paper (Xavier/normal), block (f "
                                    "independent per-image networks) or narrow (f copies of the sweep's trained "
                                    "narrow CNN of f, SAVEDIR/<dataset>/narrow<f>; default paper)", choices=INITS)
    keep_blocks: bool = flag_field(False, "with --init block or narrow: the weights across images stay zero for the whole "
                                          "run, so the model trains as f per-image networks (default off: "
                                          "training may mix them)")
    dense_epoch_share: float = flag_field(1.0, "with --init narrow: the dense training after the narrow CNN's runs "
                                               "this share of --epochs, at least 1 (default 1)", type=positive_float)
    dense_lr_scale: float = flag_field(1.0, "with --init narrow: the dense training's learning rate is --lr times "
                                            "this (default 1)", type=positive_float)
    train_bn: bool = flag_field(False, "train with BatchNorm after each conv, folded into the convs when saved "
                                       "(default off)")
    lr_warmup_epochs: float = flag_field(0.0, "epochs of linear learning-rate warm-up (default 0)", type=finite_float)
    lr_decay: str = flag_field("none", "learning-rate decay over the run (default none)", choices=LR_DECAYS)
    distill_loss: str = flag_field("mse", "distillation loss: mse on raw logits (the paper's) or kl on softened "
                                          "ones (default mse)", choices=DISTILL_LOSSES)
    distill_temperature: float = flag_field(1.0, "softmax temperature of --distill-loss kl (default 1)",
                                            type=positive_float)
    distill_weight: float = flag_field(1.0, "weight of the distillation loss; cross-entropy on the labels gets "
                                            "1 - weight (default 1)", type=fraction)

    def __post_init__(self):
        for label, value, least in (("epochs", self.epochs, 1), ("batch size", self.batch_size, 1),
                                    ("seed", self.seed, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise UserError(f"{label} must be a whole number >= {least}, got {value!r}")
        if self.max_train_per_class is not None and self.max_train_per_class < 1:
            raise UserError(f"max_train_per_class must be >= 1, got {self.max_train_per_class}")
        if not 0 < self.scale_data <= 1:
            raise UserError(f"scale-data is the fraction of training images to use: give 0 < s <= 1, "
                            f"got {self.scale_data}")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"learning rate must be positive, got {self.lr}")
        for label, value, choices in (("augment", self.augment, tuple(AUGMENTATIONS)),
                                      ("optimizer", self.optimizer, OPTIMIZERS), ("init", self.init, INITS),
                                      ("lr_decay", self.lr_decay, LR_DECAYS),
                                      ("distill_loss", self.distill_loss, DISTILL_LOSSES)):
            if value is not None and value not in choices:
                raise UserError(f"unknown {label} {value!r}; use one of {', '.join(choices)}")
        if self.keep_blocks and self.init == "paper":
            raise UserError("--keep-blocks keeps a block-diagonal init's structure: add --init block or --init narrow")
        if not 0 <= self.lr_warmup_epochs < math.inf:
            raise UserError(f"lr_warmup_epochs must be >= 0, got {self.lr_warmup_epochs}")
        if not (self.dense_epoch_share > 0 and self.dense_lr_scale > 0):
            raise UserError(f"dense_epoch_share and dense_lr_scale must be positive, got {self.dense_epoch_share} "
                            f"and {self.dense_lr_scale}")
        if not self.distill_temperature > 0 or not 0 < self.distill_weight <= 1:
            raise UserError(f"distillation needs temperature > 0 and 0 < weight <= 1, "
                            f"got {self.distill_temperature} and {self.distill_weight}")

    def resolve(self, name, fold, variant=None):
        """Everything that decides the result of job (name, fold, variant), as a JSON-able dict
        (stored in checkpoints and done.json): the fields, with the config's values where None.
        curriculum=None follows the model family; distill=None the config
        (`train.distill_folded`); a student is always folded (f > 1). The baselines of f
        (variant narrow or compound, models.variant_of) take one image per input and train
        with the original's recipe: no curriculum or distillation unless asked for."""
        cfg = models.load_config(name)
        variant = models.variant_of(fold, variant)
        job_fold, fold = fold, models.images_per_input(variant, fold)  # fold: images per input
        family, train = models.family_of(cfg), cfg["train"]
        use_curriculum = (fold > 1 and family.curriculum) if self.curriculum is None else self.curriculum
        schedule = curriculum_for(cfg, fold, self.curriculum_epochs) if use_curriculum else None
        if use_curriculum and schedule is None:
            raise UserError(f"{cfg['name']} has no curriculum in config/{cfg['name']}.json; drop --curriculum")
        epochs = self.epochs or (schedule and per_fold_epochs(cfg, fold)) or train["epochs"]
        batch_size = train["batch_size"] if self.batch_size is None else self.batch_size
        if batch_size < fold:
            raise UserError(f"batch size {batch_size} is smaller than the fold {fold}: "
                            f"a batch must hold at least one group of {fold} images")
        if train["augment"] not in AUGMENTATIONS:
            raise UserError(f"config/{cfg['name']}.json: unknown train.augment {train['augment']!r}; "
                            f"use one of {sorted(AUGMENTATIONS)}")
        if train["optimizer"] not in OPTIMIZERS:
            raise UserError(f"config/{cfg['name']}.json: unknown train.optimizer {train['optimizer']!r}; "
                            f"use adam or rmsprop")
        if self.lr_warmup_epochs and self.lr_decay == "none" and train["lr_schedule"] is not None:
            raise UserError(f"lr warm-up does not combine with {cfg['name']}'s step schedule; add --lr-decay cosine")
        distill = fold > 1 and (train["distill_folded"] if self.distill is None else self.distill)
        lr = train["lr"] if self.lr is None else self.lr
        if fold > 1 and self.init == "narrow":  # the dense phase after the narrow CNN's own training
            epochs, lr = max(1, round(epochs * self.dense_epoch_share)), lr * self.dense_lr_scale
        # curriculum_epochs lives on inside the curriculum's state.
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "curriculum_epochs"}
        return {"dataset": cfg["name"], "fold": job_fold, "variant": variant, **fields, "epochs": epochs,
                "batch_size": batch_size // fold * fold,  # rounded down to whole groups of f
                "optimizer": self.optimizer or train["optimizer"], "lr": lr,
                "weight_decay": train["weight_decay"],
                "lr_schedule": train["lr_schedule"] if self.lr_decay == "none" else None,
                "keep_blocks": bool(self.keep_blocks),
                "train_bn": bool(self.train_bn) and family.batchnorm_while_training,
                "augment": self.augment or train["augment"],
                "curriculum": schedule.state_dict() if schedule else None, "distill": distill,
                "distill_loss": self.distill_loss if distill else None,
                "distill_temperature": self.distill_temperature if distill and self.distill_loss == "kl" else None,
                "distill_weight": self.distill_weight if distill else None}


@dataclass(frozen=True)
class JobSettings:
    """Where and how a job runs, each field a flag as Recipe's; nothing here changes its result."""
    data_root: str = flag_field("data", "folder holding the datasets (default data)")
    teacher: Optional[str] = flag_field(None, "teacher model file (default SAVEDIR/<dataset>/fold1/best.pth, else "
                                              "model_files/<dataset>.pth)")
    checkpoint_every: int = flag_field(1, "epochs between current.pth checkpoints (default 1)", type=positive_int)
    device: Optional[str] = flag_field(None, "cpu, cuda or cuda:N (default: cuda if available)", type=device_string)
    threads: Optional[int] = flag_field(None, "CPU threads of torch (default: torch's; 1 is faster on a CPU shared "
                                              "with other jobs)", type=positive_int)
    progress: bool = flag_field(True, "tqdm progress bars (default on; --no-progress for log files)")
    cuda_graph: bool = flag_field(False, "GPU: replay each training step from a CUDA graph (removes the launch "
                                         "overhead of small models)")

    def __post_init__(self):
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"checkpoint_every must be a whole number >= 1, got {every!r}")


RECIPE_OPTIONS = tuple(f.name for f in dataclasses.fields(Recipe))
JOB_OPTIONS = RECIPE_OPTIONS + tuple(f.name for f in dataclasses.fields(JobSettings))

# ----------------------------------------------------------------------------------------
# Profiles: named sets of options under the command line's. Edit here, or override any
# field on the command line. Both fold_trainer.py and train.py read them.
PROFILES = {
    # The original recipe: each config's `train` section, unchanged.
    "paper": {},
    # A few CPU minutes per job (docs/recipe.md measures each choice):
    # - 20 epochs on at most 500 training images per class (V1 at data scale 0.05);
    # - the folded model is dense, but starts where training it from scratch cannot get in a
    #   few minutes: as f copies of the narrow CNN of f (the sweep's narrow<f> job, trained
    #   with the original's recipe), then 10 epochs with every weight free at a tenth of the
    #   learning rate (at 2e-3, Adam's steps on the zero weights across images swamp the
    #   narrow paths: V1 f=4 fell from 93% to 56% in one epoch). From the paper's init, each
    #   image's path is drowned by the others' for hundreds of thousands of images (the
    #   plateau, docs/recipe.md);
    # - BatchNorm while training (folded into the convs when saved) takes Adam at 2e-3 with
    #   1 epoch of warm-up and cosine decay;
    # - folded students learn the f = 1 model's softened outputs (KL at temperature 4) half and
    #   the labels half: a richer signal per image than the label alone;
    # - no curriculum: a short run leaves each stage too few steps to learn even the first
    #   classes (`--curriculum --curriculum-epochs N` restores it);
    # - one CPU thread: these tiny models gain little from a second thread and lose much when
    #   other processes share the cores.
    "quick": {"epochs": 20, "batch_size": 32, "optimizer": "adam", "lr": 2e-3, "lr_warmup_epochs": 1.0,
              "lr_decay": "cosine", "init": "narrow", "dense_epoch_share": 0.5, "dense_lr_scale": 0.1,
              "train_bn": True, "distill": True, "distill_loss": "kl", "distill_temperature": 4.0, "distill_weight": 0.5, "max_train_per_class": 500,
              "curriculum": False, "threads": 1},
}
DEFAULT_PROFILE = "paper" if torch.cuda.is_available() else "quick"


def split_options(options):
    """(Recipe, JobSettings) of train_job's keyword options; a UserError names an unknown one."""
    unknown = sorted(set(options) - set(JOB_OPTIONS))
    if unknown:
        raise UserError(f"unknown training option {', '.join(unknown)}; known: {', '.join(JOB_OPTIONS)}")
    return (Recipe(**{k: v for k, v in options.items() if k in RECIPE_OPTIONS}),
            JobSettings(**{k: v for k, v in options.items() if k not in RECIPE_OPTIONS}))


def profile_options(profile):
    """The options of profile `profile`; a UserError names the known ones."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    return PROFILES[profile]


def resolve_recipe(name, fold, variant=None, **options):
    """The recipe of job (name, fold, variant) with these Recipe options (Recipe.resolve)."""
    return Recipe(**options).resolve(name, fold, variant)


# ----------------------------------------------------------------------------------------
# Where a job lives.

def job_dir(savedir, name, fold, variant=None):
    """<savedir>/<dataset>/fold<f>, narrow<f> or compound (models.variant_folder)."""
    folder = models.variant_folder(models.variant_of(fold, variant), fold)
    return Path(savedir) / models.load_config(name)["name"] / folder


def job_label(name, fold, variant=None):
    """How messages name a job: "V1 f=4", "V1 narrow f=4", "V1 compound"."""
    variant = models.variant_of(fold, variant)
    return f"{name} " + {"narrow": f"narrow f={fold}", "compound": "compound"}.get(variant, f"f={fold}")


def best_path(savedir, name, fold):
    """The job's model at its best validation top-1."""
    return job_dir(savedir, name, fold) / "best.pth"


def finished_results(savedir):
    """The results (done.json) of every finished job under `savedir` (variants included), in
    registry order, then variant (models.VARIANTS), then fold."""
    done = [read_done(p) for pattern in ("*/fold*/done.json", "*/narrow*/done.json", "*/compound/done.json")
            for p in Path(savedir).glob(pattern)]
    return sorted(done, key=lambda d: (models.name_rank(d["dataset"]), d["dataset"],
                                       VARIANT_ORDER[result_variant(d)], d["fold"]))


VARIANT_ORDER = {"original": 0, "folded": 0, "narrow": 1, "compound": 2}


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


def unfinished_job_of(path):
    """The job folder holding model file `path` if that job has not finished (no done.json),
    else None: its best.pth exists after the first epoch, long before the job is done, and
    a student distilled from it would learn from a teacher that is still changing."""
    folder = JobFolder(Path(path).parent)
    in_a_job = folder.metrics.is_file() or folder.current.is_file()
    return folder.path if in_a_job and not folder.done.is_file() else None


def untrained_teacher(name, fold, savedir, options, variant=None):
    """Whether job (name, fold, variant) with train_job's `options` distills from an f = 1
    model that is neither given (`teacher`) nor found finished (teacher_candidates): its
    f = 1 job must train (or finish) first."""
    if fold == 1 or options.get("teacher") or not split_options(options)[0].resolve(name, fold, variant)["distill"]:
        return False
    sweep_teacher, pretrained = teacher_candidates(models.load_config(name)["name"], savedir)
    if unfinished_job_of(sweep_teacher) is not None:
        return True
    return not (sweep_teacher.is_file() or pretrained.is_file())


def find_teacher(name, savedir, explicit=None):
    """The teacher file to use: `explicit` if given (it must exist), else the first candidate
    that exists; a UserError saying how to train one if there is none, or if the file
    belongs to a job that has not finished."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise UserError(f"teacher file {explicit} does not exist; pass the best.pth of a trained fold-1 job")
        path = Path(explicit)
    else:
        path = next((p for p in teacher_candidates(name, savedir) if p.is_file()), None)
        if path is None:
            raise UserError(f"distillation needs a trained original {name} model: train it first with "
                            f"`python fold_trainer.py {name} 1 {savedir}` or pass --teacher PATH")
    unfinished = unfinished_job_of(path)
    if unfinished is not None:
        raise UserError(f"teacher {path} belongs to a job that has not finished ({unfinished} has no done.json); "
                        f"finish it first (rerun its fold_trainer.py command) or pass a finished job's best.pth")
    return path


def file_record(role, path):
    """What a job's recipe records of a weights file it depends on (role teacher: the model it
    distills from; narrow: the model its dense start copies): the file and a hash of its bytes,
    so that a resumed job keeps the same weights."""
    with open(path, "rb") as fh:
        return {f"{role}_path": str(Path(path).resolve()), f"{role}_sha256": hashlib.sha256(fh.read()).hexdigest()}


# ----------------------------------------------------------------------------------------
# The dense recipe's start (init="narrow"): a folded job begins as f copies of the trained
# narrow CNN of f from the same sweep, taken from that job's final training state
# (current.pth, which keeps its BatchNorm layers, so the folded model starts as exactly f
# narrow networks while training), then trains with the weights across images free.

def narrow_source(name, fold, savedir):
    """The current.pth of the finished narrow job of (name, fold) in `savedir`; a UserError
    saying how to train it if there is none."""
    folder = JobFolder(job_dir(savedir, name, fold, "narrow"))
    if not folder.done.is_file():
        raise UserError(f"--init narrow starts {name} f={fold} from the trained narrow CNN of f={fold}, which "
                        f"{folder.path} does not hold yet: train it first with `python fold_trainer.py {name} "
                        f"{fold} {savedir} --variant narrow` (train.py does it for you)")
    return folder.current


def starts_from_narrow(fold, options, variant=None):
    """Whether job (fold, variant) with train_job's `options` (its profile's included) begins as
    f copies of the narrow CNN of f (init="narrow" on a model of several images per input)."""
    return models.images_per_input(variant, fold) > 1 and split_options(options)[0].init == "narrow"


def untrained_narrow(name, fold, savedir, options, variant=None):
    """Whether job (name, fold, variant) starts from a narrow CNN that is not trained (or not
    finished) yet in `savedir`."""
    return (starts_from_narrow(fold, options, variant)
            and not (job_dir(savedir, name, fold, "narrow") / "done.json").is_file())


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
# What a job trains with: RNG states, model, optimizer, step, schedule.

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




def build_training_model(recipe):
    """The model a job trains: `models.build_variant(name, variant, f)`; a folded one starts
    block-diagonal or as f copies of the narrow CNN (recipe["narrow_path"]) if the recipe
    says so; with a BatchNorm after every conv while training if it says so."""
    name, fold, variant = recipe["dataset"], recipe["fold"], recipe["variant"]
    model = models.build_variant(name, variant, fold)
    folded = models.images_per_input(variant, fold) > 1
    if folded and recipe["init"] == "block":
        models.block_diagonal_(model, fold)
    model = models.insert_batchnorm(model) if recipe["train_bn"] else model
    if folded and recipe["init"] == "narrow":
        narrow = models.build_variant(name, "narrow", fold)
        narrow = models.insert_batchnorm(narrow) if recipe["train_bn"] else narrow
        load_weights(narrow, recipe["narrow_path"], "narrow model file",
                     f"does not hold the narrow CNN of {name} f={fold} in this recipe's form (BatchNorm or not)")
        models.folding.tile_narrow_(model, narrow, fold)
    return model


def make_optimizer(recipe, params, fused=False, capturable=False):
    """The recipe's optimizer; `fused`: Adam's single-kernel update (CUDA; RMSprop has none),
    `capturable`: safe to capture in a CUDA graph."""
    if recipe["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                                fused=fused or None, capturable=capturable)
    return torch.optim.RMSprop(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"], capturable=capturable)


def load_optimizer_state(optimizer, state_dict):
    """Load a checkpointed optimizer state, keeping this run's implementation (fused,
    capturable), which may differ from the checkpoint's (another device, --cuda-graph)."""
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


def set_learning_rate(optimizer, recipe, progress):
    """The learning rate `progress` epochs into the run (a fraction within an epoch): linear
    warm-up, then the cosine decay; untouched without either (a step schedule or none)."""
    warmup, decay = recipe["lr_warmup_epochs"], recipe["lr_decay"]
    if not warmup and decay == "none":
        return
    lr = recipe["lr"] * (min(1.0, progress / warmup) if warmup else 1.0)
    if decay == "cosine":
        lr *= 0.5 * (1 + math.cos(math.pi * progress / recipe["epochs"]))
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_loss(recipe, teacher=None):
    """loss(x, y, logits): cross-entropy on the labels; with a teacher, mixed with the
    distillation loss on its logits of the same images."""
    def loss(x, y, logits):
        if teacher is None:
            return F.cross_entropy(logits, y)
        with torch.no_grad():
            target = teacher(x)
        value = recipe["distill_weight"] * distillation_loss(logits, target, recipe["distill_loss"],
                                                             recipe["distill_temperature"])
        if recipe["distill_weight"] < 1:
            value = value + (1 - recipe["distill_weight"]) * F.cross_entropy(logits, y)
        return value

    return loss


def inference_state(model, train_bn):
    """The model's weights as `models.build_model` lays them out (BatchNorm folded away)."""
    model = models.fold_batchnorm(model) if train_bn else model
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def check_finite(model, loss, epoch, recipe, folder, epochs_done):
    """Stop a diverged job (NaN or inf loss or weights) before it writes anything of the
    epoch: the files keep the last good state and done.json is never written."""
    finite = torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all().item()
    if finite and math.isfinite(loss):
        return
    kept = (f"the last good checkpoint {folder.current} (after epoch {epochs_done}) is kept"
            if folder.has_checkpoint() else "no checkpoint was written")
    raise UserError(f"{job_label(recipe['dataset'], recipe['fold'], recipe['variant'])}: training diverged in epoch {epoch} "
                    f"(loss {loss}, learning rate {recipe['lr']}); {kept}. Rerun with a lower --lr "
                    f"in another SAVEDIR")


# ----------------------------------------------------------------------------------------
# The job in training.

def job_data(recipe, data_root, device):
    """(train, val, test) splits of a job on `device`; the compound-scaled CNN sees every
    image at its lower resolution."""
    size = models.variant_input_shape(recipe["dataset"], recipe["variant"], recipe["fold"])[1:]
    return load_job_data(recipe["dataset"], data_root, device, recipe["max_train_per_class"], recipe["scale_data"],
                         recipe["seed"], size)


class Trainer:
    """One job in training: its data, model, optimizer and progress (`state`, which the
    checkpoint holds with the model, optimizer, scheduler and RNG states); its files are
    `folder`'s (util/job_folder.py)."""

    def __init__(self, recipe, folder, savedir, settings, device, session_start):
        name, seed = recipe["dataset"], recipe["seed"]
        fold = self.fold = models.images_per_input(recipe["variant"], recipe["fold"])  # images per input
        self.label = job_label(name, recipe["fold"], recipe["variant"])
        self.recipe, self.folder, self.device = recipe, folder, device
        self.num_classes = len(models.load_config(name)["classes"])
        self.schedule = Curriculum.from_state_dict(recipe["curriculum"]) if recipe["curriculum"] else None
        self.teacher = None
        if recipe["distill"]:
            self.teacher = load_teacher(name, recipe["teacher_path"], device)
        self.train, self.val, self.test = job_data(recipe, settings.data_root, device)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        self.model = build_training_model(recipe).to(device)
        self.optimizer = make_optimizer(recipe, self.model.parameters(), fused=device.type == "cuda",
                                        capturable=settings.cuda_graph)
        self.scheduler = _make_scheduler(recipe, self.optimizer)
        # keep_blocks: no gradient across images, so the weights between them stay zero
        masks = models.folding.block_masks(self.model, fold) if recipe["keep_blocks"] and fold > 1 else None
        self.step = make_train_step(self.model, self.optimizer, fold, make_loss(recipe, self.teacher), masks)
        if settings.cuda_graph:
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
        print(f"{self.label}: resuming after epoch {self.state['epoch']} "
              f"of {self.recipe['epochs']}")

    def roll_back_files(self):
        """Files past the checkpoint (written after it, before a kill) go back to it."""
        self.folder.roll_back(self.state["metrics"], self.best_file_contents())

    def best_file_contents(self):
        """What best.pth holds: the best model's weights, its scores and the recipe (None before the first epoch)."""
        if self.state["best_model"] is None:
            return None
        return {"model": self.state["best_model"], **self.state["best"], "recipe": self.recipe}

    def save_checkpoint(self):
        self.state["wall_time_s"] = self.wall_before + time.perf_counter() - self.session_start
        self.folder.save_checkpoint({
            "recipe": self.recipe, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "curriculum": self.schedule.state_dict() if self.schedule else None,
            "rng": _rng_states(self.generators), **self.state})

    def train_epoch(self, epoch, num_active, progress):
        """One pass over the (active-class) training images; the epoch's train metrics."""
        fold, device = self.fold, self.device
        batches = training_batches(self.train.labels_cpu, self.recipe["batch_size"], fold,
                                   self.generators["shuffle"], num_active, device)
        set_learning_rate(self.optimizer, self.recipe, epoch)
        lr_now = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        hits1 = torch.zeros((), dtype=torch.int64, device=device)
        hits5 = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        bar = tqdm(batches, desc=f"Epoch {epoch}. train", leave=False, disable=not progress)
        for step, positions in enumerate(bar):
            set_learning_rate(self.optimizer, self.recipe, epoch + step / len(batches))
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

    def finish_epoch(self, epoch, num_active, train_metrics, progress):
        """Evaluate, append the epoch's row to metrics.csv and keep the best model."""
        fold = self.fold
        val_top1, val_top5 = evaluate(self.model, self.val, fold, num_active, f"Epoch {epoch}. val", progress)
        test_top1, test_top5 = evaluate(self.model, self.test, fold, num_active, f"Epoch {epoch}. test", progress)
        classes = num_active or self.num_classes
        row = {"epoch": epoch, "classes": classes, **train_metrics,
               "val_top1": val_top1, "val_top5": val_top5, "test_top1": test_top1, "test_top5": test_top5}
        self.state["metrics"].append(row)
        self.folder.append_metrics(row)
        # Model selection: best validation top-1; while a curriculum grows, a model scored on
        # more classes beats any scored on fewer (100% on 2 classes says little).
        best = self.state["best"]
        if best is None or (classes, val_top1) > (best["classes"], best["val_top1"]):
            self.state["best"] = {"epoch": epoch, "classes": classes, "val_top1": val_top1,
                                  "test_top1": test_top1, "test_top5": test_top5}
            self.state["best_model"] = inference_state(self.model, self.recipe["train_bn"])
            self.folder.save_best(self.best_file_contents())
        print(f"Epoch {epoch}. {self.label}. Loss={row['train_loss']:.4f}. "
              f"Top-1 train={row['train_top1']:.4f} val={val_top1:.4f} test={test_top1:.4f} "
              f"({classes}/{self.num_classes} classes)", flush=True)

    def run(self, checkpoint_every, progress):
        epochs = self.recipe["epochs"]
        for epoch in range(self.state["epoch"], epochs):
            num_active = self.schedule.active_classes(epoch) if self.schedule else None
            train_metrics = self.train_epoch(epoch, num_active, progress)
            check_finite(self.model, train_metrics["train_loss"], epoch, self.recipe, self.folder,
                         self.state["epoch"])
            self.finish_epoch(epoch, num_active, train_metrics, progress)
            self.state["epoch"] = epoch + 1
            if self.state["epoch"] % checkpoint_every == 0 or self.state["epoch"] == epochs:
                self.save_checkpoint()
        if not self.folder.has_checkpoint():  # nothing left to train after --continue-from-file
            self.save_checkpoint()

    def result(self):
        """The job's summary (done.json)."""
        state, best = self.state, self.state["best"]
        return {
            "dataset": self.recipe["dataset"], "fold": self.recipe["fold"], "variant": self.recipe["variant"],
            "epochs": state["epoch"],
            "best_epoch": best["epoch"], "best_val_top1": best["val_top1"], "test_top1": best["test_top1"],
            "val_images": len(self.val), "test_images": len(self.test),
            "test_top5": best["test_top5"], "classes_at_best": best["classes"], "num_classes": self.num_classes,
            "wall_time_s": round(state["wall_time_s"], 2),
            "train_images_per_s": round(state["train_images"] / max(state["train_time_s"], 1e-9), 1),
            "cross_image_share": best_cross_image_share(self.recipe, state["best_model"]), "recipe": self.recipe,
        }


def best_cross_image_share(recipe, weights):
    """models.folding.cross_image_share of a job's model `weights` (None unless folded)."""
    fold = models.images_per_input(recipe["variant"], recipe["fold"])
    if fold == 1:
        return None
    model = models.build_variant(recipe["dataset"], recipe["variant"], recipe["fold"])
    model.load_state_dict(weights)
    return models.folding.cross_image_share(model, fold)


def train_job(name, fold, savedir, *, variant=None, profile="paper", continue_from_file=None, **options):
    """Train `name` folded `fold` times in `<savedir>/<name>/fold<fold>/` (or its baseline of
    f, `variant` narrow or compound, in narrow<f>/ or compound/) and return the result
    summary (also written to done.json, with the profile's name). A finished job is
    skipped; an unfinished one continues from its current.pth (or from `continue_from_file`).

    `options` are the fields of Recipe (epochs, lr, init, train_bn, ...) and of JobSettings
    (data_root, device, threads, ...), over those of PROFILES[profile]; the config's recipe
    where left out. `teacher` is the f = 1 model file to distill from (default:
    `<savedir>/<name>/fold1/best.pth`, else `model_files/<name>.pth`). `threads` sets
    torch's CPU threads (a resumed run is bitwise equal to an uninterrupted one when both
    use the same count). `cuda_graph` replays each full batch's step from a CUDA graph.
    """
    session_start = time.perf_counter()
    options = {**profile_options(profile), **options}
    recipe_options, settings = split_options(options)
    recipe = recipe_options.resolve(name, fold, variant)
    if recipe["distill"]:
        recipe.update(file_record("teacher", find_teacher(recipe["dataset"], savedir, settings.teacher)))
    if starts_from_narrow(fold, options, variant):
        recipe.update(file_record("narrow", narrow_source(recipe["dataset"], fold, savedir)))
    if recipe["distill"] and recipe["distill_loss"] == "mse" and recipe_options.distill_temperature != 1.0:
        print(f"warning: distill_temperature {recipe_options.distill_temperature:g} is not used by the mse "
              f"distillation loss (only by kl)", file=sys.stderr)
    if recipe["lr_warmup_epochs"] > recipe["epochs"]:
        print(f"warning: the learning-rate warm-up ({recipe['lr_warmup_epochs']:g} epochs) is longer than the "
              f"run ({recipe['epochs']} epochs): the learning rate never reaches {recipe['lr']:g}", file=sys.stderr)
    device = resolve_device(settings.device)
    if settings.cuda_graph and device.type != "cuda":
        raise UserError(f"--cuda-graph needs a CUDA GPU, and the device is {device}; drop --cuda-graph")
    folder = JobFolder(job_dir(savedir, recipe["dataset"], fold, recipe["variant"]))
    folder.check_writable()
    with folder.lock():
        done = folder.finished(recipe) if continue_from_file is None else None
        if done is not None:
            return done
        checkpoint = folder.resume_checkpoint(recipe, continue_from_file)
        if settings.threads is not None:
            set_threads(settings.threads)
        with on_device(device):  # the job's GPU current, and a stream of its own
            trainer = Trainer(recipe, folder, savedir, settings, device, session_start)
            if checkpoint is not None:
                trainer.restore(checkpoint)
            trainer.roll_back_files()
            trainer.run(settings.checkpoint_every, settings.progress)
        result = {**trainer.result(), "profile": profile}
        folder.write_done(result)
        return result


# ----------------------------------------------------------------------------------------
# Command lines: the flags of both Recipe and JobSettings (fold_trainer.py and train.py), and
# a job handed to its own process as data.

def add_job_arguments(parser):
    """One flag per option of Recipe and JobSettings, every default None so that callers can
    layer them over a profile."""
    add_dataclass_flags(parser, Recipe)
    add_dataclass_flags(parser, JobSettings)


def job_options(args):
    """train_job keyword arguments given on the command line (unset ones left out); a
    UserError for flags that the others would make ignored."""
    given = {**given_fields(args, Recipe), **given_fields(args, JobSettings)}
    if given.get("distill") is False:
        ignored = [f for f in ("distill_loss", "distill_temperature", "distill_weight", "teacher") if f in given]
        if ignored:
            flags = ", ".join("--" + f.replace("_", "-") for f in ignored)
            raise UserError(f"{flags} only apply to distillation, which --no-distill turns off; drop one or the other")
    if given.get("distill_loss") == "mse" and "distill_temperature" in given:
        raise UserError("--distill-temperature softens the logits of --distill-loss kl; mse compares raw logits: "
                        "drop --distill-temperature or use --distill-loss kl")
    return given


def job_stem(name, fold, variant=None):
    """A job's name in file names: <name>-f<f>, <name>-narrow<f> or <name>-compound."""
    variant = models.variant_of(fold, variant)
    return f"{name}-" + (f"f{fold}" if variant in ("original", "folded") else models.variant_folder(variant, fold))


def job_file(savedir, name, fold, variant=None):
    return Path(savedir) / "jobs" / f"{job_stem(name, fold, variant)}.json"


def job_command(name, fold, savedir, options, profile, variant=None):
    """The fold_trainer.py command line that runs train_job(name, fold, savedir,
    variant=variant, profile=profile, **options) as its own process, for launchers: every
    option, resolved to its Recipe and JobSettings, is written as data to
    SAVEDIR/jobs/<name>-<job folder>.json, which the command reads back (--options-file), so
    that no option is lost on the way."""
    recipe_options, settings = split_options({**profile_options(profile), **options})
    path = job_file(savedir, name, fold, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"profile": profile, "recipe": dataclasses.asdict(recipe_options),
                                        "settings": dataclasses.asdict(settings)}, indent=2, default=str) + "\n")
    return [sys.executable, str(Path(__file__).resolve()), str(name), str(fold), str(savedir),
            "--options-file", str(path)] + (["--variant", variant] if variant in models.BASELINES else [])


def read_options_file(path):
    """(profile, options) of a file written by job_command."""
    try:
        spec = json.loads(Path(path).read_text())
        return spec["profile"], {**spec["recipe"], **spec["settings"]}
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a job's options file (train.py writes them under SAVEDIR/jobs/)") from None


def format_seconds(seconds):
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s" if seconds >= 60 else f"{seconds:.1f}s"


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="dataset/model name or id (e.g. lol-gold1 or V1)")
    parser.add_argument("fold", type=positive_int, help="fold f: 1 is the original CNN")
    parser.add_argument("savedir", help="root folder of the runs; the job writes <savedir>/<dataset>/fold<f>/ "
                                        "(narrow<f>/ or compound/ with --variant)")
    parser.add_argument("--variant", choices=models.BASELINES,
                        help="train a baseline instead of the FoldedCNN: narrow (the original with layers "
                             "narrowed by 1/sqrt(f), one image per input) or compound (the EfficientNet-style "
                             "shrunken CNN; fold 1)")
    parser.add_argument("--profile", choices=list(PROFILES),
                        help=f"recipe profile (default here: {DEFAULT_PROFILE}; paper with a GPU, quick without)")
    add_flag(parser, "continue_from_file",
                        help="continue from this current.pth instead of the job folder's own")
    add_flag(parser, "options_file",
                        help="the job's profile and options as written by train.py for the jobs it launches "
                             "(flags given beside it override them)")
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    profile, options = read_options_file(args.options_file) if args.options_file else (DEFAULT_PROFILE, {})
    profile = args.profile or profile
    options = {**profile_options(profile), **options, **job_options(args)}
    label = job_label(args.name, args.fold, args.variant)
    if args.continue_from_file is None:
        if untrained_teacher(args.name, args.fold, args.savedir, options, args.variant):
            print(f"{label} distills from the f=1 model, which is not trained yet: training it first")
            train_job(args.name, 1, args.savedir, profile=profile, **options)
        if untrained_narrow(args.name, args.fold, args.savedir, options, args.variant):
            print(f"{label} starts from the narrow CNN of f={args.fold}, which is not trained yet: training it first")
            train_job(args.name, args.fold, args.savedir, variant="narrow", profile=profile, **options)
    result = train_job(args.name, args.fold, args.savedir, variant=args.variant, profile=profile,
                       continue_from_file=args.continue_from_file, **options)
    print(json.dumps({k: v for k, v in result.items() if k != "recipe"}, indent=2))


if __name__ == "__main__":
    main()
