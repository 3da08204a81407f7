"""`make reproduce` in miniature: one task, f = 1 and 2, tiny data, real steps, a real report
whose numbers are those of the runs; pinned to the CPU (CPU_ONLY), whose defaults (the
fastest CPU engine, parallel jobs) it checks, also when the machine has a GPU."""
import csv
import json
import math
import statistics

import pytest

from tests.helpers import CPU_ONLY, assert_clean_error, run_cli
from util.backends import default_backend, default_precision


def test_pipeline_end_to_end_writes_a_report(tmp_path):
    data, out = tmp_path / "data", tmp_path / "results"
    args = ["-m", "scripts.reproduce", "--datasets", "V2", "--folds", "2", "--scale", "0.01",
            "--min-train-per-class", "0", "--eval-scale", "0.02", "--data-root", data, "--out", out]
    env = {"NUM_ITERATION": "1", "ROOFLINE_BACKENDS": "eager onnxruntime", **CPU_ONLY}
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (data / "apex-count" / "train").is_dir()
    summary = (out / "summary.csv").read_text().splitlines()
    assert [line.split(",")[:3] for line in summary[1:]] == [  # the baselines trained too (--baselines)
        ["apex-count", "1", "original"], ["apex-count", "2", "folded"], ["apex-count", "2", "narrow"],
        ["apex-count", "1", "compound"]]
    results = (out / "results.csv").read_text().splitlines()
    assert results[0] == "Model,Trial,Batch Size,Mode,Fold,Throughput,FLOPs/sec,TputNorm,FLOPNorm,Variant,Backend"
    assert {tuple(row.split(",")[3:5]) + (row.split(",")[9],) for row in results[1:]} == {
        ("Original", "1", "original"), ("Folded", "2", "folded"), ("Narrow", "2", "narrow"),
        ("EfficientNet", "1", "compound")}
    assert {row.split(",")[10] for row in results[1:]} == {default_backend("cpu")}  # the fastest on this CPU
    report = (out / "REPORT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| V2 (apex-count) | (19, 25) | 22 |"))
    images, original, folded, speedup = (cell.strip() for cell in row.split("|")[4:8])
    assert images == "44" == str(len(list((data / "apex-count" / "test").rglob("*.png"))))  # 2 per class
    assert_report_row_equals_the_csvs(out, original, folded, speedup)
    for plot in ("figure7.png", "learning_curves.png", "accuracy_throughput.png"):
        assert plot in report and (out / plot).is_file()
    assert f"backend {default_backend('cpu')}; precision {default_precision('cpu')}" in report
    assert f"| {default_backend('cpu')} {default_precision('cpu')} |" in report  # accuracy in that precision
    assert "## Roofline" in report and "![roofline](roofline.png)" in report
    assert (out / "roofline.png").is_file() and "Folding pays where" in report
    assert "## Related systems: OCCAM's optimal partitioning" in report and "![occam](occam.png)" in report
    assert "| V2 | 2 | 128.0 |" in report  # the OCCAM table's row at f=2: eq. 3 intensity first
    assert "## Related systems: ReLU sparsity" in report and "| V2 | 2 | 44 |" in report  # all 44 test images

    # a rerun reuses every finished step: same summary, no new inference rows
    again = run_cli(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "found under" in again.stdout
    assert (out / "results.csv").read_text().splitlines() == results
    assert (out / "summary.csv").read_text().splitlines() == summary


def wilson_half_width(p, n, z=1.96):
    """Half the width of the 95% Wilson score interval of a proportion p measured on n trials."""
    return z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_report_row_equals_the_csvs(out, original, folded, speedup):
    """The accuracy table's cells are summary.csv's accuracies (in percent) with the Wilson
    interval and the change from f = 1, and results.csv's median TputNorm; summary.csv is
    what the training jobs recorded, and each TputNorm is the folded throughput over the
    original's of the same trial."""
    f1, f2 = [r for r in read_rows(out / "summary.csv") if r["variant"] in ("original", "folded")]
    done = [json.loads((out / "runs" / "apex-count" / f"fold{f}" / "done.json").read_text()) for f in (1, 2)]
    for row, job in zip((f1, f2), done):
        assert row["test_top1"] == f"{job['test_top1']:.4f}" and row["test_images"] == str(job["test_images"])
    assert f1["delta_vs_f1"] == "+0.0000" and f2["delta_vs_f1"] == f"{done[1]['test_top1'] - done[0]['test_top1']:+.4f}"
    top1, top2 = float(f1["test_top1"]), float(f2["test_top1"])
    assert original == f"{100 * top1:.2f} ±{100 * wilson_half_width(top1, 44):.1f}"
    assert folded == f"{100 * top2:.2f} ({100 * (top2 - top1):+.2f})"
    assert float(folded.split("(")[1].rstrip(")")) == pytest.approx(100 * float(f2["delta_vs_f1"]), abs=0.011)
    results = read_rows(out / "results.csv")
    assert {r["Batch Size"] for r in results} == {"1024"}
    throughput = {(r["Mode"], r["Trial"]): float(r["Throughput"]) for r in results}
    norms = []
    for r in results:
        if r["Mode"] == "Folded":
            assert float(r["TputNorm"]) == pytest.approx(throughput["Folded", r["Trial"]] / throughput["Original", r["Trial"]],
                                                         abs=1e-4)
            norms.append(float(r["TputNorm"]))
    assert norms and speedup == f"{statistics.median(norms):.2f}"


def test_cifar_without_files_is_a_clear_error(tmp_path):
    proc = run_cli("-m", "scripts.reproduce", "--datasets", "cifar10", "--data-root", tmp_path, "--out", tmp_path / "r")
    assert_clean_error(proc, "CIFAR")
