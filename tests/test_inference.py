"""infer.py, the backends, the layer specs, run_inference.sh (`infer.py sweep`), the plots and
the GPU benchmark's table, on real models at tiny batch sizes."""
import csv
import json
import os
import re
import subprocess
import sys

import matplotlib.image
import pytest
import torch

import models
from infer import TOLERANCE, Prepared, build_workload
from models.flops import flops_per_input
from models.layer_specs import LAYER_SPECS, build_layer, layer_input_shape
from scripts.gpu_benchmark import main as gpu_benchmark_main
from scripts.plot_results import plot
from tests.helpers import REPO, assert_clean_error, counted_flops, counted_variant_flops, needs_cuda, run_cli
from util import backends
from util.arith_intensity import model_intensity
from util.checkpoint import load_weights
from util.errors import UserError
from util.results import RESULTS_HEADER as HEADER


def test_infer_prints_images_per_second_last():
    proc = run_cli("infer.py", "night", 2, "--backend", "eager", "--batch_size", 8, "--num_warmup", 1,
                   "--num_iteration", 2, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"\d+\.\d images/s", lines[-1]), lines[-1]
    assert "night f=2 (Folded), eager fp32" in lines[0] and "batch 8 (4 inputs)" in lines[0]


def test_infer_json_record_is_consistent():
    proc = run_cli("infer.py", "V1", 4, "--backend", "eager", "--batch_size", 16, "--num_warmup", 0,
                   "--num_iteration", 3, "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {k: record[k] for k in ("model", "fold", "mode", "backend", "precision", "batch", "inputs_per_batch",
                                   "iterations")} == {
        "model": "lol-gold1", "fold": 4, "mode": "Folded", "backend": "eager", "precision": "fp32",
        "batch": 16, "inputs_per_batch": 4, "iterations": 3}
    assert record["flops_per_image"] == counted_flops("V1", 4) / 4  # PyTorch's own count, not thop's
    assert record["flops_per_s"] == pytest.approx(record["flops_per_image"] * record["images_per_s"])
    assert record["arithmetic_intensity"] == model_intensity(
        models.build_model("V1", 4), models.input_shape("V1", 4), 4, bytes_per_element=4)
    spread = record["iteration_ms"]
    assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    # throughput = images / total time, which lies between batch / slowest and batch / fastest
    assert 16e3 / spread["max"] * (1 - 1e-9) <= record["images_per_s"] <= 16e3 / spread["min"] * (1 + 1e-9)
    assert record["relative_error"] == 0.0  # eager fp32 is the reference itself
    assert record["arithmetic_intensity"]["ops"] == 4 * counted_flops("V1", 4)  # 4 folded inputs of 4 images


def test_precision_check_measures_the_error():
    """bf16 eager differs from float32 by a real amount: inside bf16's tolerance, far
    outside fp32's, so a backend off by that much in fp32 would be refused."""
    prepared = Prepared(build_workload("night", 2, batch_size=8), "eager", "bf16", "cpu")
    assert TOLERANCE["fp32"] < prepared.error <= TOLERANCE["bf16"]


def test_compile_backend_matches_eager_on_cpu():
    # max-autotune with freezing compiles in ~10 s per model on 2 cores.
    prepared = Prepared(build_workload("night", 2, batch_size=8), "compile", "fp32", "cpu", channels_last=True)
    assert prepared.error <= TOLERANCE["fp32"]
    with torch.inference_mode():  # as prepared, so no recompilation for autograd
        assert prepared.run().shape == (4, 4)


@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_cudagraph_backend_matches_eager(precision):
    prepared = Prepared(build_workload("lol-gold1", 4, batch_size=64), "cudagraph", precision, "cuda")
    assert prepared.error <= TOLERANCE[precision]
    assert len(prepared.time(5)) == 5


