"""Build results/REPORT.md from train.py's summary.csv and run_inference.sh's results.csv.

    python -m scripts.report --summary results/summary.csv --results results/results.csv \
        --out results/REPORT.md [--backend eager] [--scale 0.05] [--profile quick]

Tables: accuracy in the layout of appendix table 3 (original accuracy; for each f the folded
accuracy with its change in parentheses and the speedup; then the baselines a user could run
instead: the narrow CNN of each f and the compound-scaled CNN), each folded model's share of
weight across images, the accuracy-throughput chart (accuracy_throughput.png and its points in
accuracy_throughput.csv, beside the report), throughput, arithmetic intensity, the appendix G
trade-off, the machine and versions, and the commands to rerun at paper scale.
"""
import argparse
import csv
import io
import json
import os
import platform
import statistics
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
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
from util.files import atomic_savefig, atomic_write_text, check_output_file
from util.results import MODE_VARIANTS, read_csv, read_results, read_summary, settings_path, wilson_interval

plt.switch_backend("Agg")  # files only

PRECISION_COLUMNS = ["dataset", "fold", "test_images", "backend", "precision", "isa", "fp32_top1", "top1", "change"]
ROOFLINE_COLUMNS = ["backend", "model", "fold", "images_per_s", "speedup", "flops_per_s", "flop_fraction",
                    "intensity", "ridge", "bound", "peak_flops", "bandwidth"]


def load_report_data(summary_csv, results_csv):
    """{"accuracy": {(name, f): test top-1 %} of the original and folded models, "variants":
    {(name, variant, f): test top-1 %} of every model, "throughput": {(name, mode, f): [img/s
    per trial]}, "speedup": {(name, mode, f): [TputNorm per trial]}, ...} at the largest batch
    size measured; test_images and cross_image_share keyed like variants where known."""
    summary = read_summary(summary_csv)
    results = read_results(results_csv)
    variants, test_images, shares = {}, {}, {}
    for r in summary:
        key = (models.load_config(r["dataset"])["name"], r["variant"], int(r["fold"]))
        variants[key] = 100 * float(r["test_top1"])  # summary.csv holds fractions; the report speaks in percent
        if r.get("test_images"):
            test_images[key] = int(r["test_images"])
        if r.get("cross_image_share"):
            shares[key] = float(r["cross_image_share"])
    paper = {(n, f): (n, v, f) for n, v, f in variants if v in ("original", "folded")}
    batch = max(int(r["Batch Size"]) for r in results)
    throughput, speedup = defaultdict(list), defaultdict(list)
    backends = sorted({r["Backend"] for r in results if r.get("Backend")})
    for r in results:
        if int(r["Batch Size"]) != batch:
            continue
        key = (models.load_config(r["Model"])["name"], r["Mode"], int(r["Fold"]))
        throughput[key].append(float(r["Throughput"]))
        speedup[key].append(float(r["TputNorm"]))
    return {"accuracy": {k: variants[v] for k, v in paper.items()},
            "test_images": {k: test_images[v] for k, v in paper.items() if v in test_images},
            "variants": variants, "variant_images": test_images, "cross_image_share": shares,
            "throughput": dict(throughput), "speedup": dict(speedup), "batch": batch, "backends": backends}


def median_speedup(data, name, fold, mode="Folded"):
    values = data["speedup"].get((name, mode, fold))
    return statistics.median(values) if values else None


def accuracy_table(data):
    names = models.ordered_names(n for n, _ in data["accuracy"])
    folds = sorted({f for _, f in data["accuracy"] if f > 1})
    baselines = sorted({(v, f) for _, v, f in data["variants"] if v in models.BASELINES},
                       key=lambda vf: (models.BASELINES.index(vf[0]), vf[1]))
    head = ["Model", "Resolution", "Classes", "Test images", "Original accuracy"]
    for f in folds:
        head += [f"Folded (f={f}) accuracy", "Speedup"]
    head += [f"Narrow (f={f}) accuracy" if v == "narrow" else "Compound accuracy" for v, f in baselines]
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
        cells += [baseline_cell(data, (name, v, f)) for v, f in baselines]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def baseline_cell(data, key):
    """A baseline's test top-1 (%) with half its 95% interval and the images it was measured on."""
    acc, n = data["variants"].get(key), data["variant_images"].get(key)
    if acc is None:
        return "-"
    if not n:
        return f"{acc:.2f}"
    low, high = wilson_interval(acc / 100, n)
    return f"{acc:.2f} ±{50 * (high - low):.1f} (n={n})"


def throughput_table(data):
    names = models.ordered_names(n for n, _, _ in data["throughput"])
    cols = [("Original", 1)] + [(mode, f) for mode in ("Folded", "Narrow") for f in FOLDS[1:]] + [("EfficientNet", 1)]
    cols = [c for c in cols if any((n, *c) in data["throughput"] for n in names)]
    head = ["Model"] + [{"Folded": f"f={f}", "Narrow": f"narrow f={f}"}.get(mode, mode) for mode, f in cols]
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


