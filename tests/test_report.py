"""The report builder and the appendix G trade-off."""
import math

import pytest

from scripts.report import build_report, load_report_data, tradeoff_rows
from tests.helpers import CPU_ONLY, assert_clean_error, run_cli
from util.cascade import describe, max_latency_ratio

SUMMARY = """dataset,fold,epochs,best_val_top1,test_top1,delta_vs_f1,wall_time_s,train_images_per_s
lol-gold1,1,5,0.9700,0.9650,0.0000,10,1000
lol-gold1,2,5,0.9000,0.9125,-0.0525,10,1000
lol-gold1,4,5,0.5000,0.4000,-0.5650,10,1000
night,1,5,0.9900,0.9900,0.0000,10,1000
night,4,5,0.9900,0.9879,-0.0021,10,1000
"""
RESULTS = """Model,Trial,Batch Size,Mode,Fold,Throughput,FLOPs/sec,TputNorm,FLOPNorm
lol-gold1,0,1024,Original,1,1000,1,1.0,1.0
lol-gold1,0,1024,Folded,2,1500,1,1.5,1.5
lol-gold1,0,1024,Folded,4,2000,1,2.0,2.0
lol-gold1,1,1024,Original,1,1100,1,1.0,1.0
lol-gold1,1,1024,Folded,2,1650,1,1.5,1.5
lol-gold1,1,1024,Folded,4,2420,1,2.2,2.2
lol-gold1,0,1024,EfficientNet,1,1300,1,1.3,0.8
night,0,1024,Original,1,400,1,1.0,1.0
night,0,1024,Folded,4,1000,1,2.5,2.5
night,0,256,Folded,4,100,1,9.9,9.9
"""


def write_inputs(tmp_path):
    (tmp_path / "summary.csv").write_text(SUMMARY)
    (tmp_path / "results.csv").write_text(RESULTS)
    return tmp_path / "summary.csv", tmp_path / "results.csv"


def test_tradeoff_formula_gives_the_papers_285():
    assert math.floor(max_latency_ratio(2.50, 0.0021)) == 285
    assert max_latency_ratio(2.0, 0.0) == math.inf
    assert max_latency_ratio(0.9, 0.01) == 0.0
    assert describe(max_latency_ratio(2.1, 0.565)) == "0.9x"


def test_tradeoff_cli(repo):
    proc = run_cli("-m", "scripts.tradeoff", "2.5", "0.0021")
    assert proc.returncode == 0 and "285x" in proc.stdout
    assert_clean_error(run_cli("-m", "scripts.tradeoff", "2.5"), "give SPEEDUP and ACCURACY_DROP")


def test_report_tables_have_the_right_numbers_and_signs(tmp_path):
    summary, results = write_inputs(tmp_path)
    report = build_report(summary, results, tmp_path / "out" / "REPORT.md", backend="eager").read_text()
    # accuracy table: original, folded (change) and the median speedup over trials at batch 1024
    v1 = next(line for line in report.splitlines() if line.startswith("| V1 (lol-gold1) | (22, 52)"))
    assert "| 96.50 |" in v1 and "91.25 (-5.25) | 1.50 |" in v1 and "40.00 (-56.50) | 2.10 |" in v1
    n2 = next(line for line in report.splitlines() if line.startswith("| N2 (night) | (50, 50)"))
    assert "98.79 (-0.21) | 2.50 |" in n2  # the batch-256 row is ignored: largest batch only
    # throughput table: medians with speedups, EfficientNet column
    tput = next(line for line in report.splitlines() if line.startswith("| V1 (lol-gold1) | 1,050"))
    assert "1,575 (1.50x)" in tput and "1,300 (1.30x)" in tput
    assert "| night | 4 | 2.50 | 0.21 points | 285x |" in report
    assert "## Arithmetic intensity" in report and "## Machine" in report
    assert "python train.py runs/paper --profile paper --datasets lol-gold1 night --folds 1 2 4" in report


