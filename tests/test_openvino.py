"""The openvino backend on real exported graphs (fp32 and bf16 against float32 PyTorch, its
request queue, threads), and the CPU default precision and backend following the CPU's flags."""
import csv
import json

import pytest
import torch

import models
from datasets import game_synth
from datasets.batches import load_job_data
from fold_trainer import best_path, evaluate
from infer import TOLERANCE, Prepared, build_workload, random_inputs, relative_error
from scripts.precision_accuracy import main as precision_accuracy_main
from scripts.roofline import main as roofline_main
from tests.helpers import run_cli
from util import backends, onnx_export
from util.checkpoint import load_weights
from util.device import CPU_FLAGS_ENV, cpu_flags, cpu_isa, native_bf16
from util.errors import UserError

openvino = pytest.importorskip("openvino")
from util.backends import openvino_engine  # noqa: E402  (after the skip: it needs openvino)

SUPPORTED = openvino_engine.supported_precisions(openvino.Core())


@pytest.fixture(scope="module")
def export_cache(tmp_path_factory):
    """One export cache for the module: fp32 and bf16 of a workload share their export."""
    cache = tmp_path_factory.mktemp("onnx")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_export, "CACHE_DIR", cache)
        yield cache


@pytest.fixture
def threads():
    """torch's threads (which the backend hands to OpenVINO), set by the test and restored."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name, fold, batch", [("V1", 4, 16), ("N2", 3, 9)])
def test_openvino_matches_fp32_per_image(export_cache, threads, precision, name, fold, batch):
    if precision not in SUPPORTED:
        pytest.skip(f"OpenVINO's CPU plugin has no {precision} on this CPU")
    threads(2)  # THROUGHPUT: 2 streams, so the batch is cut in 2 (N2 f=3: 3 inputs, padded to 4)
    workload = build_workload(name, fold, batch_size=batch)
    prepared = Prepared(workload, "openvino", precision, "cpu")  # refuses an error above TOLERANCE
    run = prepared.run
    assert len(run.inputs) == run.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == len(run.queue)
    assert run.compiled.get_property("INFERENCE_NUM_THREADS") == 2
    with torch.inference_mode():
        reference = models.unfold_outputs(workload.model(random_inputs(workload)), fold)
        logits = models.unfold_outputs(run(), fold)
    assert logits.shape == reference.shape == (batch, len(models.load_config(name)["classes"]))
    per_image = [relative_error(got, want) for got, want in zip(logits, reference)]
    assert max(per_image) <= 2 * TOLERANCE[precision]  # every image, the padded sub-batch's too
    # bf16 really runs in bf16 (8-bit mantissas), fp32 in fp32
    assert (prepared.error > 1e-3) if precision == "bf16" else (prepared.error < 1e-5)
    exports = set(export_cache.glob("*.onnx"))  # the onnxruntime backend's export, reshaped for the queue
    assert onnx_export.cached_export(workload.model, random_inputs(workload)) in exports
    assert set(export_cache.glob("*.onnx")) == exports


def test_openvino_honours_threads_and_refuses_what_the_cpu_lacks(export_cache, threads):
    threads(1)
    model = models.build_model("N2", 1).eval()
    x = torch.randn(4, *models.input_shape("N2", 1))
    run = openvino_engine.prepare(model, x, "fp32", torch.device("cpu"))
    assert run.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert str(run.compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    assert str(run.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    for precision in {"fp16", "bf16"} - set(SUPPORTED):
        with pytest.raises(UserError, match=f"no {precision} kernels on this CPU"):
            openvino_engine.prepare(model, x, precision, torch.device("cpu"))


@pytest.mark.parametrize("flags, isa, backend, precision", [
    ({"avx2", "avx512f", "amx_bf16", "avx512_bf16"}, "AMX-BF16", "openvino", "bf16"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512_BF16", "openvino", "bf16"),
    ({"avx2", "avx512f"}, "AVX-512", "onnxruntime", "fp32"),
    ({"avx2", "fma"}, "AVX2", "onnxruntime", "fp32"),
])
def test_default_precision_follows_cpu_flags(flags, isa, backend, precision):
    assert cpu_isa(flags) == isa and native_bf16(flags) == (precision == "bf16")
    assert backends.default_backend("cpu", flags) == backend
    assert backends.default_precision("cpu", flags=flags) == precision
    assert backends.default_precision("cpu", "openvino", flags) == precision
    for other in ("onnxruntime", "eager", "compile"):  # fp32 unless asked: PyTorch's and onnxruntime's default
        assert backends.default_precision("cpu", other, flags) == "fp32"
    assert backends.default_precision("cuda", flags=flags) == "fp16"
    assert backends.parse_engine("openvino", "cpu") == ("openvino", backends.default_precision("cpu", "openvino"))
    assert backends.parse_engine("compile:bf16") == ("compile", "bf16")
    with pytest.raises(UserError, match="unknown engine 'openvino:int4'"):
        backends.parse_engine("openvino:int4")


def test_cpu_flags_read_from_cpuinfo_and_overridden(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\n")
    monkeypatch.delenv(CPU_FLAGS_ENV, raising=False)
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "missing") == set()
    monkeypatch.setenv(CPU_FLAGS_ENV, "sse2 avx2")
    assert cpu_flags(cpuinfo) == {"sse2", "avx2"} and cpu_isa() == "AVX2" and not native_bf16()


def test_infer_default_engine_follows_the_overridden_flags():
    """A CPU without native bf16, whatever this one has: infer.py defaults to onnxruntime fp32."""
    proc = run_cli("infer.py", "N2", 2, "--batch_size", 4, "--num_warmup", 0, "--num_iteration", 1, "--json",
                   "--device", "cpu", "--threads", 1, env={CPU_FLAGS_ENV: "avx2 fma"})
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (record["backend"], record["precision"], record["isa"]) == ("onnxruntime", "fp32", "AVX2")
    assert record["relative_error"] <= TOLERANCE["fp32"]


def test_roofline_has_a_roof_per_precision(tmp_path, export_cache, threads):
    if "bf16" not in SUPPORTED:
        pytest.skip("OpenVINO's CPU plugin has no bf16 on this CPU")
    threads(1)
    roofline_main(["--out", str(tmp_path), "--models", "N2", "--folds", "1", "2", "--backends", "onnxruntime",
                   "openvino:bf16", "openvino:fp32", "--batch_size", "4", "--trials", "1", "--num_warmup", "0",
                   "--num_iteration", "1", "--matmul_n", "128", "--copy_mib", "4"])
    with open(tmp_path / "roofline.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["backend"], r["precision"], r["fold"]) for r in rows] == [
        (b, p, f) for b, p in [("onnxruntime", "fp32"), ("openvino", "bf16"), ("openvino", "fp32")] for f in "12"]
    peaks = {r["precision"]: float(r["peak_flops"]) for r in rows}
    assert len({(r["precision"], r["peak_flops"]) for r in rows}) == 2  # one peak per precision
    for r in rows:
        assert float(r["flop_fraction"]) == pytest.approx(float(r["flops_per_s"]) / peaks[r["precision"]])
        assert float(r["ridge"]) == pytest.approx(peaks[r["precision"]] / float(r["bandwidth"]))
    fp32, bf16 = (next(r for r in rows if r["precision"] == p and r["fold"] == "1") for p in ("fp32", "bf16"))
    assert float(bf16["intensity"]) == pytest.approx(2 * float(fp32["intensity"]), rel=0.01)  # half the bytes
    table = (tmp_path / "roofline.md").read_text()
    assert "bf16" in table and "fp32" in table and f"ISA {cpu_isa()}" in table


def test_precision_accuracy_of_trained_checkpoints(tmp_path, export_cache, threads):
    """best.pth files of a sweep's original and folded models evaluated on their test split:
    fp32 equals training's own evaluation, and bf16 stays within a few images of it."""
    if "bf16" not in SUPPORTED:
        pytest.skip("OpenVINO's CPU plugin has no bf16 on this CPU")
    threads(1)
    game_synth.generate("lol-gold1", tmp_path / "data", scale=0.001, eval_scale=0.02, workers=1)
    lines = ["dataset,fold,variant,test_top1", "lol-gold1,2,narrow,0.5"]  # a baseline: not re-evaluated
    for fold in (1, 2):
        job = best_path(tmp_path / "runs", "lol-gold1", fold)
        job.parent.mkdir(parents=True)
        torch.manual_seed(fold)
        torch.save({"model": models.build_model("lol-gold1", fold).state_dict()}, job)
        lines.append(f"lol-gold1,{fold},{'original' if fold == 1 else 'folded'},0.5")
    (tmp_path / "runs" / "summary.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "precision.csv"
    precision_accuracy_main([str(tmp_path / "runs"), "--out", str(out), "--engine", "openvino:bf16",
                             "--data-root", str(tmp_path / "data"), "--device", "cpu"])
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["dataset"], r["fold"], r["backend"], r["precision"], r["isa"]) for r in rows] == [
        ("lol-gold1", f, "openvino", "bf16", cpu_isa()) for f in "12"]
    for row in rows:
        fold = int(row["fold"])
        _, _, test = load_job_data("lol-gold1", tmp_path / "data", "cpu")
        model = load_weights(models.build_model("lol-gold1", fold), best_path(tmp_path / "runs", "lol-gold1", fold))
        assert int(row["test_images"]) == len(test) > 20
        assert float(row["fp32_top1"]) == pytest.approx(100 * evaluate(model, test, fold)[0], abs=1e-2)
        assert abs(float(row["top1"]) - float(row["fp32_top1"])) <= 100 * 3 / len(test)  # bf16: a few images
        assert float(row["change"]) == pytest.approx(float(row["top1"]) - float(row["fp32_top1"]), abs=0.011)
