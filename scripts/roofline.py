"""The roofline that explains when folding pays: the machine's measured peak FLOP/s (per
precision) and memory bandwidth, and for each model, f and engine (backend and precision)
the achieved FLOP/s, its fraction of its precision's peak and its arithmetic intensity
(paper eq. 3) against the ridge point.

    python -m scripts.roofline --out results                      # V1 and N2, f = 1..4
    python -m scripts.roofline --models V1 --backends compile onnxruntime openvino:bf16 --trials 5
    python -m scripts.roofline --results results/figure7/results.csv --out results/figure7   # peaks only

An engine is BACKEND[:PRECISION]; a bare backend runs in --precision if given, else in its
default precision (bf16 for openvino on a CPU with native bf16, fp32 for the others on a
CPU, fp16 on a GPU). Each precision has its own roof: its peak is the fastest matmul probe
among the engines of that precision, each probe run through the backend that runs the
models, so the bf16 roof is what OpenVINO's bf16 kernels reach on this CPU's bf16 units.

Every (backend, model, f) is prepared and checked against float32 PyTorch first, then all
of them, and each backend's matmul probe, are timed in turn trial after trial, so that a
drift in machine load hits every one alike; the tables give medians over trials. Writes
OUT/roofline.csv, OUT/roofline.md (also printed) and OUT/roofline.png (x: arithmetic
intensity, y: achieved FLOP/s, one line per model and engine through f = 1..4, under the
memory roof and one compute roof per precision).
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
from util.device import cpu_isa, device_name, resolve_device, set_threads
from util.errors import UserError, cli_main
from util.files import atomic_savefig, atomic_write_text, check_output_dir
from util.results import read_results
from util.roofline import MATMUL_N, MatmulProbe, copy_bandwidth, roofline_point

plt.switch_backend("Agg")  # files only

COLUMNS = ["backend", "model", "fold", "images_per_s", "speedup", "flops_per_s", "flop_fraction", "intensity",
           "ridge", "bound", "peak_flops", "bandwidth", "precision"]


def default_backends(device):
    """PyTorch as it is, PyTorch compiled and onnxruntime (on a CPU: on a GPU compile's
    max-autotune takes minutes per model), and the fastest engine here."""
    names = ["eager", "compile", "onnxruntime", backends.default_backend(device)]
    if torch.device(device).type == "cuda":
        names = ["eager", backends.default_backend(device)]
    return list(dict.fromkeys(names))


def resolve_engines(specs, precision, device):
    """(backend, precision) of each BACKEND[:PRECISION]; a bare backend runs in `precision`,
    else its default."""
    engines = []
    for spec in specs:
        backend, chosen = backends.parse_engine(spec, device)
        engines.append((backend, chosen if ":" in spec or precision is None else precision))
    return list(dict.fromkeys(engines))


def workload_costs(name, fold, batch, precision):
    """(FLOPs per image, eq. 3 intensity) of `name` folded `fold` times on `batch` images."""
    workload = build_workload(name, fold, batch - batch % fold)
    return workload.flops_per_image, model_intensity(workload.model, workload.input_shape, workload.num_inputs,
                                                     BYTES_PER_ELEMENT[precision])["intensity"]


def probe_peaks(probes, device, copy_mib, matmul, bandwidth):
    """One trial of the peak probes: appends to {engine: [matmul FLOP/s]} and [copy bytes/s]."""
    bandwidth.append(copy_bandwidth(device, copy_mib))
    for engine, probe in probes.items():
        matmul[engine].append(probe.flops_per_s())


def measure(names, folds, engines, device, batch, trials, num_warmup, num_iteration, matmul_n, copy_mib):
    """Interleaved timing of `engines` [(backend, precision)]; returns ({(engine, name, fold):
    [images/s]}, {engine: [matmul FLOP/s]}, [copy bytes/s], {(name, fold, precision): (FLOPs
    per image, eq. 3 intensity)})."""
    prepared, probes, costs = {}, {}, {}
    for engine in engines:
        backend, precision = engine
        probes[engine] = MatmulProbe(backend, precision, device, matmul_n)
        for name in names:
            for fold in folds:
                workload = build_workload(name, fold, batch - batch % fold)
                prepared[(engine, name, fold)] = Prepared(workload, backend, precision, device)
                costs[(name, fold, precision)] = workload_costs(name, fold, batch, precision)
    throughput = {key: [] for key in prepared}
    matmul = {backend: [] for backend in probes}
    bandwidth = []
    for trial in range(trials):
        probe_peaks(probes, device, copy_mib, matmul, bandwidth)
        for ((backend, precision), name, fold), p in prepared.items():
            p.warm_up(num_warmup)
            seconds = p.time(num_iteration, desc=f"trial {trial} {backend} {precision} {name} f={fold}")
            throughput[((backend, precision), name, fold)].append(images_per_second(p.workload, seconds))
    return throughput, matmul, bandwidth, costs


def measured_elsewhere(results_csvs, precision, device, trials, matmul_n, copy_mib):
    """The throughputs of run_inference.sh CSVs (their Original and Folded rows at the largest
    batch size, measured in `precision`) and the peaks measured here with their backends;
    returns what measure does."""
    rows = [row for path in results_csvs for row in read_results(path)]
    batch = max(int(r["Batch Size"]) for r in rows)
    throughput, costs = {}, {}
    for r in rows:
        if int(r["Batch Size"]) != batch or r["Mode"] not in ("Original", "Folded"):
            continue
        name, fold = models.load_config(r["Model"])["name"], int(r["Fold"])
        engine = (r.get("Backend") or "unknown", precision)
        throughput.setdefault((engine, name, fold), []).append(float(r["Throughput"]))
        if (name, fold, precision) not in costs:
            costs[(name, fold, precision)] = workload_costs(name, fold, batch, precision)
    engines = [e for e in dict.fromkeys(e for e, _, _ in throughput) if e[0] in backends.BACKENDS]
    if not engines:
        raise UserError(f"{' '.join(map(str, results_csvs))}: no Backend column names a backend of ours, so "
                        f"no peak can be measured for them; give CSVs written by run_inference.sh")
    probes = {e: MatmulProbe(*e, device, matmul_n) for e in engines}
    matmul, bandwidth = {e: [] for e in probes}, []
    for _ in range(trials):
        probe_peaks(probes, device, copy_mib, matmul, bandwidth)
    return throughput, matmul, bandwidth, costs


def precision_peaks(matmul):
    """{precision: the fastest median matmul FLOP/s of the engines in that precision}."""
    peaks = {}
    for (_, precision), value in matmul.items():
        peaks[precision] = max(peaks.get(precision, 0.0), value)
    return peaks


def roofline_rows(throughput, peaks, bandwidth, costs):
    """One row (COLUMNS) per (engine, model, f), medians over trials, against the peak of the
    engine's precision; speedup is over f=1 of the same engine and model."""
    rows = []
    for ((backend, precision), name, fold), values in throughput.items():
        images_per_s = statistics.median(values)
        original = throughput.get(((backend, precision), name, 1))
        flops_per_image, intensity = costs[(name, fold, precision)]
        flops_per_s = images_per_s * flops_per_image
        peak_flops = peaks[precision]
        point = roofline_point(flops_per_s, intensity, peak_flops, bandwidth)
        rows.append({"backend": backend, "model": models.load_config(name)["id"], "fold": fold,
                     "images_per_s": images_per_s,
                     "speedup": images_per_s / statistics.median(original) if original else float("nan"),
                     "flops_per_s": flops_per_s, "flop_fraction": point["flop_fraction"], "intensity": intensity,
                     "ridge": point["ridge"], "bound": point["bound"], "peak_flops": peak_flops,
                     "bandwidth": bandwidth, "precision": precision})
    return rows


