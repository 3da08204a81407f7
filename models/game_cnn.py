"""Game-scraping CNNs V1-V6 (appendix A.1) and their EfficientNet-style shrunken baseline.

    C32 -> M(3, s2) -> [C32 -> C32 -> C32 -> M(3, s1)] x U -> C8 -> M(3, s2) -> F(K)

All convs are 3x3, stride 1, padding 1, with bias and ReLU; pools have no padding. The
appendix prints every pool as stride 1; the original code (which produced the paper's
numbers) uses stride 2 for the first and last pool, and so do we.
"""
import torch.nn as nn

from .common import conv3x3, pooled_size
from .folding import folded_width


def build_game_cnn(cfg, fold=1, channel_mult=None, align=1):
    """The game CNN of `cfg` folded `fold` times (fold=1 is the original)."""
    arch = cfg["arch"]

    def width(w):
        return folded_width(w, fold, channel_mult, align)

    plan = _layer_plan(arch["units"], width(arch["conv_width"]), width(arch["last_conv_width"]))
    return _assemble(plan, cfg["input"]["channels"] * fold, cfg["input"]["height"],
                     cfg["input"]["width"], len(cfg["classes"]) * fold)


# EfficientNet compound-scaling coefficients (depth, width, resolution), Tan & Le 2019.
COMPOUND_DEPTH, COMPOUND_WIDTH, COMPOUND_RESOLUTION = 1.2, 1.1, 1.15


def compound_scaled_input_size(cfg):
    """(H, W) of the baseline shrunk by one compound-scaling step."""
    return (int(cfg["input"]["height"] / COMPOUND_RESOLUTION),
            int(cfg["input"]["width"] / COMPOUND_RESOLUTION))


def build_compound_scaled_cnn(cfg):
    """The paper's alternative to folding: the game CNN shrunk by one EfficientNet step
    (fewer convs, narrower layers, lower resolution), classifying one image per input.

    The original system divides the conv count by the *width* coefficient (1.1), not the
    depth one; we follow it so that FLOP counts match the paper's measurements.
    """
    arch = cfg["arch"]
    shrink = 1.0 / COMPOUND_WIDTH
    plan = _layer_plan(arch["units"], int(arch["conv_width"] * shrink),
                       int(arch["last_conv_width"] * shrink))
    conv_budget = int(sum(1 for kind, _ in plan if kind == "conv") * shrink)
    height, width = compound_scaled_input_size(cfg)
    return _assemble(_truncate_plan(plan, conv_budget), cfg["input"]["channels"],
                     height, width, len(cfg["classes"]))


def _layer_plan(units, inner, last):
    """The architecture as a list of ("conv", out_channels) and ("pool", stride) steps."""
    plan = [("conv", inner), ("pool", 2)]
    for _ in range(units):
        plan += [("conv", inner)] * 3 + [("pool", 1)]
    return plan + [("conv", last), ("pool", 2)]


def _truncate_plan(plan, conv_budget):
    """Keep the first `conv_budget` convs; a pool survives only if its stage kept a conv."""
    kept, convs, stage_has_conv = [], 0, False
    for kind, value in plan:
        if kind == "conv":
            if convs < conv_budget:
                kept.append((kind, value))
                convs += 1
                stage_has_conv = True
        else:
            if stage_has_conv:
                kept.append((kind, value))
            stage_has_conv = False
    return kept


def _assemble(plan, in_channels, height, width, num_outputs):
    layers, channels = [], in_channels
    for kind, value in plan:
        if kind == "conv":
            layers += [conv3x3(channels, value), nn.ReLU(inplace=True)]
            channels = value
        else:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=value))
            height, width = pooled_size(height, 3, value), pooled_size(width, 3, value)
    layers += [nn.Flatten(), nn.Linear(channels * height * width, num_outputs)]
    return nn.Sequential(*layers)
