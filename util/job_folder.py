"""The files of one training job, `<savedir>/<dataset>/fold<f>/`, behind one class.

    metrics.csv   one row per finished epoch (train loss, top-1/top-5 of train, val, test)
    best.pth      the model at the best validation top-1 (what distillation uses as teacher)
    current.pth   everything needed to continue: model, optimizer, scheduler, curriculum,
                  every RNG state, epoch, metrics
    done.json     the result summary of a finished job (a rerun skips the job)
    .lock         held by the one process training the job

Every file is replaced atomically (util/files.py), so a job killed at any moment resumes
from its last checkpoint. The trainer (fold_trainer.py) decides what goes into the files;
this class knows where they are, how they are checked and how they roll back.
"""
import csv
import json
from pathlib import Path

from util.checkpoint import read_checkpoint
from util.errors import UserError
from util.files import (atomic_torch_save, atomic_write_bytes, atomic_write_json, check_output_dir, check_output_file,
                        exclusive_lock)

METRIC_COLUMNS = ["epoch", "classes", "lr", "train_loss", "train_top1", "train_top5",
                  "val_top1", "val_top5", "test_top1", "test_top5"]
# What current.pth holds besides the recipe (best.pth holds the model weights only).
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "metrics", "best", "best_model",
                   "wall_time_s", "train_time_s", "train_images")
DONE_KEYS = ("dataset", "fold", "epochs", "best_val_top1", "test_top1", "wall_time_s", "train_images_per_s",
             "recipe")
# Recipe fields that may change between runs of one job folder (more epochs continue it; a
# teacher file may move with its savedir, its weights, teacher_sha256, may not change).
RESUMABLE_CHANGES = {"epochs", "teacher_path", "narrow_path"}
# Recipe fields added since some job folders were written: a stored recipe without one ran
# with one of these values.
ADDED_FIELDS = {"variant": ("original", "folded")}
LOCK_FILE = ".lock"


def _csv_line(row):
    return ",".join(str(row[c]) if isinstance(row[c], int) else f"{row[c]:.6f}" for c in METRIC_COLUMNS) + "\n"


def read_metrics(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


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


def check_same_recipe(stored, wanted, where):
    """A UserError if the recipe `stored` in `where` differs from `wanted` beyond RESUMABLE_CHANGES."""
    changed = [k for k in wanted if k not in RESUMABLE_CHANGES and stored.get(k) != wanted[k]
               and not (k not in stored and wanted[k] in ADDED_FIELDS.get(k, ()))]
    if "teacher_sha256" in changed:
        raise UserError(f"{where} holds a student distilled from another teacher ({stored.get('teacher_path')}, "
                        f"sha256 {str(stored.get('teacher_sha256'))[:12]}); this run's teacher {wanted['teacher_path']} "
                        f"has other weights (sha256 {wanted['teacher_sha256'][:12]}): pass the same --teacher "
                        f"or use another SAVEDIR")
    if "narrow_sha256" in changed:
        raise UserError(f"{where} holds a dense model started from another narrow model ({stored.get('narrow_path')}); "
                        f"{wanted['narrow_path']} has other weights now: use another SAVEDIR, or delete {where} to "
                        f"start again from the new one")
    if changed:
        diff = ", ".join(f"{k}: {stored.get(k)!r} there, {wanted[k]!r} now" for k in changed)
        raise UserError(f"{where} holds a run with other settings ({diff}); "
                        f"rerun with the same settings or use another SAVEDIR")


class JobFolder:
    """One job's folder and its files."""

    def __init__(self, path):
        self.path = Path(path)
        self.done, self.current, self.best = self.path / "done.json", self.path / "current.pth", self.path / "best.pth"
        self.metrics = self.path / "metrics.csv"

    def check_writable(self):
        """A one-line UserError now, not after an epoch, if the folder or a file cannot be written."""
        check_output_dir(self.path, "job folder")
        for file in (self.done, self.current, self.best, self.metrics):
            check_output_file(file)

    def lock(self):
        """One process per job folder: a second launch of the same job (a rerun while an old
        sweep still runs) fails in one line instead of both writing the same checkpoint."""
        return exclusive_lock(self.path / LOCK_FILE, f"the job folder {self.path}")

    def finished(self, recipe):
        """done.json of a finished job with this recipe and at least its epochs, else None."""
        if not self.done.is_file():
            return None
        done = read_done(self.done)
        check_same_recipe(done["recipe"], recipe, self.path)
        if done["epochs"] < recipe["epochs"]:
            return None
        print(f"{recipe['dataset']} {self.path.name}: finished earlier ({self.path}), skipping")
        return done

    def resume_checkpoint(self, recipe, continue_from_file=None):
        """The checkpoint to continue from: `continue_from_file`, else current.pth, else None;
        it must hold a run of the same recipe."""
        if continue_from_file is not None:
            path, where = continue_from_file, continue_from_file
        elif self.current.is_file():
            path, where = self.current, self.path
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
        check_same_recipe(checkpoint["recipe"], recipe, where)
        return checkpoint

    def roll_back(self, metrics, best):
        """Files past the checkpoint (written after it, before a kill) go back to it:
        `metrics` rows and the `best` dict of save_best (None: no best model yet)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.done.unlink(missing_ok=True)
        atomic_write_bytes(self.metrics, (",".join(METRIC_COLUMNS) + "\n" + "".join(map(_csv_line, metrics))).encode())
        if best is not None:
            self.save_best(best)
        else:
            self.best.unlink(missing_ok=True)

    def append_metrics(self, row):
        with open(self.metrics, "a") as fh:
            fh.write(_csv_line(row))

    def save_best(self, best):
        atomic_torch_save(best, self.best)

    def save_checkpoint(self, checkpoint):
        atomic_torch_save(checkpoint, self.current)

    def write_done(self, result):
        atomic_write_json(self.done, result)

    def has_checkpoint(self):
        return self.current.is_file()


def images_seen_curve(job, counts, fold, column="val_top1", every_epoch=False):
    """[(training images seen, `column` of metrics.csv)] after each epoch that scored every
    class (a curriculum's early epochs score only the classes in training), or after every
    epoch; `counts` are the training images per class, `fold` the images per input (an epoch
    leaves out the < f images that fill no group)."""
    points, seen = [], 0
    for row in read_metrics(job / "metrics.csv"):
        active = int(row["classes"])
        seen += sum(counts[:active]) // fold * fold
        if every_epoch or active == len(counts):
            points.append((seen, float(row[column])))
    return points