# ----------------------------------------------------------------------------------------
# Is folding worth it? Each folded model beside the CNNs a user could run instead.

CHART_COLUMNS = ["dataset", "variant", "fold", "images_per_s", "test_top1", "top1_low", "top1_high", "test_images"]
VARIANT_MODES = {variant: mode for mode, variant in MODE_VARIANTS.items()}
VARIANT_STYLE = {"original": ("black", "s"), "folded": ("#2171b5", "o"), "narrow": ("#238b45", "^"),
                 "compound": ("#e6550d", "D")}


def share_sentence(name, fold, share):
    """What a folded model's cross_image_share (models.folding.cross_image_share) means."""
    even = 1 - 1 / fold
    head = (f"{100 * share:.2g}% of {models.load_config(name)['id']} f={fold}'s weight norm² connects different "
            f"images, against {100 * even:.0f}% for weights spread evenly over the images' blocks: ")
    if share == 0:
        return head + f"every weight across images is zero, so the model is {fold} independent narrow networks."
    if share < even / 10:
        return head + f"the dense model settled next to {fold} independent narrow networks."
    return head + f"its images' channels mix, so it computes one network over the {fold} images."


def cross_image_lines(data):
    """One computed sentence per folded model on its share of weight across images."""
    shares = sorted(((n, f), s) for (n, v, f), s in data["cross_image_share"].items() if v == "folded")
    if not shares:
        return []
    return ["## Weight across images", "",
            "Share of each folded model's conv and linear weight norm² that connects different images' channel "
            "groups: 0 for f independent narrow networks in one model, about 1 - 1/f for weights that ignore the "
            "layout.", "", *[f"- {share_sentence(n, f, s)}" for (n, f), s in
                             sorted(shares, key=lambda kv: (models.name_rank(kv[0][0]), kv[0][1]))], ""]


def chart_points(data):
    """The accuracy-throughput chart's points: every model of summary.csv whose run results.csv
    measured at the report's batch size, with its median images/s and its test top-1's 95%
    Wilson interval (empty where summary.csv has no test image count)."""
    points = []
    for key in sorted(data["variants"], key=lambda k: (models.name_rank(k[0]), models.VARIANTS.index(k[1]), k[2])):
        name, variant, fold = key
        tput = data["throughput"].get((name, VARIANT_MODES[variant], fold))
        if not tput:
            continue
        top1, n = data["variants"][key] / 100, data["variant_images"].get(key)
        low, high = wilson_interval(top1, n) if n else (None, None)
        points.append({"dataset": name, "variant": variant, "fold": fold, "images_per_s": statistics.median(tput),
                       "test_top1": top1, "top1_low": low, "top1_high": high, "test_images": n})
    return points


def point_label(point):
    return {"original": "original", "folded": f"f={point['fold']}", "narrow": f"narrow f={point['fold']}",
            "compound": "compound"}[point["variant"]]