def test_tradeoff_rows_from_csvs(tmp_path):
    rows = tradeoff_rows(load_report_data(*write_inputs(tmp_path)))
    assert [(r[0], r[1]) for r in rows] == [("lol-gold1", 2), ("lol-gold1", 4), ("night", 4)]


def test_report_errors_are_clear(tmp_path):
    summary, results = write_inputs(tmp_path)
    proc = run_cli("-m", "scripts.report", "--summary", tmp_path / "nope.csv", "--results", results)
    assert_clean_error(proc, "nope.csv not found")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert_clean_error(run_cli("-m", "scripts.report", "--summary", summary, "--results", tmp_path / "bad.csv"),
                       "missing Model")


ROOFLINE = """backend,model,fold,images_per_s,speedup,flops_per_s,flop_fraction,intensity,ridge,bound,peak_flops,bandwidth
eager,V1,1,2000,1.0,3.33e10,0.1665,43.5,10.0,compute,2e11,2e10
eager,V1,4,3800,1.9,7.08e10,0.354,93.7,10.0,compute,2e11,2e10
onnxruntime,V1,1,10000,1.0,1.665e11,0.8325,43.5,10.0,compute,2e11,2e10
onnxruntime,V1,4,10500,1.05,1.957e11,0.9785,93.7,10.0,compute,2e11,2e10
"""


def test_report_roofline_section_says_where_folding_pays(tmp_path):
    summary, results = write_inputs(tmp_path)
    (tmp_path / "roofline.csv").write_text(ROOFLINE)
    report = build_report(summary, results, tmp_path / "REPORT.md", backend="onnxruntime",
                          roofline=tmp_path / "roofline.csv").read_text()
    assert "peak 200 GFLOP/s" in report and "20.0 GB/s" in report and "ridge point 10.0 FLOP/byte" in report
    assert "![roofline](roofline.png)" in report
    assert "44-94 FLOP/byte, right of the ridge point" in report
    assert "on onnxruntime, which already runs f=1 at 83% of the peak, folding to f=4 reaches 98%" in report
    assert "gains 1.05x" in report and "eager runs f=1 at 17% of the peak" in report and "gains 1.90x at f=4" in report
    assert "| onnxruntime | V1 | 4 | 10,500 | 1.05x | 195.7 | 98% | 93.7 | compute |" in report


OCCAM = """model,fold,capacity_name,capacity_bytes,batch,bytes_per_element,partitions,traffic_per_image,layerwise_per_image,ops_per_image,intensity,eq3_intensity
V1,1,this CPU's L2 (1 MiB),1048576,1024,2,[conv1..linear1],7000,300000,16000000,2285.7,87.0
V1,4,this CPU's L2 (1 MiB),1048576,1024,2,[conv1..linear1],7100,150000,18000000,2535.2,187.5
V1,1,H100 L2 (50 MB),52428800,1024,2,[conv1..linear1],7000,300000,16000000,2285.7,87.0
V1,4,H100 L2 (50 MB),52428800,1024,2,[conv1..linear1],7100,150000,18000000,2535.2,187.5
"""
SPARSITY = """model,fold,test_images,zero_share,relu_zero_shares,dense_per_image,sparse_per_image,reduction
V1,1,1100,0.5,0.4000 0.6000,8000000,4000000,2.0
V1,4,1100,0.6,0.5000 0.7000,9000000,3000000,3.0
"""


