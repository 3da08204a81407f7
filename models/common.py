"""Pieces shared by the model families."""
import torch.nn as nn


def init_weights(model: nn.Module) -> nn.Module:
    """The original recipe: conv weights Xavier-uniform with ReLU gain, linear weights
    N(0, 0.01), biases zero (BatchNorm keeps PyTorch's ones/zeros)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain("relu"))
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.01)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    return model


def conv3x3(in_channels, out_channels, stride=1, bias=True):
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=bias)


def pooled_size(size, kernel, stride):
    """Output length of an unpadded max-pool."""
    return (size - kernel) // stride + 1