def format_table(rows, matmul, device_label):
    bandwidth = rows[0]["bandwidth"]
    peaks = precision_peaks(matmul)
    roofs = "; ".join(
        f"{precision} {peak / 1e9:,.0f} GFLOP/s (the fastest matmul of: "
        + ", ".join(f"{b} {v / 1e9:,.0f}" for (b, p), v in matmul.items() if p == precision)
        + f"), ridge point {peak / bandwidth:,.1f} FLOP/byte" for precision, peak in peaks.items())
    lines = [f"Device: {device_label}. Measured peaks: {roofs}; {bandwidth / 1e9:,.1f} GB/s "
             "copy bandwidth. % of peak is of the peak of the row's precision.", "",
             "| backend | precision | model | f | images/s | speedup over f=1 | GFLOP/s | % of peak | "
             "intensity (FLOP/B) | bound |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['precision']} | {r['model']} | {r['fold']} | {r['images_per_s']:,.0f} | "
                     f"{r['speedup']:.2f}x | {r['flops_per_s'] / 1e9:,.1f} | {100 * r['flop_fraction']:.0f}% | "
                     f"{r['intensity']:.1f} | {r['bound']} |")
    return "\n".join(lines)


def plot_roofs(ax, rows):
    """The memory roof and one compute roof per precision (solid: the highest)."""
    bandwidth = rows[0]["bandwidth"]
    peaks = dict(sorted({r["precision"]: r["peak_flops"] for r in rows}.items(), key=lambda kv: -kv[1]))
    low = min(min(r["intensity"] for r in rows), min(peaks.values()) / bandwidth) / 4
    high = max(max(r["intensity"] for r in rows), max(peaks.values()) / bandwidth) * 4
    for k, (precision, peak) in enumerate(peaks.items()):
        xs = [low, peak / bandwidth, high]
        ax.plot(xs, [min(peak, x * bandwidth) / 1e9 for x in xs], color="black", lw=2 if k == 0 else 1.2,
                ls="-" if k == 0 else "--", label=f"{precision} roof: {peak / 1e9:.0f} GFLOP/s, "
                                                  f"{bandwidth / 1e9:.1f} GB/s")


