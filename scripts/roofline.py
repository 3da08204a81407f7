"""The roofline that explains when folding pays: the machine's measured peak FLOP/s and memory
bandwidth, and for each model, f and backend the achieved FLOP/s, its fraction of the peak
and its arithmetic intensity (paper eq. 3) against the ridge point.

    python -m scripts.roofline --out results                      # V1 and N2, f = 1..4
    python -m scripts.roofline --models V1 --backends compile onnxruntime --trials 5
    python -m scripts.roofline --results results/figure7/results.csv --out results/figure7   # peaks only

Every (backend, model, f) is prepared and checked against float32 PyTorch first, then all
of them, and each backend's matmul probe, are timed in turn trial after trial, so that a
drift in machine load hits every one alike; the tables give medians over trials. Writes
OUT/roofline.csv, OUT/roofline.md (also printed) and OUT/roofline.png (x: arithmetic
intensity, y: achieved FLOP/s, one line per model and backend through f = 1..4, under the
machine's two roofs).
"""
import argparse
import csv
import statistics

import matplotlib.pyplot as plt
import torch

import models
from infer import BYTES_PER_ELEMENT, Prepared, build_workload, images_per_second
from util import backends
from util.args import add_flag, device_string, nonnegative_int, positive_int
from util.arith_intensity import model_intensity
from util.device import device_name, resolve_device, set_threads
from util.errors import UserError, cli_main
from util.files import atomic_savefig, atomic_write_text, check_output_dir
from util.results import read_results
from util.roofline import MATMUL_N, MatmulProbe, copy_bandwidth, roofline_point

plt.switch_backend("Agg")  # files only

COLUMNS = ["backend", "model", "fold", "images_per_s", "speedup", "flops_per_s", "flop_fraction", "intensity",
           "ridge", "bound", "peak_flops", "bandwidth"]


def default_backends(device):
    """PyTorch as it is, PyTorch compiled (on a CPU: on a GPU its max-autotune takes minutes per
    model), and the fastest engine here."""
    names = ["eager", "compile", backends.default_backend(device)]
    if torch.device(device).type == "cuda":
        names.remove("compile")
    return list(dict.fromkeys(names))


def workload_costs(name, fold, batch, precision):
    """(FLOPs per image, eq. 3 intensity) of `name` folded `fold` times on `batch` images."""
    workload = build_workload(name, fold, batch - batch % fold)
    return workload.flops_per_image, model_intensity(workload.model, workload.input_shape, workload.num_inputs,
                                                     BYTES_PER_ELEMENT[precision])["intensity"]


def probe_peaks(probes, device, copy_mib, matmul, bandwidth):
    """One trial of the peak probes: appends to {backend: [matmul FLOP/s]} and [copy bytes/s]."""
    bandwidth.append(copy_bandwidth(device, copy_mib))
    for backend, probe in probes.items():
        matmul[backend].append(probe.flops_per_s())


def measure(names, folds, backend_names, precision, device, batch, trials, num_warmup, num_iteration,
            matmul_n, copy_mib):
    """Interleaved timing; returns ({(backend, name, fold): [images/s]}, {backend: [matmul FLOP/s]},
    [copy bytes/s], {(name, fold): (FLOPs per image, eq. 3 intensity)})."""
    prepared, probes, costs = {}, {}, {}
    for backend in backend_names:
        probes[backend] = MatmulProbe(backend, precision, device, matmul_n)
        for name in names:
            for fold in folds:
                workload = build_workload(name, fold, batch - batch % fold)
                prepared[(backend, name, fold)] = Prepared(workload, backend, precision, device)
                costs[(name, fold)] = workload_costs(name, fold, batch, precision)
    throughput = {key: [] for key in prepared}
    matmul = {backend: [] for backend in probes}
    bandwidth = []
    for trial in range(trials):
        probe_peaks(probes, device, copy_mib, matmul, bandwidth)
        for (backend, name, fold), p in prepared.items():
            p.warm_up(num_warmup)
            seconds = p.time(num_iteration, desc=f"trial {trial} {backend} {name} f={fold}")
            throughput[(backend, name, fold)].append(images_per_second(p.workload, seconds))
    return throughput, matmul, bandwidth, costs


