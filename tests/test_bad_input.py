"""Bad input never costs data and never ends in a traceback (issue 11): one test per shared
mechanism, its cases as parameters; in-process where the mechanism is a function, a real
command line where the case is about the command line."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import ai
import fold_trainer
import infer
import train
from datasets import game_synth, image_folder, noscope_synth
from datasets.noscope import split_frames
from fold_trainer import train_job
from scripts import noscope_video_save, plot_results, report, reproduce, tradeoff
from tests.helpers import REPO, assert_clean_error, one_line_error, run_cli
from util.errors import UserError
from util.files import atomic_write_bytes, check_output_dir, check_output_file
from util.job_folder import read_metrics
from util.results import RESULTS_HEADER, read_results, read_summary, resume_results, settings_path

TINY_JOB = dict(epochs=1, batch_size=32, max_train_per_class=2, progress=False, threads=1, device="cpu")


@pytest.fixture(scope="module")
def game_data(tmp_path_factory):
    """lol-gold1 at 10/1/1 images per class."""
    root = tmp_path_factory.mktemp("data")
    game_synth.generate("lol-gold1", root, scale=0.001, seed=0, workers=1)
    return root


@pytest.fixture(scope="module")
def noscope_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("noscope")
    noscope_synth.build("night", root, frames=48, size=(64, 48))
    return root


@pytest.fixture(scope="module")
def finished_job(game_data, tmp_path_factory):
    savedir = tmp_path_factory.mktemp("runs")
    train_job("lol-gold1", 1, savedir, data_root=game_data, **TINY_JOB)
    return savedir


def copy_tree(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ---- 1. a generator replaces only what it wrote ------------------------------------------

def user_notes(tmp, game, noscope):
    (tmp / "lol-gold1").mkdir()
    (tmp / "lol-gold1" / "my_notes.txt").write_text("mine")
    return lambda: game_synth.generate("lol-gold1", tmp, scale=0.001, workers=1), tmp / "lol-gold1/my_notes.txt"


def hand_made_png(tmp, game, noscope):
    (tmp / "lol-gold1" / "train" / "0").mkdir(parents=True)
    (tmp / "lol-gold1" / "train" / "0" / "hand.png").write_bytes(b"png")
    return lambda: game_synth.generate("lol-gold1", tmp, scale=0.001, workers=1), tmp / "lol-gold1/train/0/hand.png"


def user_file_in_our_dataset(tmp, game, noscope):
    copy_tree(game / "lol-gold1", tmp / "lol-gold1")
    (tmp / "lol-gold1" / "my_notes.txt").write_text("mine")
    return lambda: game_synth.generate("lol-gold1", tmp, scale=0.002, workers=1), tmp / "lol-gold1/my_notes.txt"


def user_file_named_like_the_dataset(tmp, game, noscope):
    (tmp / "lol-gold1").write_text("mine")
    return lambda: game_synth.generate("lol-gold1", tmp, scale=0.001, workers=1), tmp / "lol-gold1"


def user_partial_folder(tmp, game, noscope):
    (tmp / "lol-gold1.partial").mkdir()
    (tmp / "lol-gold1.partial" / "my_notes.txt").write_text("mine")
    return lambda: game_synth.generate("lol-gold1", tmp, scale=0.001, workers=1), tmp / "lol-gold1.partial/my_notes.txt"


def user_video_labels(tmp, game, noscope):
    (tmp / "night.csv").write_text("my,labels\n")
    return lambda: noscope_synth.synthesize("night", tmp / "night.mp4", tmp / "night.csv", 48, (64, 48)), \
        tmp / "night.csv"


def user_frames_folder(tmp, game, noscope):
    (tmp / "noscope-synth" / "night-frames").mkdir(parents=True)
    (tmp / "noscope-synth" / "night-frames" / "my_notes.txt").write_text("mine")
    return lambda: noscope_synth.build("night", tmp, frames=48, size=(64, 48)), \
        tmp / "noscope-synth/night-frames/my_notes.txt"


def user_file_in_our_split(tmp, game, noscope):
    raw = copy_tree(noscope, tmp / "n") / "noscope-synth"
    copy_tree(noscope / "night", tmp / "split")
    (tmp / "split" / "my_notes.txt").write_text("mine")
    os.utime(raw / "night.csv")  # new labels: the split is rebuilt
    return lambda: split_frames("night", tmp / "split", raw / "night.csv", raw / "night-frames"), \
        tmp / "split/my_notes.txt"


@pytest.mark.parametrize("case", [user_notes, hand_made_png, user_file_in_our_dataset, user_file_named_like_the_dataset,
                                  user_partial_folder, user_video_labels, user_frames_folder, user_file_in_our_split])
def test_generators_replace_only_what_they_wrote(tmp_path, game_data, noscope_data, case):
    generate, users_file = case(tmp_path, game_data, noscope_data)
    before = users_file.read_bytes()
    with pytest.raises(UserError, match="--force") as err:
        generate()
    assert "\n" not in str(err.value)
    assert users_file.read_bytes() == before


def test_generator_cli_refuses_a_users_folder_and_force_replaces_it(tmp_path, capsys):
    (tmp_path / "apex-count").mkdir()
    (tmp_path / "apex-count" / "my_notes.txt").write_text("mine")
    args = ["V2", "--scale", "0.001", "--workers", "1", "--out", str(tmp_path)]
    assert one_line_error(game_synth.main, args, capsys).startswith(f"error: {tmp_path / 'apex-count'} exists")
    assert (tmp_path / "apex-count" / "my_notes.txt").is_file()
    game_synth.main(args + ["--force"])
    assert not (tmp_path / "apex-count" / "my_notes.txt").exists()
    assert (tmp_path / "apex-count" / ".complete").is_file()


# ---- 2. damaged state files --------------------------------------------------------------

def damage(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00garbage\xff" * 20)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "foreign":
        torch.save(torch.zeros(3), path) if path.suffix == ".pt" or path.suffix == ".pth" else path.write_text("[1, 2]")


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "foreign"])
def test_damaged_split_cache_is_rebuilt_with_a_notice(tmp_path, game_data, capsys, how):
    root = copy_tree(game_data, tmp_path / "data")
    split = root / "lol-gold1" / "train"
    classes = sorted(p.name for p in split.iterdir())
    images, labels = image_folder.load_image_folder(split, classes, 22, 52)  # writes the cache
    damage(root / "lol-gold1" / "train.cache.pt", how)
    capsys.readouterr()
    again, again_labels = image_folder.load_image_folder(split, classes, 22, 52)
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "train.cache.pt is damaged" in notice[0] and "rebuilding" in notice[0]
    assert torch.equal(again, images) and torch.equal(again_labels, labels)
    assert torch.load(root / "lol-gold1" / "train.cache.pt", weights_only=True)["images"].shape == images.shape


@pytest.mark.parametrize("file, how, message", [
    ("done.json", "truncated", "done.json is damaged"),
    ("done.json", "garbage", "done.json is damaged"),
    ("done.json", "foreign", "done.json is damaged"),
    ("current.pth", "truncated", "delete it to train the job from epoch 0"),
    ("current.pth", "garbage", "delete it to train the job from epoch 0"),
    ("current.pth", "foreign", "not a training checkpoint"),
    ("best.pth", "continue_from_file", "model weights only"),
])
def test_damaged_job_files_are_reported_with_path_and_fix(tmp_path, game_data, finished_job, file, how, message):
    savedir = copy_tree(finished_job, tmp_path / "runs")
    job = savedir / "lol-gold1" / "fold1"
    options = dict(TINY_JOB, epochs=2)
    if how == "continue_from_file":
        options["continue_from_file"] = job / file
    else:
        damage(job / file, how)
        if file == "current.pth":
            (job / "done.json").unlink()
    with pytest.raises(UserError, match=message) as err:
        train_job("lol-gold1", 1, savedir, data_root=game_data, **options)
    assert str(job / file) in str(err.value) and "\n" not in str(err.value)


def test_damaged_done_json_on_the_command_line(tmp_path, game_data, finished_job, capsys):
    savedir = copy_tree(finished_job, tmp_path / "runs")
    damage(savedir / "lol-gold1" / "fold1" / "done.json", "truncated")
    args = [str(savedir), "--datasets", "V1", "--folds", "1", "--profile", "paper", "--epochs", "1",
            "--batch_size", "32", "--max_train_per_class", "2", "--data-root", str(game_data)]
    assert "done.json is damaged" in one_line_error(lambda argv: train.main(["V1"], [1], argv), args, capsys)


# ---- 3. a training run that diverges stops -------------------------------------------------

@pytest.mark.parametrize("batch_size, kept", [
    (8, "no checkpoint was written"),  # diverges within epoch 0
    (32, "after epoch 1"),  # one step per epoch: epoch 0 ends finite, epoch 1 diverges
])
def test_diverging_training_stops_and_keeps_the_last_checkpoint(tmp_path, game_data, batch_size, kept):
    options = dict(TINY_JOB, epochs=3, batch_size=batch_size, lr=1e10)
    with pytest.raises(UserError, match="diverged") as err:
        train_job("lol-gold1", 1, tmp_path, data_root=game_data, **options)
    assert kept in str(err.value)
    job = tmp_path / "lol-gold1" / "fold1"
    assert not (job / "done.json").exists()
    epochs_done = 1 if batch_size == 32 else 0
    assert len(read_metrics(job / "metrics.csv")) == epochs_done
    if epochs_done:
        checkpoint = torch.load(job / "current.pth", weights_only=False)
        assert checkpoint["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


# ---- 4. a sweep's CSV keeps one set of settings ------------------------------------------

SETTINGS = {"backend": "eager", "precision": "fp32", "device": "cpu", "align": 1, "channels_last": False}


@pytest.mark.parametrize("change", [{"precision": "bf16"}, {"backend": "compile"}, {"device": "cuda:0"},
                                    {"align": 8}, {"channels_last": True}, "no settings file"])
def test_sweep_refuses_to_mix_settings(tmp_path, change):
    out = tmp_path / "results.csv"
    assert resume_results(out, SETTINGS) == []
    with open(out, "a") as f:
        f.write("lol-gold1,0,8,Original,1,100,1e9,1,1\n")
    assert len(resume_results(out, SETTINGS)) == 1  # same settings: resumes
    before = out.read_text()
    if change == "no settings file":  # a CSV of unknown settings is not resumed either
        settings_path(out).unlink()
        change, message = SETTINGS, "how they were measured"
    else:
        message = f"{list(change)[0]} .* there"
    with pytest.raises(UserError, match=message) as err:
        resume_results(out, {**SETTINGS, **change})
    assert "new file" in str(err.value)
    assert out.read_text() == before


def test_sweep_rerun_with_other_precision_on_the_command_line(tmp_path):
    out = tmp_path / "results.csv"
    infer.sweep_main([str(out), "--models", "N2", "--folds", "1", "--batch_sizes", "4", "--trials", "1",
                      "--num_warmup", "0", "--num_iteration", "1", "--backend", "eager", "--device", "cpu",
                      "--precision", "fp32"])
    rows = out.read_text()
    env = {"PYTHON": sys.executable, "MODELS": "N2", "FOLDS": "1", "BATCH_SIZES": "4", "TRIALS": "2",
           "NUM_WARMUP": "0", "NUM_ITERATION": "1", "BACKEND": "eager", "DEVICE": "cpu", "PRECISION": "bf16"}
    proc = subprocess.run(["bash", "run_inference.sh", str(out)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)
    assert_clean_error(proc, "precision 'fp32' there, 'bf16' now")
    assert out.read_text() == rows


# ---- 5. the CSV reader: garbage rows and duplicates -------------------------------------

ROW = "lol-gold1,0,8,Folded,2,100,1e9,1.5,1.4"


@pytest.mark.parametrize("reader, text, message", [
    (read_results, f"{ROW}\nlol-gold1,0,8,Folded,2,fast,1e9,1.5,1.4\n", "line 3: Throughput is 'fast'"),
    (read_results, "lol-gold1,zero,8,Folded,2,100,1e9,1.5,1.4\n", "line 2: Trial is 'zero', not a whole number"),
    (read_results, "lol-gold1,0,8,Folded,2,100,1e9,nan,1.4\n", "TputNorm is 'nan'"),
    (read_results, f"{ROW}\n{ROW.replace(',100,', ',300,')}\n", "lines 2 and 3 both hold"),
    (read_summary, "lol-gold1,two,1,0.5,0.5\n", "fold is 'two'"),
    (read_summary, "lol-gold1,1,1,0.5,0.5\nlol-gold1,1,1,0.5,0.4\n", "lines 2 and 3 both hold"),
])
def test_results_reader_rejects_garbage_and_duplicates(tmp_path, reader, text, message):
    header = ",".join(RESULTS_HEADER) if reader is read_results else "dataset,fold,epochs,best_val_top1,test_top1"
    path = tmp_path / "file.csv"
    path.write_text(f"{header}\n{text}")
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        reader(path)


def test_plots_refuse_duplicate_rows_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "results.csv"
    path.write_text(",".join(RESULTS_HEADER) + f"\n{ROW}\n{ROW}\n")
    assert "both hold" in one_line_error(plot_results.main, [str(path), "--outdir", str(tmp_path)], capsys)
    assert not (tmp_path / "figure7.png").exists()


# ---- 6. output paths that cannot be written ------------------------------------------------

def folder(tmp):
    (tmp / "out").mkdir()
    return tmp / "out"


def under_a_file(tmp):
    (tmp / "afile").write_text("x")
    return tmp / "afile" / "out"


def a_file(tmp):
    (tmp / "afile").write_text("x")
    return tmp / "afile"


READ_ONLY_MOUNTS = []  # unmounted by the `unmount_read_only` fixture


def read_only(tmp):
    """A folder nobody may write into. Root ignores permission bits, so as root the folder is
    a read-only tmpfs instead (where mounting is permitted; skipped where it is refused)."""
    folder = tmp / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                               capture_output=True, text=True)
        if mount.returncode != 0:
            pytest.skip(f"root writes into read-only folders, and mount is refused: {mount.stderr.strip()}")
        READ_ONLY_MOUNTS.append(folder)
    else:
        os.chmod(folder, 0o555)
    return folder / "out"


@pytest.fixture
def unmount_read_only():
    yield
    while READ_ONLY_MOUNTS:
        subprocess.run(["umount", str(READ_ONLY_MOUNTS.pop())], check=True)


@pytest.mark.parametrize("place, message", [(folder, "is a folder"), (under_a_file, "is a file, not a folder"),
                                            (read_only, "is not writable")])
@pytest.mark.parametrize("write", ["atomic_write_bytes", "check_output_file", "check_output_dir"])
def test_unwritable_outputs_fail_in_one_line_naming_the_path(tmp_path, unmount_read_only, place, message, write):
    if write == "check_output_dir" and place is folder:
        place, message = a_file, "is a file, not a folder"
    target = place(tmp_path)
    call = {"atomic_write_bytes": lambda: atomic_write_bytes(target, b"data"),
            "check_output_file": lambda: check_output_file(target),
            "check_output_dir": lambda: check_output_dir(target)}[write]
    with pytest.raises(UserError, match=message) as err:
        call()
    assert str(target) in str(err.value) or str(target.parent) in str(err.value)
    assert not list(tmp_path.rglob("*.tmp*"))


@pytest.mark.parametrize("main, argv", [
    (lambda argv: train.main(["V1"], [1], argv), ["{file}", "--datasets", "V1", "--folds", "1"]),
    (fold_trainer.main, ["V1", "1", "{file}/sub"]),
    (infer.sweep_main, ["{dir}", "--models", "N2", "--trials", "1"]),
    (plot_results.main, ["{csv}", "--outdir", "{file}"]),
    (game_synth.main, ["V1", "--out", "{file}/sub"]),
    (noscope_synth.main, ["night", "--out", "{file}"]),
    (reproduce.main, ["--out", "{file}"]),
    (report.main, ["--summary", "{csv}", "--results", "{csv}", "--out", "{dir}"]),
])
def test_long_commands_check_their_output_first(tmp_path, capsys, main, argv):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "r.csv").write_text(",".join(RESULTS_HEADER) + f"\n{ROW}\n")
    argv = [a.format(dir=tmp_path / "dir", file=tmp_path / "file", csv=tmp_path / "r.csv") for a in argv]
    assert str(tmp_path) in one_line_error(main, argv, capsys)
    assert (tmp_path / "file").read_text() == "x" and not list(tmp_path.rglob("*.tmp*"))


def test_flop_count_checks_its_output_before_counting(tmp_path):
    proc = subprocess.run(["bash", "flop_count.sh", "--out", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert_clean_error(proc, f"the FLOP table {tmp_path} is a folder")


# ---- 7. values in range: command-line types ------------------------------------------------

@pytest.mark.parametrize("main, argv, message", [
    (fold_trainer.main, ["V1", "1", "runs", "--lr", "inf"], "--lr: expected a finite number"),
    (fold_trainer.main, ["V1", "1", "runs", "--lr", "-0.1"], "--lr: must be positive"),
    (fold_trainer.main, ["V1", "1", "runs", "--epochs", "0"], "--epochs: must be at least 1"),
    (fold_trainer.main, ["V1", "1", "runs", "--scale-data", "1.5"], "must be a fraction with 0 < x <= 1"),
    (fold_trainer.main, ["V1", "0", "runs"], "argument fold: must be at least 1, got 0"),
    (infer.main, ["V1", "1", "--seconds", "-1"], "--seconds: must be positive"),
    (infer.main, ["V1", "1", "--batch_size", "0"], "--batch_size: must be at least 1"),
    (infer.main, ["V1", "1", "--align", "0"], "--align: must be at least 1"),
    (infer.main, ["V1", "1", "--num_warmup", "-1"], "--num_warmup: must be 0 or more"),
    (infer.sweep_main, ["r.csv", "--models", "V1", "--trials", "0"], "--trials: must be at least 1"),
    (infer.sweep_main, ["r.csv", "--models", "V1", "--threads", "-1"], "--threads: must be at least 1"),
    (ai.main, ["--bytes", "0"], "--bytes: must be at least 1"),
    (ai.main, ["--batch_size", "0"], "--batch_size: must be at least 1"),
    (ai.main, ["--layer", "--ci", "-1"], "--ci: must be at least 1"),
    (ai.main, ["--layer", "--h", "0"], "--h: must be at least 1"),
    (ai.main, ["--layer", "--groups", "0"], "--groups: must be at least 1"),
    (game_synth.main, ["V1", "--scale", "nan"], "--scale: expected a finite number"),
    (game_synth.main, ["V1", "--workers", "0"], "--workers: must be at least 1"),
    (noscope_synth.main, ["night", "--frames", "0"], "--frames: must be at least 1"),
    (noscope_synth.main, ["night", "--fps", "0"], "--fps: must be at least 1"),
    (noscope_video_save.main, ["v.mp4", "f", "--start", "-1"], "--start: must be 0 or more"),
    (tradeoff.main, ["2.5", "21"], "21 looks like percentage points: give 21% or the fraction 0.21"),
    (tradeoff.main, ["nan", "0.002"], "speedup: expected a finite number"),
    (tradeoff.main, ["2.5", "abc"], "expected a number, got 'abc'"),
    (reproduce.main, ["--scale", "-1"], "--scale: must be positive"),
    (reproduce.main, ["--folds", "0"], "--folds: must be at least 1"),
])
def test_flags_out_of_range_are_one_line_errors(tmp_path, monkeypatch, capsys, main, argv, message):
    monkeypatch.chdir(tmp_path)
    assert message in one_line_error(main, argv, capsys)


def test_flags_on_the_command_line():
    proc = run_cli("infer.py", "V1", "1", "--seconds", "-1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "argument --seconds: must be positive, got -1" in proc.stderr


def test_tradeoff_takes_percent_or_fraction(capsys):
    for drop in ("0.21%", "0.0021"):
        tradeoff.main(["2.5", drop])
        assert "285x" in capsys.readouterr().out


def test_failed_reproduce_leaves_no_empty_results_folder(tmp_path):
    with pytest.raises(SystemExit):
        reproduce.main(["--datasets", "cifar10", "--data-root", str(tmp_path / "d"), "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