def plot_roofline(rows, path):
    """Achieved FLOP/s against arithmetic intensity, one line per (engine, model) through
    f = 1..4, under the roofs min(peak of the precision, intensity x bandwidth)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    plot_roofs(ax, rows)
    markers = "osD^v<>"
    engines = list(dict.fromkeys((r["backend"], r["precision"]) for r in rows))
    model_ids = list(dict.fromkeys(r["model"] for r in rows))
    for i, engine in enumerate(engines):
        for j, model in enumerate(model_ids):
            line = sorted((r for r in rows if (r["backend"], r["precision"]) == engine and r["model"] == model),
                          key=lambda r: r["fold"])
            ax.plot([r["intensity"] for r in line], [r["flops_per_s"] / 1e9 for r in line], color=f"C{i}",
                    marker=markers[j % len(markers)], label=f"{' '.join(engine)} {model}")
            for r in line:
                ax.annotate(f"f={r['fold']}", (r["intensity"], r["flops_per_s"] / 1e9), fontsize=7,
                            xytext=(3, -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte, paper eq. 3, in the engine's precision)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title("Roofline: each model at f = 1..4 per engine")
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
    parser.add_argument("--backends", nargs="+", metavar="BACKEND[:PRECISION]",
                        help=f"engines, backends of {', '.join(backends.BACKENDS)} (default: eager, compile and "
                        "onnxruntime on a CPU, and the fastest backend here, each in its default precision)")
    add_flag(parser, "batch_size", type=positive_int, default=1024)
    parser.add_argument("--precision", choices=list(backends.DTYPES),
                        help="precision of the bare backends, and of the CSVs of --results (default: each "
                        "backend's default precision)")
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
    engines = resolve_engines(args.backends or default_backends(device), args.precision, device)
    for backend, _ in engines:
        backends.check_device(backend, device)
    names = [models.load_config(n)["name"] for n in args.models]
    folds = sorted(set(args.folds) | {1})  # speedups are over f=1
    out = check_output_dir(args.out, "roofline folder")  # before minutes of measuring
    if args.results:
        precision = args.precision or backends.default_precision(device)
        throughput, matmul, bandwidth, costs = measured_elsewhere(args.results, precision, device, args.trials,
                                                                  args.matmul_n, args.copy_mib)
    else:
        throughput, matmul, bandwidth, costs = measure(
            names, folds, engines, device, args.batch_size, args.trials, args.num_warmup, args.num_iteration,
            args.matmul_n, args.copy_mib)
    matmul = {engine: statistics.median(v) for engine, v in matmul.items()}
    rows = roofline_rows(throughput, precision_peaks(matmul), statistics.median(bandwidth), costs)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "roofline.csv")
    isa = f", ISA {cpu_isa()}" if device.type == "cpu" else ""
    table = format_table(rows, matmul, device_name(device) + isa)
    atomic_write_text(out / "roofline.md", table + "\n")
    plot_roofline(rows, out / "roofline.png")
    print(table)


if __name__ == "__main__":
    main()
