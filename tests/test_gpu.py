"""The GPU paths. What their logic needs from a CPU runs everywhere: device resolution, the
TensorRT engine cache key, a compile-backend sweep past dynamo's recompile limit, the
compile backend reading its input, the recorded layout, Makefile's Docker mode, and clean
errors. The tests marked `cuda` need a CUDA GPU and are skipped without one; on a GPU
`make gpu-check` runs them (with a short training run and the benchmarks)."""
import json
import subprocess

import pytest
import torch
import torch._dynamo

from datasets import game_synth
from fold_trainer import train_job
from infer import TOLERANCE, Prepared, build_workload, random_inputs, sweep
from scripts.gpu_check import main as gpu_check_main
from tests.helpers import REPO, assert_clean_error, needs_cuda, run_cli
from util import backends
from util.backends import torch_compile, trt_engine
from util.device import check_cuda_index, on_device
from util.errors import UserError
from util.job_folder import read_metrics

NAME = "apex-count"  # V2, the training tests' dataset
TINY = dict(max_train_per_class=20, batch_size=16, lr=1e-3, curriculum=False, progress=False)
# The name of dynamo's per-code-object compile limit: recompile_limit since PyTorch 2.7.
RECOMPILE_LIMIT = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    game_synth.generate(NAME, root, scale=0.1, seed=0)
    return root


# ----------------------------------------------------------------------------------------
# On any machine.

def test_a_cuda_index_past_the_device_count_is_a_user_error():
    assert check_cuda_index(torch.device("cuda:1"), 2) == torch.device("cuda:1")
    assert check_cuda_index(torch.device("cuda"), 1) == torch.device("cuda")
    with pytest.raises(UserError, match=r"cuda:2 requested but this machine has 2 CUDA GPUs \(cuda:0 to cuda:1\)"):
        check_cuda_index(torch.device("cuda:2"), 2)
    with pytest.raises(UserError, match=r"cuda:1 requested but this machine has 1 CUDA GPU \(cuda:0\)"):
        check_cuda_index(torch.device("cuda:1"), 1)


def test_compile_sweep_outlasts_dynamos_recompile_limit(tmp_path, monkeypatch):
    """Each compiled workload has a code object of its own, so a sweep that compiles more
    models than dynamo's limit (8 by default, lowered to 1 here) completes, with the runs of
    one batch size interleaved trial by trial."""
    monkeypatch.setattr(torch_compile, "MODE", "default")  # seconds per model, not max-autotune's ~10 s
    with torch._dynamo.config.patch(**{RECOMPILE_LIMIT: 1}):
        rows = sweep(tmp_path / "compile.csv", ["V2"], [1, 2], [4], 2, "compile", "fp32", "cpu",
                     efficientnet=False, num_warmup=0, num_iteration=1, narrow=False)
    assert sorted((r["Mode"], r["Trial"]) for r in rows) == [
        ("Folded", "0"), ("Folded", "1"), ("Original", "0"), ("Original", "1")]


def test_compiled_forward_reads_its_input_on_every_call():
    """Timing reruns one input buffer; the compiled model must compute from it, not fold it
    into a constant (what marking it static for Inductor's CUDA graphs would do with freezing)."""
    workload = build_workload("night", 2, batch_size=8)
    x = random_inputs(workload, seed=0)
    with torch.inference_mode():
        compiled = torch_compile.compiled_forward(workload.model, x, "default")
        x.copy_(random_inputs(workload, seed=1))
        assert torch.allclose(compiled(x), workload.model(x), rtol=1e-4, atol=1e-5)


def engine_name(name, fold, seed, precision):
    """The engine file name of a benchmark workload, as a run of infer.py would look it up."""
    workload = build_workload(name, fold, batch_size=8, seed=seed)
    return trt_engine.engine_path(workload.model, random_inputs(workload, seed), precision, "10.9.0", "NVIDIA H100").name


