"""OCCAM's optimal partitioning on our models: off-chip traffic per image for an on-chip
buffer of a given capacity, beside the paper's eq. 3 arithmetic intensity (models/occam.py
states the traffic model).

    python -m scripts.occam V1 --fold 2 --capacity 1MiB [--batch 1024] [--bytes 2] [--runs]
    python -m scripts.occam V1 V2 N2 --out results        # also writes occam.csv and occam.png

For MODEL at --fold: every layer's input, weight and output bytes, with --runs every run of
layers with its closure and footprint, and the partitions the dynamic program chooses. For
every MODEL at f = 1..4: traffic per image and the intensity it gives at --capacity, at this
CPU's L2 and at an H100's 50 MB L2. The plot: traffic per image against capacity from 256 KiB
to 64 MiB, one panel per model and one line per f, with both L2 sizes marked.
"""
import argparse
import csv
import io
import re

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

import models
from models import FOLDS, occam
from models.flops import folded_model_intensity
from util.args import positive_int
from util.cpu_cache import cache_bytes
from util.device import cpu_name
from util.errors import UserError, cli_main
from util.files import atomic_path, atomic_write_text, check_output_dir

plt.switch_backend("Agg")  # files only

H100_L2 = 50 * 2 ** 20  # "50 MB" in NVIDIA's H100 documents; 52,428,800 bytes as CUDA reports it
PLOT_CAPACITIES = [round(2 ** (18 + i / 4)) for i in range(8 * 4 + 1)]  # 256 KiB .. 64 MiB, 4 per octave
UNITS = {"": 1, "b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30}
CSV_COLUMNS = ["model", "fold", "capacity_name", "capacity_bytes", "batch", "bytes_per_element", "partitions",
               "traffic_per_image", "layerwise_per_image", "ops_per_image", "intensity", "eq3_intensity"]


def byte_size(text):
    """argparse type: '1MiB', '50MB', '262144' -> bytes (KiB/MiB/GiB are powers of 2, kB/MB/GB of 10)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 1MiB, 50MB or 262144, got {text!r}")
    value = round(float(match.group(1)) * UNITS[match.group(2).lower()])
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def human(nbytes):
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if nbytes >= size:
            return f"{nbytes / size:,.1f} {unit}".replace(".0 ", " ")
    return f"{nbytes:,.0f} B"


def band_rows(rows):
    return f"{rows} row" + ("s" if rows > 1 else "")


def layer_names(layers):
    counts, names = {}, []
    for layer in layers:
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
        names.append(f"{layer.kind}{counts[layer.kind]}")
    return names


def describe_runs(layers, runs):
    names = layer_names(layers)
    return " + ".join(names[i] if i == j else f"[{names[i]}..{names[j]}]" for i, j in runs)


def layer_table(layers, inputs, bpe):
    lines = ["| layer | in shape | out shape | kernel/stride/pad | input bytes | weight bytes | output bytes |",
             "|---|---|---|---|---|---|---|"]
    for name, layer in zip(layer_names(layers), layers):
        geometry = "whole input" if layer.kernel is None else "/".join(
            "x".join(map(str, v)) for v in (layer.kernel, layer.stride, layer.padding))
        lines.append(f"| {name} | {'x'.join(map(str, layer.in_shape))} | {'x'.join(map(str, layer.out_shape))} | "
                     f"{geometry} | {human(inputs * bpe * layer.in_elements)} | {human(bpe * layer.params)} | "
                     f"{human(inputs * bpe * layer.out_elements)} |")
    return lines


def runs_table(layers, capacity, bpe):
    """Every run of two or more layers: its one-row band's closure, footprint, tallest band that fits."""
    names, footprints = layer_names(layers), occam.min_footprints(layers, bpe)
    lines = ["| run | closure of its worst output row (channels x rows x cols, output first) | least footprint | "
             "tallest band that fits |",
             "|---|---|---|---|"]
    for (i, j), footprint in sorted(footprints.items()):
        run = layers[i:j + 1]
        worst = max(range(run[-1].out_shape[1]), key=lambda r: occam.region_elements(occam.closure(run, (r, r + 1))))
        regions = occam.closure(run, (worst, worst + 1))
        spans = ", ".join(f"{c}x{r1 - r0}x{c1 - c0}" for c, (r0, r1), (c0, c1) in regions)
        band = occam.tallest_band(run, capacity, bpe)
        fits = "does not fit" if band is None else f"{band_rows(band[0])} ({human(band[1])})"
        lines.append(f"| {names[i]}..{names[j]} | {spans} | {human(footprint)} | {fits} |")
    return lines


def partition_table(layers, plan):
    names, inputs, bpe = layer_names(layers), plan.batch // plan.fold, plan.bytes_per_element
    lines = ["| partition | band rows | on-chip footprint | traffic per image |", "|---|---|---|---|"]
    for i, j in plan.runs:
        band = occam.tallest_band(layers[i:j + 1], plan.capacity, bpe)
        rows, footprint = ("-", "streams (one layer)") if band is None else (band[0], human(band[1]))
        traffic = occam.run_cost(layers, i, j, inputs, bpe) / plan.images
        lines.append(f"| {names[i] if i == j else f'{names[i]}..{names[j]}'} | {rows} | {footprint} | {human(traffic)} |")
    return lines


def capacities(requested):
    """(name, bytes) of the capacities of the summary: the requested one (unless it is one of
    the others), this CPU's L2 per core and an H100's L2, smallest first."""
    named = {H100_L2: "H100 L2 (50 MB)"}
    l2 = cache_bytes(2)
    if l2:
        named[l2] = f"this CPU's L2 ({human(l2)})"
    named.setdefault(requested, f"--capacity {human(requested)}")
    return [(name, size) for size, name in sorted(named.items())]


def summary_rows(name, sizes, batch, bpe):
    """A CSV row per fold and capacity: OCCAM's traffic and intensity beside eq. 3's."""
    rows = []
    for fold in FOLDS:
        layers = occam.model_chain(name, fold)
        footprints = occam.min_footprints(layers, bpe)
        eq3 = folded_model_intensity(name, fold, batch, bpe)["intensity"]
        for label, size in sizes:
            p = occam.plan(layers, fold, size, batch, bpe, footprints)
            rows.append({"model": models.load_config(name)["id"], "fold": fold, "capacity_name": label,
                         "capacity_bytes": size, "batch": batch, "bytes_per_element": bpe,
                         "partitions": describe_runs(layers, p.runs),
                         "traffic_per_image": round(p.traffic_per_image, 1),
                         "layerwise_per_image": round(p.layerwise_per_image, 1),
                         "ops_per_image": round(p.ops / p.images), "intensity": round(p.intensity, 2),
                         "eq3_intensity": round(eq3, 2)})
    return rows


def summary_table(rows):
    lines = ["| model | f | capacity | partitions | traffic/image | layer by layer | saved | intensity | eq. 3 intensity |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['fold']} | {r['capacity_name']} | {r['partitions']} | "
                     f"{human(r['traffic_per_image'])} | {human(r['layerwise_per_image'])} | "
                     f"{r['layerwise_per_image'] / r['traffic_per_image']:.1f}x | {r['intensity']:,.1f} | "
                     f"{r['eq3_intensity']:,.1f} |")
    return lines


def plot_traffic(names, batch, bpe, path):
    """Traffic per image against capacity: a panel per model, a line per f, both L2s marked."""
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.2), squeeze=False)
    l2 = cache_bytes(2)
    for ax, name in zip(axes[0], names):
        for fold in FOLDS:
            layers = occam.model_chain(name, fold)
            footprints = occam.min_footprints(layers, bpe)
            traffic = [occam.plan(layers, fold, c, batch, bpe, footprints).traffic_per_image / 1024
                       for c in PLOT_CAPACITIES]
            ax.plot([c / 2 ** 20 for c in PLOT_CAPACITIES], traffic, marker=".", label=f"f={fold}")
        if l2:
            ax.axvline(l2 / 2 ** 20, color="grey", ls="--", lw=1, label=f"this CPU's L2 ({human(l2)} per core)")
        ax.axvline(H100_L2 / 2 ** 20, color="black", ls=":", lw=1, label="H100 L2 (50 MB)")
        cfg = models.load_config(name)
        ax.set(xscale="log", yscale="log", xlabel="on-chip capacity (MiB)", ylabel="off-chip traffic per image (KiB)",
               title=f"{cfg['id']} ({cfg['name']})")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers, not powers of ten
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"OCCAM's optimal partitioning: batch {batch}, {bpe} bytes per element; CPU: {cpu_name()}",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_csv(rows, path):
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, text.getvalue())


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="MODEL", help="names or ids of game or NoScope models (V1, N2, ...)")
    parser.add_argument("--fold", type=positive_int, default=1, help="the fold whose layers and partitions are "
                        "printed (default %(default)s); the summary covers f = 1..4")
    parser.add_argument("--capacity", type=byte_size, help="on-chip capacity, e.g. 1MiB or 50MB "
                        "(default: this CPU's L2 per core)")
    parser.add_argument("--batch", type=positive_int, default=1024,
                        help="images per batch, B // f folded inputs (default %(default)s, as eq. 3 in the report)")
    parser.add_argument("--bytes", type=positive_int, default=2, help="bytes per element (default %(default)s: fp16)")
    parser.add_argument("--runs", action="store_true", help="also print every run of layers with its closure")
    parser.add_argument("--out", help="folder for occam.csv (the summary) and occam.png (the plot)")
    args = parser.parse_args(argv)
    names = [models.load_config(n)["name"] for n in args.models]
    if args.batch < max(FOLDS):
        raise UserError(f"--batch {args.batch} holds no folded input at f={max(FOLDS)}: use at least {max(FOLDS)}")
    capacity = args.capacity or cache_bytes(2)
    if capacity is None:
        raise UserError("this machine does not say its L2 size (no /sys/devices/system/cpu/cpu0/cache): give --capacity")
    out = check_output_dir(args.out, "OCCAM folder") if args.out else None
    bpe, rows = args.bytes, []
    for name in names:
        layers = occam.model_chain(name, args.fold)
        inputs = args.batch // args.fold
        cfg = models.load_config(name)
        print(f"\n## {cfg['id']} ({name}), f={args.fold}: batch {args.batch} images ({inputs} inputs), "
              f"{bpe} bytes per element, capacity {human(capacity)}\n")
        print("\n".join(layer_table(layers, inputs, bpe)))
        if args.runs:
            print("\n" + "\n".join(runs_table(layers, capacity, bpe)))
        p = occam.plan(layers, args.fold, capacity, args.batch, bpe)
        print(f"\nPartitions at {human(capacity)}: {describe_runs(layers, p.runs)}\n")
        print("\n".join(partition_table(layers, p)))
        print(f"\nTraffic per image {human(p.traffic_per_image)} (layer by layer {human(p.layerwise_per_image)}, "
              f"{p.layerwise / p.traffic:.1f}x more); intensity {p.intensity:,.1f} FLOP/byte")
        rows += summary_rows(name, capacities(capacity), args.batch, bpe)
    print("\n## f = 1..4\n\n" + "\n".join(summary_table(rows)))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(rows, out / "occam.csv")
        plot_traffic(names, args.batch, bpe, out / "occam.png")
        print(f"\nwrote {out / 'occam.csv'} and {out / 'occam.png'}")


if __name__ == "__main__":
    main()
