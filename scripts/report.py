"""Build results/REPORT.md from train.py's summary.csv and run_inference.sh's results.csv.

    python -m scripts.report --summary results/summary.csv --results results/results.csv \
        --out results/REPORT.md [--backend eager] [--scale 0.05] [--profile quick]

Tables: accuracy in the layout of appendix table 3 (original accuracy; for each f the folded
accuracy with its change in parentheses and the speedup), throughput, arithmetic intensity,
the appendix G trade-off, the machine and versions, and the commands to rerun at paper scale.
"""
import argparse
import json
import os
import platform
import statistics
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import torch

import models
from models import FOLDS
from models.flops import folded_model_intensity
from models.sparsity import compare_folds
from util.cascade import describe, max_latency_ratio
from util.args import add_flag
from util.backends import default_backend, default_precision
from util.device import cpu_isa, cpu_name, native_bf16
from util.errors import cli_main
from util.files import atomic_write_text, check_output_file
from util.results import read_csv, read_results, read_summary, settings_path, wilson_interval

PRECISION_COLUMNS = ["dataset", "fold", "test_images", "backend", "precision", "isa", "fp32_top1", "top1", "change"]
ROOFLINE_COLUMNS = ["backend", "model", "fold", "images_per_s", "speedup", "flops_per_s", "flop_fraction",
                    "intensity", "ridge", "bound", "peak_flops", "bandwidth"]


def load_report_data(summary_csv, results_csv):
    """{"accuracy": {(name, f): test top-1 %}, "throughput": {(name, mode, f): [img/s per trial]},
    "speedup": {(name, mode, f): [TputNorm per trial]}} at the largest batch size measured."""
    summary = read_summary(summary_csv)
    results = read_results(results_csv)
    # summary.csv holds fractions; the report speaks in percent, as the paper does
    accuracy = {(models.load_config(r["dataset"])["name"], int(r["fold"])): 100 * float(r["test_top1"])
                for r in summary}
    test_images = {(models.load_config(r["dataset"])["name"], int(r["fold"])): int(r["test_images"])
                   for r in summary if r.get("test_images")}
    batch = max(int(r["Batch Size"]) for r in results)
    throughput, speedup = defaultdict(list), defaultdict(list)
    backends = sorted({r["Backend"] for r in results if r.get("Backend")})
    for r in results:
        if int(r["Batch Size"]) != batch:
            continue
        key = (models.load_config(r["Model"])["name"], r["Mode"], int(r["Fold"]))
        throughput[key].append(float(r["Throughput"]))
        speedup[key].append(float(r["TputNorm"]))
    return {"accuracy": accuracy, "test_images": test_images, "throughput": dict(throughput),
            "speedup": dict(speedup), "batch": batch, "backends": backends}


def median_speedup(data, name, fold, mode="Folded"):
    values = data["speedup"].get((name, mode, fold))
    return statistics.median(values) if values else None


