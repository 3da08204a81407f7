"""Arithmetic intensity of the original CNNs and their FoldedCNNs (paper eq. 3, B = 2 bytes).

    python ai.py                              # one CSV row per model at batch 1024
    python ai.py --per-layer V1 --fold 4      # where the intensity rises, layer by layer
    python ai.py --layer --ci 32 --co 32 --kh 3 --kw 3 --h 11 --w 26 --n 1024 --fold 4
                                              # appendix table 1 for a single convolution
    python ai.py --layer G32 --fold 4         # a named layer of models/layer_specs.py
"""
import argparse

import models
from models import FOLDS
from models.flops import folded_model_intensity
from models.layer_specs import LAYER_SPECS
from util.arith_intensity import conv_layer_table, layer_costs
from util.args import add_flag, positive_int
from util.errors import UserError, cli_main


def print_models(names, batch, nbytes):
    print("model,batch_size,original_AI,tformed_AI_2,tformed_AI_3,tformed_AI_4")
    for name in names:
        values = [folded_model_intensity(name, f, batch, nbytes)["intensity"] for f in FOLDS]
        print(",".join([name, str(batch)] + [f"{v:.2f}" for v in values]))


def print_per_layer(name, fold, batch, nbytes):
    if fold < 1:
        raise UserError(f"--fold must be >= 1, got {fold}")
    if batch < fold:
        raise UserError(f"--batch-size {batch} is smaller than --fold {fold}: a folded batch needs at least f images")
    base = layer_costs(models.build_model(name, 1), models.input_shape(name, 1), batch)
    folded = layer_costs(models.build_model(name, fold), models.input_shape(name, fold), batch // fold)
    print(f"{models.load_config(name)['name']}, batch {batch} images, B = {nbytes} bytes, f = {fold}")
    print(f"{'layer':<14}{'kind':<10}{'original in -> out':<28}{'AI f=1':>9}{f'AI f={fold}':>9}{'ratio':>8}")
    for a, b in zip(base, folded):
        shapes = f"{'x'.join(map(str, a.in_shape))} -> {'x'.join(map(str, a.out_shape))}"
        ai_a, ai_b = a.intensity(nbytes), b.intensity(nbytes)
        print(f"{a.name:<14}{a.kind:<10}{shapes:<28}{ai_a:>9.2f}{ai_b:>9.2f}{ai_b / ai_a:>8.2f}")
    total_a = sum(c.ops for c in base) / (nbytes * sum(c.elements for c in base))
    total_b = sum(c.ops for c in folded) / (nbytes * sum(c.elements for c in folded))
    print(f"{'model':<14}{'':<10}{'':<28}{total_a:>9.2f}{total_b:>9.2f}{total_b / total_a:>8.2f}")


def fmt_millions(x):
    return f"{x / 1e6:.2f}M"


def print_layer(args):
    if args.fold < 1:
        raise UserError(f"--fold must be >= 1, got {args.fold}")
    for field in ("ci", "co"):
        if getattr(args, field) % args.groups:
            raise UserError(f"--{field} {getattr(args, field)} is not divisible by --groups {args.groups}")
    t = conv_layer_table(args.ci, args.co, args.kh, args.kw, args.h, args.w, args.n, args.fold,
                         args.bytes, args.groups)
    o, f = t["original"], t["folded"]
    rows = [
        ("Batch size", f"{o['batch']:g}", f"{f['batch']:g}"),
        ("Input, output channels", "{:g}, {:g}".format(*o["channels"]), "{:g}, {:g}".format(*f["channels"])),
        ("Input and output elements (E_io)", fmt_millions(o["io_elements"]), fmt_millions(f["io_elements"])),
        ("Layer elements (E_l)", fmt_millions(o["layer_elements"]), fmt_millions(f["layer_elements"])),
        ("Memory traffic in bytes (M)", fmt_millions(o["traffic_bytes"]), fmt_millions(f["traffic_bytes"])),
        ("Operations (O)", fmt_millions(o["ops"]), fmt_millions(f["ops"])),
        ("Arithmetic intensity", f"{o['intensity']:.2f}", f"{f['intensity']:.2f}"),
        ("Batch-limited limit (N -> inf)", f"{o['batch_limit']:.2f}", f"{f['batch_limit']:.2f}"),
    ]
    print(f"Conv {args.ci}->{args.co}, {args.kh}x{args.kw}, H={args.h}, W={args.w}, "
          f"groups={args.groups}, B={args.bytes} bytes")
    print(f"{'':<34}{'Original':>14}{f'Folded (f={args.fold})':>18}")
    for label, a, b in rows:
        print(f"{label:<34}{a:>14}{b:>18}")
    holds = "holds" if t["traffic_reduced"] else "does not hold"
    print(f"Appendix J: NHW = {t['nhw']:,} > (f-1)CiKhKwCo/((1-1/sqrt f)(Ci+Co)) = {t['threshold']:,.1f}: "
          f"{holds} (folding {'reduces' if t['traffic_reduced'] else 'does not reduce'} memory traffic)")


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "batch_size", type=positive_int, default=1024,
             help="images per batch (default 1024)")
    parser.add_argument("--bytes", type=positive_int, default=2, help="bytes per element, B (default 2: fp16)")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="models for the CSV (default: all)")
    parser.add_argument("--per-layer", metavar="MODEL", help="print the intensity of each layer of MODEL")
    parser.add_argument("--layer", nargs="?", const="table1", choices=sorted(LAYER_SPECS), metavar="SPEC",
                        help="analyse one convolution: a layer of models/layer_specs.py "
                             f"({', '.join(LAYER_SPECS)}; default table1), changed by the flags below")
    layer = parser.add_argument_group("--layer options (defaults: the SPEC's layer, batch 1024)")
    for flag in ("ci", "co", "kh", "kw", "h", "w", "n", "groups"):
        layer.add_argument(f"--{flag}", type=positive_int)
    parser.add_argument("--fold", type=positive_int, default=4, help="fold for --layer / --per-layer (default 4)")
    args = parser.parse_args(argv)
    if args.layer:
        for field, value in {**LAYER_SPECS[args.layer], "n": 1024}.items():
            if getattr(args, field) is None:
                setattr(args, field, value)
        print_layer(args)
    elif args.per_layer:
        print_per_layer(args.per_layer, args.fold, args.batch_size, args.bytes)
    else:
        names = args.models or [n for n in models.model_names()
                                if models.load_config(n)["family"] in ("game", "noscope")]
        print_models(names, args.batch_size, args.bytes)


if __name__ == "__main__":
    main()