def test_report_sections_on_occam_and_relu_sparsity(tmp_path):
    summary, results = write_inputs(tmp_path)
    (tmp_path / "occam.csv").write_text(OCCAM)
    (tmp_path / "relu_sparsity.csv").write_text(SPARSITY)
    report = build_report(summary, results, tmp_path / "REPORT.md", backend="eager", plots=["occam.png"],
                          occam=tmp_path / "occam.csv", sparsity=tmp_path / "relu_sparsity.csv").read_text()
    assert "| V1 | 4 | 187.5 | 146.5 | 6.9 (2,535) | 6.9 (2,535) |" in report  # 150000 B = 146.5 KiB
    # OCCAM alone: 300000 / 7000 = 42.9x; folding alone: 187.5 / 87 = 2.2x; on top of OCCAM 2535.2 / 2285.7 = 1.1x
    assert ("At this CPU's L2 (1 MiB), OCCAM's partitioning alone moves 42.9x less data per image" in report
            and "raises eq. 3 intensity 2.2x; on top of OCCAM, folding to f=4 changes the intensity by 1.1x, "
                "so once the intermediates stay on chip folding adds less than it gains alone." in report)
    assert "![occam](occam.png)" in report and "## Plots" not in report
    assert "| V1 | 4 | 1100 | 50 / 70 | 60.0% | 9.00 | 3.00 | 3.00x |" in report
    assert ("Folded models' activations are sparser than the original's: 1 of 1 folded models have more zeros" in report
            and "needs 2.00x fewer multiplications at f=1 and 3.00x fewer at f=4 on average, so folding raises" in report)


def test_report_gives_accuracy_in_the_inference_precision_and_per_precision_roofs(tmp_path):
    from util.device import cpu_isa
    from util.results import settings_path

    summary, results = write_inputs(tmp_path)
    settings_path(results).write_text('{"backend": "openvino", "precision": "bf16", "device": "cpu"}')
    (tmp_path / "precision.csv").write_text(
        "dataset,fold,test_images,backend,precision,isa,fp32_top1,top1,change\n"
        "night,1,1000,openvino,bf16,AVX512_BF16,69.50,69.40,-0.10\n"
        "lol-gold1,2,1100,openvino,bf16,AVX512_BF16,96.73,96.82,+0.09\n")
    rows = ROOFLINE.strip().splitlines()
    (tmp_path / "roofline.csv").write_text("\n".join([rows[0] + ",precision"] + [
        r + (",bf16" if r.startswith("onnxruntime") else ",fp32") for r in rows[1:]]) + "\n")
    report = build_report(summary, results, tmp_path / "REPORT.md", backend="openvino",
                          roofline=tmp_path / "roofline.csv", precision_accuracy=tmp_path / "precision.csv").read_text()
    section = report[report.index("## Accuracy in the inference precision"):report.index("## Inference throughput")]
    assert section.index("V1 (lol-gold1) | 2 | 1100 | openvino bf16 | AVX512_BF16 | 96.73 | 96.82 | +0.09 |") < \
        section.index("N2 (night) | 1 | 1000 | openvino bf16 | AVX512_BF16 | 69.50 | 69.40 | -0.10 |")
    assert f"backend openvino; precision bf16, CPU ISA {cpu_isa()})" in report
    assert "Each precision has its own roof" in report and "| onnxruntime bf16 | V1 | 4 |" in report
    assert f"- CPU ISA for inference: {cpu_isa()}" in report


# ---- the accuracy-throughput chart, from a small real sweep --------------------------------