def test_narrow_workload_is_the_narrow_cnn_of_f_one_image_per_input():
    narrow = build_workload("V2", 4, batch_size=5, narrow=True)  # any batch: nothing is folded
    assert (narrow.mode, narrow.fold, narrow.images_per_input, narrow.num_inputs) == ("Narrow", 4, 1, 5)
    want = models.build_variant("V2", "narrow", 4)
    assert [p.shape for p in narrow.model.parameters()] == [p.shape for p in want.parameters()]
    assert narrow.input_shape == models.variant_input_shape("V2", "narrow", 4) == (3, 19, 25)
    assert narrow.flops_per_image == counted_variant_flops("V2", "narrow", 4)
    proc = run_cli("infer.py", "V2", 4, "--narrow", "--backend", "eager", "--batch-size", 5, "--num-warmup", 0,
                   "--num-iteration", 1, "--device", "cpu")
    assert proc.returncode == 0 and "apex-count f=4 (Narrow), eager fp32" in proc.stdout and "batch 5 (5 inputs)" in proc.stdout
    assert_clean_error(run_cli("infer.py", "V2", 1, "--narrow", "--device", "cpu"), "--narrow", "fold f >= 2")


def test_efficientnet_and_layers_build():
    effnet = build_workload("apex-count", 1, batch_size=4, efficientnet=True)
    assert effnet.mode == "EfficientNet" and effnet.flops_per_image == flops_per_input("apex-count", 1, True)
    g32 = build_layer("G32", 4)
    assert (g32.in_channels, g32.out_channels, g32.groups, g32.kernel_size) == (64, 64, 4, (3, 3))
    assert build_layer("G64", 4).kernel_size == (5, 5) and build_layer("G64", 4).in_channels == 128
    assert build_layer("G32", 2).in_channels == 48  # int(32 sqrt 2) = 45, rounded up so 4 groups divide it
    layer = build_workload("G32", 4, batch_size=8, layer=True)
    assert layer.input_shape == (64, 50, 50) and layer.num_inputs == 2
    assert set(LAYER_SPECS) >= {"table1", "G32", "G64"}


