"""The GPU benchmark: the throughput sweep with the cudagraph and compile backends in fp16 at
batch 1024, appendix H's N4 f=2 rerun with widths aligned to 8, and a table of how close
each model comes to the GPU's memory-bandwidth and tensor-core rooflines.

    python -m scripts.gpu_benchmark --out results/gpu              # on a CUDA GPU
    python -m scripts.gpu_benchmark --device cpu --backends eager --precision fp32 \
        --models night --folds 1 2 --batch-size 8 --trials 1 --num-iteration 2   # a dry run

The peaks are measured here: bandwidth by a large device-to-device copy (bytes read +
written per second), FLOP/s by a large matmul in the benchmark's precision (tensor cores
in fp16). A model's traffic and FLOPs per image follow the paper's eq. 3 accounting
(util.arith_intensity: each conv/linear layer reads its input and weights and writes its
output once); its FLOPs come from config/model_map.json. Results: OUT/<backend>.csv
(run_inference.sh's format, resumable) and OUT/table.md, also printed.

Time: the compile backend's default mode, max-autotune, searches Triton kernels for every
model and fold, minutes each on a GPU (an hour or more for the default models);
`--compile-mode default` compiles in seconds with Inductor's standard kernels.
"""
import argparse
import contextlib
import statistics
from pathlib import Path


import models
from infer import BYTES_PER_ELEMENT, Prepared, build_run, build_workload, ieee_fp32, images_per_second, sweep
from util import backends
from util.args import add_flag, device_string, nonnegative_int, positive_int
from util.arith_intensity import model_intensity
from util.backends import torch_compile
from util.device import device_name
from util.errors import cli_main
from util.roofline import copy_bandwidth, matmul_flops
from util.files import atomic_write_text

# Appendix H: N4 at f=2 has 90-channel convs (tile quantization); rerun with widths aligned.
ALIGNED_RUNS = [("N4", 2, 8)]  # (model, fold, align)


def measure_peaks(device, precision, copy_mib=1024, matmul_n=8192):
    """(bytes/s of a device-to-device copy, FLOP/s of an n x n matmul in `precision`), timed
    by util.roofline's probes (CUDA events over many calls, on the device and a stream of
    their own), as scripts.roofline's are."""
    with ieee_fp32() if precision == "fp32" else contextlib.nullcontext():
        return copy_bandwidth(device, copy_mib), matmul_flops("eager", precision, device, matmul_n)


def per_image_cost(name, mode, fold, batch, precision, align=1):
    """(FLOPs, bytes of eq. 3 traffic) per image of a model run on `batch` images."""
    workload = build_run(name, mode, fold, batch, align)
    traffic = model_intensity(workload.model, workload.input_shape, workload.num_inputs,
                              BYTES_PER_ELEMENT[precision])["bytes"]
    return workload.flops_per_image, traffic / workload.batch


def roofline_rows(backend, results, precision, peak_bandwidth, peak_flops):
    """Table rows from {(name, batch, mode, fold, align): ([images/s per trial], [speedup per trial])}."""
    rows = []
    for (name, batch, mode, fold, align), (tput, speedup) in results.items():
        flops, traffic = per_image_cost(name, mode, fold, batch, precision, align)
        images_per_s = statistics.median(tput)
        rows.append({"backend": backend, "model": models.load_config(name)["id"], "mode": mode, "fold": fold,
                     "align": align, "images_per_s": images_per_s, "speedup": statistics.median(speedup),
                     "flops_per_s": images_per_s * flops, "flop_fraction": images_per_s * flops / peak_flops,
                     "bytes_per_s": images_per_s * traffic,
                     "bandwidth_fraction": images_per_s * traffic / peak_bandwidth})
    return rows


def format_table(rows, peak_bandwidth, peak_flops, device_label, precision):
    lines = [f"Device: {device_label}; measured peaks: {peak_bandwidth / 1e9:,.0f} GB/s copy bandwidth, "
             f"{peak_flops / 1e9:,.0f} GFLOP/s {precision} matmul", "",
             "| backend | model | mode | f | align | images/s | speedup | GFLOP/s | % FLOP peak | GB/s | % BW peak |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['model']} | {r['mode']} | {r['fold']} | {r['align']} | "
                     f"{r['images_per_s']:,.0f} | {r['speedup']:.2f} | {r['flops_per_s'] / 1e9:,.0f} | "
                     f"{100 * r['flop_fraction']:.1f} | {r['bytes_per_s'] / 1e9:,.0f} | "
                     f"{100 * r['bandwidth_fraction']:.1f} |")
    return "\n".join(lines)


