"""What a GPU owner's short slot runs (`make gpu-check`, `make figure7`) and the GPU paths
under them: what their logic needs from a CPU runs everywhere (command lines, estimates,
output folders, settings files, the timing loop, the roofline from a sweep's CSV, the Docker
and shell plumbing); the tests marked `cuda` need a CUDA GPU and are skipped without one."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import infer
from infer import Prepared, build_workload, rounds_of, sweep, time_iterations
from scripts import figure7, gpu_check, plot_results, roofline
from tests.helpers import CPU_ONLY, REPO, needs_cuda, run_cli
from util.backends import torch_compile, trt_engine
from util.errors import UserError
from util.results import settings_path
from util.roofline import MatmulProbe, copy_bandwidth, seconds_per_call

TEN_MINUTES = 600


def tensorrt_imports():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def make_dry_run(target, *settings):
    proc = subprocess.run(["make", "--no-print-directory", "-n", target, "SYSTEM_PYTHON=1", "PYTHON=python3", *settings], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


# ----------------------------------------------------------------------------------------
# make gpu-check

def test_gpu_check_commands(tmp_path):
    """The benchmark compiles in Inductor's default mode (max-autotune takes minutes per
    workload), TensorRT joins it where it imports, and the tests see the checked GPU alone."""
    steps = {name: (command, env) for name, command, env in gpu_check.steps(torch.device("cuda:1"), tmp_path, None)}
    bench = steps["inference benchmark"][0]
    assert bench[bench.index("--compile-mode") + 1] == "default"
    assert bench[bench.index("--backends") + 1:bench.index("--compile-mode")] == ["cudagraph", "compile", "tensorrt"]
    assert all(str(tmp_path) in " ".join(command) for name, (command, _) in steps.items()
               if name not in ("CUDA-only tests", "training throughput"))
    assert steps["CUDA-only tests"][1] == {"CUDA_VISIBLE_DEVICES": gpu_check.visible_devices(torch.device("cuda:1"))}
    without = dict((n, c) for n, c, _ in gpu_check.steps(torch.device("cuda"), tmp_path, "no tensorrt"))
    assert "tensorrt" not in without["inference benchmark"]


def test_gpu_check_pytest_step_sees_only_the_device():
    assert gpu_check.visible_devices(torch.device("cuda:1"), {}) == "1"
    assert gpu_check.visible_devices(torch.device("cuda"), {}) == "0"
    # The caller already hides GPUs: cuda:1 is the second one it shows.
    assert gpu_check.visible_devices(torch.device("cuda:1"), {"CUDA_VISIBLE_DEVICES": "4, 6"}) == "6"


def test_gpu_check_runs_in_a_fresh_folder_and_names_what_it_skips(tmp_path):
    first, second = gpu_check.new_run_folder(tmp_path), gpu_check.new_run_folder(tmp_path)
    assert first != second and first.parent == second.parent == tmp_path
    assert list(first.iterdir()) == [] and list(second.iterdir()) == []
    assert gpu_check.skipped(None) == []
    (what, why), = gpu_check.skipped("the tensorrt Python package does not import")
    assert "TensorRT tests" in what and "tensorrt backend" in what and "does not import" in why
    if not tensorrt_imports():
        assert "tensorrt" in gpu_check.tensorrt_missing()


def test_gpu_check_estimate_is_under_ten_minutes():
    with_trt, without = gpu_check.estimate(None), gpu_check.estimate("no tensorrt")
    assert sum(gpu_check.STEP_SECONDS.values()) < without < with_trt <= TEN_MINUTES


def test_make_gpu_check_shows_its_command():
    assert make_dry_run("gpu-check", "GPU_DEVICE=cuda:1") == ["python3 -m scripts.gpu_check --device cuda:1"]


def test_reproduce_tests_can_be_pinned_to_the_cpu():
    """CPU_ONLY (test_reproduce) hides every GPU from a command line, so that it takes the
    CPU's defaults (onnxruntime, CPU roofline, CPU training) on a GPU machine too."""
    proc = run_cli("-c", "import torch; print(torch.cuda.is_available(), torch.cuda.device_count())", env=CPU_ONLY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "0"]


# ----------------------------------------------------------------------------------------
# make figure7