def test_table1_layer_spec_has_the_papers_intensity():
    values = [model_intensity(build_layer("table1", f), layer_input_shape("table1", f), 1024 // f)["intensity"]
              for f in (1, 4)]
    assert [round(v, 2) for v in values] == [143.93, 286.87]


def test_layer_cli_runs_folded_group_convolution():
    proc = run_cli("infer.py", "--layer", "G32", 4, "--batch_size", 8, "--num_iteration", 1, "--json",
                   "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["model"] == "G32" and record["inputs_per_batch"] == 2
    assert record["flops_per_image"] == 2 * 50 * 50 * 64 * 16 * 9 / 4  # per folded input / f


def test_checkpoints_load_from_training_dicts_and_bare_state_dicts(tmp_path):
    trained = models.build_model("night", 2)
    torch.nn.init.normal_(trained[0].weight)
    torch.save({"model": trained.state_dict(), "recipe": {"epochs": 1}}, tmp_path / "best.pth")
    torch.save(trained.state_dict(), tmp_path / "bare.pth")
    for path in ("best.pth", "bare.pth"):
        loaded = load_weights(models.build_model("night", 2), tmp_path / path)
        assert torch.equal(loaded[0].weight, trained[0].weight)
    with pytest.raises(UserError, match="does not fit this model"):
        load_weights(models.build_model("night", 4), tmp_path / "best.pth")
    assert_clean_error(run_cli("infer.py", "night", 4, "--checkpoint", tmp_path / "best.pth", "--batch_size", 8),
                       "does not fit this model")


def test_list_comes_from_the_registry():
    proc = run_cli("infer.py", "--list", "game", "noscope")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [n for n in models.model_names()
                                   if models.load_config(n)["family"] in ("game", "noscope")]


@pytest.mark.parametrize("args, message", [
    (["lol-gold1", 3, "--batch_size", 1000], "batch size 1000 cannot be folded with f=3"),
    (["lol-gold1", 2, "--efficientnet"], "--efficientnet is the unfolded baseline"),
    (["V9", 1], "unknown dataset/model 'V9'"),
])
def test_bad_input_is_one_clear_line(args, message):
    assert_clean_error(run_cli("infer.py", *args), message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the error on a machine without a GPU")
@pytest.mark.parametrize("backend", ["cudagraph", "tensorrt"])
def test_cuda_backend_without_gpu_is_one_clear_line(backend):
    assert_clean_error(run_cli("infer.py", "night", 1, "--backend", backend),
                       f"the {backend} backend needs a CUDA GPU")
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        backends.check_device(backend, "cpu")


def test_unknown_backend_is_argparse_error():
    proc = run_cli("infer.py", "night", 1, "--backend", "tvm")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "invalid choice: 'tvm'" in proc.stderr


def run_sweep(out, **settings):
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "NUM_WARMUP": "1", "NUM_ITERATION": "2",
           **settings}
    proc = subprocess.run(["bash", "run_inference.sh", str(out)], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def saved_figures(monkeypatch):
    """{file name: matplotlib Figure} of every figure saved while the test runs, so that what
    was plotted can be read back (matplotlib's savefig, recording its figure first)."""
    from matplotlib.figure import Figure

    figures, savefig = {}, Figure.savefig

    def recording_savefig(self, fname, *args, **kwargs):
        # under the file's own name, not the temporary one that util.files.atomic_savefig writes first
        name = re.sub(r"^\.(.+)\.tmp\d*$", r"\1", os.path.basename(str(fname)))
        figures[name] = self
        return savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return figures


def assert_plots_show_the_csv(figures, rows):
    """figure7's bars are the median TputNorm and FLOPNorm at the largest batch (8), per series;
    figure8's lines the median TputNorm per batch size."""
    from matplotlib.container import BarContainer
    from statistics import median

    def norms(column, batch, mode, fold):
        return [float(r[column]) for r in rows if (r["Batch Size"], r["Mode"], r["Fold"]) == (batch, mode, fold)]

    series = [("Folded", "2"), ("Narrow", "2"), ("EfficientNet", "1")]  # figure7's order
    tput_axes, flops_axes, _ = figures["figure7.png"].axes
    for ax, column in ((tput_axes, "TputNorm"), (flops_axes, "FLOPNorm")):
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert [[bar.get_height() for bar in c] for c in bars] == [
            [pytest.approx(median(norms(column, "8", *s)))] for s in series]
    lines = figures["figure8.png"].axes[0].get_lines()
    labels = ("f = 2", "narrow f = 2", "EfficientNet")
    curves = [line for line in lines if line.get_label() in labels]
    assert [(line.get_label(), list(line.get_xdata()), list(line.get_ydata())) for line in curves] == [
        (label, [4, 8], [pytest.approx(median(norms("TputNorm", b, *s))) for b in ("4", "8")])
        for label, s in zip(labels, series)]


def test_sweep_rows_norms_resume_and_plots(tmp_path, saved_figures):
    out = tmp_path / "results.csv"
    settings = dict(MODELS="V2", FOLDS="1 2", BATCH_SIZES="4 8", EFFICIENTNET="1", BACKEND="eager")
    stdout = run_sweep(out, TRIALS="1", **settings)
    assert stdout.splitlines()[0] == ",".join(HEADER)
    assert HEADER == "Model,Trial,Batch Size,Mode,Fold,Throughput,FLOPs/sec,TputNorm,FLOPNorm,Variant,Backend".split(",")
    assert out.read_text().splitlines()[0] == ",".join(HEADER)
    rows = read_csv(out)
    assert {r["Backend"] for r in rows} == {"eager"}
    runs = (("Original", "1", "original"), ("Folded", "2", "folded"), ("Narrow", "2", "narrow"),
            ("EfficientNet", "1", "compound"))
    assert [(r["Batch Size"], r["Mode"], r["Fold"], r["Variant"]) for r in rows] == [(b, *run) for b in ("4", "8")
                                                                                      for run in runs]
    assert stdout.splitlines()[1:] == out.read_text().splitlines()[1:]
    narrow_flops = counted_variant_flops("V2", "narrow", 2)  # one image per input, counted by PyTorch
    for batch in ("4", "8"):
        original, folded, narrow, effnet = [r for r in rows if r["Batch Size"] == batch]
        assert float(original["TputNorm"]) == 1.0 == float(original["FLOPNorm"])
        for r, flops_per_image in ((folded, flops_per_input("V2", 2) / 2), (narrow, narrow_flops),
                                   (effnet, flops_per_input("V2", 1, efficientnet=True))):
            # the CSV writes both norms to 4 decimals: within half their last digit, or 0.1%
            assert float(r["TputNorm"]) == pytest.approx(float(r["Throughput"]) / float(original["Throughput"]),
                                                         rel=1e-3, abs=5e-5)
            assert float(r["FLOPs/sec"]) == pytest.approx(float(r["Throughput"]) * flops_per_image, rel=1e-4)
            assert float(r["FLOPNorm"]) == pytest.approx(float(r["FLOPs/sec"]) / float(original["FLOPs/sec"]),
                                                         rel=1e-3, abs=5e-5)

    # Resume: a torn last line (killed mid-write) is dropped, finished rows are kept and not rerun.
    finished = out.read_text()
    out.write_text(finished + "apex-count,1,4,Orig")
    stdout = run_sweep(out, TRIALS="2", **settings)
    assert out.read_text().startswith(finished)
    new_rows = read_csv(out)[len(rows):]
    assert [r["Trial"] for r in new_rows] == ["1"] * 8
    assert stdout.splitlines()[1:] == out.read_text().splitlines()[len(rows) + 1:]

    figures = plot(out, tmp_path / "plots")
    assert [p.name for p in figures] == ["figure7.png", "figure8.png"]
    assert all(matplotlib.image.imread(p).shape[2] in (3, 4) for p in figures)
    assert_plots_show_the_csv(saved_figures, read_csv(out))


def test_sweep_refuses_a_foreign_csv(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    proc = subprocess.run(["bash", "run_inference.sh", str(out)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, "MODELS": "N2", "TRIALS": "1"})
    assert_clean_error(proc, "not 'Model,Trial")
    assert out.read_text() == "a,b\n1,2\n"


def test_gpu_benchmark_table_dry_run_on_cpu(tmp_path, capsys):
    gpu_benchmark_main(["--device", "cpu", "--backends", "eager", "--precision", "fp32", "--models", "N4",
                        "--folds", "1", "2", "--batch_size", "4", "--trials", "1", "--num_warmup", "0",
                        "--num_iteration", "1", "--copy_mib", "8", "--matmul_n", "128", "--out", str(tmp_path)])
    table = (tmp_path / "table.md").read_text()
    assert table.strip() in capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| eager")]
    assert [(r[1].strip(), r[2].strip(), r[3].strip(), r[4].strip()) for r in rows] == [
        ("N4", "Original", "1", "1"), ("N4", "Folded", "2", "1"), ("N4", "Narrow", "2", "1"), ("N4", "Folded", "2", "8")]
    assert float(rows[0][6]) == 1.0  # speedup of the original over itself
    measured = read_csv(tmp_path / "eager.csv")
    assert len(measured) == 3
    narrow = counted_variant_flops("N4", "narrow", 2)  # one image per input

    def per_image(mode, fold, align=1):
        return narrow if mode == "Narrow" else counted_flops("N4", fold, align=align) / fold  # widths rounded up to align

    for r in measured:  # FLOPs/sec = images/s x FLOPs per image, counted by PyTorch
        assert float(r["FLOPs/sec"]) == pytest.approx(float(r["Throughput"]) * per_image(r["Mode"], int(r["Fold"])),
                                                      rel=1e-5)  # 6 digits
    for r in rows:  # the table's GFLOP/s, within the rounding of its integer images/s and GFLOP/s
        images_per_s, gflops = float(r[5].replace(",", "")), float(r[7].replace(",", ""))
        per_image_g = per_image(r[2].strip(), int(r[3]), int(r[4])) / 1e9
        assert abs(gflops - images_per_s * per_image_g) <= 0.5 + 0.5 * per_image_g
