"""`make reproduce` in miniature: one task, f = 1 and 2, tiny data, real steps, a real report;
pinned to the CPU (CPU_ONLY), whose defaults (the fastest CPU engine, parallel jobs) it
checks, also when the machine has a GPU."""
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
    assert [line.split(",")[:2] for line in summary[1:]] == [["apex-count", "1"], ["apex-count", "2"]]
    results = (out / "results.csv").read_text().splitlines()
    assert results[0] == "Model,Trial,Batch Size,Mode,Fold,Throughput,FLOPs/sec,TputNorm,FLOPNorm,Backend"
    assert {row.split(",")[3] for row in results[1:]} == {"Original", "Folded", "EfficientNet"}
    assert {row.split(",")[9] for row in results[1:]} == {default_backend("cpu")}  # the fastest on this CPU
    report = (out / "REPORT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| V2 (apex-count) | (19, 25) | 22 |"))
    images, original, folded, speedup = (cell.strip() for cell in row.split("|")[4:8])
    assert images == "44"  # 2 test images per class at --eval-scale 0.02
    assert 0 <= float(original.split(" ±")[0]) <= 100 and "(" in folded and float(speedup) > 0
    for plot in ("figure7.png", "learning_curves.png"):
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


def test_cifar_without_files_is_a_clear_error(tmp_path):
    proc = run_cli("-m", "scripts.reproduce", "--datasets", "cifar10", "--data-root", tmp_path, "--out", tmp_path / "r")
    assert_clean_error(proc, "CIFAR")
