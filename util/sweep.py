"""The throughput sweep behind run_inference.sh: models x batch sizes x trials x (Original,
Folded f, EfficientNet baseline of game models), one CSV row per timed run.

    python -m util.sweep results.csv --models lol-gold1 night --folds 1 2 3 4 --trials 10

Rows go to stdout and are appended to the CSV as they are measured (one flushed write per
row). Rows already in the CSV are kept and their runs skipped, so an interrupted sweep
resumes where it stopped. TputNorm and FLOPNorm are relative to the Original of the same
model, trial and batch size, which is therefore always measured (f=1 in --folds or not).
A fold that does not divide the batch size (f=3 at 1024) runs the largest multiple of f
below it (341 inputs = 1023 images), as the original's 1024 / f inputs did; throughput
counts the images actually run, and the row keeps the nominal batch size.
All runs of one model and batch size are prepared once and then interleaved trial by
trial, so that a drift in machine load hits every mode alike.
"""
import argparse
import csv
import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import models  # noqa: E402
from util import backends  # noqa: E402
from util.errors import UserError, cli_main  # noqa: E402
from util.files import atomic_write_text  # noqa: E402
from util.inference import (DEFAULT_ITERATIONS, DEFAULT_WARMUP, Prepared, build_workload,  # noqa: E402
                            images_per_second)

HEADER = ["Model", "Trial", "Batch Size", "Mode", "Fold", "Throughput", "FLOPs/sec", "TputNorm", "FLOPNorm"]


def read_rows(path):
    """Rows already in `path` (a dict per row), creating the file with its header if needed.
    A torn last line (the sweep killed mid-write) is dropped."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    kept = text[:text.rfind("\n") + 1] or ",".join(HEADER) + "\n"
    rows = [r for r in csv.reader(io.StringIO(kept)) if r]
    if rows[0] != HEADER:
        raise UserError(f"{path} has the header {','.join(rows[0])!r}, not {','.join(HEADER)!r}: "
                        f"give run_inference.sh a new file")
    if kept != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, kept)
    return [dict(zip(HEADER, r)) for r in rows[1:]]


def run_key(model, trial, batch, mode, fold):
    return (model, int(trial), int(batch), mode, int(fold))


def configurations(name, folds, efficientnet):
    """(mode, fold) of every run of a model, the Original first."""
    runs = [("Original", 1)] + [("Folded", f) for f in sorted(set(folds)) if f != 1]
    if efficientnet and models.load_config(name)["family"] == "game":
        runs.append(("EfficientNet", 1))
    return runs


def format_row(values):
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(values)
    return line.getvalue()


def sweep(out, names, folds, batch_sizes, trials, backend, precision, device, efficientnet=True,
          num_warmup=None, num_iteration=None, channels_last=None, align=1):
    """Measure every missing run, appending rows to `out` and printing them; returns all rows."""
    names = [models.load_config(n)["name"] for n in names]
    bad = [(b, f) for b in batch_sizes for f in folds if f < 1 or b < f]
    if bad:
        raise UserError(f"batch size {bad[0][0]} cannot be folded with f={bad[0][1]}: "
                        f"every batch size must be at least the largest fold")
    device = backends.check_device(backend, device)
    num_warmup = DEFAULT_WARMUP[device.type] if num_warmup is None else num_warmup
    num_iteration = DEFAULT_ITERATIONS[device.type] if num_iteration is None else num_iteration
    rows = read_rows(out)
    done = {run_key(r["Model"], r["Trial"], r["Batch Size"], r["Mode"], r["Fold"]): r for r in rows}
    print(",".join(HEADER), flush=True)
    groups = [(n, b) for n in names for b in batch_sizes]
    with open(out, "a") as sink:
        for name, batch in tqdm(groups, desc="sweep", unit="model", disable=None):
            todo = {}
            for mode, fold in configurations(name, folds, efficientnet):
                missing = [t for t in range(trials) if run_key(name, t, batch, mode, fold) not in done]
                if missing:
                    workload = build_workload(name, fold, batch - batch % fold, align, mode == "EfficientNet")
                    todo[(mode, fold)] = (Prepared(workload, backend, precision, device, channels_last), missing)
            for trial in range(trials):
                for (mode, fold), (prepared, missing) in todo.items():
                    if trial not in missing:
                        continue
                    prepared.warm_up(num_warmup)
                    seconds = prepared.time(num_iteration, desc=f"{name} {mode} f={fold} trial {trial}")
                    throughput = images_per_second(prepared.workload, seconds)
                    flops = throughput * prepared.workload.flops_per_image
                    original = done[run_key(name, trial, batch, "Original", 1)] if mode != "Original" else None
                    tput_norm = throughput / float(original["Throughput"]) if original else 1.0
                    flop_norm = flops / float(original["FLOPs/sec"]) if original else 1.0
                    values = [name, trial, batch, mode, fold, f"{throughput:.6g}", f"{flops:.6g}",
                              f"{tput_norm:.4f}", f"{flop_norm:.4f}"]
                    line = format_row(values)
                    sink.write(line)
                    sink.flush()
                    os.fsync(sink.fileno())
                    print(line, end="", flush=True)
                    done[run_key(name, trial, batch, mode, fold)] = dict(zip(HEADER, map(str, values)))
    return list(done.values())


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="CSV to append to (created with its header if missing)")
    parser.add_argument("--models", nargs="+", required=True, help="model names or ids")
    parser.add_argument("--folds", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1024])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--num_warmup", type=int, help="untimed iterations before each trial")
    parser.add_argument("--num_iteration", type=int, help="timed iterations per trial")
    parser.add_argument("--backend", choices=list(backends.BACKENDS))
    parser.add_argument("--precision", choices=list(backends.DTYPES))
    parser.add_argument("--device")
    parser.add_argument("--no_efficientnet", action="store_true", help="skip the EfficientNet baselines")
    parser.add_argument("--channels_last", action="store_true", help="channels-last for eager/compile")
    parser.add_argument("--align", type=int, default=1, help="round folded widths up to a multiple of this")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    args = parser.parse_args(argv)
    if args.trials < 1 or (args.num_iteration is not None and args.num_iteration < 1):
        raise UserError("--trials and --num_iteration must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or backends.default_device()
    sweep(args.out, args.models, args.folds, args.batch_sizes, args.trials,
          args.backend or backends.default_backend(device), args.precision or backends.default_precision(device),
          device, not args.no_efficientnet, args.num_warmup, args.num_iteration,
          args.channels_last or None, args.align)


if __name__ == "__main__":
    main()
