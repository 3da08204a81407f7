"""What the backends share: precision names and moving a model and its inputs into place."""
import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def place(model, inputs, precision, device, channels_last):
    """The model and inputs moved to `device` and cast to `precision`, optionally channels-last."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, dtype=DTYPES[precision], memory_format=fmt).eval()
    return model, inputs.to(device=device, dtype=DTYPES[precision]).contiguous(memory_format=fmt)