def accuracy_table(data):
    names = models.ordered_names(n for n, _ in data["accuracy"])
    folds = sorted({f for _, f in data["accuracy"] if f > 1})
    head = ["Model", "Resolution", "Classes", "Test images", "Original accuracy"]
    for f in folds:
        head += [f"Folded (f={f}) accuracy", "Speedup"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        cfg = models.load_config(name)
        base = data["accuracy"].get((name, 1))
        n = data["test_images"].get((name, 1))
        cells = [f"{cfg['id']} ({name})", f"({cfg['input']['height']}, {cfg['input']['width']})",
                 str(len(cfg["classes"])), "-" if n is None else str(n), "-" if base is None else f"{base:.2f}"]
        if base is not None and n:
            low, high = wilson_interval(base / 100, n)
            cells[-1] += f" ±{50 * (high - low):.1f}"
        for f in folds:
            acc = data["accuracy"].get((name, f))
            if acc is None:
                cells.append("-")
            elif base is None:
                cells.append(f"{acc:.2f}")
            else:
                cells.append(f"{acc:.2f} ({acc - base:+.2f})")
            s = median_speedup(data, name, f)
            cells.append("-" if s is None else f"{s:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def throughput_table(data):
    names = models.ordered_names(n for n, _, _ in data["throughput"])
    cols = [("Original", 1)] + [("Folded", f) for f in FOLDS[1:]] + [("EfficientNet", 1)]
    cols = [c for c in cols if any((n, *c) in data["throughput"] for n in names)]
    head = ["Model"] + [mode if mode != "Folded" else f"f={f}" for mode, f in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        cells = [f"{models.load_config(name)['id']} ({name})"]
        for mode, f in cols:
            tput = data["throughput"].get((name, mode, f))
            if not tput:
                cells.append("-")
                continue
            cell = f"{statistics.median(tput):,.0f}"
            if mode != "Original":
                cell += f" ({median_speedup(data, name, f, mode):.2f}x)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def intensity_table(names, batch=1024):
    head = ["Model"] + [f"f={f}" for f in FOLDS] + ["f=4 / f=1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in models.ordered_names(names):
        values = [folded_model_intensity(name, f, batch)["intensity"] for f in FOLDS]
        lines.append("| " + " | ".join([f"{models.load_config(name)['id']} ({name})"]
                                       + [f"{v:.1f}" for v in values] + [f"{values[-1] / values[0]:.2f}"]) + " |")
    return lines


def tradeoff_rows(data):
    """(dataset, f, speedup, accuracy drop as a fraction, bound on T_g/T_s) per trained fold."""
    rows = []
    for (name, fold), acc in sorted(data["accuracy"].items(), key=lambda kv: (models.name_rank(kv[0][0]), kv[0][1])):
        base, speed = data["accuracy"].get((name, 1)), median_speedup(data, name, fold)
        if fold == 1 or base is None or speed is None:
            continue
        drop = (base - acc) / 100
        rows.append((name, fold, round(speed, 3), round(drop, 4), describe(max_latency_ratio(speed, drop))))
    return rows


def roofline_lines(path):
    """The roofline section from scripts.roofline's CSV: plot, table, and where folding pays."""
    rows = read_csv(path, ROOFLINE_COLUMNS, "run python -m scripts.roofline first")
    for r in rows:
        for key in ROOFLINE_COLUMNS[2:]:
            if key != "bound":
                r[key] = float(r[key])
    peak, bandwidth, ridge = rows[0]["peak_flops"], rows[0]["bandwidth"], rows[0]["ridge"]
    lines = ["## Roofline", "",
             f"Measured on this machine: peak {peak / 1e9:,.0f} GFLOP/s (the fastest backend's large matmul), "
             f"{bandwidth / 1e9:,.1f} GB/s copy bandwidth, ridge point {ridge:,.1f} FLOP/byte. Intensity is the "
             "paper's eq. 3 at the benchmark's precision; speedup is over f=1 on the same backend.", "",
             *precision_peak_lines(rows),
             "![roofline](roofline.png)", "", *roofline_summary(rows), "",
             "| backend | model | f | images/s | speedup | GFLOP/s | % of peak | intensity | bound |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {engine_label(r)} | {r['model']} | {r['fold']:.0f} | {r['images_per_s']:,.0f} | "
                     f"{r['speedup']:.2f}x | {r['flops_per_s'] / 1e9:,.1f} | {100 * r['flop_fraction']:.0f}% | "
                     f"{r['intensity']:.1f} | {r['bound']} |")
    return lines


def roofline_summary(rows):
    """Two sentences on where folding pays here, from the measured rows: the fastest backend
    (highest FLOP/s at f=1) against the slowest, at the largest fold measured."""
    top = int(max(r["fold"] for r in rows))
    by_backend = defaultdict(list)
    for r in rows:
        by_backend[engine_label(r)].append(r)

    def mean(backend, key, fold):
        return statistics.fmean(r[key] for r in by_backend[backend] if r["fold"] == fold)

    fast = max(by_backend, key=lambda b: mean(b, "flop_fraction", 1))
    slow = min(by_backend, key=lambda b: mean(b, "flop_fraction", 1))
    intensities = [r["intensity"] for r in rows]
    side = ("right of the ridge point, so their roof is the compute peak"
            if min(intensities) >= rows[0]["ridge"] else "partly left of the ridge point, under the memory roof")
    first = (f"Every model here has an arithmetic intensity of {min(intensities):.0f}-{max(intensities):.0f} "
             f"FLOP/byte, {side}: on {fast}, which already runs f=1 at {100 * mean(fast, 'flop_fraction', 1):.0f}% "
             f"of the peak, folding to f={top} reaches {100 * mean(fast, 'flop_fraction', top):.0f}% and gains "
             f"{mean(fast, 'speedup', top):.2f}x on average, because only the kernels' efficiency is left to gain.")
    if slow == fast:
        return [first]
    second = (f"Folding pays where an engine leaves a model far below that roof: {slow} runs f=1 at "
              f"{100 * mean(slow, 'flop_fraction', 1):.0f}% of the peak, moving every unfused activation through "
              f"memory, and there folding, which shrinks the activations per image by sqrt(f), gains "
              f"{mean(slow, 'speedup', top):.2f}x at f={top}.")
    return [first + " " + second]


OCCAM_COLUMNS = ["model", "fold", "capacity_name", "capacity_bytes", "traffic_per_image", "layerwise_per_image",
                 "intensity", "eq3_intensity"]
SPARSITY_COLUMNS = ["model", "fold", "test_images", "zero_share", "relu_zero_shares", "dense_per_image",
                    "sparse_per_image", "reduction"]


def _spread(values, unit="x"):
    low, high = min(values), max(values)
    return f"{low:.1f}{unit}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}{unit}"


def occam_lines(path):
    """OCCAM's partitioning from scripts.occam's CSV: a table and one sentence from its numbers."""
    rows = read_csv(path, OCCAM_COLUMNS, "run python -m scripts.occam MODEL ... --out FOLDER first")
    caps = sorted({(int(r["capacity_bytes"]), r["capacity_name"]) for r in rows})
    cell = {(r["model"], int(r["fold"]), int(r["capacity_bytes"])): r for r in rows}
    keys = sorted({(r["model"], int(r["fold"])) for r in rows}, key=lambda k: (models.name_rank(
        models.load_config(k[0])["name"]), k[1]))
    lines = ["## Related systems: OCCAM's optimal partitioning", "",
             "Off-chip traffic per image (KiB) when OCCAM's dynamic program fuses runs of layers whose dependence "
             "closure fits on chip (models/occam.py states the traffic model), and the arithmetic intensity "
             "(FLOP/byte) that gives, beside the paper's eq. 3 intensity; batch and precision as in eq. 3 above.", "",
             "| Model | f | eq. 3 intensity | layer by layer (KiB/image) | "
             + " | ".join(f"OCCAM at {name}: KiB/image (intensity)" for _, name in caps) + " |",
             "|---|---|---|---|" + "---|" * len(caps)]
    for model, fold in keys:
        first = cell[(model, fold, caps[0][0])]
        cells = [model, str(fold), f"{float(first['eq3_intensity']):.1f}", f"{float(first['layerwise_per_image']) / 1024:.1f}"]
        cells += [f"{float(cell[(model, fold, c)]['traffic_per_image']) / 1024:.1f} "
                  f"({float(cell[(model, fold, c)]['intensity']):,.0f})" for c, _ in caps]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + ["", occam_sentence(cell, keys, caps[0]), ""]


def occam_sentence(cell, keys, capacity):
    size, name = capacity
    top = max(fold for _, fold in keys)
    names = sorted({m for m, f in keys if f == 1 and (m, top) in keys})
    if top == 1 or not names:
        return "Only f = 1 was analysed, so folding and OCCAM are not compared."
    fold_gain = [float(cell[(m, top, size)]["eq3_intensity"]) / float(cell[(m, 1, size)]["eq3_intensity"]) for m in names]
    occam_gain = [float(cell[(m, 1, size)]["layerwise_per_image"]) / float(cell[(m, 1, size)]["traffic_per_image"])
                  for m in names]
    on_top = [float(cell[(m, top, size)]["intensity"]) / float(cell[(m, 1, size)]["intensity"]) for m in names]
    verdict = ("so once the intermediates stay on chip folding adds less than it gains alone" if max(on_top) < min(fold_gain)
               else "so the two compound")
    return (f"At {name}, OCCAM's partitioning alone moves {_spread(occam_gain)} less data per image than running "
            f"the original models layer by layer, while folding to f={top} alone raises eq. 3 intensity "
            f"{_spread(fold_gain)}; on top of OCCAM, folding to f={top} changes the intensity by {_spread(on_top)}, "
            f"{verdict}.")


def sparsity_lines(path):
    """ReLU sparsity from scripts.relu_sparsity's CSV: a table and one sentence from its numbers."""
    rows = read_csv(path, SPARSITY_COLUMNS, "run python -m scripts.relu_sparsity RUN_DIR --out FOLDER first")
    lines = ["## Related systems: ReLU sparsity (predictive layer fusion)", "",
             "Share of zeros after each ReLU on the test split, and multiplications per image when zero activations "
             "are skipped (models/sparsity.py) against the dense count (models/flops.py).", "",
             "| Model | f | Test images | Zeros after each ReLU (%) | All ReLUs | Dense (M/image) | Zeros skipped "
             "(M/image) | Fewer |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shares = " / ".join(f"{100 * float(x):.0f}" for x in r["relu_zero_shares"].split())
        lines.append(f"| {r['model']} | {r['fold']} | {r['test_images']} | {shares} | {100 * float(r['zero_share']):.1f}% | "
                     f"{float(r['dense_per_image']) / 1e6:.2f} | {float(r['sparse_per_image']) / 1e6:.2f} | "
                     f"{float(r['reduction']):.2f}x |")
    verdict = compare_folds({(r["model"], int(r["fold"])): float(r["zero_share"]) for r in rows})
    by_fold = defaultdict(list)
    for r in rows:
        by_fold[int(r["fold"])].append(float(r["reduction"]))
    low, top = min(by_fold), max(by_fold)
    saving = {f: statistics.fmean(v) for f, v in by_fold.items()}
    change = saving[top] / saving[low]
    effect = "raises" if change > 1.02 else "erodes" if change < 0.98 else "keeps"
    return lines + ["", f"{verdict[:-1]}; skipping zero activations needs {saving[low]:.2f}x fewer multiplications "
                    f"at f={low} and {saving[top]:.2f}x fewer at f={top} on average, so folding {effect} the saving of "
                    "a zero-skipping engine such as predictive layer fusion.", ""]


def engine_label(row):
    """A roofline row's backend, with its precision where scripts.roofline recorded one."""
    return f"{row['backend']} {row['precision']}" if row.get("precision") else row["backend"]


def precision_peak_lines(rows):
    """Where the roofline measured several precisions: each one's peak, which is the roof of
    its rows (their % of peak is of it)."""
    peaks = {r["precision"]: r["peak_flops"] for r in rows if r.get("precision")}
    if len(peaks) < 2:
        return []
    return ["Each precision has its own roof, its fastest matmul through the engines that run it: "
            + ", ".join(f"{p} {float(v) / 1e9:,.0f} GFLOP/s" for p, v in peaks.items())
            + f" ({cpu_isa()}); a row's % of peak is of its precision's.", ""]


def precision_accuracy_lines(path):
    """Test top-1 in the inference precision beside float32, from scripts.precision_accuracy."""
    rows = read_csv(path, PRECISION_COLUMNS, "run python -m scripts.precision_accuracy first")
    lines = ["## Accuracy in the inference precision", "",
             "Test top-1 (%) of each trained model (best.pth) on its whole test split, run by the inference "
             "engine in its precision beside float32 eager PyTorch on the same folded inputs.", "",
             "| Model | f | Test images | Engine | CPU ISA | fp32 | Inference precision | Change |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (models.name_rank(r["dataset"]), int(r["fold"]))):
        lines.append(f"| {models.load_config(r['dataset'])['id']} ({r['dataset']}) | {r['fold']} | {r['test_images']} | "
                     f"{r['backend']} {r['precision']} | {r['isa']} | {r['fp32_top1']} | {r['top1']} | {r['change']} |")
    return lines


def sweep_precision(results_csv):
    """"; precision P" (and the CPU ISA on a CPU) of the sweep, from its settings file if any."""
    try:
        settings = json.loads(settings_path(results_csv).read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(settings, dict) or "precision" not in settings:
        return ""
    return f"; precision {settings['precision']}" + (f", CPU ISA {cpu_isa()}" if settings.get("device") == "cpu" else "")


def machine_lines(backend):
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- CPU: {cpu_name()}, {os.cpu_count()} cores; GPU: {gpu}",
            f"- Python {platform.python_version()}, PyTorch {torch.__version__}, {platform.platform()}",
            f"- Inference backend: {backend}",
            f"- CPU ISA for inference: {cpu_isa()} (native bf16: {'yes' if native_bf16() else 'no'}; "
            f"default CPU engine {default_backend('cpu')} {default_precision('cpu')})"]


def rerun_commands(names, folds):
    names = models.ordered_names(names)
    lines = ["```bash"]
    for name in names:
        paper_data = models.family_of(name).paper_data
        if paper_data is not None:
            lines.append(paper_data.format(name=name))
    lines += [f"python train.py runs/paper --profile paper --datasets {' '.join(names)} "
              f"--folds {' '.join(map(str, folds))}",
              f"python fold_trainer.py {names[0]} {folds[-1]} runs/paper --profile paper   # one cell",
              f"MODELS=\"{' '.join(names)}\" TRIALS=10 BACKEND=tensorrt ./run_inference.sh results.csv",
              "```"]
    return lines


def build_report(summary_csv, results_csv, out, backend, scale=None, profile=None, plots=(), roofline=None,
                 occam=None, sparsity=None, precision_accuracy=None):
    data = load_report_data(summary_csv, results_csv)
    names = [n for n, _ in data["accuracy"]] + [n for n, _, _ in data["throughput"]]
    folds = sorted({f for _, f in data["accuracy"]})
    setting = ", ".join(x for x in [f"data scale {scale}" if scale else "", f"profile {profile}" if profile else ""] if x)
    lines = ["# FoldedCNNs: reproduction report", "",
             "Test top-1 (%) at the epoch of best validation top-1; speedup = folded images/s over the "
             f"original's in the same trial, batch {data['batch']} images"
             + (f" ({setting})." if setting else "."), "",
             "## Accuracy (layout of appendix table 3)", "", *accuracy_table(data), "",
             "± is half the 95% interval of the original's accuracy on that many test images; the folded "
             "accuracies carry about the same.", "",
             *([*precision_accuracy_lines(precision_accuracy), ""] if precision_accuracy else []),
             f"## Inference throughput (images/s, median over trials; batch {data['batch']}; "
             f"backend {', '.join(data['backends']) or backend}{sweep_precision(results_csv)})", "",
             *throughput_table(data), "",
             "## Arithmetic intensity (FLOPs/byte, fp16, batch 1024; paper eq. 3)", "",
             *intensity_table(names), "",
             "## System-level trade-off (appendix G)", "",
             "Largest ratio of a general-purpose CNN's latency to the specialized CNN's for which the "
             "FoldedCNN still raises the throughput of a filter-then-verify cascade.", "",
             "| Dataset | f | Speedup | Accuracy drop | Folding helps while T_g/T_s < |", "|---|---|---|---|---|",
             *[f"| {n} | {f} | {s:.2f} | {a * 100:.2f} points | {r} |" for n, f, s, a, r in tradeoff_rows(data)], ""]
    if roofline and Path(roofline).is_file():
        lines += [*roofline_lines(roofline), ""]
        plots = [p for p in plots if Path(p).name != "roofline.png"]
    if occam and Path(occam).is_file():
        lines += occam_lines(occam)
        if any(Path(p).name == "occam.png" for p in plots):
            lines += ["![occam](occam.png)", ""]
            plots = [p for p in plots if Path(p).name != "occam.png"]
    if sparsity and Path(sparsity).is_file():
        lines += sparsity_lines(sparsity)
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    lines += ["## Machine", "", *machine_lines(backend), "",
              "## Rerun at paper scale", "",
              "On a GPU, with the full data (or the real tarball via `--data-root`) and the paper's recipe:", "",
              *rerun_commands(names, folds), ""]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out, "\n".join(lines))


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", required=True, help="train.py's summary.csv")
    parser.add_argument("--results", required=True, help="run_inference.sh's results CSV")
    parser.add_argument("--out", default="results/REPORT.md", help="default: %(default)s")
    parser.add_argument("--backend", default="eager", help="inference backend used, for the record")
    parser.add_argument("--scale", help="data scale used, for the record")
    parser.add_argument("--profile", help="training profile used, for the record")
    parser.add_argument("--plots", nargs="*", default=[], help="PNG files to link (relative to the report)")
    parser.add_argument("--roofline", help="scripts.roofline's roofline.csv (its roofline.png beside the report)")
    parser.add_argument("--occam", help="scripts.occam's occam.csv (its occam.png beside the report)")
    parser.add_argument("--sparsity", help="scripts.relu_sparsity's relu_sparsity.csv")
    add_flag(parser, "precision_accuracy", help="scripts.precision_accuracy's CSV: test top-1 in the "
             "inference precision beside fp32")
    args = parser.parse_args(argv)
    check_output_file(args.out, "report")
    report = build_report(args.summary, args.results, args.out, args.backend, args.scale, args.profile, args.plots,
                          args.roofline, args.occam, args.sparsity, args.precision_accuracy)
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
