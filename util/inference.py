"""Inference throughput: build what to time (a model, a FoldedCNN, the EfficientNet baseline
or a single layer), check a backend against float32 PyTorch, and time it.

    workload = build_workload("lol-gold1", fold=4, batch_size=1024)
    record = benchmark(workload, backend="eager", precision="fp32", device="cpu")
    record["images_per_s"]

A batch of `batch_size` images becomes batch_size / f folded inputs (models.fold_inputs),
as in the paper. Throughput = images / second over the timed iterations, timed with CUDA
events on a GPU and time.perf_counter on a CPU.
"""
import contextlib
import copy
import platform
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm import tqdm

import models
from util import backends
from util.arith_intensity import model_intensity
from util.errors import UserError
from util.flops import flops_per_input
from util.layer_specs import build_layer, layer_input_shape

# Largest accepted relative error ||backend - fp32 eager|| / ||fp32 eager|| of the outputs.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2}
# Defaults per device: the paper's 100 + 10000 on a GPU; a few on a CPU, which is ~1000x slower.
DEFAULT_WARMUP = {"cuda": 100, "cpu": 2}
DEFAULT_ITERATIONS = {"cuda": 10000, "cpu": 10}


@dataclass
class Workload:
    """What gets timed: `model` (float32, CPU) on `batch` images folded `fold` times."""
    name: str
    fold: int
    mode: str              # Original | Folded | EfficientNet
    model: nn.Module
    input_shape: tuple     # one (folded) input, (C, H, W)
    batch: int             # images; the model sees batch // fold inputs
    flops_per_image: float
    align: int = 1
    layer: bool = False    # a single layer (util.layer_specs), whose input is an activation

    @property
    def num_inputs(self):
        return self.batch // self.fold


def mode_of(fold, efficientnet=False):
    return "EfficientNet" if efficientnet else ("Original" if fold == 1 else "Folded")