def test_tensorrt_engine_cache_key_is_the_same_in_every_process():
    """Benchmark weights are drawn from the seed, so the next run finds the engine built
    before; another model, fold, seed (weights) or precision gets its own."""
    here = engine_name("night", 2, 0, "fp16")
    proc = run_cli("-c", "from tests.test_gpu import engine_name; print(engine_name('night', 2, 0, 'fp16'))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == here and here.startswith("sequential-4x6x50x50-fp16-trt10.9.0-")
    others = {engine_name("night", 4, 0, "fp16"), engine_name("night", 2, 1, "fp16"),
              engine_name("night", 2, 0, "fp32"), engine_name("V2", 2, 0, "fp16")}
    assert here not in others and len(others) == 4


def test_tensorrt_records_no_channels_last():
    """TensorRT picks its own layouts, so a record never claims channels-last for it."""
    assert backends.channels_last("tensorrt", True) is None
    assert backends.channels_last("cudagraph", None) is True
    assert backends.channels_last("eager", None) is False and backends.channels_last("eager", True) is True


def test_docker_make_test_uses_the_images_python():
    """In the NGC image (SYSTEM_PYTHON=1) `make test` runs the image's Python, which has its
    torch and TensorRT builds; elsewhere it runs the venv's."""
    def dry_run(*settings):
        proc = subprocess.run(["make", "--no-print-directory", "-n", "test", *settings], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    docker = dry_run("SYSTEM_PYTHON=1", "PYTHON=/usr/bin/python3")
    assert "/usr/bin/python3 -m pytest" in docker and "venv" not in docker
    assert ".venv/bin/python -m pytest" in dry_run("SYSTEM_PYTHON=0", "VENV=.venv")


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the errors on a machine without a GPU")
def test_gpu_only_work_fails_cleanly_without_a_gpu(tmp_path, capsys):
    with pytest.raises(UserError, match="--cuda-graph needs a CUDA GPU, and the device is cpu"):
        train_job(NAME, 2, tmp_path, epochs=1, data_root=tmp_path, device="cpu", cuda_graph=True)
    with pytest.raises(SystemExit):
        gpu_check_main([])
    assert capsys.readouterr().err.startswith("error: device cuda requested but PyTorch sees no CUDA GPU")


def test_training_benchmark_prints_steps_and_images_per_second(data_root):
    proc = run_cli("-m", "scripts.bench_training", "--device", "cpu", "--steps", "2", "--folds", "1", "2",
                   "--threads", "1", "--workers", "0", "--name", NAME, "--data-root", data_root)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line[:4].strip() in ("1", "2")]
    assert [(r[0], r[1], r[2]) for r in rows] == [("1", "32", "ImageFolder"), ("1", "32", "tensor"),
                                                  ("2", "32", "ImageFolder"), ("2", "32", "tensor")]
    for row in rows:  # images/s = steps/s x batch
        assert float(row[-2]) == pytest.approx(float(row[-3]) * int(row[1]), rel=0.02, abs=1)


# ----------------------------------------------------------------------------------------
# On a CUDA GPU (make gpu-check).

@needs_cuda
def test_infer_defaults_to_cudagraph_fp16_on_a_gpu():
    proc = run_cli("infer.py", "night", 2, "--batch_size", 64, "--num_warmup", 2, "--num_iteration", 5, "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (record["backend"], record["precision"], record["channels_last"]) == ("cudagraph", "fp16", True)
    assert record["device"] == torch.cuda.get_device_name() and 0 < record["relative_error"] <= TOLERANCE["fp16"]


@needs_cuda
def test_a_cuda_index_past_the_device_count_is_one_line():
    count = torch.cuda.device_count()
    assert_clean_error(run_cli("infer.py", "night", 1, "--device", f"cuda:{count}"),
                       f"cuda:{count} requested but this machine has {count} CUDA GPU")


@needs_cuda
def test_work_runs_on_the_named_device_and_a_dedicated_stream():
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    with on_device(device) as stream:
        assert torch.cuda.current_device() == device.index
        assert torch.cuda.current_stream(device) == stream != torch.cuda.default_stream(device)
    prepared = Prepared(build_workload("night", 2, batch_size=64), "cudagraph", "fp16", device)
    assert prepared.run().device == device and len(prepared.time(3)) == 3


@needs_cuda
@pytest.mark.parametrize("backend, precision", [("cudagraph", "fp16"), ("compile", "fp16"), ("eager", "bf16")])
def test_gpu_backends_match_float32_and_leave_global_flags_alone(backend, precision, monkeypatch):
    monkeypatch.setattr(torch_compile, "MODE", "default")  # max-autotune takes minutes per model on a GPU
    flags = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    prepared = Prepared(build_workload("lol-gold1", 4, batch_size=64), backend, precision, "cuda")
    assert prepared.error <= TOLERANCE[precision]
    assert len(prepared.time(5)) == 5
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32) == flags


@needs_cuda
def test_gpu_training_learns_with_fused_adam(data_root, tmp_path):
    result = train_job(NAME, 1, tmp_path, epochs=6, batch_size=32, lr=1e-3, data_root=data_root,
                       device="cuda", progress=False)
    assert result["test_top1"] > 0.3  # chance: 0.045
    checkpoint = torch.load(tmp_path / NAME / "fold1" / "current.pth", weights_only=False)
    assert checkpoint["optimizer"]["param_groups"][0]["fused"] is True


@needs_cuda
def test_cuda_graph_training_follows_the_eager_run(data_root, tmp_path):
    """The graphed step trains on the same batches with the same kernels; cuDNN's backward
    is not bitwise deterministic, so the runs agree closely, not exactly."""
    eager = train_job(NAME, 2, tmp_path / "eager", epochs=3, data_root=data_root, device="cuda", **TINY)
    graph = train_job(NAME, 2, tmp_path / "graph", epochs=3, data_root=data_root, device="cuda",
                      cuda_graph=True, **TINY)
    rows = [read_metrics(d / NAME / "fold2" / "metrics.csv") for d in (tmp_path / "eager", tmp_path / "graph")]
    assert len(rows[0]) == len(rows[1]) == 3
    for a, b in zip(*rows):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-2)
    assert graph["epochs"] == eager["epochs"] == 3


