"""ONNX export with static shapes: the TensorRT backend's first step, and what tests check
against onnxruntime. The graph takes the model's (folded) input batch as `input` and
returns `output`, both of the exact shapes and dtype of the example."""
from pathlib import Path

import torch

from util.files import atomic_path

OPSET = 18  # the lowest opset torch's exporter writes natively; TensorRT 8.6+ parses it


def export_onnx(model, example_input, path):
    """Write `model` traced on `example_input` to `path` (atomically); returns the path."""
    with atomic_path(path) as tmp, torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(model.eval(), (example_input,), tmp, input_names=["input"],
                          output_names=["output"], opset_version=OPSET, external_data=False,
                          dynamo=True, verbose=False)
    return Path(path)
