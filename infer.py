"""Inference throughput of a CNN, its FoldedCNN, or a single layer, in images/second; and the
throughput sweep of the paper (section 5) behind run_inference.sh.

    python infer.py lol-gold1 4                      # V1 folded f=4, batch 1024, default backend
    python infer.py V1 1 --backend compile --json    # the original, one JSON record
    python infer.py lol-gold1 1 --efficientnet       # the EfficientNet-style baseline
    python infer.py lol-gold1 4 --narrow             # the narrow CNN of f=4 (width x 1/sqrt(4))
    python infer.py --layer G32 4                    # appendix C's group convolution, folded
    python infer.py --list game noscope              # model names, e.g. for run_inference.sh
    python infer.py sweep results.csv --models lol-gold1 night --folds 1 2 3 4 --trials 10

The last line printed is the throughput (or, with --json, the JSON record). Backends:
tensorrt and cudagraph need a CUDA GPU; onnxruntime, compile and eager run anywhere, openvino
on a CPU (util/backends/). The default is the fastest here: cudagraph in fp16 on a GPU; on a
CPU with native bf16 (AMX or AVX512_BF16) openvino in bf16, else onnxruntime in fp32.

A batch of `batch_size` images becomes batch_size / f folded inputs (models.fold_inputs),
as in the paper; the narrow CNN of f (--narrow, models.build_variant) takes them one image
per input. Throughput = images / second over the timed iterations, timed with CUDA events
on a GPU and time.perf_counter on a CPU. Every backend's output is checked against
float32 PyTorch before it is timed.
"""
import argparse
import contextlib
import copy
import csv
import io
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm import tqdm

import models
from models.flops import flops_per_input
from models.layer_specs import LAYER_SPECS, build_layer, layer_input_shape
from util import backends
from util.arith_intensity import model_intensity
from util.checkpoint import load_weights
from util.device import cpu_isa, cuda_seconds_per_call, device_name, on_device, resolve_device, set_threads
from util.args import add_flag, device_string, nonnegative_int, positive_float, positive_int
from util.errors import UserError, cli_main
from util.files import check_output_file, writing
from util.gpu_estimate import TimedWork
from util.results import MODE_VARIANTS, RESULTS_HEADER, resume_results

# ----------------------------------------------------------------------------------------
# The harness: what to time, checked against float32 PyTorch, and timed.

# Largest accepted relative error ||backend - fp32 eager|| / ||fp32 eager|| of the outputs.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2}
# Defaults per device: the paper's 100 + 10000 on a GPU; a few on a CPU, which is ~1000x slower.
DEFAULT_WARMUP = {"cuda": 100, "cpu": 2}
DEFAULT_ITERATIONS = {"cuda": 10000, "cpu": 10}


@dataclass
class Workload:
    """What gets timed: `model` (float32, CPU) on `batch` images folded `fold` times (the
    narrow CNN of f: `batch` inputs of one image)."""
    name: str
    fold: int
    mode: str              # util.results.MODES: Original | Folded | Narrow | EfficientNet
    model: nn.Module
    input_shape: tuple     # one (folded) input, (C, H, W)
    batch: int             # images; the model sees batch // images_per_input inputs
    flops_per_image: float
    align: int = 1
    layer: bool = False    # a single layer (models/layer_specs.py), whose input is an activation

    @property
    def images_per_input(self):
        return 1 if self.mode == "Narrow" else self.fold

    @property
    def num_inputs(self):
        return self.batch // self.images_per_input


def mode_of(fold, efficientnet=False, narrow=False):
    if narrow:
        return "Narrow"
    return "EfficientNet" if efficientnet else ("Original" if fold == 1 else "Folded")