def test_chart_is_drawn_from_a_real_sweep_with_the_baselines(tmp_path):
    """train.py --baselines narrow compound on generated V2 data (one epoch each), the
    inference sweep with its narrow and EfficientNet runs, then the report: the chart's CSV
    holds summary.csv's accuracies and results.csv's median throughputs, its intervals are
    the Wilson intervals of the test image counts, and the verdict follows the numbers."""
    import csv
    import statistics

    import matplotlib.image

    from datasets import game_synth
    from util.results import read_results, read_summary, wilson_interval

    data, runs, out = tmp_path / "data", tmp_path / "runs", tmp_path / "report"
    game_synth.generate("apex-count", data, scale=0.01, seed=0, eval_scale=0.02)
    proc = run_cli("train.py", runs, "--datasets", "V2", "--folds", "1", "2", "--baselines", "narrow", "compound",
                   "--epochs", "1", "--max-train-per-class", "4", "--data-root", data, "--device", "cpu",
                   "--threads", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli("infer.py", "sweep", tmp_path / "results.csv", "--models", "V2", "--folds", "1", "2",
                   "--batch-sizes", "4", "--trials", "1", "--backend", "eager", "--device", "cpu",
                   "--num-warmup", "0", "--num-iteration", "1", env=CPU_ONLY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path / "results.csv")
    assert [(r["Mode"], r["Fold"], r["Variant"]) for r in results] == [
        ("Original", "1", "original"), ("Folded", "2", "folded"), ("Narrow", "2", "narrow"),
        ("EfficientNet", "1", "compound")]
    report = build_report(runs / "summary.csv", tmp_path / "results.csv", out / "REPORT.md", "eager").read_text()

    summary = {(r["variant"], int(r["fold"])): r for r in read_summary(runs / "summary.csv")}
    assert sorted(summary) == [("compound", 1), ("folded", 2), ("narrow", 2), ("original", 1)]
    throughput = {(r["Variant"], int(r["Fold"])): float(r["Throughput"]) for r in results}
    with open(out / "accuracy_throughput.csv", newline="") as f:
        points = list(csv.DictReader(f))
    assert [(p["variant"], int(p["fold"])) for p in points] == [("original", 1), ("folded", 2), ("narrow", 2),
                                                                 ("compound", 1)]
    for p in points:
        row, n = summary[p["variant"], int(p["fold"])], int(p["test_images"])
        assert p["dataset"] == "apex-count" and float(p["test_top1"]) == float(row["test_top1"])
        assert n == int(row["test_images"]) > 0
        assert float(p["images_per_s"]) == pytest.approx(statistics.median([throughput[p["variant"], int(p["fold"])]]),
                                                         rel=1e-5)
        low, high = wilson_interval(float(row["test_top1"]), n)
        assert (float(p["top1_low"]), float(p["top1_high"])) == pytest.approx((low, high), abs=6e-5)
    image = matplotlib.image.imread(out / "accuracy_throughput.png")
    assert image.shape[0] > 100 and image.shape[2] in (3, 4)
    assert "![accuracy_throughput](accuracy_throughput.png)" in report
    assert "Narrow (f=2) accuracy" in report and "Compound accuracy" in report

    folded, narrow = (summary[k] for k in (("folded", 2), ("narrow", 2)))
    a_folded, a_narrow = 100 * float(folded["test_top1"]), 100 * float(narrow["test_top1"])
    winner = ("the narrow CNN is more accurate" if a_narrow > a_folded else
              "the FoldedCNN is more accurate" if a_narrow < a_folded else "the two are equally accurate")
    assert f"- V2 (apex-count): at f=2 {winner} ({a_narrow:.2f}% narrow, {a_folded:.2f}% folded; " in report
    share = float(folded["cross_image_share"])
    assert share > 0  # the dense recipe trains the weights across images
    assert f"- {100 * share:.2g}% of V2 f=2's weight norm² connects different images, against 50%" in report


def test_old_results_csv_is_read_with_variants_and_refused_for_appending(tmp_path):
    """A results.csv from before the Variant column: the report reads it (its Modes give the
    variants), a sweep does not append to it (one line saying why)."""
    from util.results import PAPER_COLUMNS, read_results

    old = tmp_path / "old.csv"
    old.write_text(",".join(PAPER_COLUMNS + ["Backend"]) + "\n" + "".join(
        line + ",eager\n" for line in RESULTS.splitlines()[1:]))
    assert [r["Variant"] for r in read_results(old)][:7] == ["original", "folded", "folded", "original", "folded",
                                                             "folded", "compound"]
    (tmp_path / "summary.csv").write_text(SUMMARY)
    assert "| V1 (lol-gold1) | 1,050 |" in build_report(tmp_path / "summary.csv", old, tmp_path / "R.md", "eager").read_text()
    before = old.read_text()
    proc = run_cli("infer.py", "sweep", old, "--models", "N2", "--folds", "1", "--batch-sizes", "2", "--trials", "1",
                   "--backend", "eager", "--device", "cpu", env=CPU_ONLY)
    assert_clean_error(proc, "written before results CSVs had a Variant column", "give run_inference.sh a new file")
    assert old.read_text() == before