def test_figure7_measures_every_registered_model_within_ten_minutes():
    names = figure7.figure7_models()
    assert {"lol-gold1", "apex-count", "night"} <= set(names)
    work = infer.sweep_work(names, [1, 2, 3, 4], 1024, 3, "cudagraph", 50, 1000)
    games = sum(infer.models.load_config(n)["family"] == "game" for n in names)
    assert len(work) == 7 * len(names) + games  # f = 1..4, the narrow CNNs of f = 2..4, each game model's EfficientNet
    assert figure7.estimate(names, ["cudagraph"], [1, 2, 3, 4], 1024, 3, 50, 1000) <= TEN_MINUTES
    # more work is estimated longer: compile and TensorRT builds, more iterations
    assert figure7.estimate(names, ["cudagraph", "compile"], [1, 2, 3, 4], 1024, 3, 50, 1000) > TEN_MINUTES


def test_make_figure7_shows_its_commands():
    lines = make_dry_run("figure7", "FIGURE7=out/f7", "ENGINES=tensorrt", "GPU_DEVICE=cuda:1")
    assert lines == [
        "python3 -m scripts.figure7 --out out/f7 --device cuda:1 --engines tensorrt",
        "python3 -m scripts.roofline --results out/f7/results*.csv --out out/f7 --device cuda:1 --precision fp16",
        "python3 -m scripts.plot_results out/f7/results.csv --outdir out/f7"]
    assert make_dry_run("figure7")[0] == "python3 -m scripts.figure7 --out results/figure7 --device cuda "


def test_figure7_without_a_gpu_is_one_line(tmp_path):
    proc = subprocess.run(["make", "figure7", "SYSTEM_PYTHON=1", f"PYTHON={sys.executable}", f"FIGURE7={tmp_path / 'f7'}"],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, **CPU_ONLY})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line and not line.startswith("make")]
    assert len(ours) == 1 and ours[0].startswith("error: make figure7 measures GPU throughput")
    assert not (tmp_path / "f7").exists()


def test_machine_record_reads_nvidia_smi():
    line = "NVIDIA H100 80GB HBM3, 550.54.15, P0, 1980 MHz, 2619 MHz, 1980 MHz, 2619 MHz, 1755 MHz, 700.00 W, 34\n"
    record = figure7.parse_smi(line)
    assert record["name"] == "NVIDIA H100 80GB HBM3" and record["driver_version"] == "550.54.15"
    assert record["clocks.sm"] == "1980 MHz" and record["temperature.gpu"] == "34"
    assert list(record) == figure7.SMI_FIELDS


def test_roofline_from_a_sweeps_csv(tmp_path):
    """make figure7's second and third steps, on what a sweep wrote: the roofline takes the
    CSV's throughputs and measures only the peaks; the plot reads the same CSV."""
    csv_path = tmp_path / "results.csv"
    rows = sweep(csv_path, ["V2"], [1, 2], [4], 1, "eager", "fp32", "cpu", efficientnet=True,
                 num_warmup=0, num_iteration=1)
    roofline.main(["--results", str(csv_path), "--out", str(tmp_path), "--device", "cpu", "--precision", "fp32",
                   "--matmul-n", "128", "--copy-mib", "4", "--trials", "1"])
    table = (tmp_path / "roofline.csv").read_text().splitlines()
    measured = {(r["Fold"]): float(r["Throughput"]) for r in rows if r["Mode"] in ("Original", "Folded")}
    got = {line.split(",")[2]: float(line.split(",")[3]) for line in table[1:]}
    assert [line.split(",")[:2] for line in table[1:]] == [["eager", "V2"], ["eager", "V2"]]
    assert got == pytest.approx(measured)
    assert (tmp_path / "roofline.png").is_file() and "GFLOP/s" in (tmp_path / "roofline.md").read_text()
    plot_results.main([str(csv_path), "--outdir", str(tmp_path)])
    assert (tmp_path / "figure7.png").is_file()


# ----------------------------------------------------------------------------------------
# The timed loop, the probes, the sweep's settings

def test_timed_loop_runs_every_call_in_equal_rounds():
    calls = []
    seconds = time_iterations(lambda: calls.append(1), torch.device("cpu"), 1000)
    assert len(calls) == 1000 and len(seconds) == rounds_of(1000) == 10
    assert [rounds_of(n) for n in (1, 5, 12, 13, 2000)] == [1, 5, 6, 1, 10]  # rounds divide the calls
    slept = time_iterations(lambda: time.sleep(0.01), torch.device("cpu"), 4)
    assert all(0.01 <= s < 0.5 for s in slept)


def test_probes_time_what_they_run():
    assert 0.02 <= seconds_per_call(lambda: time.sleep(0.02), torch.device("cpu"), 3) < 0.5
    probe = MatmulProbe("eager", "fp32", torch.device("cpu"), n=64)
    assert probe.flops == 2 * 64 ** 3 and probe.flops_per_s(2) > 0
    assert copy_bandwidth(torch.device("cpu"), mib=4, reps=2) > 0


