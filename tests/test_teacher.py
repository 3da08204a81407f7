"""Distillation's teacher: only a finished f = 1 job teaches, the student's recipe records
which weights taught it, and a resumed student keeps its teacher; flags that another flag
would make ignored are refused (or warned about) instead of dropped."""
import hashlib
import shutil

import pytest

import fold_trainer
from datasets import game_synth
from fold_trainer import train_job
from util.errors import UserError

NAME = "apex-count"
TINY = dict(max_train_per_class=10, batch_size=16, lr=1e-3, progress=False, device="cpu", curriculum=False)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    game_synth.generate(NAME, root, scale=0.05, eval_scale=0.05, seed=0)
    return root


@pytest.fixture(scope="module")
def teachers(data_root, tmp_path_factory):
    """Two finished f = 1 jobs of different seeds (so different weights), each in its own savedir."""
    savedirs = []
    for seed in (0, 1):
        savedir = tmp_path_factory.mktemp(f"runs{seed}")
        train_job(NAME, 1, savedir, data_root=data_root, epochs=1, seed=seed, **TINY)
        savedirs.append(savedir)
    return savedirs


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_teacher_that_has_not_finished_is_refused(data_root, teachers, tmp_path):
    savedir = tmp_path / "runs"
    shutil.copytree(teachers[0], savedir)
    (savedir / NAME / "fold1" / "done.json").unlink()  # best.pth is there, as after any first epoch
    best = savedir / NAME / "fold1" / "best.pth"
    for teacher in (None, str(best)):
        with pytest.raises(UserError, match="belongs to a job that has not finished"):
            train_job(NAME, 2, savedir, data_root=data_root, epochs=1, distill=True, teacher=teacher, **TINY)
    assert not (savedir / NAME / "fold2" / "done.json").exists()
    # fold_trainer.py and train.py finish such a teacher first instead of refusing
    assert fold_trainer.untrained_teacher(NAME, 2, savedir, {"distill": True, **TINY})
    assert not fold_trainer.untrained_teacher(NAME, 2, teachers[0], {"distill": True, **TINY})


def test_the_student_records_its_teacher_and_a_resume_keeps_it(data_root, teachers, tmp_path, capsys):
    savedir = tmp_path / "runs"
    shutil.copytree(teachers[0], savedir)
    teacher = savedir / NAME / "fold1" / "best.pth"
    result = train_job(NAME, 2, savedir, data_root=data_root, epochs=1, distill=True, **TINY)
    assert result["recipe"]["teacher_sha256"] == sha256(teacher)
    assert result["recipe"]["teacher_path"] == str(teacher.resolve())

    other = teachers[1] / NAME / "fold1" / "best.pth"
    assert sha256(other) != sha256(teacher)
    with pytest.raises(UserError, match="distilled from another teacher"):
        train_job(NAME, 2, savedir, data_root=data_root, epochs=2, distill=True, teacher=str(other), **TINY)
    # The same weights under another path (a moved savedir) continue the run.
    moved = tmp_path / "moved.pth"
    shutil.copy(teacher, moved)
    again = train_job(NAME, 2, savedir, data_root=data_root, epochs=2, distill=True, teacher=str(moved), **TINY)
    assert again["epochs"] == 2 and again["recipe"]["teacher_sha256"] == sha256(teacher)


@pytest.mark.parametrize("flags, message", [
    (["--no-distill", "--distill-loss", "kl"], "--distill-loss only apply to distillation"),
    (["--no-distill", "--distill-temperature", "4", "--teacher", "x.pth"],
     "--distill-temperature, --teacher only apply to distillation"),
    (["--distill-loss", "mse", "--distill-temperature", "4"], "drop --distill-temperature or use --distill-loss kl"),
])
def test_flags_that_would_be_ignored_are_one_line_errors(tmp_path, flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fold_trainer.main([NAME, "2", str(tmp_path), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / NAME).exists()


def test_a_warm_up_longer_than_the_run_is_a_warning(data_root, tmp_path, capsys):
    train_job(NAME, 1, tmp_path, data_root=data_root, epochs=1, lr_warmup_epochs=3.0, lr_decay="cosine", **TINY)
    assert "warning: the learning-rate warm-up (3 epochs) is longer than the run (1 epochs)" in capsys.readouterr().err
    train_job(NAME, 1, tmp_path / "b", data_root=data_root, epochs=1, lr_warmup_epochs=1.0, lr_decay="cosine", **TINY)
    assert "warning" not in capsys.readouterr().err
