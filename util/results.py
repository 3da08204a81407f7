"""The two CSV files of the pipeline and the one reader of both: train.py's summary.csv (a row
per trained job) and the results CSV of run_inference.sh (a row per timed inference run)."""
import csv
import io
import json
import math
import sys
from pathlib import Path

from util.errors import UserError
from util.files import atomic_write_json, atomic_write_text

SUMMARY_COLUMNS = ["dataset", "fold", "variant", "epochs", "best_val_top1", "test_top1", "test_images", "delta_vs_f1",
                   "wall_time_s", "train_images_per_s", "cross_image_share"]
# The paper's nine columns (section 5 of the original system), then the variant of the model
# (models.VARIANTS) and the backend that ran the row.
PAPER_COLUMNS = ["Model", "Trial", "Batch Size", "Mode", "Fold", "Throughput", "FLOPs/sec", "TputNorm", "FLOPNorm"]
RESULTS_HEADER = PAPER_COLUMNS + ["Variant", "Backend"]
# The Mode of a results row and the variant of the model it ran, one to one: the narrow CNN of
# f is Mode Narrow with Fold f, the compound-scaled CNN the paper's EfficientNet baseline.
MODE_VARIANTS = {"Original": "original", "Folded": "folded", "Narrow": "narrow", "EfficientNet": "compound"}


def result_variant(record):
    """The variant of a job's result (done.json) or summary.csv row. Results from before variants
    existed are the paper's models: original at f = 1, folded otherwise."""
    return record.get("variant") or ("original" if int(record["fold"]) == 1 else "folded")


def summary_rows(done):
    """summary.csv's rows of finished jobs' results (done.json), in the given order;
    variant is original | folded | narrow | compound (a result without one is the paper's
    model of its fold); delta_vs_f1 is the test top-1 minus that of the same dataset's
    original (f = 1) job (empty without one)."""
    original = {d["dataset"]: d["test_top1"] for d in done if result_variant(d) == "original"}
    rows = []
    for d in done:
        delta = d["test_top1"] - original[d["dataset"]] if d["dataset"] in original else None
        rows.append({"dataset": d["dataset"], "fold": d["fold"], "variant": result_variant(d), "epochs": d["epochs"],
                     "best_val_top1": f"{d['best_val_top1']:.4f}", "test_top1": f"{d['test_top1']:.4f}",
                     "test_images": d.get("test_images", ""),
                     "delta_vs_f1": "" if delta is None else f"{delta:+.4f}",
                     "wall_time_s": f"{d['wall_time_s']:.1f}", "train_images_per_s": f"{d['train_images_per_s']:.0f}",
                     "cross_image_share": "" if d.get("cross_image_share") is None else f"{d['cross_image_share']:.3g}"})
    return rows


def write_summary(path, done):
    """Write summary.csv of finished jobs' results `done` to `path` (atomically) and return it
    as a printable table."""
    rows = summary_rows(done)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in SUMMARY_COLUMNS}
    lines = ["  ".join(c.rjust(widths[c]) for c in SUMMARY_COLUMNS)]
    lines += ["  ".join(str(r[c]).rjust(widths[c]) for c in SUMMARY_COLUMNS) for r in rows]
    return "\n".join(lines)


# Column types, and the columns that name what a row measured: two rows with the same key are
# two measurements of one run, which happens when a file mixes two sweeps.
SUMMARY_TYPES = {"fold": int, "epochs": int, "best_val_top1": float, "test_top1": float, "wall_time_s": float,
                 "train_images_per_s": float}
SUMMARY_KEY = ("dataset", "fold", "variant")
RESULTS_TYPES = {"Trial": int, "Batch Size": int, "Fold": int, "Throughput": float, "FLOPs/sec": float,
                 "TputNorm": float, "FLOPNorm": float}
RESULTS_KEY = ("Model", "Trial", "Batch Size", "Mode", "Fold")
MODES = tuple(MODE_VARIANTS)


def _at_least(least):
    return lambda value: value >= least, f"at least {least}"


def _whole_or_empty(text):
    return text == "" or (text.isdigit() and int(text) >= 1)


# What the values mean, beyond their type: (test, what it must be). A number of the wrong
# meaning (a top-1 in percent, a zero throughput) would print as a result or divide by zero.
_POSITIVE = (lambda value: value > 0, "positive")
_FRACTION = (lambda value: 0 <= value <= 1, "a fraction from 0 to 1 (not a percent)")
SUMMARY_MEANINGS = {"fold": _at_least(1), "epochs": _at_least(1), "best_val_top1": _FRACTION,
                    "test_top1": _FRACTION, "wall_time_s": _at_least(0), "train_images_per_s": _at_least(0),
                    "test_images": (_whole_or_empty, "a whole number of images (or empty)"),
                    "variant": (lambda v: v in ("", *MODE_VARIANTS.values()),
                                f"one of {', '.join(MODE_VARIANTS.values())} (or empty)")}
RESULTS_MEANINGS = {"Trial": _at_least(0), "Batch Size": _at_least(1), "Fold": _at_least(1),
                    "Throughput": _POSITIVE, "FLOPs/sec": _POSITIVE, "TputNorm": _POSITIVE, "FLOPNorm": _POSITIVE,
                    "Mode": (lambda mode: mode in MODES, f"one of {', '.join(MODES)}")}


