"""Plain PyTorch: the model called as is (the caller holds torch.inference_mode)."""
from .common import place

NEEDS_CUDA = False
CHANNELS_LAST = False  # default; --channels-last turns it on


def prepare(model, inputs, precision, device, channels_last=False):
    model, x = place(model, inputs, precision, device, channels_last)
    return lambda: model(x)
