"""The two CSV files of the pipeline and the one reader of both: train.py's summary.csv (a row
per trained job) and the results CSV of run_inference.sh (a row per timed inference run)."""
import csv
import io
from pathlib import Path

from util.errors import UserError
from util.files import atomic_write_text

SUMMARY_COLUMNS = ["dataset", "fold", "epochs", "best_val_top1", "test_top1", "delta_vs_f1",
                   "wall_time_s", "train_images_per_s"]
RESULTS_HEADER = ["Model", "Trial", "Batch Size", "Mode", "Fold", "Throughput", "FLOPs/sec", "TputNorm",
                  "FLOPNorm"]


def parse_csv(text, path, required):
    """The rows of CSV `text` (the contents of `path`) as dicts; a UserError naming the columns
    of `required` that its header lacks."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: expected columns {', '.join(required)}; missing {', '.join(missing)}")
    return list(reader)


def read_csv(path, required, missing_hint="run the step that writes it first (see README)"):
    """The rows of the CSV file `path`, which must exist, hold the `required` columns and a row."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: {missing_hint}")
    rows = parse_csv(path.read_text(), path, required)
    if not rows:
        raise UserError(f"{path}: expected columns {', '.join(required)}; the file has no rows")
    return rows


def read_results(path):
    """The rows of a results CSV written by run_inference.sh."""
    return read_csv(path, RESULTS_HEADER, f"run ./run_inference.sh {path} first")


def resume_results(path):
    """The rows already in the results CSV `path`, which an interrupted sweep continues;
    creates the file with its header if needed and drops a torn last line (a sweep killed
    mid-write)."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    kept = text[:text.rfind("\n") + 1] or ",".join(RESULTS_HEADER) + "\n"
    header = next(csv.reader(io.StringIO(kept)))
    if header != RESULTS_HEADER:
        raise UserError(f"{path} has the header {','.join(header)!r}, not {','.join(RESULTS_HEADER)!r}: "
                        f"give run_inference.sh a new file")
    if kept != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, kept)
    return parse_csv(kept, path, RESULTS_HEADER)
