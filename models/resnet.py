"""CIFAR-style ResNet-18: 3x3 stem (no bias, no pool), BasicBlocks [2, 2, 2, 2] with widths
64/128/256/512 and 1x1 projection shortcuts, 4x4 average pool, linear head. Folded, it takes
3f channels, has every width times sqrt(f) and emits f*K logits."""
import torch.nn as nn

from .common import conv3x3
from .folding import folded_width


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet18(nn.Module):
    def __init__(self, in_channels, num_outputs, widths, blocks):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(in_channels, widths[0], bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, channels = [], widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks)):
            for j in range(count):
                stages.append(BasicBlock(channels, width, stride=2 if (i > 0 and j == 0) else 1))
                channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(channels, num_outputs)

    def forward(self, x):
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(x.flatten(1))


def build_resnet18(cfg, fold=1, channel_mult=None, align=1):
    arch = cfg["arch"]
    widths = [folded_width(w, fold, channel_mult, align) for w in arch["widths"]]
    return ResNet18(cfg["input"]["channels"] * fold, len(cfg["classes"]) * fold, widths, arch["blocks"])
