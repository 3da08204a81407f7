"""What a cluster, a full disk and a hand-edited config do (issue 21): one test per mechanism,
its cases as parameters. Full-disk cases write into a small tmpfs and skip where mounting is
not permitted. SIGTERM to a parallel sweep: tests/test_launch.py."""
import ast
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from util.files import written_by_study
import torch

import infer
import models
import train
from datasets import game_synth
from datasets.image_folder import load_image_folder
from datasets.noscope import split_frames
from fold_trainer import train_job
from models.flops import load_model_map
from models.registry import read_configs
from scripts import bench_training, gpu_benchmark, plot_results, recipe_study, report, reproduce
from tests.helpers import REPO, one_line_error, run_cli
from util.checkpoint import load_weights
from util.device import resolve_device
from util.errors import UserError
from util.launch import Job, run_jobs
from util.onnx_export import cached_export, check_onnx_file, export_onnx
from util.results import RESULTS_HEADER, resume_results, settings_path

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_JOB = dict(epochs=1, batch_size=32, max_train_per_class=2, progress=False, threads=1)


@pytest.fixture(scope="module")
def game_data(tmp_path_factory):
    """lol-gold1 at 10/1/1 images per class."""
    root = tmp_path_factory.mktemp("data")
    game_synth.generate("lol-gold1", root, scale=0.001, seed=0, workers=1)
    return root


# ---- 1. SIGTERM and SIGHUP take Ctrl-C's path (the parallel sweep: tests/test_launch.py) ----

COMMAND_LINE = """
import time
from util.errors import cli_main

@cli_main
def main():
    try:
        print("ready", flush=True)
        time.sleep(60)
    finally:
        print("cleaned up", flush=True)

main()
"""


@pytest.mark.parametrize("signum, code, said", [(signal.SIGTERM, 143, "stopped by SIGTERM"),
                                                (signal.SIGHUP, 129, "stopped by SIGHUP"),
                                                (signal.SIGINT, 130, "interrupted")])