def write_chart_csv(points, path):
    text = io.StringIO()
    writer = csv.DictWriter(text, CHART_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for p in points:
        writer.writerow({**p, "images_per_s": f"{p['images_per_s']:.6g}",
                         **{k: "" if p[k] is None else f"{p[k]:.4f}" for k in ("test_top1", "top1_low", "top1_high")},
                         "test_images": p["test_images"] or ""})
    return atomic_write_text(path, text.getvalue())


def draw_chart(points, path, engine):
    """One panel per dataset: test top-1 (95% interval) against images/s, the folded and the
    narrow models joined from the original in order of f."""
    names = models.ordered_names(p["dataset"] for p in points)
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        mine = [p for p in points if p["dataset"] == name]
        for variant in ("folded", "narrow"):
            line = sorted((p for p in mine if p["variant"] in ("original", variant)), key=lambda p: p["fold"])
            if len(line) > 1:
                ax.plot([p["images_per_s"] for p in line], [100 * p["test_top1"] for p in line],
                        color=VARIANT_STYLE[variant][0], lw=0.8, alpha=0.6)
        for p in mine:
            color, marker = VARIANT_STYLE[p["variant"]]
            y = 100 * p["test_top1"]
            err = None if p["top1_low"] is None else [[y - 100 * p["top1_low"]], [100 * p["top1_high"] - y]]
            ax.errorbar(p["images_per_s"], y, yerr=err, fmt=marker, color=color, capsize=3, label=p["variant"])
            ax.annotate(point_label(p), (p["images_per_s"], y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
        cfg = models.load_config(name)
        ax.set(title=f"{cfg['id']} ({name})", xlabel=f"images/s, {engine}", ylabel="test top-1 (%), 95% interval")
        ax.margins(x=0.12)  # room for the labels of the outermost points
        ax.grid(alpha=0.3)
    fig.suptitle("FoldedCNNs beside the CNNs one could run instead", fontsize=10)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def verdict_clause(folded, narrow):
    """Folded f against narrow f: which is more accurate, whether the intervals overlap, and
    whether the narrow CNN reaches the folded model's throughput."""
    a_folded, a_narrow = 100 * folded["test_top1"], 100 * narrow["test_top1"]
    who = ("the narrow CNN is more accurate" if a_narrow > a_folded else
           "the FoldedCNN is more accurate" if a_narrow < a_folded else "the two are equally accurate")
    if folded["top1_low"] is None or narrow["top1_low"] is None:
        noise = "no test image count to give intervals"
    elif narrow["top1_low"] <= folded["top1_high"] and folded["top1_low"] <= narrow["top1_high"]:
        noise = "their 95% intervals overlap, so the difference is within the test set's noise"
    else:
        noise = "their 95% intervals do not overlap"
    ratio = narrow["images_per_s"] / folded["images_per_s"]
    speed = (f"and the narrow CNN reaches the FoldedCNN's throughput ({ratio:.2f}x its images/s)" if ratio >= 1 else
             f"but the narrow CNN runs only {ratio:.2f}x the FoldedCNN's images/s, short of its throughput")
    return f"{who} ({a_narrow:.2f}% narrow, {a_folded:.2f}% folded; {noise}), {speed}"


def verdict_sentence(name, points):
    """One sentence per model: at each f, folded against narrow (verdict_clause); None where
    no f has both."""
    by = {(p["variant"], p["fold"]): p for p in points if p["dataset"] == name}
    clauses = [f"at f={f} {verdict_clause(by[('folded', f)], by[('narrow', f)])}"
               for v, f in sorted(by) if v == "folded" and ("narrow", f) in by]
    if not clauses:
        return None
    return f"{models.load_config(name)['id']} ({name}): " + "; ".join(clauses) + "."


def chart_lines(data, out, engine):
    """The accuracy-throughput section; writes accuracy_throughput.png and .csv beside `out`."""
    points = chart_points(data)
    if not points:
        return []
    folder = Path(out).parent
    write_chart_csv(points, folder / "accuracy_throughput.csv")
    draw_chart(points, folder / "accuracy_throughput.png", engine)
    sentences = [v for v in (verdict_sentence(n, points) for n in models.ordered_names(p["dataset"] for p in points))
                 if v]
    return ["## Accuracy against throughput", "",
            f"Test top-1 (%, 95% Wilson interval on the test images) against the median images/s on {engine} at "
            f"batch {data['batch']}: the original, each FoldedCNN of f, the narrow CNN of f (the original at width "
            "x 1/sqrt(f), one image per input) and the compound-scaled CNN. Points: accuracy_throughput.csv.", "",
            "![accuracy_throughput](accuracy_throughput.png)", "", *[f"- {s}" for s in sentences], ""]


def chart_engine(data, results_csv, backend):
    """The engine and machine of the sweep, for the chart's axis: backend, precision, device."""
    try:
        settings = json.loads(settings_path(results_csv).read_text())
    except (OSError, ValueError):
        settings = {}
    settings = settings if isinstance(settings, dict) else {}
    engine = ", ".join(data["backends"]) or backend
    if settings.get("precision"):
        engine += f" {settings['precision']}"
    device = settings.get("gpu") or (cpu_name() if settings.get("device") == "cpu" else settings.get("device"))
    return f"{engine} ({device})" if device else engine


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
    Path(out).parent.mkdir(parents=True, exist_ok=True)  # the chart's files go beside the report
    names = [n for n, _ in data["accuracy"]] + [n for n, _, _ in data["throughput"]]
    folds = sorted({f for _, f in data["accuracy"]})
    setting = ", ".join(x for x in [f"data scale {scale}" if scale else "", f"profile {profile}" if profile else ""] if x)
    lines = ["# FoldedCNNs: reproduction report", "",
             "Test top-1 (%) at the epoch of best validation top-1; speedup = folded images/s over the "
             f"original's in the same trial, batch {data['batch']} images"
             + (f" ({setting})." if setting else "."), "",
             "## Accuracy (layout of appendix table 3)", "", *accuracy_table(data), "",
             "± is half the 95% interval of the original's accuracy on that many test images; the folded "
             "accuracies carry about the same. Narrow (f): the original at width x 1/sqrt(f), one image per input; "
             "compound: the EfficientNet-style compound-scaled CNN; each with ± half its 95% interval on its n "
             "test images.", "",
             *cross_image_lines(data), *chart_lines(data, out, chart_engine(data, results_csv, backend)),
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
    plots = [p for p in plots if Path(p).name != "accuracy_throughput.png"]  # drawn into its own section
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
    return atomic_write_text(Path(out), "\n".join(lines))


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
