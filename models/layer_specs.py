"""Single convolutions benchmarked on their own: appendix table 1's game-CNN layer and the
group convolutions of appendix C, table 2. `infer.py --layer NAME FOLD` times them.

A spec gives the original layer: in/out channels, kernel, input height/width and groups.
Folded f times, the layer takes N/f inputs and int(channels * sqrt(f)) channels (the
width rule of models.folding), rounded up to a multiple of `groups` so the groups divide.
"""
import math

import torch.nn as nn

from util.errors import UserError

from .folding import folded_width

LAYER_SPECS = {
    "table1": dict(ci=32, co=32, kh=3, kw=3, h=11, w=26, groups=1),
    "G32": dict(ci=32, co=32, kh=3, kw=3, h=50, w=50, groups=4),
    "G64": dict(ci=64, co=64, kh=5, kw=5, h=50, w=50, groups=4),
}


def layer_spec(name):
    if name not in LAYER_SPECS:
        raise UserError(f"unknown layer {name!r}; known: {', '.join(LAYER_SPECS)}")
    return LAYER_SPECS[name]


def build_layer(name, fold=1, align=1):
    """The convolution `name` folded `fold` times ('same' padding, bias, as in the game CNNs)."""
    spec = layer_spec(name)
    align = math.lcm(align, spec["groups"])
    ci, co = (folded_width(spec[c], fold, align=align) for c in ("ci", "co"))
    return nn.Conv2d(ci, co, (spec["kh"], spec["kw"]), padding=(spec["kh"] // 2, spec["kw"] // 2),
                     groups=spec["groups"])


def layer_input_shape(name, fold=1, align=1):
    """(channels, height, width) of one input of the layer folded `fold` times."""
    spec = layer_spec(name)
    return (build_layer(name, fold, align).in_channels, spec["h"], spec["w"])
