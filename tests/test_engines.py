"""The onnxruntime backend on real exported graphs, the export cache, and the roofline's
peaks, points and table on a CPU at toy sizes."""
import csv
import gc

import pytest
import torch

import infer
import models
from infer import TOLERANCE, Prepared, build_workload, random_inputs, relative_error
from scripts.roofline import main as roofline_main
from tests.helpers import counted_flops
from util import backends, onnx_export
from util.errors import UserError
from util.roofline import roofline_point


@pytest.fixture
def export_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "CACHE_DIR", tmp_path / "onnx")
    return tmp_path / "onnx"


@pytest.mark.parametrize("name, fold", [("V1", 1), ("V1", 4), ("N2", 1), ("N2", 4)])
def test_onnxruntime_matches_eager_per_image(export_cache, name, fold):
    workload = build_workload(name, fold, batch_size=8)
    prepared = Prepared(workload, "onnxruntime", "fp32", "cpu")  # refuses an output off by > 1e-4
    assert 0 < prepared.error <= TOLERANCE["fp32"]  # a different engine: not bit-identical, but close
    with torch.inference_mode():
        reference = workload.model(random_inputs(workload))  # the batch that Prepared bound
        gc.collect()
        scratch = [torch.randn(1 << 16) for _ in range(64)]  # reuses freed memory, if the buffers were freed
        logits = models.unfold_outputs(prepared.run(), fold)
        assert relative_error(logits.reshape(reference.shape), reference) <= TOLERANCE["fp32"] and scratch
    assert logits.shape == (8, len(models.load_config(name)["classes"]))
    assert len(list(export_cache.glob("*.onnx"))) == 1


@pytest.fixture
def session_threads(monkeypatch):
    """The intra-op thread count of every onnxruntime session created while the test runs,
    read from onnxruntime's own session (a recording subclass of its InferenceSession)."""
    import onnxruntime

    created = []

    class RecordingSession(onnxruntime.InferenceSession):
        def __init__(self, path, sess_options=None, *args, **kwargs):
            super().__init__(path, sess_options, *args, **kwargs)
            created.append(int(self.get_session_options().intra_op_num_threads))

    monkeypatch.setattr(onnxruntime, "InferenceSession", RecordingSession)
    before = torch.get_num_threads()
    yield created
    torch.set_num_threads(before)


def test_harness_and_sweep_pass_threads_to_the_onnxruntime_session(export_cache, session_threads, tmp_path, capsys):
    threads = 3  # neither onnxruntime's default nor the suite's torch setting (1 or 2)
    infer.main(["N2", "2", "--backend", "onnxruntime", "--batch_size", "4", "--num_warmup", "0",
                "--num_iteration", "1", "--device", "cpu", "--threads", str(threads)])
    assert session_threads == [threads]
    infer.sweep_main([str(tmp_path / "sweep.csv"), "--models", "N2", "--folds", "1", "--batch_sizes", "4",
                      "--trials", "1", "--num_warmup", "0", "--num_iteration", "1", "--backend", "onnxruntime",
                      "--device", "cpu", "--no_efficientnet", "--threads", str(threads)])
    assert session_threads == [threads, threads]
    assert "images/s" in capsys.readouterr().out


def test_onnxruntime_refuses_half_precision_on_a_cpu(export_cache):
    with pytest.raises(UserError, match="use --precision fp32"):
        Prepared(build_workload("N2", 1, batch_size=2), "onnxruntime", "fp16", "cpu")
    assert backends.default_backend("cpu", flags={"avx2", "avx512f"}) == "onnxruntime"  # no native bf16


def test_export_cache_hits_and_misses_on_versions(tmp_path):
    model = models.build_model("night", 2)
    x = torch.randn(2, *models.input_shape("night", 2))
    first = onnx_export.cached_export(model, x, tmp_path, versions="torch A")
    built = first.stat().st_mtime_ns
    again = onnx_export.cached_export(model, x, tmp_path, versions="torch A")
    assert again == first and again.stat().st_mtime_ns == built  # reused, not re-exported
    other = onnx_export.cached_export(model, x, tmp_path, versions="torch B")
    assert other != first and other.is_file()  # another exporter version is another export
    assert onnx_export.export_key(model, x[:1], "torch A") != onnx_export.export_key(model, x, "torch A")
    torch.nn.init.ones_(model[0].bias)
    assert onnx_export.export_key(model, x, "torch A") not in first.name  # new weights, new key


def test_roofline_point_sides_of_the_ridge():
    compute = roofline_point(50e9, 10, peak_flops=100e9, bandwidth=20e9)
    assert compute["ridge"] == 5 and compute["bound"] == "compute" and compute["roof"] == 100e9
    assert compute["flop_fraction"] == 0.5 == compute["roof_fraction"]
    memory = roofline_point(30e9, 2, peak_flops=100e9, bandwidth=20e9)
    assert memory["bound"] == "memory" and memory["roof"] == 40e9 and memory["roof_fraction"] == 0.75


def test_roofline_table_on_cpu(tmp_path, export_cache, capsys):
    roofline_main(["--out", str(tmp_path), "--models", "N2", "--folds", "1", "2", "--backends", "eager",
                   "onnxruntime", "--batch_size", "4", "--trials", "2", "--num_warmup", "0", "--num_iteration", "1",
                   "--matmul_n", "64", "--copy_mib", "4", "--threads", "1"])
    with open(tmp_path / "roofline.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["backend"], r["model"], r["fold"]) for r in rows] == [
        (b, "N2", f) for b in ("eager", "onnxruntime") for f in ("1", "2")]
    peak, bandwidth = float(rows[0]["peak_flops"]), float(rows[0]["bandwidth"])
    assert peak > 0 and bandwidth > 0 and float(rows[0]["ridge"]) == pytest.approx(peak / bandwidth)
    for r in rows:  # GFLOP/s = images/s x the FLOPs per image that PyTorch counts
        per_image = counted_flops("N2", int(r["fold"])) / int(r["fold"])
        assert float(r["flops_per_s"]) == pytest.approx(float(r["images_per_s"]) * per_image, rel=1e-6)
        assert float(r["flop_fraction"]) == pytest.approx(float(r["flops_per_s"]) / peak)
        assert r["bound"] == ("compute" if float(r["intensity"]) >= peak / bandwidth else "memory")
        assert float(r["speedup"]) == (1.0 if r["fold"] == "1" else pytest.approx(
            float(r["images_per_s"]) / float(next(o["images_per_s"] for o in rows
                                                  if o["backend"] == r["backend"] and o["fold"] == "1"))))
    table = (tmp_path / "roofline.md").read_text()
    assert table.strip() in capsys.readouterr().out and "ridge point" in table
    assert (tmp_path / "roofline.png").stat().st_size > 0