def wilson_interval(fraction, n, z=1.96):
    """(low, high): the 95% Wilson score interval of a proportion `fraction` measured on n
    images (an accuracy on 55 images is +-12 points, on 1,100 about +-1.5)."""
    centre = (fraction + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _number(kind, text):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_csv(text, path, required, types=None, key=(), meanings=None):
    """The rows of CSV `text` (the contents of `path`) as dicts. A UserError names the columns
    of `required` that its header lacks, a value of a `types` column that is not a (whole)
    finite number, one that fails its test in `meanings` ({column: (test, what it must be)}),
    and a second row with the same `key` columns."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: expected columns {', '.join(required)}; missing {', '.join(missing)}")
    rows, seen = list(reader), {}
    for line, row in enumerate(rows, 2):
        for column, kind in (types or {}).items():
            if column in row and _number(kind, row[column]) is None:
                raise UserError(f"{path} line {line}: {column} is {row[column]!r}, not a "
                                f"{'whole ' if kind is int else ''}number; fix or delete the row")
        for column, (test, what) in (meanings or {}).items():
            if column not in row:
                continue
            kind = (types or {}).get(column)
            if not test(_number(kind, row[column]) if kind else row[column] or ""):
                raise UserError(f"{path} line {line}: {column} is {row[column]!r}, but it must be {what}; "
                                f"fix or delete the row")
        if key:
            ident = tuple(_number(types[c], row[c]) if c in (types or {}) else row.get(c) for c in key)
            if ident in seen:
                what = ", ".join(f"{c} {row[c]}" for c in key if c in row)
                raise UserError(f"{path} lines {seen[ident]} and {line} both hold {what}: the file mixes two "
                                f"runs; delete the rows of one of them")
            seen[ident] = line
    return rows


def read_csv(path, required, missing_hint="run the step that writes it first (see README)", types=None, key=(),
             meanings=None):
    """The rows of the CSV file `path`, which must exist, hold the `required` columns and a row."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: {missing_hint}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text CSV file") from None
    rows = parse_csv(text, path, required, types, key, meanings)
    if not rows:
        raise UserError(f"{path}: expected columns {', '.join(required)}; the file has no rows")
    return rows


def read_summary(path):
    """The rows of train.py's summary.csv; a file from before variants existed holds the
    paper's models only, so its rows get variant original (f = 1) or folded."""
    rows = read_csv(path, ["dataset", "fold", "test_top1"], types=SUMMARY_TYPES, key=SUMMARY_KEY,
                    meanings=SUMMARY_MEANINGS)
    for row in rows:
        row["variant"] = result_variant(row)
    return rows


def read_results(path):
    """The rows of a results CSV written by run_inference.sh (or of the paper's nine columns).
    A file without the Variant column (the paper's, or ours from before it) cannot hold narrow
    CNNs: its rows get the variant of their Mode. Where the column is there it must agree."""
    rows = read_csv(path, PAPER_COLUMNS, f"run ./run_inference.sh {path} first", RESULTS_TYPES, RESULTS_KEY,
                    RESULTS_MEANINGS)
    for line, row in enumerate(rows, 2):
        variant = MODE_VARIANTS[row["Mode"]]
        if row.get("Variant") and row["Variant"] != variant:
            raise UserError(f"{path} line {line}: Variant is {row['Variant']!r} but Mode {row['Mode']} runs the "
                            f"{variant} model; fix or delete the row")
        row["Variant"] = variant
    return rows


def settings_path(results_csv):
    """Where the settings that define a sweep are kept: next to its CSV."""
    path = Path(results_csv)
    return path.with_name(path.name + ".settings.json")


def resume_results(path, settings=None):
    """The rows already in the results CSV `path`, which an interrupted sweep continues;
    creates the file with its header if needed and drops a torn last line (a sweep killed
    mid-write). `settings` (backend, precision, device, ...) define the sweep and are kept in
    `settings_path(path)`: a rerun with other settings is a UserError, so that one file never
    mixes, or silently skips, runs measured differently."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    kept = text[:text.rfind("\n") + 1] or ",".join(RESULTS_HEADER) + "\n"
    header = next(csv.reader(io.StringIO(kept)))
    if header == PAPER_COLUMNS + ["Backend"]:
        raise UserError(f"{path} was written before results CSVs had a Variant column (which tells the narrow "
                        f"CNNs' rows apart): give run_inference.sh a new file; reports still read this one")
    if header != RESULTS_HEADER:
        raise UserError(f"{path} has the header {','.join(header)!r}, not {','.join(RESULTS_HEADER)!r}: "
                        f"give run_inference.sh a new file")
    rows = parse_csv(kept, path, RESULTS_HEADER, RESULTS_TYPES, RESULTS_KEY, RESULTS_MEANINGS)
    if settings is not None:
        _check_settings(path, settings, rows)
    if kept != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, kept)
    return rows


def _check_settings(path, settings, rows):
    stored_path = settings_path(path)
    try:
        stored = json.loads(stored_path.read_text()) if stored_path.is_file() else None
    except (OSError, ValueError):
        raise UserError(f"{stored_path} is damaged: give run_inference.sh a new file") from None
    if stored is None and rows:
        raise UserError(f"{path} holds runs but no {stored_path.name} saying how they were measured: "
                        f"give run_inference.sh a new file")
    # A setting missing from an older file is one that did not apply (None).
    differs = [k for k in dict.fromkeys([*settings, *(stored or {})]) if stored is not None
               and stored.get(k) != settings.get(k)]
    if differs and not rows:  # left by a sweep that measured nothing
        print(f"note: {stored_path} holds the settings of a sweep without runs; replacing them", file=sys.stderr)
        stored, differs = None, []
    if differs:
        diff = ", ".join(f"{k} {stored.get(k)!r} there, {settings.get(k)!r} now" for k in differs)
        raise UserError(f"{path} holds runs measured with other settings ({diff}): rerun with its settings "
                        f"({stored_path.name}) or give run_inference.sh a new file")
    if stored is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(stored_path, settings)
