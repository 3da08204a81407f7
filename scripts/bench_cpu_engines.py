"""Folding on a CPU's engines and precisions: images/s of each model at f = 1..4 on every
engine (backend:precision), its f=4 / f=1, and per model the best f = 4 in the CPU's default
precision against the best f = 1 on any engine and precision; then appendix H's tile
quantization: f = 2 and 3 with their widths rounded up to --aligns, against f = 1.

    python -m scripts.bench_cpu_engines                              # V1 V2 N2, default engines
    python -m scripts.bench_cpu_engines --models V1 --engines onnxruntime:fp32 openvino:bf16 \
        --trials 5 --aligns 8 16 32

Model by model (to bound memory), every run is prepared and checked against float32 PyTorch
first, then all are timed in turn, trial after trial, so that a drift in machine load hits
every one alike; the tables give medians over trials. The default engines are onnxruntime
and OpenVINO in fp32 and, on a CPU with native bf16 (AMX-BF16 or AVX512_BF16), OpenVINO and
torch.compile in bf16. A benchmark, not a test: compare its numbers as ratios within one run.
"""
import argparse
import importlib.util
import statistics

import torch.nn as nn

import models
from infer import Prepared, build_workload, images_per_second
from util import backends
from util.args import add_flag, nonnegative_int, positive_int
from util.backends import torch_compile
from util.device import cpu_isa, device_name, native_bf16, resolve_device, set_threads
from util.errors import cli_main
from util.files import atomic_write_text, check_output_file

TILED_FOLDS = (2, 3)  # the folds whose widths (45, 55 for V1) are not multiples of a tile


def default_engines():
    """(backend, precision) of the engines compared by default on this CPU."""
    engines = [("onnxruntime", "fp32")] if importlib.util.find_spec("onnxruntime") else [("eager", "fp32")]
    if importlib.util.find_spec("openvino"):
        engines.append(("openvino", "fp32"))
    if native_bf16():
        engines += [("openvino", "bf16")] if importlib.util.find_spec("openvino") else []
        engines.append(("compile", "bf16"))
    return engines


def conv_widths(model):
    """The distinct output widths of a model's convolutions, e.g. "45/22"."""
    widths = sorted({m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)}, reverse=True)
    return "/".join(map(str, widths))


def prepare_runs(names, folds, engines, aligns, align_engines, batch, device, channels_last):
    """{(name, backend, precision, fold, align): Prepared}, the aligned runs only for
    TILED_FOLDS on `align_engines`."""
    runs = {}
    plan = [(n, e, f, 1) for n in names for e in engines for f in folds]
    plan += [(n, e, f, a) for n in names for e in align_engines for f in TILED_FOLDS if f in folds
             for a in aligns if a > 1]
    for name, (backend, precision), fold, align in plan:
        workload = build_workload(name, fold, batch - batch % fold, align)
        runs[(name, backend, precision, fold, align)] = Prepared(workload, backend, precision, device,
                                                                 channels_last or None)
    return runs


def measure(runs, trials, num_warmup, num_iteration):
    """{key: median images/s over trials}, the runs interleaved trial by trial."""
    throughput = {key: [] for key in runs}
    for trial in range(trials):
        for key, prepared in runs.items():
            prepared.warm_up(num_warmup)
            seconds = prepared.time(num_iteration, desc=f"trial {trial} {' '.join(map(str, key))}")
            throughput[key].append(images_per_second(prepared.workload, seconds))
    return {key: statistics.median(values) for key, values in throughput.items()}


