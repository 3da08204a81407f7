"""BatchNorm while training, folded away for inference.

A recipe option for the plain-conv models (game and NoScope CNNs): training runs with a
BatchNorm after every conv, which lets folded models train at a larger learning rate, and
the saved model is the architecture of `build_model(name, f)` itself: each BatchNorm, in
eval mode an affine map per channel, is folded into the preceding conv's weight and bias.
The inference graph is therefore the paper's (appendix A), with no extra layer.
"""
import copy

import torch
import torch.nn as nn

from util.errors import UserError


def insert_batchnorm(model: nn.Sequential) -> nn.Sequential:
    """`model` with a BatchNorm2d after every Conv2d (the convs are shared, not copied)."""
    if not isinstance(model, nn.Sequential) or any(isinstance(m, nn.BatchNorm2d) for m in model):
        raise UserError("BatchNorm while training applies to the plain conv models (game and NoScope); "
                        "this model is not one of them (ResNet-18 has BatchNorm already)")
    layers = []
    for layer in model:
        layers.append(layer)
        if isinstance(layer, nn.Conv2d):
            layers.append(nn.BatchNorm2d(layer.out_channels))
    return nn.Sequential(*layers)


@torch.no_grad()
def fold_batchnorm(model: nn.Sequential) -> nn.Sequential:
    """A new model without BatchNorm that computes what `model` computes in eval mode: every
    BatchNorm2d's running statistics and affine parameters go into the conv before it,
    w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta.
    Its state dict has the keys and shapes of the model `insert_batchnorm` was given."""
    layers = []
    for layer in model:
        if isinstance(layer, nn.BatchNorm2d):
            conv = layers[-1]
            if not isinstance(conv, nn.Conv2d) or conv.bias is None:
                raise UserError("fold_batchnorm expects every BatchNorm2d right after a conv with a bias")
            scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias.copy_((conv.bias - layer.running_mean) * scale + layer.bias)
            continue
        layers.append(copy.deepcopy(layer))
    return nn.Sequential(*layers)