def measured_elsewhere(results_csvs, precision, device, trials, matmul_n, copy_mib):
    """The throughputs of run_inference.sh CSVs (their Original and Folded rows at the largest
    batch size) and the peaks measured here with their backends; returns what measure does."""
    rows = [row for path in results_csvs for row in read_results(path)]
    batch = max(int(r["Batch Size"]) for r in rows)
    throughput, costs = {}, {}
    for r in rows:
        if int(r["Batch Size"]) != batch or r["Mode"] not in ("Original", "Folded"):
            continue
        name, fold = models.load_config(r["Model"])["name"], int(r["Fold"])
        throughput.setdefault((r.get("Backend") or "unknown", name, fold), []).append(float(r["Throughput"]))
        if (name, fold) not in costs:
            costs[(name, fold)] = workload_costs(name, fold, batch, precision)
    backend_names = [b for b in dict.fromkeys(b for b, _, _ in throughput) if b in backends.BACKENDS]
    if not backend_names:
        raise UserError(f"{' '.join(map(str, results_csvs))}: no Backend column names a backend of ours, so "
                        f"no peak can be measured for them; give CSVs written by run_inference.sh")
    probes = {b: MatmulProbe(b, precision, device, matmul_n) for b in backend_names}
    matmul, bandwidth = {b: [] for b in probes}, []
    for _ in range(trials):
        probe_peaks(probes, device, copy_mib, matmul, bandwidth)
    return throughput, matmul, bandwidth, costs


def roofline_rows(throughput, peak_flops, bandwidth, costs):
    """One row (COLUMNS) per (backend, model, f), medians over trials; speedup is over f=1 of
    the same backend and model."""
    rows = []
    for (backend, name, fold), values in throughput.items():
        images_per_s = statistics.median(values)
        original = throughput.get((backend, name, 1))
        flops_per_image, intensity = costs[(name, fold)]
        flops_per_s = images_per_s * flops_per_image
        point = roofline_point(flops_per_s, intensity, peak_flops, bandwidth)
        rows.append({"backend": backend, "model": models.load_config(name)["id"], "fold": fold,
                     "images_per_s": images_per_s,
                     "speedup": images_per_s / statistics.median(original) if original else float("nan"),
                     "flops_per_s": flops_per_s, "flop_fraction": point["flop_fraction"], "intensity": intensity,
                     "ridge": point["ridge"], "bound": point["bound"], "peak_flops": peak_flops,
                     "bandwidth": bandwidth})
    return rows


def format_table(rows, matmul, device_label, precision):
    peak, bandwidth = rows[0]["peak_flops"], rows[0]["bandwidth"]
    probes = ", ".join(f"{b} {v / 1e9:,.0f}" for b, v in matmul.items())
    lines = [f"Device: {device_label}. Measured peaks: {peak / 1e9:,.0f} GFLOP/s ({precision} matmul, the "
             f"fastest of: {probes} GFLOP/s), {bandwidth / 1e9:,.1f} GB/s copy bandwidth; ridge point "
             f"{peak / bandwidth:,.1f} FLOP/byte.", "",
             "| backend | model | f | images/s | speedup over f=1 | GFLOP/s | % of peak | intensity (FLOP/B) | bound |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['model']} | {r['fold']} | {r['images_per_s']:,.0f} | "
                     f"{r['speedup']:.2f}x | {r['flops_per_s'] / 1e9:,.1f} | {100 * r['flop_fraction']:.0f}% | "
                     f"{r['intensity']:.1f} | {r['bound']} |")
    return "\n".join(lines)