def test_sweep_settings_name_the_compile_mode_gpu_and_tensorrt(tmp_path, monkeypatch):
    """A resumed CSV cannot mix compile modes (or GPUs, or TensorRT versions)."""
    monkeypatch.setattr(torch_compile, "MODE", "default")
    out = tmp_path / "compile.csv"
    sweep(out, ["night"], [1], [2], 1, "compile", "fp32", "cpu", efficientnet=False, num_warmup=0, num_iteration=1)
    settings = json.loads(settings_path(out).read_text())
    assert (settings["compile_mode"], settings["gpu"], settings["tensorrt"]) == ("default", None, None)
    monkeypatch.setattr(torch_compile, "MODE", "max-autotune")
    with pytest.raises(UserError, match="compile_mode 'default' there, 'max-autotune' now"):
        sweep(out, ["night"], [1], [2], 1, "compile", "fp32", "cpu", efficientnet=False, num_warmup=0,
              num_iteration=1)


def test_tensorrt_timing_cache_is_one_per_version_and_gpu():
    path = trt_engine.timing_cache_path("10.9.0", "NVIDIA H100 80GB HBM3")
    assert path.parent == trt_engine.ENGINE_DIR and path.name == "timing-trt10.9.0-nvidia-h100-80gb-hbm3.cache"
    assert trt_engine.timing_cache_path("10.9.0", "NVIDIA A100-SXM4-40GB") != path
    assert trt_engine.timing_cache_path("10.8.0", "NVIDIA H100 80GB HBM3") != path


# ----------------------------------------------------------------------------------------
# Docker and the shell script

def test_docker_build_keeps_the_images_packages():
    """opencv-python-headless >= 4.12 needs numpy 2: the image's packages constrain the install."""
    text = (REPO / "dockerfiles" / "FoldDockerfile").read_text()
    run = text[text.index("RUN python -m pip list --format=freeze > /tmp/image-constraints.txt"):]
    assert "pip install --no-cache-dir -c /tmp/image-constraints.txt -r /tmp/extra.txt" in run


def test_run_inference_prefers_the_images_python(tmp_path):
    """In the NGC container (SYSTEM_PYTHON=1) a host .venv mounted with the repository must not
    replace the image's Python: run_inference.sh runs python3 from PATH."""
    marker = tmp_path / "ran"
    (tmp_path / "python3").write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexec {sys.executable} \"$@\"\n")
    (tmp_path / "python3").chmod(0o755)
    env = {**os.environ, **CPU_ONLY, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SYSTEM_PYTHON": "1",
           "MODELS": "V2", "FOLDS": "1", "BATCH_SIZES": "2", "TRIALS": "1", "EFFICIENTNET": "0",
           "BACKEND": "eager", "NUM_WARMUP": "0", "NUM_ITERATION": "1"}
    env.pop("PYTHON", None)
    proc = subprocess.run(["bash", "run_inference.sh", str(tmp_path / "out.csv")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text().startswith("infer.py sweep ")


# ----------------------------------------------------------------------------------------
# On a CUDA GPU

@needs_cuda
def test_timed_loop_on_a_gpu_gives_one_time_per_round():
    prepared = Prepared(build_workload("night", 4, batch_size=1024), "cudagraph", "fp16", "cuda")
    seconds = prepared.time(1000)
    assert len(seconds) == 10 and all(s > 0 for s in seconds)
    assert infer.images_per_second(prepared.workload, seconds) > 0


@needs_cuda
@pytest.mark.parametrize("backend", ["cudagraph", "eager"] + (["tensorrt"] if tensorrt_imports() else []))
def test_roofline_probe_runs_on_its_device_and_stream(backend):
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    probe = MatmulProbe(backend, "fp16", device, n=1024)
    with probe.on_device():
        assert torch.cuda.current_device() == device.index
        assert torch.cuda.current_stream(device) == probe.stream != torch.cuda.default_stream(device)
        assert probe.run().device == device
    assert probe.flops_per_s() > 0 and copy_bandwidth(device, mib=64) > 0


@needs_cuda
@pytest.mark.skipif(not tensorrt_imports(), reason="needs the tensorrt package (the NGC container)")
def test_tensorrt_builds_fill_the_timing_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(trt_engine, "ENGINE_DIR", tmp_path)
    Prepared(build_workload("night", 2, batch_size=64, seed=0), "tensorrt", "fp16", "cuda")
    (cache,) = tmp_path.glob("timing-*.cache")
    size = cache.stat().st_size
    Prepared(build_workload("night", 4, batch_size=64, seed=1), "tensorrt", "fp16", "cuda")
    assert len(list(tmp_path.glob("*.engine"))) == 2 and cache.stat().st_size >= size > 0