def test_termination_signals_run_the_clean_up_and_exit_128_plus_the_signal(signum, code, said):
    # SIGINT as a terminal's Ctrl-C finds it: a suite started in the background (`make test &`)
    # hands its children SIGINT ignored, which Python then keeps ignoring.
    proc = subprocess.Popen([sys.executable, "-c", COMMAND_LINE], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (code, "cleaned up\n", said + "\n")


# ---- 3. nested config fields, unique ids, disjoint splits, unknown keys, the model map ----

def edit(name, change):
    """A case: config/<name>.json changed by `change(cfg)`."""
    return name, change


def set_field(dotted, value):
    def change(cfg):
        *parents, last = dotted.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value
    return change


@pytest.mark.parametrize("case, message", [
    (edit("cifar10", set_field("train.lr_schedule", {})), "'train.lr_schedule' must be null or hold exactly"),
    (edit("cifar10", set_field("train.lr_schedule.step_epochs", 0)), "needs step_epochs >= 1"),
    (edit("cifar10", set_field("train.lr_schedule.gamma", "0.5")), "'train.lr_schedule.gamma' must be int/float"),
    (edit("lol-gold1", set_field("train.curriculum.per_fold", [])), "'train.curriculum.per_fold' must be dict"),
    (edit("lol-gold1", set_field("train.curriculum.per_fold", {"4": {"initial": "4"}})),
     "'train.curriculum.per_fold.4.initial' must be int"),
    (edit("lol-gold1", set_field("train.curriculum.per_fold", {"4": {"intial": 4}})),
     "unknown field 'train.curriculum.per_fold.4.intial'"),
    (edit("lol-gold1", set_field("train.curriculum.initial", "3")), "'train.curriculum.initial' must be int/NoneType"),
    (edit("lol-gold1", set_field("train.curriculum.delta", 0)), "'train.curriculum.delta' must be positive"),
    (edit("night", set_field("data.split", {"train": 2, "val": 3, "test": 2})), "gives two splits the same chunk"),
    (edit("lol-gold1", set_field("train.lr_shedule", None)), "unknown field 'train.lr_shedule'"),
    (edit("night", set_field("arch.dropout", 0.5)), "unknown field 'arch.dropout' (known there: dense, filters"),
    (edit("cifar10", set_field("data.std", [0.2, 0.0, 0.2])), "'data.std' must be 3 numbers"),
    (edit("apex-count", set_field("id", "v1")), "lol-gold1.json: id 'V1' is also the id of .*/apex-count.json"),
])
def test_config_files_are_validated_to_the_last_nested_field(tmp_path, case, message):
    name, change = case
    for path in (REPO / "config").glob("*.json"):
        shutil.copy(path, tmp_path)
    cfg = json.loads((tmp_path / f"{name}.json").read_text())
    change(cfg)
    (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_configs(tmp_path)


@pytest.mark.parametrize("text, message", [
    ('{"lol-gold1": {"og_ops": 1', "is not valid JSON"),
    ('["og_ops"]', "must be an object of model names"),
    ('{"lol-gold1": {"og_ops": "16M"}}', "'lol-gold1.og_ops' must be a positive number of FLOPs, got '16M'"),
    ('{"lol-gold1": {"og_ops": -5}}', "must be a positive number of FLOPs, got -5"),
    ('{"lol-gold1": {"fold2_op": 5}}', "unknown field 'lol-gold1.fold2_op'"),
    ('{"lol-gold1": 5}', "'lol-gold1' must be an object of FLOP counts"),
])
def test_the_model_map_is_validated(tmp_path, text, message):
    path = tmp_path / "model_map.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_model_map(path)


# ---- 4. a full disk: one line naming what was being written, no temporary file left --------

@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs, filled to the last page by a file of the user's (removable for room)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(folder):
    """Fill the disk of `folder` (already full if the filler cannot even be created)."""
    try:
        with open(folder / "filler", "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
    except OSError:
        pass


def generator_on_full_disk(disk, tmp_path, capsys):
    proc = run_cli("-m", "datasets.game_synth", "lol-gold1", "--scale", "0.001", "--workers", "1", "--out", disk)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr  # above it: the progress bar
    assert proc.stderr.strip().splitlines()[-1] == (f"error: cannot write the dataset {disk / 'lol-gold1'}: "
                                                    "No space left on device")
    return disk / "lol-gold1.partial"


def sweep_append_on_full_disk(disk, tmp_path, capsys):
    out = disk / "results.csv"
    settings = {"backend": "eager", "precision": "fp32", "device": "cpu", "align": 1, "channels_last": False}
    header = ",".join(RESULTS_HEADER) + "\n"
    row = "lol-time,0,8,Original,1,{},1e9,1,1,original,eager\n"
    padding = 4096 - len(header) - len(row.format(""))  # the CSV fills its page: the next row needs another
    out.write_text(header + row.format("100." + "0" * (padding - 4)))
    settings_path(out).write_text(json.dumps(settings))
    assert out.stat().st_size == 4096 and len(resume_results(out, settings)) == 1
    fill(disk)
    with pytest.raises(UserError, match=f"cannot write the results CSV {out}: No space left on device"):
        infer.sweep(out, ["N2"], [1], [2], 1, "eager", "fp32", "cpu", False, 0, 1)
    return None


def plot_on_full_disk(disk, tmp_path, capsys):
    results = tmp_path / "results.csv"
    results.write_text(",".join(RESULTS_HEADER) + "\n" + "".join(
        f"lol-gold1,0,8,{mode},{f},{t},1e9,{t / 100},1,{mode.lower()},eager\n"
        for mode, f, t in [("Original", 1, 100), ("Folded", 2, 150)]))
    fill(disk)
    message = one_line_error(plot_results.main, [str(results), "--outdir", str(disk)], capsys)
    assert message == f"error: cannot write {disk / 'figure7.png'}: No space left on device"
    return None


def onnx_export_on_full_disk(disk, tmp_path, capsys):
    fill(disk)
    with pytest.raises(UserError, match=f"cannot write {disk / 'n2.onnx'}: No space left on device"):
        export_onnx(models.build_model("N2"), torch.zeros(1, *models.input_shape("N2")), disk / "n2.onnx")
    return None


@pytest.mark.parametrize("case", [generator_on_full_disk, sweep_append_on_full_disk, plot_on_full_disk,
                                  onnx_export_on_full_disk])
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_temporary_file(full_disk, tmp_path, capsys, case):
    left_over = case(full_disk, tmp_path, capsys)
    assert sorted(p.name for p in full_disk.iterdir()) <= ["filler", "results.csv", "results.csv.settings.json"]
    assert left_over is None or not left_over.exists()


# ---- 5. the ONNX cache re-exports a damaged file -------------------------------------------

def foreign_onnx(good):
    """A complete ONNX graph, but not one of ours (other input and output names)."""
    import onnx
    proto = onnx.load(good)
    proto.graph.input[0].name = "x"
    return proto.SerializeToString()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, example input, its cached ONNX file)."""
    model, example = models.build_model("N2"), torch.zeros(2, *models.input_shape("N2"))
    return model, example, cached_export(model, example, tmp_path_factory.mktemp("onnx"))


@pytest.mark.parametrize("damage", [lambda good: good.read_bytes()[:len(good.read_bytes()) // 2],
                                    lambda good: b"garbage", lambda good: b"", foreign_onnx],
                         ids=["truncated", "garbage", "empty", "foreign"])
def test_a_damaged_onnx_cache_file_is_exported_again_with_a_note(exported, tmp_path, capsys, damage):
    model, example, good = exported
    path = tmp_path / good.name
    path.write_bytes(damage(good))
    assert check_onnx_file(path) is not None
    capsys.readouterr()
    assert cached_export(model, example, tmp_path) == path
    err = capsys.readouterr().err
    assert err.startswith(f"note: the cached ONNX file {path} is damaged") and err.count("\n") == 1
    assert check_onnx_file(path) is None and path.read_bytes() == good.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# ---- 6. device strings: cpu, cuda, cuda:N, and nothing else --------------------------------

@pytest.mark.parametrize("main, argv, message", [
    (infer.main, ["V1", "--device", "mps"], "argument --device: unknown device 'mps'; use cpu, cuda or cuda:N"),
    (infer.sweep_main, ["{tmp}/r.csv", "--models", "V1", "--device", "xpu"], "unknown device 'xpu'"),
    (lambda argv: train.main(["V1"], [1], argv), ["{tmp}", "--device", "gpu0"], "unknown device 'gpu0'"),
    (lambda argv: train.main(["V1"], [1], argv), ["{tmp}", "--device", "meta", "--jobs", "2"], "unknown device 'meta'"),
    (bench_training.main, ["--device", "cuda:x"], "unknown device 'cuda:x'"),
    (lambda argv: resolve_device("mps"), [], "device 'mps' is not supported here; use cpu, cuda or cuda:N"),
    pytest.param(lambda argv: train.main(["V1"], [1], argv), ["{tmp}", "--device", "cuda", "--jobs", "2"],
                 "device cuda requested but PyTorch sees no CUDA GPU here",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_only_the_devices_we_support_are_accepted(tmp_path, capsys, main, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path / "out")) for a in argv]
    if not argv:
        with pytest.raises(UserError, match=message):
            main(argv)
        return
    assert message in one_line_error(main, argv, capsys)
    assert not (tmp_path / "out").exists()


# ---- 7. CSV values checked for meaning ------------------------------------------------------

SUMMARY_HEADER = "dataset,fold,epochs,best_val_top1,test_top1,test_images"
GOOD_RESULTS = ("lol-gold1,0,8,Original,1,100,1e9,1,1,original,eager\n"
                "lol-gold1,0,8,Folded,2,150,2e9,1.5,1.5,folded,eager\n")


@pytest.mark.parametrize("summary, results, message", [
    ("lol-gold1,1,1,0.5,0.5,n/a\n", GOOD_RESULTS, "test_images is 'n/a', but it must be a whole number of images"),
    ("lol-gold1,1,1,0.5,85.0,100\n", GOOD_RESULTS, "test_top1 is '85.0', but it must be a fraction from 0 to 1"),
    ("lol-gold1,1,1,0.5,0.5,100\n", GOOD_RESULTS.replace(",150,", ",-150,"), "Throughput is '-150', but it must be positive"),
    ("lol-gold1,1,1,0.5,0.5,100\n", GOOD_RESULTS.replace("Folded", "Fast"), "Mode is 'Fast', but it must be one of"),
    ("lol-gold1,1,1,0.5,0.5,100\n", GOOD_RESULTS.replace("folded", "narrow"),
     "line 3: Variant is 'narrow' but Mode Folded runs the folded model"),
    ("lol-gold1,0,1,0.5,0.5,100\n", GOOD_RESULTS, "fold is '0', but it must be at least 1"),
])
def test_report_rejects_impossible_csv_values_in_one_line(tmp_path, capsys, summary, results, message):
    (tmp_path / "summary.csv").write_text(f"{SUMMARY_HEADER}\n{summary}")
    (tmp_path / "results.csv").write_text(",".join(RESULTS_HEADER) + "\n" + results)
    argv = ["--summary", str(tmp_path / "summary.csv"), "--results", str(tmp_path / "results.csv"),
            "--out", str(tmp_path / "REPORT.md")]
    assert message in one_line_error(report.main, argv, capsys)
    assert not (tmp_path / "REPORT.md").exists()


def test_sweep_resume_rejects_a_zero_original_throughput(tmp_path):
    out = tmp_path / "results.csv"
    settings = {"backend": "eager", "precision": "fp32", "device": "cpu", "align": 1, "channels_last": False}
    out.write_text(",".join(RESULTS_HEADER) + "\nnight,0,2,Original,1,0,0,1,1,original,eager\n")
    settings_path(out).write_text(json.dumps(settings))
    with pytest.raises(UserError, match="line 2: Throughput is '0', but it must be positive"):
        infer.sweep(out, ["N2"], [1, 2], [2], 1, "eager", "fp32", "cpu", False, 0, 1)


# ---- 8. every parser checks its numbers through util/args.py -------------------------------

def bare_number_types():
    """(file, line) of every add_argument(..., type=int|float) in the repository's code."""
    found = []
    for path in REPO.rglob("*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("add_argument", "add"):
                for keyword in node.keywords:
                    if keyword.arg == "type" and isinstance(keyword.value, ast.Name) and keyword.value.id in ("int", "float"):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_no_parser_takes_a_bare_int_or_float():
    assert bare_number_types() == []


@pytest.mark.parametrize("main, argv, message", [
    (bench_training.main, ["--workers", "-1"], "argument --workers: must be 0 or more, got -1"),
    (bench_training.main, ["--folds", "0"], "argument --folds: must be at least 1, got 0"),
    (gpu_benchmark.main, ["--trials", "-1", "--out", "{tmp}"], "argument --trials: must be at least 1, got -1"),
    (gpu_benchmark.main, ["--matmul_n", "1.5", "--out", "{tmp}"], "argument --matmul_n: expected a whole number"),
    (recipe_study.main, ["--images", "0", "--runs", "{tmp}"], "argument --images: must be at least 1, got 0"),
])
def test_tools_reject_bad_numbers_before_doing_anything(tmp_path, capsys, main, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path / "out")) for a in argv]
    assert message in one_line_error(main, argv, capsys)
    assert not (tmp_path / "out").exists()


# ---- 9. recipe_study writes into the repository only when asked, over its own files only ----

@pytest.mark.parametrize("out, present, force, refused", [
    (None, None, False, False),             # default: beside the study's jobs, not in docs/
    ("docs", "user", False, True),          # a file it did not write (the committed docs are not marked)
    ("docs", "user", True, False),          # ... replaced with --force
    ("docs", "study", False, False),        # its own earlier output is replaced
])
def test_recipe_study_writes_its_doc_and_plot_only_where_asked(game_data, tmp_path, capsys, out, present, force,
                                                              refused):
    committed = {p: p.read_bytes() for p in (REPO / "docs").glob("recipe*")}
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    argv = ["--data-root", str(game_data), "--runs", str(runs), "--datasets", "V1", "--folds", "1",
            "--options", "adam", "--images", "20"] + (["--out", str(docs)] if out else []) + (["--force"] if force else [])
    if present == "user":
        docs.mkdir()
        (docs / "recipe.md").write_text("# my notes\n")
    elif present == "study":
        recipe_study.main(argv)
    if refused:
        message = one_line_error(recipe_study.main, argv, capsys)
        assert f"{docs / 'recipe.md'} exists and was not written by scripts/recipe_study.py" in message
        assert (docs / "recipe.md").read_text() == "# my notes\n" and not runs.exists()
    else:
        recipe_study.main(argv)
        written = docs if out else runs
        assert written_by_study(written / "recipe.md", recipe_study.WRITER, recipe_study.DOC_TITLE)
        assert written_by_study(written / "recipe_curves.png", recipe_study.WRITER, recipe_study.DOC_TITLE)
    assert {p: p.read_bytes() for p in (REPO / "docs").glob("recipe*")} == committed


# ---- 10. Slurm flags with the local launcher ------------------------------------------------

@pytest.mark.parametrize("flags, named", [
    (["--slurm-option", "qos=high"], "--slurm-option applies to Slurm jobs"),
    (["--partition", "gpu", "--time", "60"], "--partition, --time apply to Slurm jobs"),
    (["--mem-gb", "64", "--jobs", "2"], "--mem-gb applies to Slurm jobs"),
])
def test_slurm_flags_with_the_local_launcher_are_refused(tmp_path, capsys, flags, named):
    message = one_line_error(lambda argv: train.main(["V1"], [1], argv), [str(tmp_path / "runs"), *flags], capsys)
    assert named in message and "--launcher slurm" in message
    assert not (tmp_path / "runs").exists()


# ---- 11. caches keyed on content -------------------------------------------------------------

def edit_keeping_size_and_mtime(path, data):
    stat = path.stat()
    assert len(data) == stat.st_size
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def image_folder_cache(tmp_path):
    split = tmp_path / "ds" / "train"
    for cls in ("a", "b"):
        (split / cls).mkdir(parents=True)
        cv2.imwrite(str(split / cls / "0.bmp"), np.full((4, 6, 3), 10, np.uint8))
    images, _ = load_image_folder(split, ["a", "b"], 4, 6)
    assert (split.parent / "train.cache.pt").is_file() and images.max() == 10
    ok, encoded = cv2.imencode(".bmp", np.full((4, 6, 3), 200, np.uint8))
    edit_keeping_size_and_mtime(split / "b" / "0.bmp", encoded.tobytes())
    images, _ = load_image_folder(split, ["a", "b"], 4, 6)
    return images[1].max().item(), 200


def noscope_split_marker(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(16):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    labels = tmp_path / "labels.csv"
    labels.write_text("frame,object_name,confidence,xmin,ymin,xmax,ymax\n1,car,1,0,0,1,1\n")
    before = split_frames("night", tmp_path / "split", labels, frames)
    assert sum(pos for _, pos in before.values()) == 0  # frame 1 is in chunk 1 of 8, which no split uses
    edit_keeping_size_and_mtime(labels, labels.read_bytes().replace(b"\n1,car", b"\n3,car"))  # chunk 2: train
    after = split_frames("night", tmp_path / "split", labels, frames)
    return after["train"][1], 1


@pytest.mark.parametrize("case", [image_folder_cache, noscope_split_marker])
def test_caches_notice_a_file_edited_in_place_with_its_size_and_mtime_kept(tmp_path, case):
    got, want = case(tmp_path)
    assert got == want


# ---- the misleading-but-clean cases -----------------------------------------------------------

def test_reproduce_checks_its_folds_against_the_flop_table_before_training(tmp_path, capsys):
    message = one_line_error(reproduce.main, ["--datasets", "V1", "--folds", "1", "5", "--out", str(tmp_path / "r"),
                                              "--data-root", str(tmp_path / "d")], capsys)
    assert "FOLDS: f=5 has no FLOP count for lol-gold1 in config/model_map.json (it holds f = 1 2 3 4)" in message
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


def test_a_settings_file_left_without_runs_is_replaced(tmp_path, capsys):
    out = tmp_path / "results.csv"
    settings_path(out).write_text(json.dumps({"backend": "compile"}))
    settings = {"backend": "eager"}
    assert resume_results(out, settings) == []
    assert json.loads(settings_path(out).read_text()) == settings
    assert "holds the settings of a sweep without runs; replacing them" in capsys.readouterr().err


def test_current_pth_of_a_train_bn_job_is_named_as_such(game_data, tmp_path):
    train_job("lol-gold1", 1, tmp_path, data_root=game_data, train_bn=True, **TINY_JOB)
    current = tmp_path / "lol-gold1" / "fold1" / "current.pth"
    with pytest.raises(UserError, match="training checkpoint of a --train_bn job.*use best.pth"):
        load_weights(models.build_model("lol-gold1"), current)
    load_weights(models.build_model("lol-gold1"), current.with_name("best.pth"))


def test_a_failed_submitit_local_job_reports_its_exit_code(tmp_path):
    pytest.importorskip("submitit")
    job = Job("fails", [sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path / "fails.log")
    failures = run_jobs([job], "submitit-local", submitit_folder=tmp_path / "submitit", parameters={"timeout_min": 5})
    assert failures["fails"].split(";")[0].endswith("exit code 3")


def test_make_reproduce_quotes_its_paths():
    proc = subprocess.run(["make", "--no-print-directory", "-n", "reproduce", "DATA_ROOT=/x/my data", "RESULTS=/y/my results"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "SYSTEM_PYTHON": "1"})
    if proc.returncode != 0 and shutil.which("make") is None:
        pytest.skip("make is not installed")
    argv = shlex.split(proc.stdout.replace("\\\n", " "))
    assert argv[argv.index("--data-root") + 1] == "/x/my data"
    assert argv[argv.index("--out") + 1] == "/y/my results"