def build_workload(name, fold=1, batch_size=1024, align=1, efficientnet=False, layer=False, checkpoint=None,
                   seed=0, narrow=False):
    """The model (or `layer` spec) `name` folded `fold` times (with `narrow`, the narrow CNN of
    f = `fold`), to be run on `batch_size` images, with weights drawn from `seed` (a TensorRT
    engine built for them is found again by the next run) or loaded from `checkpoint`."""
    fold = models.folding.check_fold(fold)
    if batch_size < 1 or (batch_size % fold and not narrow):
        raise UserError(f"batch size {batch_size} cannot be folded with f={fold}: "
                        f"use a batch size that is a multiple of {fold}")
    if efficientnet and (fold != 1 or layer):
        raise UserError("--efficientnet is the unfolded baseline of a game model: use fold 1 and no --layer")
    if narrow and (fold == 1 or layer or efficientnet):
        raise UserError("--narrow times the narrow CNN of a fold f >= 2 (the original at width x 1/sqrt(f)): "
                        "give such a fold, and no --layer or --efficientnet")
    if layer and checkpoint:
        raise UserError("--checkpoint applies to models, not to --layer benchmarks")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if layer:
            model, shape = build_layer(name, fold, align), layer_input_shape(name, fold, align)
        elif efficientnet:
            model, shape = models.build_compound_scaled(name), models.compound_scaled_input_shape(name)
        elif narrow:  # models.build_variant(name, "narrow", fold), with widths rounded up to `align`
            model = models.build_model(name, 1, channel_mult=models.narrow_mult(fold), align=align)
            shape = models.variant_input_shape(name, "narrow", fold)
        else:
            model, shape = models.build_model(name, fold, align=align), models.input_shape(name, fold)
    if checkpoint:
        load_weights(model, checkpoint, mismatch="does not fit this model (wrong model, fold or --align?)")
    per_input = 1 if narrow else fold
    if layer or align != 1 or narrow:  # not in the FLOP table: count the conv and linear FLOPs
        flops = model_intensity(model, shape, 1)["ops"]
    else:
        flops = flops_per_input(name, fold, efficientnet)
    label = name if layer else models.load_config(name)["name"]
    return Workload(label, fold, mode_of(fold, efficientnet, narrow), model.eval(), tuple(shape), batch_size,
                    flops / per_input, align, layer)


def run_images(mode, fold, batch):
    """The images a sweep's run of batch size `batch` times: the largest multiple of f for a
    FoldedCNN (341 inputs = 1023 images at f = 3), all of them for a one-image model."""
    return batch - batch % fold if mode == "Folded" else batch


def build_run(name, mode, fold, batch, align=1):
    """The workload of one sweep run (mode, fold) of `name` at batch size `batch` (run_images)."""
    return build_workload(name, fold, run_images(mode, fold, batch), align, mode == "EfficientNet",
                          narrow=mode == "Narrow")