def engine_table(speeds, names, engines, folds):
    lines = ["| model | engine | " + " | ".join(f"f={f}" for f in folds) + f" | f{max(folds)}/f1 |",
             "|---|---|" + "---|" * (len(folds) + 1)]
    for name in names:
        for backend, precision in engines:
            cells = [f"{speeds[(name, backend, precision, f, 1)]:,.0f}" for f in folds]
            ratio = speeds[(name, backend, precision, max(folds), 1)] / speeds[(name, backend, precision, 1, 1)]
            lines.append(f"| {label(name)} | {backend} {precision} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    return lines


def best(speeds, name, fold, precision=None):
    """(images/s, "backend precision") of the fastest engine at `fold` (in `precision`)."""
    options = [(v, f"{b} {p}") for (n, b, p, f, a), v in speeds.items()
               if n == name and f == fold and a == 1 and precision in (None, p)]
    return max(options) if options else (float("nan"), "-")


def best_table(speeds, names, folds, precision):
    top = max(folds)
    lines = [f"| model | best f=1 (any engine, precision) | best f={top} in {precision} | ratio |", "|---|---|---|---|"]
    for name in names:
        one, one_engine = best(speeds, name, 1)
        four, four_engine = best(speeds, name, top, precision)
        lines.append(f"| {label(name)} | {one:,.0f} ({one_engine}) | {four:,.0f} ({four_engine}) | {four / one:.2f}x |")
    return lines


def align_table(speeds, widths, names, align_engines, aligns, folds):
    lines = ["| model | engine | f | align | conv widths | images/s | vs f=1 |", "|---|---|---|---|---|---|---|"]
    for name in names:
        for backend, precision in align_engines:
            original = speeds[(name, backend, precision, 1, 1)]
            for fold in [f for f in TILED_FOLDS if f in folds]:
                for align in [1, *[a for a in aligns if a > 1]]:
                    key = (name, backend, precision, fold, align)
                    lines.append(f"| {label(name)} | {backend} {precision} | {fold} | {align} | "
                                 f"{widths[key]} | {speeds[key]:,.0f} | "
                                 f"{speeds[key] / original:.2f}x |")
    return lines


def label(name):
    return f"{models.load_config(name)['id']} ({name})"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["V1", "V2", "N2"], help="names or ids (default: V1 V2 N2)")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=list(models.FOLDS))
    parser.add_argument("--engines", nargs="+", type=backends.parse_engine, metavar="BACKEND[:PRECISION]",
                        help="default: onnxruntime:fp32 openvino:fp32, and openvino:bf16 compile:bf16 on a CPU "
                             "with native bf16")
    parser.add_argument("--aligns", nargs="*", type=positive_int, default=[16, 32],
                        help="widths of f=2 and 3 rounded up to these multiples (default 16 32; none: skip)")
    add_flag(parser, "align_engines", nargs="+", type=backends.parse_engine, metavar="BACKEND[:PRECISION]",
                        help="engines of the alignment runs (default: the default backend in the default precision)")
    add_flag(parser, "batch_size", type=positive_int, default=1024)
    parser.add_argument("--threads", type=positive_int, help="CPU threads of every engine (default: PyTorch's)")
    parser.add_argument("--trials", type=positive_int, default=3)
    add_flag(parser, "num_warmup", type=nonnegative_int, default=1)
    add_flag(parser, "num_iteration", type=positive_int, default=5)
    add_flag(parser, "channels_last", action="store_true", help="channels-last tensors for eager/compile")
    add_flag(parser, "compile_mode", choices=list(torch_compile.GPU_MODES), default=torch_compile.MODE,
                        help="Inductor mode of the compile engine (default %(default)s)")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    return parser.parse_args(argv)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        set_threads(args.threads)
    device = resolve_device("cpu")
    torch_compile.MODE = args.compile_mode
    out = check_output_file(args.out, "tables file") if args.out else None
    names = [models.load_config(n)["name"] for n in args.models]
    folds = sorted(set(args.folds) | {1})
    engines = list(dict.fromkeys(args.engines or default_engines()))
    default = (backends.default_backend(device), backends.default_precision(device))
    align_engines = list(dict.fromkeys(args.align_engines or [default]))
    engines += [e for e in align_engines if e not in engines]  # the aligned runs compare with f=1
    for backend, _ in engines:
        backends.check_device(backend, device)
    speeds, widths = {}, {}
    for name in names:
        runs = prepare_runs([name], folds, engines, args.aligns, align_engines, args.batch_size, device,
                            args.channels_last)
        speeds.update(measure(runs, args.trials, args.num_warmup, args.num_iteration))
        widths.update({key: conv_widths(run.workload.model) for key, run in runs.items()})
        del runs  # the engines' buffers, before the next model's
    lines = [f"CPU: {device_name(device)}, ISA {cpu_isa()}; default engine {' '.join(default)}; batch "
             f"{args.batch_size} images; images/s, median of {args.trials} trials.", "",
             *engine_table(speeds, names, engines, folds), "", *best_table(speeds, names, folds, default[1])]
    if args.aligns and any(f in folds for f in TILED_FOLDS):
        lines += ["", *align_table(speeds, widths, names, align_engines, args.aligns, folds)]
    text = "\n".join(lines)
    if out:
        atomic_write_text(out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
