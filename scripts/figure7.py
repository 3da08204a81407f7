"""The paper's figure 7 measured on a GPU, for its owner's short slot (`make figure7`):
throughput of every model at f = 1..4, the narrow CNN of each f > 1 (the original at width
x 1/sqrt(f)) and its EfficientNet baseline, batch 1024, fp16, on the cudagraph backend, as
the sweep of run_inference.sh.

    make figure7                          # this, then the roofline and the plot
    make figure7 ENGINES="compile tensorrt" GPU_DEVICE=cuda:1
    python -m scripts.figure7 --out results/figure7 [--engines cudagraph compile tensorrt]

The models are every game and NoScope model of the registry (models/registry.py), so that
models registered later are measured too. Before it starts it prints its estimated time
on one H100 (util/gpu_estimate.py), under 10 minutes with the default trials and
iterations. It writes OUT/machine.json (GPU, clocks, driver, CUDA, cuDNN, PyTorch,
TensorRT; nvidia-smi's clocks again after the sweep) and OUT/results.csv, plus
OUT/results-ENGINE.csv for each further engine: the compile backend in Inductor's default
mode, TensorRT (its engines and its timing cache persist in engines/, so a rerun reuses
its builds). The sweep resumes where an interrupted run stopped.
`make figure7` then runs scripts.roofline --results (the measured GPU peak FLOP/s and
bandwidth, OUT/roofline.csv/.md/.png) and scripts.plot_results (OUT/figure7.png).
"""
import argparse
import csv
import io
import platform
import subprocess

import torch

import models
from infer import sweep, sweep_work
from util.args import add_flag, nonnegative_int, positive_int
from util.backends import torch_compile, trt_engine
from util.device import cpu_name, resolve_device
from util.errors import UserError, cli_main
from util.files import atomic_write_json, check_output_dir
from util.gpu_estimate import estimate_seconds, format_estimate

ENGINES = ["cudagraph", "compile", "tensorrt"]  # cudagraph always runs; the others on request
FAMILIES = ("game", "noscope")
# Seconds on an H100 of what times no workload: the roofline's peak probes and the plots.
OTHER_SECONDS = 30
SMI_FIELDS = ["name", "driver_version", "pstate", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem",
              "clocks.applications.graphics", "power.limit", "temperature.gpu"]


def figure7_models():
    """Every game and NoScope model of the registry, in its order."""
    return [n for n in models.model_names() if models.load_config(n)["family"] in FAMILIES]


def results_csv(out, engine):
    return out / ("results.csv" if engine == "cudagraph" else f"results-{engine}.csv")


def estimate(names, engines, folds, batch, trials, num_warmup, num_iteration):
    """Seconds of `make figure7` on an H100 (util/gpu_estimate.py)."""
    work = [w for engine in engines
            for w in sweep_work(names, folds, batch, trials, engine, num_warmup, num_iteration)]
    return estimate_seconds(work, OTHER_SECONDS)


def parse_smi(text, fields=SMI_FIELDS):
    """{field: value} of one line of `nvidia-smi --query-gpu=... --format=csv,noheader`."""
    values = next(csv.reader(io.StringIO(text), skipinitialspace=True), [])
    return dict(zip(fields, (v.strip() for v in values)))


def nvidia_smi(device):
    """nvidia-smi's name, driver and clocks of `device` (found by its UUID), or why not."""
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    target = f"GPU-{uuid}" if uuid else str(device.index or 0)
    command = ["nvidia-smi", f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader", "-i", target]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"error": f"nvidia-smi did not run: {error}"}
    if proc.returncode:
        return {"error": f"nvidia-smi failed: {proc.stderr.strip() or proc.stdout.strip()}"}
    return parse_smi(proc.stdout)


def machine_record(device, engines):
    """What the numbers were measured on."""
    props = torch.cuda.get_device_properties(device)
    return {
        "gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count, "memory_gib": round(props.total_memory / 2 ** 30, 1),
        "nvidia_smi": nvidia_smi(device), "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "torch": torch.__version__,
        "tensorrt": trt_engine.import_tensorrt().__version__ if "tensorrt" in engines else None,
        "compile_mode": torch_compile.MODE if "compile" in engines else None,
        "python": platform.python_version(), "cpu": cpu_name(),
    }


def check_gpu(device):
    """The CUDA device to measure on, or a one-line UserError saying why there is none."""
    if not torch.cuda.is_available():
        raise UserError("make figure7 measures GPU throughput and needs a CUDA GPU, but PyTorch sees none here: "
                        "run it on a machine with an NVIDIA GPU (README, 'Figure 7 on a GPU')")
    device = resolve_device(device)
    if device.type != "cuda":
        raise UserError(f"make figure7 measures GPU throughput: give a CUDA device, not {device}")
    return device


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/figure7", help="folder of the results (default %(default)s)")
    parser.add_argument("--device", default="cuda", help="the GPU: cuda or cuda:N (default cuda)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=["cudagraph"],
                        help="backends to sweep (cudagraph always; compile runs Inductor's default mode)")
    parser.add_argument("--models", nargs="+", help="names or ids (default: every game and NoScope model)")
    add_flag(parser, "batch_size", type=positive_int, default=1024)
    parser.add_argument("--trials", type=positive_int, default=3)
    add_flag(parser, "num_warmup", type=nonnegative_int, default=50)
    add_flag(parser, "num_iteration", type=positive_int, default=1000)
    args = parser.parse_args(argv)
    device = check_gpu(args.device)
    engines = list(dict.fromkeys(["cudagraph", *args.engines]))
    if "tensorrt" in engines:
        trt_engine.import_tensorrt()  # a one-line error now, not after the other engines
    torch_compile.MODE = "default"  # max-autotune searches kernels for minutes per workload
    names = [models.load_config(n)["name"] for n in args.models] if args.models else figure7_models()
    out = check_output_dir(args.out, "figure 7 folder")
    seconds = estimate(names, engines, list(models.FOLDS), args.batch_size, args.trials, args.num_warmup,
                       args.num_iteration)
    print(format_estimate(seconds, f"make figure7 ({', '.join(engines)})"), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    record = machine_record(device, engines)
    atomic_write_json(out / "machine.json", record)
    for engine in engines:
        sweep(results_csv(out, engine), names, list(models.FOLDS), [args.batch_size], args.trials, engine,
              "fp16", device, True, args.num_warmup, args.num_iteration)
    record["nvidia_smi_after"] = nvidia_smi(device)  # clocks after the sweep: did the GPU throttle?
    atomic_write_json(out / "machine.json", record)
    print(f"wrote {', '.join(str(results_csv(out, e)) for e in engines)} and {out / 'machine.json'}")


if __name__ == "__main__":
    main()