def plot_roofline(rows, path, precision):
    """Achieved FLOP/s against arithmetic intensity, one line per (backend, model) through
    f = 1..4, under the roofs min(peak, intensity x bandwidth)."""
    peak, bandwidth = rows[0]["peak_flops"], rows[0]["bandwidth"]
    low = min(min(r["intensity"] for r in rows) / 4, peak / bandwidth / 4)
    high = max(max(r["intensity"] for r in rows) * 4, peak / bandwidth * 4)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    xs = [low, peak / bandwidth, high]
    ax.plot(xs, [min(peak, x * bandwidth) / 1e9 for x in xs], color="black", lw=2,
            label=f"roofs: {bandwidth / 1e9:.1f} GB/s, {peak / 1e9:.0f} GFLOP/s")
    markers = "osD^v<>"
    backend_names = list(dict.fromkeys(r["backend"] for r in rows))
    model_ids = list(dict.fromkeys(r["model"] for r in rows))
    for i, backend in enumerate(backend_names):
        for j, model in enumerate(model_ids):
            line = sorted((r for r in rows if r["backend"] == backend and r["model"] == model), key=lambda r: r["fold"])
            ax.plot([r["intensity"] for r in line], [r["flops_per_s"] / 1e9 for r in line], color=f"C{i}",
                    marker=markers[j % len(markers)], label=f"{backend} {model}")
            for r in line:
                ax.annotate(f"f={r['fold']}", (r["intensity"], r["flops_per_s"] / 1e9), fontsize=7,
                            xytext=(3, -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"arithmetic intensity (FLOP/byte, paper eq. 3, {precision})")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title("Roofline: each model at f = 1..4 per backend")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return path


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results", help="folder for roofline.csv, .md and .png (default %(default)s)")
    parser.add_argument("--models", nargs="+", default=["V1", "N2"], help="names or ids (default: V1 N2)")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=list(models.FOLDS))
    parser.add_argument("--backends", nargs="+", choices=list(backends.BACKENDS),
                        help="default: eager, compile (on a CPU) and the fastest backend here")
    add_flag(parser, "batch_size", type=positive_int, default=1024)
    parser.add_argument("--precision", choices=list(backends.DTYPES), help="default: fp16 on a GPU, fp32 on a CPU")
    parser.add_argument("--device", type=device_string, help="cuda, cuda:N or cpu (default: cuda if there is a GPU)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads of every backend and of the probes")
    parser.add_argument("--trials", type=positive_int, default=3)
    add_flag(parser, "num_warmup", type=nonnegative_int, default=1)
    add_flag(parser, "num_iteration", type=positive_int, default=3)
    add_flag(parser, "matmul_n", type=positive_int, help="size of the FLOP/s probe's square matmul "
             f"(default {MATMUL_N['cuda']} on a GPU, {MATMUL_N['cpu']} on a CPU)")
    parser.add_argument("--results", nargs="+", metavar="CSV",
                        help="take the throughputs of these run_inference.sh CSVs (their Original and Folded "
                             "rows, largest batch size) instead of timing them; only the peaks are measured")
    add_flag(parser, "copy_mib", type=positive_int, default=512, help="size of the bandwidth probe's copy")
    args = parser.parse_args(argv)
    if args.threads is not None:
        set_threads(args.threads)
    device = resolve_device(args.device)
    backend_names = args.backends or default_backends(device)
    for backend in backend_names:
        backends.check_device(backend, device)
    precision = args.precision or backends.default_precision(device)
    names = [models.load_config(n)["name"] for n in args.models]
    folds = sorted(set(args.folds) | {1})  # speedups are over f=1
    out = check_output_dir(args.out, "roofline folder")  # before minutes of measuring
    if args.results:
        throughput, matmul, bandwidth, costs = measured_elsewhere(args.results, precision, device, args.trials,
                                                                  args.matmul_n, args.copy_mib)
    else:
        throughput, matmul, bandwidth, costs = measure(
            names, folds, backend_names, precision, device, args.batch_size, args.trials, args.num_warmup,
            args.num_iteration, args.matmul_n, args.copy_mib)
    matmul = {b: statistics.median(v) for b, v in matmul.items()}
    rows = roofline_rows(throughput, max(matmul.values()), statistics.median(bandwidth), costs)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "roofline.csv")
    table = format_table(rows, matmul, device_name(device), precision)
    atomic_write_text(out / "roofline.md", table + "\n")
    plot_roofline(rows, out / "roofline.png", precision)
    print(table)


if __name__ == "__main__":
    main()
