"""NoScope CNNs N1-N4 (appendix A.2, after Kang et al. 2017), on 50 x 50 frames.

    C(n) -> C(n) -> M(2, s2) [-> C(2n) -> C(2n) -> M(2, s2)] -> F(d) -> F(2)
"""
import torch.nn as nn

from .common import conv3x3, pooled_size
from .folding import folded_width


def build_noscope_cnn(cfg, fold=1, channel_mult=None, align=1):
    arch = cfg["arch"]

    def width(w):
        return folded_width(w, fold, channel_mult, align)

    stages = [width(arch["filters"])]
    if arch["four_convs"]:
        stages.append(width(2 * arch["filters"]))
    channels, height, width_px = cfg["input"]["channels"] * fold, cfg["input"]["height"], cfg["input"]["width"]
    layers = []
    for out_channels in stages:
        layers += [conv3x3(channels, out_channels), nn.ReLU(inplace=True),
                   conv3x3(out_channels, out_channels), nn.ReLU(inplace=True),
                   nn.MaxPool2d(kernel_size=2, stride=2)]
        channels = out_channels
        height, width_px = pooled_size(height, 2, 2), pooled_size(width_px, 2, 2)
    dense = width(arch["dense"])
    layers += [nn.Flatten(), nn.Linear(channels * height * width_px, dense), nn.ReLU(inplace=True),
               nn.Linear(dense, len(cfg["classes"]) * fold)]
    return nn.Sequential(*layers)
