"""Arithmetic intensity (paper eq. 3): operations / (B x elements moved), where a layer moves
its input, its weights and its output once. Summed over the conv and linear layers of a model.

Also the single-convolution analysis of appendix B (table 1), C (group convolutions in the
batch-limited regime) and J (when folding reduces memory traffic).
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class LayerCost:
    name: str
    kind: str
    in_shape: tuple    # one input's shape, batch excluded
    out_shape: tuple
    ops: int           # for the whole batch: 2 x MACs
    elements: int      # input + weight + output elements for the whole batch

    def intensity(self, bytes_per_element=2):
        return self.ops / (bytes_per_element * self.elements)


def layer_costs(model, input_shape, batch):
    """Cost of every Conv2d / Linear of `model` for `batch` inputs of shape (C, H, W)."""
    costs, hooks = [], []

    def record(name):
        def hook(module, inputs, output):
            x, y = inputs[0], output
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                macs = y[0].numel() * (module.in_channels // module.groups) * kh * kw
                kind = f"conv{kh}x{kw}" + (f"/g{module.groups}" if module.groups > 1 else "")
            else:
                macs = y[0].numel() * module.in_features
                kind = "linear"
            elements = batch * (x[0].numel() + y[0].numel()) + module.weight.numel()
            costs.append(LayerCost(name, kind, tuple(x.shape[1:]), tuple(y.shape[1:]),
                                   2 * batch * macs, elements))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return costs


def model_intensity(model, input_shape, batch, bytes_per_element=2):
    """Whole-model ops, bytes and arithmetic intensity for `batch` inputs."""
    costs = layer_costs(model, input_shape, batch)
    ops = sum(c.ops for c in costs)
    nbytes = bytes_per_element * sum(c.elements for c in costs)
    return {"ops": ops, "bytes": nbytes, "intensity": ops / nbytes}


def conv_layer_table(ci, co, kh, kw, h, w, n, fold, bytes_per_element=2, groups=1):
    """Appendix table 1 for one convolution: the original layer and the layer folded f times
    (batch N/f, channels times sqrt(f) exactly, as in the paper's equations)."""
    def column(batch, c_in, c_out):
        e_io = batch * h * w * (c_in + c_out)
        e_l = c_in * kh * kw * c_out / groups
        traffic = bytes_per_element * (e_io + e_l)
        ops = 2 * batch * h * w * c_out * c_in * kh * kw / groups
        return {"batch": batch, "channels": (c_in, c_out), "io_elements": e_io,
                "layer_elements": e_l, "traffic_bytes": traffic, "ops": ops,
                "intensity": ops / traffic,
                # appendix C: intensity as N -> infinity (activations dominate the traffic)
                "batch_limit": 2 * c_out * c_in * kh * kw / (groups * bytes_per_element * (c_in + c_out))}

    m = math.sqrt(fold)
    original, folded = column(n, ci, co), column(n / fold, ci * m, co * m)
    # appendix J: folding reduces memory traffic iff NHW > (f-1) Ci Kh Kw Co / ((1 - 1/sqrt f)(Ci + Co))
    threshold = ((fold - 1) * ci * kh * kw * co / groups / ((1 - 1 / m) * (ci + co))) if fold > 1 else math.inf
    return {"original": original, "folded": folded, "nhw": n * h * w, "threshold": threshold,
            "traffic_reduced": n * h * w > threshold}
