"""FLOP counts with thop, and the committed table `config/model_map.json`.

FLOPs are twice thop's multiply-accumulate count for ONE input of the model. For a
FoldedCNN one input holds f images, so `fold4_ops` is the cost of 4 images. Game models
also get `efficientnet_ops`, the compound-scaled baseline's FLOPs for one image.
Run as `python -m models.flops` (what flop_count.sh does) to regenerate the table.
Also the arithmetic intensity of a named model folded f times (util.arith_intensity).
"""
import argparse
import contextlib
import io
import json
import math
import re
from pathlib import Path

import torch

import models
from models.folding import FOLDS
from models.registry import CONFIG_DIR
from util.arith_intensity import model_intensity
from util.errors import UserError, cli_main
from util.files import atomic_write_json, check_output_file

MODEL_MAP_PATH = CONFIG_DIR / "model_map.json"


def ops_key(fold):
    return "og_ops" if fold == 1 else f"fold{fold}_ops"


def count_flops(model, input_shape):
    """2 x thop's MACs for one input of shape (C, H, W)."""
    import thop  # imported here: only the FLOP tools need it

    with contextlib.redirect_stdout(io.StringIO()):  # thop announces every layer type it knows
        macs, _ = thop.profile(model.eval(), inputs=(torch.zeros(1, *input_shape),), verbose=False)
    return int(round(2 * macs))


def compute_model_map(progress=None):
    table = {}
    for name in models.model_names():
        entry = {ops_key(f): count_flops(models.build_model(name, f), models.input_shape(name, f))
                 for f in FOLDS}
        if models.has_compound_scaled(name):
            entry["efficientnet_ops"] = count_flops(models.build_compound_scaled(name),
                                                    models.compound_scaled_input_shape(name))
        table[name] = entry
        if progress:
            progress(name, entry)
    return table


def load_model_map(path=MODEL_MAP_PATH):
    """{name: {"og_ops" | "fold<f>_ops" | "efficientnet_ops": FLOPs}}, checked: a damaged or
    hand-edited table is a one-line error, not a traceback or a wrong FLOP/s figure later."""
    fix = "run ./flop_count.sh to regenerate it"
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing: {fix}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}): {fix}") from None
    if not isinstance(table, dict):
        raise UserError(f"{path} must be an object of model names: {fix}")
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise UserError(f"{path}: '{name}' must be an object of FLOP counts: {fix}")
        for key, value in entry.items():
            if not re.fullmatch(r"og_ops|fold[0-9]+_ops|efficientnet_ops", key):
                raise UserError(f"{path}: unknown field '{name}.{key}' (og_ops, fold<f>_ops, efficientnet_ops)")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise UserError(f"{path}: '{name}.{key}' must be a positive number of FLOPs, got {value!r}: {fix}")
    return table


def flops_per_input(name, fold=1, efficientnet=False):
    """FLOPs of one (folded) input from the committed table; divide by `fold` for per image."""
    cfg = models.load_config(name)
    entry = load_model_map().get(cfg["name"])
    key = "efficientnet_ops" if efficientnet else ops_key(fold)
    if entry is None or key not in entry:
        raise UserError(f"config/model_map.json has no '{key}' for {cfg['name']}: "
                        f"run ./flop_count.sh to regenerate it")
    return entry[key]


def folded_model_intensity(name, fold, batch=1024, bytes_per_element=2):
    """Arithmetic intensity of model `name` folded `fold` times on a batch of `batch` images,
    i.e. batch // fold folded inputs, as in the paper's measurements."""
    model = models.build_model(name, fold)
    return model_intensity(model, models.input_shape(name, fold), batch // fold, bytes_per_element)


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description="Count FLOPs of every model at f=1..4 with thop "
                                                 "and write config/model_map.json.")
    parser.add_argument("--out", default=str(MODEL_MAP_PATH), help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    check_output_file(args.out, "FLOP table")  # before minutes of counting
    table = compute_model_map(progress=lambda name, e: print(
        f"{name:12s} " + "  ".join(f"{k}={v:,}" for k, v in e.items()), flush=True))
    atomic_write_json(args.out, table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