def random_inputs(workload, seed=0):
    """The model's input batch on the CPU: `batch` random images folded into batch // f
    inputs; for a layer, batch // f random activations of its (widened) input shape."""
    generator = torch.Generator().manual_seed(seed)
    if workload.layer:
        return torch.randn(workload.num_inputs, *workload.input_shape, generator=generator)
    channels, height, width = workload.input_shape
    per_input = workload.images_per_input
    images = torch.randn(workload.batch, channels // per_input, height, width, generator=generator)
    return models.fold_inputs(images, per_input)


@contextlib.contextmanager
def ieee_fp32():
    """float32 that means float32 on a GPU: no TF32 in cuDNN convolutions or cuBLAS matmuls."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def relative_error(got, want):
    """||got - want|| / ||want||. Unfolding logits is a reshape, so this equals the error of
    the unfolded per-image logits."""
    got, want = got.float().flatten().cpu(), want.float().flatten().cpu()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


# A timed run is split into at most this many equal rounds: their spread is the record's
# iteration_ms, and the progress bar moves between them, outside the timed spans.
TIMED_ROUNDS = 10


def rounds_of(iterations):
    """The number of equal rounds, at most TIMED_ROUNDS, that `iterations` splits into."""
    return max(r for r in range(1, min(TIMED_ROUNDS, iterations) + 1) if iterations % r == 0)


def time_iterations(run, device, iterations, desc=None):
    """Mean seconds per call of `run` in each of rounds_of(iterations) equal rounds. A round
    is timed as one span: CUDA events recorded before and after its loop on a GPU, which the
    host then waits for; perf_counter on a CPU. Nothing else runs between the calls of a round,
    so a call of tens of microseconds is timed on the GPU, not bounded by host work."""
    if iterations < 1:
        return []
    rounds = rounds_of(iterations)
    per_round = iterations // rounds
    seconds = []
    for _ in tqdm(range(rounds), desc=desc, leave=False, disable=None):
        if device.type == "cuda":
            seconds.append(cuda_seconds_per_call(run, per_round))
        else:
            start = time.perf_counter()
            for _ in range(per_round):
                run()
            seconds.append((time.perf_counter() - start) / per_round)
    return seconds


def images_per_second(workload, seconds):
    """Throughput of timed rounds (equal in size; time_iterations): images / second."""
    return workload.batch * len(seconds) / sum(seconds)


class Prepared:
    """A workload compiled/captured/built by a backend and checked against float32 PyTorch."""

    def __init__(self, workload, backend, precision, device, channels_last=None, seed=0):
        self.workload, self.backend, self.precision = workload, backend, precision
        self.device = backends.check_device(backend, device)
        module = backends.BACKENDS[backend]
        self.channels_last = backends.channels_last(backend, channels_last)
        self.precision_context = ieee_fp32 if precision == "fp32" else contextlib.nullcontext
        self.stream = None
        inputs = random_inputs(workload, seed)
        with self.on_device(), torch.inference_mode():
            with ieee_fp32():
                reference = copy.deepcopy(workload.model).to(self.device)(inputs.to(self.device)).cpu()
            with self.precision_context():
                self.run = module.prepare(copy.deepcopy(workload.model), inputs, precision, self.device,
                                          bool(self.channels_last))
                self.error = relative_error(self.run(), reference)
        if not self.error <= TOLERANCE[precision]:  # also catches NaN
            raise UserError(f"{backend} ({precision}) output of {workload.name} f={workload.fold} differs "
                            f"from float32 eager PyTorch: relative error {self.error:.2e} exceeds the "
                            f"{TOLERANCE[precision]:g} tolerance of {precision}")

    @contextlib.contextmanager
    def on_device(self):
        """The workload's device current and, on a GPU, its own CUDA stream, for all its work."""
        with on_device(self.device, self.stream) as stream:
            self.stream = stream
            yield

    def time(self, iterations, desc=None):
        """Mean seconds per call of each round of `iterations` calls (time_iterations)."""
        with self.on_device(), torch.inference_mode(), self.precision_context():
            return time_iterations(self.run, self.device, iterations, desc)

    def warm_up(self, iterations):
        """Run `iterations` untimed calls; returns their mean seconds (to size --seconds runs)."""
        if iterations < 1:
            return None
        return statistics.fmean(self.time(iterations, desc="warm-up"))


def summarize(prepared, seconds, warmup, iterations):
    """The JSON record of one timed run of `iterations` calls; `seconds` per call of each
    round (time_iterations), whose spread is iteration_ms."""
    w = prepared.workload
    images_per_s = images_per_second(w, seconds)
    ms = [s * 1e3 for s in seconds]
    return {
        "model": w.name, "fold": w.fold, "mode": w.mode, "backend": prepared.backend,
        "device": device_name(prepared.device), "precision": prepared.precision,
        "isa": cpu_isa() if prepared.device.type == "cpu" else None,
        "batch": w.batch, "inputs_per_batch": w.num_inputs, "align": w.align,
        "channels_last": prepared.channels_last, "warmup": warmup, "iterations": iterations,
        "images_per_s": images_per_s, "flops_per_image": w.flops_per_image,
        "flops_per_s": w.flops_per_image * images_per_s,
        "arithmetic_intensity": model_intensity(w.model, w.input_shape, w.num_inputs,
                                                BYTES_PER_ELEMENT[prepared.precision]),
        "iteration_ms": {"median": statistics.median(ms), "min": min(ms), "max": max(ms),
                         "std": statistics.pstdev(ms)},
        "relative_error": prepared.error,
    }


def benchmark(workload, backend, precision, device, channels_last=None, num_warmup=None,
              num_iteration=None, seconds=None, seed=0):
    """Prepare, check and time one workload; returns the JSON record (see summarize).
    With `seconds`, the number of iterations is sized from the warm-up's mean."""
    kind = torch.device(device).type
    num_warmup = DEFAULT_WARMUP[kind] if num_warmup is None else num_warmup
    num_iteration = DEFAULT_ITERATIONS[kind] if num_iteration is None else num_iteration
    if seconds is not None and num_warmup < 1:
        raise UserError("--seconds sizes the run from the warm-up: use --num-warmup of at least 1")
    if num_iteration < 1:
        raise UserError(f"--num-iteration must be at least 1, got {num_iteration}")
    prepared = Prepared(workload, backend, precision, device, channels_last, seed)
    mean_warm = prepared.warm_up(num_warmup)
    if seconds is not None:
        num_iteration = max(1, round(seconds / mean_warm))
    return summarize(prepared, prepared.time(num_iteration, desc=f"{workload.name} f={workload.fold}"),
                     num_warmup, num_iteration)


# ----------------------------------------------------------------------------------------
# The sweep (run_inference.sh): models x batch sizes x trials x (Original, Folded f, Narrow f,
# EfficientNet baseline of game models), one CSV row per timed run.
SWEEP_DOC = """The throughput sweep behind run_inference.sh: one CSV row per timed run, in the
paper's nine columns followed by the model's variant (original, folded, narrow, compound) and
the backend that ran it.

Beside each FoldedCNN of f it times the narrow CNN of f (Mode Narrow, Fold f: the original at
width x 1/sqrt(f), one image per input, as many images as the batch size), what a user could
run instead at about the same FLOPs per image; and the EfficientNet-style compound-scaled CNN
of game models (Mode EfficientNet, variant compound). --no-narrow and --no-efficientnet skip them.

Rows go to stdout and are appended to the CSV as they are measured (one flushed write per
row). Rows already in the CSV are kept and their runs skipped, so an interrupted sweep
resumes where it stopped. TputNorm and FLOPNorm are relative to the Original of the same
model, trial and batch size, which is therefore always measured (f=1 in --folds or not).
A fold that does not divide the batch size (f=3 at 1024) runs the largest multiple of f
below it (341 inputs = 1023 images), as the original's 1024 / f inputs did; throughput
counts the images actually run, and the row keeps the nominal batch size.
All runs of one model and batch size are prepared once and then interleaved trial by
trial, so that a drift in machine load hits every mode alike."""


def engine_settings(backend, device):
    """What else decides a sweep's speeds: the GPU, Inductor's mode (compile) and TensorRT's
    version (tensorrt); None where they do not apply."""
    return {"gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "compile_mode": backends.torch_compile.MODE if backend == "compile" else None,
            "tensorrt": backends.trt_engine.import_tensorrt().__version__ if backend == "tensorrt" else None}


def run_key(model, trial, batch, mode, fold):
    return (model, int(trial), int(batch), mode, int(fold))


def configurations(name, folds, efficientnet, narrow=True):
    """(mode, fold) of every run of a model, the Original first."""
    folded = [f for f in sorted(set(folds)) if f != 1]
    runs = [("Original", 1)] + [("Folded", f) for f in folded]
    if narrow:
        runs += [("Narrow", f) for f in folded]
    if efficientnet and models.has_compound_scaled(name):
        runs.append(("EfficientNet", 1))
    return runs


def run_flops(name, mode, fold, batch):
    """FLOPs of one call of a sweep run: the FLOP table's, or counted for a narrow CNN."""
    if mode == "Narrow":
        model = models.build_variant(name, "narrow", fold)
        return model_intensity(model, models.variant_input_shape(name, "narrow", fold), 1)["ops"] * batch
    return flops_per_input(name, fold, mode == "EfficientNet") * (run_images(mode, fold, batch) // fold)


def sweep_work(names, folds, batch, trials, backend, num_warmup, num_iteration, efficientnet=True, narrow=True):
    """The util.gpu_estimate.TimedWork of a sweep, one per run configuration."""
    return [TimedWork(backend, run_flops(name, mode, fold, batch), trials, num_warmup, num_iteration)
            for name in names for mode, fold in configurations(name, folds, efficientnet, narrow)]


def format_row(values):
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(values)
    return line.getvalue()


def sweep(out, names, folds, batch_sizes, trials, backend, precision, device, efficientnet=True,
          num_warmup=None, num_iteration=None, channels_last=None, align=1, narrow=True):
    """Measure every missing run, appending rows to `out` and printing them; returns all rows."""
    names = [models.load_config(n)["name"] for n in names]
    bad = [(b, f) for b in batch_sizes for f in folds if f < 1 or b < f]
    if bad:
        raise UserError(f"batch size {bad[0][0]} cannot be folded with f={bad[0][1]}: "
                        f"every batch size must be at least the largest fold")
    device = backends.check_device(backend, device)
    num_warmup = DEFAULT_WARMUP[device.type] if num_warmup is None else num_warmup
    num_iteration = DEFAULT_ITERATIONS[device.type] if num_iteration is None else num_iteration
    # What makes the runs of one CSV comparable; a rerun with other settings needs a new file.
    settings = {"backend": backend, "precision": precision, "device": "cpu" if device.type == "cpu" else f"{device.type}:{device.index or 0}",
                "align": align, "channels_last": bool(channels_last), **engine_settings(backend, device)}
    rows = resume_results(check_output_file(out, "results CSV"), settings)
    done = {run_key(r["Model"], r["Trial"], r["Batch Size"], r["Mode"], r["Fold"]): r for r in rows}
    print(",".join(RESULTS_HEADER), flush=True)
    groups = [(n, b) for n in names for b in batch_sizes]
    with writing(f"the results CSV {out}"):
        sink = open(out, "ab", buffering=0)  # unbuffered: a failed write leaves nothing to flush at close
    with sink:
        for name, batch in tqdm(groups, desc="sweep", unit="model", disable=None):
            todo = {}
            for mode, fold in configurations(name, folds, efficientnet, narrow):
                missing = [t for t in range(trials) if run_key(name, t, batch, mode, fold) not in done]
                if missing:
                    workload = build_run(name, mode, fold, batch, align)
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
                              f"{tput_norm:.4f}", f"{flop_norm:.4f}", MODE_VARIANTS[mode], backend]
                    line = format_row(values)
                    with writing(f"the results CSV {out}"):  # a full disk: the torn line is dropped on resume
                        sink.write(line.encode())
                        os.fsync(sink.fileno())
                    print(line, end="", flush=True)
                    done[run_key(name, trial, batch, mode, fold)] = dict(zip(RESULTS_HEADER, map(str, values)))
    return list(done.values())


# ----------------------------------------------------------------------------------------
# Command lines.

def list_names(families):
    unknown = [f for f in families if f not in models.FAMILIES]
    if unknown:
        raise UserError(f"unknown model family {unknown[0]!r}; known: {', '.join(models.FAMILIES)}")
    return [n for n in models.model_names() if not families or models.load_config(n)["family"] in families]


def measurement_flags():
    """The flags of how a model is run and timed, shared by `infer.py` and `infer.py sweep`."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("how to run and time")
    add = group.add_argument
    add("--backend", choices=list(backends.BACKENDS),
        help="default: cudagraph on a GPU; on a CPU openvino where it has native bf16 (AMX or AVX512_BF16), "
             "else onnxruntime (eager without either)")
    add("--precision", choices=list(backends.DTYPES),
        help="default: fp16 on a GPU; on a CPU bf16 for openvino where the CPU has native bf16 (AMX or "
             "AVX512_BF16), else fp32")
    add("--device", type=device_string, help="cuda, cuda:1, cpu (default: cuda if there is a GPU)")
    add("--threads", type=positive_int, help="CPU threads for PyTorch, onnxruntime and OpenVINO (default: PyTorch's choice)")
    add("--align", type=positive_int, default=1,
        help="round folded widths up to a multiple of this (8 avoids tile quantization; default 1)")
    add_flag(group, "channels_last", action="store_true",
        help="channels-last tensors for eager/compile (cudagraph always uses them; TensorRT picks its own)")
    add_flag(group, "num_warmup", type=nonnegative_int,
        help="untimed iterations, per trial in a sweep (default {})".format(
            ", ".join(f"{v} on {k}" for k, v in DEFAULT_WARMUP.items())))
    add_flag(group, "num_iteration", type=positive_int,
        help="timed iterations, per trial in a sweep (default {})".format(
            ", ".join(f"{v} on {k}" for k, v in DEFAULT_ITERATIONS.items())))
    return parent


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[measurement_flags()],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("name", nargs="?", help="model name or id (e.g. lol-gold1 or V1); "
                        f"with --layer one of {', '.join(LAYER_SPECS)}")
    parser.add_argument("fold", nargs="?", type=positive_int, default=1, help="f: images folded per input (default 1)")
    parser.add_argument("--list", nargs="*", metavar="FAMILY", default=None,
                        help=f"print model names (of the given families: {', '.join(models.FAMILIES)}) and exit")
    parser.add_argument("--layer", action="store_true", help="NAME is a single layer of models/layer_specs.py")
    parser.add_argument("--efficientnet", action="store_true",
                        help="time the compound-scaled baseline of a game model (fold must be 1)")
    parser.add_argument("--narrow", action="store_true",
                        help="time the narrow CNN of f = FOLD instead: the original at width x 1/sqrt(f), "
                             "one image per input")
    parser.add_argument("--checkpoint", help="weights from training: a .pth with a 'model' state_dict, "
                        "or a bare state_dict (default: random weights drawn from --seed)")
    add_flag(parser, "batch_size", type=positive_int, default=1024,
                        help="images per batch; the model sees batch_size / fold inputs (default 1024)")
    parser.add_argument("--seconds", type=positive_float,
                        help="time about this long instead of --num-iteration (sized from the warm-up)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random weights and input batch")
    parser.add_argument("--json", action="store_true", help="print one JSON record instead of text")
    args = parser.parse_args(argv)
    if args.seconds is not None and args.num_iteration is not None:
        parser.error("argument --seconds: not allowed with argument --num-iteration")
    return parser, args


@cli_main
def main(argv=None):
    parser, args = parse_args(argv)
    if args.list is not None:
        print("\n".join(list_names(args.list)))
        return
    if args.name is None:
        parser.error("NAME is required (or use --list)")
    if args.threads is not None:
        set_threads(args.threads)
    device = resolve_device(args.device)
    backend = args.backend or backends.default_backend(device)
    precision = args.precision or backends.default_precision(device, backend)
    backends.check_device(backend, device)
    workload = build_workload(args.name, args.fold, args.batch_size, args.align, args.efficientnet,
                              args.layer, args.checkpoint, args.seed, args.narrow)
    record = benchmark(workload, backend, precision, device, args.channels_last or None,
                       args.num_warmup, args.num_iteration, args.seconds, args.seed)
    if args.json:
        print(json.dumps(record))
        return
    spread = record["iteration_ms"]
    print(f"{record['model']} f={record['fold']} ({record['mode']}), {backend} {precision} on "
          f"{record['device']}, batch {record['batch']} ({record['inputs_per_batch']} inputs): "
          f"{record['iterations']} iterations, median {spread['median']:.3f} ms "
          f"(min {spread['min']:.3f}, max {spread['max']:.3f}); "
          f"{record['flops_per_s'] / 1e9:.1f} GFLOP/s, arithmetic intensity "
          f"{record['arithmetic_intensity']['intensity']:.1f}; relative error vs fp32 "
          f"{record['relative_error']:.1e}")
    print(f"{record['images_per_s']:.1f} images/s")


@cli_main
def sweep_main(argv=None):
    parser = argparse.ArgumentParser(prog="infer.py sweep", description=SWEEP_DOC, parents=[measurement_flags()],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="CSV to append to (created with its header if missing)")
    parser.add_argument("--models", nargs="+", required=True, help="model names or ids")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=list(models.FOLDS))
    add_flag(parser, "batch_sizes", nargs="+", type=positive_int, default=[1024])
    parser.add_argument("--trials", type=positive_int, default=10)
    add_flag(parser, "no_efficientnet", action="store_true",
                        help="skip the EfficientNet baselines")
    add_flag(parser, "no_narrow", action="store_true",
                        help="skip the narrow CNNs of each f")
    args = parser.parse_args(argv)
    if args.threads is not None:
        set_threads(args.threads)
    device = resolve_device(args.device)
    sweep(args.out, args.models, args.folds, args.batch_sizes, args.trials,
          args.backend or backends.default_backend(device),
          args.precision or backends.default_precision(device, args.backend), device, not args.no_efficientnet, args.num_warmup, args.num_iteration,
          args.channels_last or None, args.align, not args.no_narrow)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sweep"]:
        sweep_main(sys.argv[2:])
    else:
        main()