@needs_cuda
def test_gpu_run_resumes_with_and_without_the_cuda_graph(data_root, tmp_path):
    """On a GPU a resumed run continues the same shuffling and augmentation streams and ends
    with the losses and weights of an uninterrupted run, up to rounding (GPU arithmetic is not
    bitwise reproducible), whether or not either part replays CUDA graphs."""
    train_job(NAME, 2, tmp_path, epochs=2, data_root=data_root, device="cuda", **TINY)
    train_job(NAME, 2, tmp_path, epochs=3, data_root=data_root, device="cuda", cuda_graph=True, **TINY)
    train_job(NAME, 2, tmp_path, epochs=4, data_root=data_root, device="cuda", **TINY)
    rows = read_metrics(tmp_path / NAME / "fold2" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    whole = tmp_path / "whole"
    train_job(NAME, 2, whole, epochs=4, data_root=data_root, device="cuda", **TINY)
    a, b = (torch.load(d / NAME / "fold2" / "current.pth", weights_only=False) for d in (tmp_path, whole))
    assert torch.equal(a["rng"]["shuffle"], b["rng"]["shuffle"]) and torch.equal(a["rng"]["augment"], b["rng"]["augment"])
    assert_close_runs(rows, read_metrics(whole / NAME / "fold2" / "metrics.csv"), a["model"], b["model"])


def assert_close_runs(rows, whole_rows, weights, whole_weights):
    """The same training up to GPU rounding: equal losses to 2%, and weights whose distance is
    under 2% of their norm (a resume that lost its weights or optimizer state lands tens of
    percent away)."""
    for row, whole_row in zip(rows, whole_rows, strict=True):
        assert float(row["train_loss"]) == pytest.approx(float(whole_row["train_loss"]), rel=0.02), row["epoch"]
    for key, value in whole_weights.items():
        if value.is_floating_point():
            assert (weights[key] - value).norm() <= 0.02 * value.norm() + 1e-6, key
