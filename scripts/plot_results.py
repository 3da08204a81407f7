"""Plots of run_inference.sh's CSV, after the paper's figures 7 and 8.

    python -m scripts.plot_results results.csv [--outdir results]

figure7.png: for each model (x axis) one bar per FoldedCNN f, per narrow CNN of f (the
original at width x 1/sqrt(f); Mode Narrow) and the EfficientNet baseline:
throughput, FLOPs/sec and arithmetic intensity relative to the original CNN (median over
trials at the largest batch size in the CSV, whiskers min to max). Arithmetic intensity is
computed (util.arith_intensity, B = 2 bytes) for the batch size measured.
figure8.png (when the CSV holds several batch sizes): speedup over the original against
batch size, one panel per model and one line per series.
"""
import argparse
import statistics
from collections import defaultdict

import matplotlib.pyplot as plt

import models
from util.arith_intensity import model_intensity
from util.errors import UserError, cli_main
from util.files import atomic_savefig, check_output_dir, check_output_file
from util.results import read_results

plt.switch_backend("Agg")  # files only, no display needed

COLORS = {"Folded 2": "#9ecae1", "Folded 3": "#4292c6", "Folded 4": "#08519c",
          "Narrow 2": "#a1d99b", "Narrow 3": "#41ab5d", "Narrow 4": "#006d2c", "EfficientNet": "#e6550d"}


def load_norms(path):
    """{(model, batch, series): {"tput": [...], "flops": [...]}}, series "Folded f", "Narrow f"
    or "EfficientNet"."""
    rows = read_results(path)
    results = defaultdict(lambda: {"tput": [], "flops": []})
    for r in rows:
        if r["Mode"] == "Original":
            continue
        series = "EfficientNet" if r["Mode"] == "EfficientNet" else f"{r['Mode']} {r['Fold']}"
        key = (models.load_config(r["Model"])["name"], int(r["Batch Size"]), series)
        results[key]["tput"].append(float(r["TputNorm"]))
        results[key]["flops"].append(float(r["FLOPNorm"]))
    if not results:
        raise UserError(f"{path} holds only Original runs: nothing to compare")
    return results


def series_label(series):
    """A legend entry: "f = 2", "narrow f = 2" or "EfficientNet"."""
    return series.replace("Folded ", "f = ").replace("Narrow ", "narrow f = ")


def intensity_ratio(name, series, batch):
    """Arithmetic intensity of the FoldedCNN (or narrow CNN, or EfficientNet baseline) over the original's."""
    def intensity(model, shape, inputs):
        return model_intensity(model, shape, inputs)["intensity"]

    original = intensity(models.build_model(name), models.input_shape(name), batch)
    if series == "EfficientNet":
        return intensity(models.build_compound_scaled(name), models.compound_scaled_input_shape(name), batch) / original
    mode, fold = series.split()[0], int(series.split()[1])
    if mode == "Narrow":
        return intensity(models.build_variant(name, "narrow", fold), models.variant_input_shape(name, "narrow", fold),
                         batch) / original
    return intensity(models.build_model(name, fold), models.input_shape(name, fold), batch // fold) / original


def label(name):
    cfg = models.load_config(name)
    return f"{cfg['id']}\n{name}" if cfg["id"] != name else name


def figure7(results, out):
    batch = max(b for _, b, _ in results)
    names = models.ordered_names(n for n, b, _ in results if b == batch)
    series = [s for s in COLORS if any((n, batch, s) in results for n in names)]
    width = 0.8 / len(series)
    fig, axes = plt.subplots(3, 1, figsize=(max(7, 1.1 * len(names) + 2), 9), sharex=True)
    panels = [("tput", "Throughput"), ("flops", "FLOPs/sec"), ("ai", "Arithmetic intensity")]
    for ax, (metric, title) in zip(axes, panels):
        for i, s in enumerate(series):
            xs, ys, lo, hi = [], [], [], []
            for j, name in enumerate(names):
                entry = results.get((name, batch, s))
                if entry is None:
                    continue
                values = [intensity_ratio(name, s, batch)] if metric == "ai" else entry[metric]
                mid = statistics.median(values)
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(mid)
                lo.append(mid - min(values))
                hi.append(max(values) - mid)
            ax.bar(xs, ys, width, color=COLORS[s], label=series_label(s),
                   yerr=[lo, hi] if metric != "ai" else None, capsize=2, error_kw={"linewidth": 0.8})
        ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
        ax.set_ylabel(f"{title}\nrelative to original")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=min(len(series), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=9, frameon=False)
    fig.suptitle(f"FoldedCNNs and baselines relative to the original CNN (batch {batch}; "
                 f"median over trials, whiskers min-max)", fontsize=10)
    axes[-1].set_xticks(range(len(names)), [label(n) for n in names], fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, out, dpi=120)
    plt.close(fig)


def figure8(results, out):
    batches = sorted({b for _, b, _ in results})
    names = models.ordered_names(n for n, _, _ in results)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        for s in COLORS:
            points = [(b, statistics.median(results[(name, b, s)]["tput"]))
                      for b in batches if (name, b, s) in results]
            if points:
                ax.plot(*zip(*points), marker="o", color=COLORS[s], label=series_label(s))
        ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches], fontsize=8)
        ax.set_title(label(name).replace("\n", " "), fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("speedup over original")
    for ax in axes[-1]:
        ax.set_xlabel("batch size")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, out, dpi=120)
    plt.close(fig)


def plot(results_csv, outdir):
    """Write the figures into `outdir`; returns their paths."""
    outdir = check_output_dir(outdir, "plot folder")
    for name in ("figure7.png", "figure8.png"):
        check_output_file(outdir / name, "figure")
    results = load_norms(results_csv)
    outdir.mkdir(parents=True, exist_ok=True)
    written = [outdir / "figure7.png"]
    figure7(results, written[0])
    if len({b for _, b, _ in results}) > 1:
        written.append(outdir / "figure8.png")
        figure8(results, written[1])
    return written


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="CSV written by run_inference.sh")
    parser.add_argument("--outdir", default="results", help="where to write the PNGs (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in plot(args.results, args.outdir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
