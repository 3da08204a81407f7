"""ReLU sparsity and the multiplications it saves (the question of predictive layer fusion,
Olyaiy, Ng and Lis, ICS 2021: only the activations that survive a ReLU cost multiplications).

For a model run on real inputs, with forward hooks:
- after each ReLU call (in the order of the forward pass; a module called twice, as in
  ResNet-18's blocks, counts as two ReLUs): the share of its outputs that are exactly zero;
- for each conv and linear layer, the dense multiplications, output elements x
  (in channels / groups) x kh x kw as thop counts them (models/flops.py), and the
  multiplications whose input activation is not zero: a computation that skips zero
  activations (padding zeros included) performs only those. The first layer reads the image,
  not an activation: it is counted dense.
Exact counts: for a conv, the nonzero inputs that each output's window covers are counted
by convolving the nonzero mask with a kernel of ones (same stride, padding and groups).
"""
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class SparsityCount:
    relu_names: list = field(default_factory=list)
    relu_zeros: list = field(default_factory=list)     # per ReLU call: zero outputs
    relu_elements: list = field(default_factory=list)  # per ReLU call: outputs
    dense: int = 0       # multiplications, dense
    sparse: int = 0      # multiplications with a nonzero input activation
    inputs: int = 0      # model inputs seen (folded inputs for a FoldedCNN)

    @property
    def zero_shares(self):
        return [z / n for z, n in zip(self.relu_zeros, self.relu_elements)]

    @property
    def zero_share(self):
        """Zeros over all ReLU outputs."""
        return sum(self.relu_zeros) / sum(self.relu_elements)


def dense_multiplications(module, x):
    if isinstance(module, nn.Linear):
        return x.shape[0] * module.in_features * module.out_features
    kh, kw = module.kernel_size
    positions = 1
    for size, k, s, p, d in zip(x.shape[2:], module.kernel_size, module.stride, module.padding, module.dilation):
        positions *= (size + 2 * p - d * (k - 1) - 1) // s + 1
    return x.shape[0] * positions * module.out_channels * (module.in_channels // module.groups) * kh * kw


def nonzero_multiplications(module, x):
    """Multiplications of `module` on the batch `x` whose input activation is not zero."""
    nonzero = (x != 0).float()
    if isinstance(module, nn.Linear):
        return int(nonzero.sum().item()) * module.out_features
    groups = module.groups
    per_group = nonzero.view(x.shape[0], groups, -1, *x.shape[2:]).sum(dim=2)  # (N, groups, H, W)
    ones = torch.ones(groups, 1, *module.kernel_size)
    covered = F.conv2d(per_group, ones, stride=module.stride, padding=module.padding, dilation=module.dilation,
                       groups=groups)
    return int(covered.sum().item()) * (module.out_channels // groups)


@torch.no_grad()
def count_sparsity(model, batches):
    """A SparsityCount of `model` (eval mode, on the CPU) over the input tensors of `batches`."""
    count = SparsityCount()
    calls = {"relu": 0, "layer": 0}

    def on_relu(name):
        def hook(module, inputs, output):
            index = calls["relu"]
            calls["relu"] += 1
            if index == len(count.relu_zeros):
                count.relu_names.append(name)
                count.relu_zeros.append(0)
                count.relu_elements.append(0)
            count.relu_zeros[index] += int((output == 0).sum().item())
            count.relu_elements[index] += output.numel()
        return hook

    def on_layer(module, inputs):
        x = inputs[0]
        dense = dense_multiplications(module, x)
        count.dense += dense
        count.sparse += dense if calls["layer"] == 0 else nonzero_multiplications(module, x)
        calls["layer"] += 1

    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            hooks.append(module.register_forward_hook(on_relu(name)))
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_pre_hook(on_layer))
    try:
        model.eval()
        for x in batches:
            calls["relu"] = calls["layer"] = 0
            model(x)
            count.inputs += x.shape[0]
    finally:
        for hook in hooks:
            hook.remove()
    return count


def compare_folds(zero_shares):
    """One sentence from {(model, fold): share of zeros over all ReLU outputs}: are the folded
    models' activations sparser or denser than their original's (f = 1)?"""
    pairs = [(share, zero_shares[(model, 1)]) for (model, fold), share in sorted(zero_shares.items())
             if fold > 1 and (model, 1) in zero_shares]
    if not pairs:
        return "No model has both an original (f = 1) and a folded version here, so nothing is compared."
    sparser = sum(folded > original for folded, original in pairs)
    denser = sum(folded < original for folded, original in pairs)
    verdict = ("sparser" if sparser > denser else "denser" if denser > sparser else "neither sparser nor denser")
    mean_folded = 100 * sum(f for f, _ in pairs) / len(pairs)
    mean_original = 100 * sum(o for _, o in pairs) / len(pairs)
    return (f"Folded models' activations are {verdict} than the original's: {sparser} of {len(pairs)} folded "
            f"models have more zeros after their ReLUs than their f = 1 model and {denser} fewer "
            f"({mean_folded:.1f}% zeros on average against {mean_original:.1f}%).")
