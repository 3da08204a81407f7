"""Inference throughput of a CNN, its FoldedCNN, or a single layer, in images/second.

    python infer.py lol-gold1 4                      # V1 folded f=4, batch 1024, default backend
    python infer.py V1 1 --backend compile --json    # the original, one JSON record
    python infer.py lol-gold1 1 --efficientnet       # the EfficientNet-style baseline
    python infer.py --layer G32 4                    # appendix C's group convolution, folded
    python infer.py --list game noscope              # model names, e.g. for run_inference.sh

The last line printed is the throughput (or, with --json, the JSON record). Backends:
tensorrt and cudagraph need a CUDA GPU; compile and eager run anywhere (util/backends/).
"""
import argparse
import json

import torch

import models
from models.registry import FAMILY_ORDER
from util import backends
from util.errors import UserError, cli_main
from util.inference import DEFAULT_ITERATIONS, DEFAULT_WARMUP, benchmark, build_workload
from util.layer_specs import LAYER_SPECS


def list_names(families):
    unknown = [f for f in families if f not in FAMILY_ORDER]
    if unknown:
        raise UserError(f"unknown model family {unknown[0]!r}; known: {', '.join(FAMILY_ORDER)}")
    return [n for n in models.model_names() if not families or models.load_config(n)["family"] in families]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("name", nargs="?", help="model name or id (e.g. lol-gold1 or V1); "
                        f"with --layer one of {', '.join(LAYER_SPECS)}")
    parser.add_argument("fold", nargs="?", type=int, default=1, help="f: images folded per input (default 1)")
    parser.add_argument("--list", nargs="*", metavar="FAMILY", default=None,
                        help=f"print model names (of the given families: {', '.join(FAMILY_ORDER)}) and exit")
    parser.add_argument("--layer", action="store_true", help="NAME is a single layer of util/layer_specs.py")
    parser.add_argument("--efficientnet", action="store_true",
                        help="time the compound-scaled baseline of a game model (fold must be 1)")
    parser.add_argument("--checkpoint", help="weights from training: a .pth with a 'model' state_dict, "
                        "or a bare state_dict (default: random weights)")
    parser.add_argument("--batch_size", type=int, default=1024,
                        help="images per batch; the model sees batch_size / fold inputs (default 1024)")
    parser.add_argument("--backend", choices=list(backends.BACKENDS),
                        help="default: cudagraph on a GPU, eager on a CPU")
    parser.add_argument("--precision", choices=list(backends.DTYPES), help="default: fp16 on a GPU, fp32 on a CPU")
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if there is a GPU)")
    parser.add_argument("--num_warmup", type=int,
                        help="untimed iterations (default {})".format(
                            ", ".join(f"{v} on {k}" for k, v in DEFAULT_WARMUP.items())))
    timed = parser.add_mutually_exclusive_group()
    timed.add_argument("--num_iteration", type=int, help="timed iterations (default {})".format(
        ", ".join(f"{v} on {k}" for k, v in DEFAULT_ITERATIONS.items())))
    timed.add_argument("--seconds", type=float, help="time about this long instead (sized from the warm-up)")
    parser.add_argument("--align", type=int, default=1,
                        help="round folded widths up to a multiple of this (8 avoids tile quantization)")
    parser.add_argument("--channels_last", action="store_true",
                        help="channels-last tensors for eager/compile (cudagraph always uses them)")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input batch")
    parser.add_argument("--json", action="store_true", help="print one JSON record instead of text")
    return parser, parser.parse_args(argv)


@cli_main
def main(argv=None):
    parser, args = parse_args(argv)
    if args.list is not None:
        print("\n".join(list_names(args.list)))
        return
    if args.name is None:
        parser.error("NAME is required (or use --list)")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device or backends.default_device())
    except RuntimeError:
        raise UserError(f"--device {args.device!r} is not a device; use cpu, cuda or cuda:N") from None
    backend = args.backend or backends.default_backend(device)
    precision = args.precision or backends.default_precision(device)
    backends.check_device(backend, device)
    workload = build_workload(args.name, args.fold, args.batch_size, args.align, args.efficientnet,
                              args.layer, args.checkpoint)
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


if __name__ == "__main__":
    main()