def load_checkpoint(model, path):
    """Load a training checkpoint (a dict with a "model" state_dict) or a bare state_dict."""
    try:
        # Not weights_only: our training checkpoints also hold RNG states (numpy objects).
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} not found") from None
    except Exception as err:
        raise UserError(f"cannot read checkpoint {path}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"checkpoint {path} does not fit this model (wrong model, fold or --align?): {first}") from None
    return model


def build_workload(name, fold=1, batch_size=1024, align=1, efficientnet=False, layer=False, checkpoint=None):
    """The model (or `layer` spec) `name` folded `fold` times, to be run on `batch_size` images."""
    fold = models.folding.check_fold(fold)
    if batch_size < 1 or batch_size % fold:
        raise UserError(f"batch size {batch_size} cannot be folded with f={fold}: "
                        f"use a batch size that is a multiple of {fold}")
    if efficientnet and (fold != 1 or layer):
        raise UserError("--efficientnet is the unfolded baseline of a game model: use fold 1 and no --layer")
    if layer:
        if checkpoint:
            raise UserError("--checkpoint applies to models, not to --layer benchmarks")
        model, shape = build_layer(name, fold, align), layer_input_shape(name, fold, align)
    elif efficientnet:
        model, shape = models.build_compound_scaled(name), models.compound_scaled_input_shape(name)
    else:
        model, shape = models.build_model(name, fold, align=align), models.input_shape(name, fold)
    if checkpoint:
        load_checkpoint(model, checkpoint)
    if layer or align != 1:  # not in the FLOP table: count the conv and linear FLOPs
        flops = model_intensity(model, shape, 1)["ops"]
    else:
        flops = flops_per_input(name, fold, efficientnet)
    label = name if layer else models.load_config(name)["name"]
    return Workload(label, fold, mode_of(fold, efficientnet), model.eval(), tuple(shape), batch_size,
                    flops / fold, align, layer)


def random_inputs(workload, seed=0):
    """The model's input batch on the CPU: `batch` random images folded into batch // f
    inputs; for a layer, batch // f random activations of its (widened) input shape."""
    generator = torch.Generator().manual_seed(seed)
    if workload.layer:
        return torch.randn(workload.num_inputs, *workload.input_shape, generator=generator)
    channels, height, width = workload.input_shape
    images = torch.randn(workload.batch, channels // workload.fold, height, width, generator=generator)
    return models.fold_inputs(images, workload.fold)


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


def time_iterations(run, device, iterations, desc=None):
    """Seconds of each of `iterations` calls of `run`: CUDA events between consecutive calls
    on a GPU (no host synchronization inside the loop), perf_counter on a CPU."""
    progress = tqdm(total=iterations, desc=desc, leave=False, disable=None)
    if device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(iterations + 1)]
        events[0].record()
        for event in events[1:]:
            run()
            event.record()
            progress.update()
        events[-1].synchronize()
        seconds = [a.elapsed_time(b) / 1e3 for a, b in zip(events, events[1:])]
    else:
        seconds = []
        for _ in range(iterations):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
            progress.update()
    progress.close()
    return seconds


def images_per_second(workload, seconds):
    """Throughput of timed iterations: images processed / total seconds."""
    return workload.batch * len(seconds) / sum(seconds)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        threads = torch.get_num_threads()
        return f"{names[0]} ({threads} thread{'s' if threads > 1 else ''})"
    except (OSError, IndexError):
        return platform.processor() or "cpu"


class Prepared:
    """A workload compiled/captured/built by a backend and checked against float32 PyTorch."""

    def __init__(self, workload, backend, precision, device, channels_last=None, seed=0):
        self.workload, self.backend, self.precision = workload, backend, precision
        self.device = backends.check_device(backend, device)
        module = backends.BACKENDS[backend]
        self.channels_last = module.CHANNELS_LAST if channels_last is None else channels_last
        self.precision_context = ieee_fp32 if precision == "fp32" else contextlib.nullcontext
        inputs = random_inputs(workload, seed)
        with torch.inference_mode(), ieee_fp32():
            reference = copy.deepcopy(workload.model).to(self.device)(inputs.to(self.device)).cpu()
        with torch.inference_mode(), self.precision_context():
            self.run = module.prepare(copy.deepcopy(workload.model), inputs, precision, self.device,
                                      self.channels_last)
            self.error = relative_error(self.run(), reference)
        if not self.error <= TOLERANCE[precision]:  # also catches NaN
            raise UserError(f"{backend} ({precision}) output of {workload.name} f={workload.fold} differs "
                            f"from float32 eager PyTorch: relative error {self.error:.2e} exceeds the "
                            f"{TOLERANCE[precision]:g} tolerance of {precision}")

    def time(self, iterations, desc=None):
        """Per-iteration seconds of `iterations` calls."""
        with torch.inference_mode(), self.precision_context():
            return time_iterations(self.run, self.device, iterations, desc)

    def warm_up(self, iterations):
        """Run `iterations` untimed calls; returns their mean seconds (to size --seconds runs)."""
        if iterations < 1:
            return None
        return statistics.fmean(self.time(iterations, desc="warm-up"))


def summarize(prepared, seconds, warmup):
    """The JSON record of one timed run."""
    w = prepared.workload
    images_per_s = images_per_second(w, seconds)
    ms = [s * 1e3 for s in seconds]
    return {
        "model": w.name, "fold": w.fold, "mode": w.mode, "backend": prepared.backend,
        "device": device_name(prepared.device), "precision": prepared.precision,
        "batch": w.batch, "inputs_per_batch": w.num_inputs, "align": w.align,
        "channels_last": prepared.channels_last, "warmup": warmup, "iterations": len(seconds),
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
        raise UserError("--seconds sizes the run from the warm-up: use --num_warmup of at least 1")
    if num_iteration < 1:
        raise UserError(f"--num_iteration must be at least 1, got {num_iteration}")
    prepared = Prepared(workload, backend, precision, device, channels_last, seed)
    mean_warm = prepared.warm_up(num_warmup)
    if seconds is not None:
        num_iteration = max(1, round(seconds / mean_warm))
    return summarize(prepared, prepared.time(num_iteration, desc=f"{workload.name} f={workload.fold}"),
                     num_warmup)