def sweep_results(rows, names, batch):
    """{(name, batch, mode, fold, 1): ([Throughput], [TputNorm])} of run_inference.sh rows."""
    results = {}
    for r in rows:
        if r["Model"] not in names or int(r["Batch Size"]) != batch:
            continue
        key = (r["Model"], int(r["Batch Size"]), r["Mode"], int(r["Fold"]), 1)
        tput, speedup = results.setdefault(key, ([], []))
        tput.append(float(r["Throughput"]))
        speedup.append(float(r["TputNorm"]))
    return results


def aligned_results(names, backend, precision, device, batch, trials, num_warmup, num_iteration, originals):
    """The ALIGNED_RUNS of models in `names`, timed like the sweep; speedups against the
    sweep's Originals."""
    results = {}
    for model_id, fold, align in ALIGNED_RUNS:
        name = models.load_config(model_id)["name"]
        if name not in names:
            continue
        prepared = Prepared(build_workload(name, fold, batch - batch % fold, align), backend, precision, device)
        tput = []
        for _ in range(trials):
            prepared.warm_up(num_warmup)
            seconds = prepared.time(num_iteration, desc=f"{name} f={fold} align {align}")
            tput.append(images_per_second(prepared.workload, seconds))
        original = statistics.median(originals[(name, batch, "Original", 1, 1)][0])
        results[(name, batch, "Folded", fold, align)] = (tput, [t / original for t in tput])
    return results


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/gpu", help="directory for the CSVs and table.md")
    parser.add_argument("--backends", nargs="+", default=["cudagraph", "compile"], choices=list(backends.BACKENDS))
    parser.add_argument("--models", nargs="+", help="names or ids (default: all game and NoScope models)")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=list(models.FOLDS))
    add_flag(parser, "batch_size", type=positive_int, default=1024)
    parser.add_argument("--precision", default="fp16", choices=list(backends.DTYPES))
    parser.add_argument("--device", type=device_string, default="cuda", help="default cuda")
    parser.add_argument("--trials", type=positive_int, default=3)
    add_flag(parser, "num_warmup", type=nonnegative_int, default=100)
    add_flag(parser, "num_iteration", type=positive_int, default=2000)
    add_flag(parser, "copy_mib", type=positive_int, default=1024,
             help="size of the bandwidth probe's copy")
    add_flag(parser, "matmul_n", type=positive_int, default=8192,
             help="size of the FLOP/s probe's matmul")
    add_flag(parser, "compile_mode", choices=list(torch_compile.GPU_MODES), default=torch_compile.MODE,
             help="Inductor mode of the compile backend (default max-autotune: minutes per model "
             "on a GPU; default: seconds)")
    parser.add_argument("--narrow", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the narrow CNN of each f (default on; --no-narrow skips it)")
    args = parser.parse_args(argv)
    torch_compile.MODE = args.compile_mode
    device = backends.check_device(args.backends[0], args.device)
    if args.models:
        names = [models.load_config(n)["name"] for n in args.models]
    else:
        names = [n for n in models.model_names() if models.load_config(n)["family"] in ("game", "noscope")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peak_bandwidth, peak_flops = measure_peaks(device, args.precision, args.copy_mib, args.matmul_n)
    rows = []
    for backend in args.backends:
        done = sweep(out / f"{backend}.csv", names, args.folds, [args.batch_size], args.trials, backend,
                     args.precision, device, True, args.num_warmup, args.num_iteration, narrow=args.narrow)
        results = sweep_results(done, names, args.batch_size)
        results.update(aligned_results(names, backend, args.precision, device, args.batch_size, args.trials,
                                       args.num_warmup, args.num_iteration, results))
        rows += roofline_rows(backend, results, args.precision, peak_bandwidth, peak_flops)
    table = format_table(rows, peak_bandwidth, peak_flops, device_name(device), args.precision)
    atomic_write_text(out / "table.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()
