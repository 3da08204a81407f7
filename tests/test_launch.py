"""Parallel sweeps (train.py --jobs, --launcher): each job as its own fold_trainer.py process,
locally and through submitit's local executor (the submission code of --launcher slurm),
giving the same summary.csv as the sequential sweep; a killed sweep that is rerun finishes
without retraining its finished jobs; a failed job is reported with its log."""
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fold_trainer
from datasets import game_synth
from tests.helpers import REPO, assert_clean_error, run_cli
from util.files import exclusive_lock
from util.job_folder import LOCK_FILE

DATASETS = ["lol-gold1", "apex-count"]  # V1 and V2
# The quick profile (block init, KL distillation from f = 1) on a few images for 2 epochs.
SWEEP = ["--datasets", "V1", "V2", "--folds", "1", "2", "--profile", "quick", "--epochs", "2",
         "--max_train_per_class", "12", "--device", "cpu", "--threads", "1", "--no-progress"]
RESULT_COLUMNS = ["dataset", "fold", "variant", "epochs", "best_val_top1", "test_top1", "test_images", "delta_vs_f1"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for name in DATASETS:
        game_synth.generate(name, root, scale=0.05, seed=0)
    return root


def results(savedir):
    """summary.csv without its timing columns."""
    with open(savedir / "summary.csv", newline="") as f:
        return [[row[c] for c in RESULT_COLUMNS] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def sequential(data_root, tmp_path_factory):
    savedir = tmp_path_factory.mktemp("sequential")
    proc = run_cli("train.py", savedir, *SWEEP, "--data-root", data_root)
    assert proc.returncode == 0, proc.stderr
    rows = results(savedir)
    # the quick profile's folded jobs start from the narrow CNN of f, which the sweep trains too
    assert [r[:3] for r in rows] == [[n, f, v] for n in DATASETS
                                     for f, v in (("1", "original"), ("2", "folded"), ("2", "narrow"))]
    return rows


def test_job_command_hands_every_option_to_the_job_as_data(tmp_path):
    options = {"data_root": "data", "seed": 3, "progress": False, "cuda_graph": True, "device": "cpu",
               "teacher": "t.pth", "curriculum_epochs": 2, "lr": 5e-3}
    command = fold_trainer.job_command("V1", 4, tmp_path, options, "quick")
    assert command[:5] == [sys.executable, str(REPO / "fold_trainer.py"), "V1", "4", str(tmp_path)]
    assert command[5] == "--options-file"
    profile, read_back = fold_trainer.read_options_file(command[6])
    assert profile == "quick"
    assert set(read_back) == set(fold_trainer.JOB_OPTIONS)  # every field, the defaults too
    assert fold_trainer.split_options(read_back) == fold_trainer.split_options({**fold_trainer.PROFILES["quick"],
                                                                                **options})


def test_submitit_local_executor_gives_the_sequential_summary(data_root, sequential, tmp_path):
    proc = run_cli("train.py", tmp_path, *SWEEP, "--data-root", data_root, "--launcher", "submitit-local")
    assert proc.returncode == 0, proc.stderr
    assert "submitted 2 jobs (local)" in proc.stdout  # two waves: the f = 1 jobs, then the folded ones
    assert results(tmp_path) == sequential
    assert list((tmp_path / "submitit").glob("*/*_log.out"))


def test_killed_parallel_sweep_reruns_to_the_sequential_summary_without_retraining(data_root, sequential, tmp_path):
    command = [sys.executable, "train.py", str(tmp_path), *SWEEP, "--data-root", str(data_root), "--jobs", "2"]
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    first_done = tmp_path / "lol-gold1" / "fold1" / "done.json"
    while not first_done.exists() and sweep.poll() is None:  # the first finished job, however long it takes
        time.sleep(0.05)
    os.killpg(sweep.pid, signal.SIGKILL)  # the launcher and its jobs, with no chance to clean up
    sweep.wait()
    finished = {p: p.read_bytes() for p in tmp_path.glob("*/fold*/done.json")}
    assert first_done in finished and len(finished) < 4, "the kill came after the sweep had finished"

    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "2 jobs at once on the CPU, 1 thread each" in rerun.stdout
    assert all(path.read_bytes() == before for path, before in finished.items())  # not retrained
    assert results(tmp_path) == sequential
    log = (tmp_path / "logs" / "lol-gold1-f1.log").read_text()
    assert log.count("fold_trainer.py lol-gold1 1") == 2 and "skipping" in log


def processes_running(fragment):
    """Pids of the processes whose command line holds `fragment`."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if fragment in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:  # ended while we looked
            pass
    return pids


def test_terminated_parallel_sweep_stops_its_jobs_writes_the_summary_and_reruns(data_root, sequential, tmp_path):
    """What docker stop, systemd or Slurm preemption send: like Ctrl-C, the jobs are stopped
    (none is left running), the summary is written, and a rerun finishes the sweep. (SIGHUP
    takes the same path: tests/test_robustness.py.)"""
    signum, code = signal.SIGTERM, 143
    command = [sys.executable, "train.py", str(tmp_path), *SWEEP, "--data-root", str(data_root), "--jobs", "2"]
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_done = tmp_path / "lol-gold1" / "fold1" / "done.json"
    deadline = time.monotonic() + 300
    while not first_done.exists() and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_running(f"fold_trainer.py apex-count 1 {tmp_path}"), "V2 f=1 no longer runs: signal too late"
    sweep.send_signal(signum)  # to train.py alone, not to its jobs
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == code and "Traceback" not in stderr, stderr
    assert not processes_running(str(tmp_path))
    assert [r[:2] for r in results(tmp_path)][:1] == [["lol-gold1", "1"]]

    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert results(tmp_path) == sequential


def test_a_failed_job_is_reported_with_its_log_and_the_others_finish(data_root, tmp_path):
    busy = tmp_path / "apex-count" / "fold1" / LOCK_FILE
    with exclusive_lock(busy, "test"):  # as if an old sweep were still training V2 f=1
        proc = run_cli("train.py", tmp_path, *SWEEP, "--epochs", "1", "--data-root", data_root, "--jobs", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    log = tmp_path / "logs" / "apex-count-f1.log"
    assert f"apex-count f=1: exit code 2; log: {log}" in proc.stderr
    assert "apex-count f=2: not run, as its f=1 teacher did not finish" in proc.stderr
    assert f"in use by another process (pid {os.getpid()})" in log.read_text()
    # V2's narrow CNN needs no teacher: it trains
    assert [r[:3] for r in results(tmp_path)] == [["lol-gold1", "1", "original"], ["lol-gold1", "2", "folded"],
                                                  ["lol-gold1", "2", "narrow"], ["apex-count", "2", "narrow"]]


@pytest.mark.parametrize("flags, message", [
    (["--jobs", "0"], "argument --jobs: must be at least 1, got 0"),
    (["--launcher", "pbs"], "argument --launcher: invalid choice: 'pbs'"),
    (["--launcher", "submitit-local", "--slurm-option", "qos"], "--slurm-option takes KEY=VALUE"),
])
def test_bad_launcher_flags_are_one_line_errors(data_root, tmp_path, flags, message):
    proc = run_cli("train.py", tmp_path, *SWEEP, "--data-root", data_root, *flags)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="Slurm is installed here")
def test_slurm_launcher_without_slurm_names_the_login_node_and_submitit_local(data_root, tmp_path):
    proc = run_cli("train.py", tmp_path / "runs", *SWEEP, "--data-root", data_root, "--launcher", "slurm")
    assert_clean_error(proc, "--launcher slurm needs Slurm's sbatch", "--launcher submitit-local")
    assert not (tmp_path / "runs").exists()  # nothing was started
