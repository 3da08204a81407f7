"""ONNX export with static shapes, and a cache of exports keyed by what they depend on.
The graph takes the model's (folded) input batch as `input` and returns `output`, both of
the exact shapes and dtype of the example. TensorRT builds its engines from it, the
onnxruntime backend runs it, and tests check it against onnxruntime."""
import hashlib
import os
from pathlib import Path

import onnx
import onnxscript
import torch

OPSET = 18  # the lowest opset torch's exporter writes natively; TensorRT 8.6+ parses it
CACHE_DIR = Path(__file__).resolve().parent.parent / "engines" / "onnx"


def export_onnx(model, example_input, path):
    """Write `model` traced on `example_input` to `path` (atomically); returns the path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(model.eval(), (example_input,), tmp, input_names=["input"],
                          output_names=["output"], opset_version=OPSET, external_data=False,
                          dynamo=True, verbose=False)
    os.replace(tmp, path)
    return path


def exporter_versions():
    """The versions an exported graph depends on besides the model: a new exporter may write
    a different graph, so an export cached under other versions is not reused."""
    return f"torch {torch.__version__}, onnx {onnx.__version__}, onnxscript {onnxscript.__version__}, opset {OPSET}"


def export_key(model, example_input, versions):
    """A digest of the architecture, the weights, the input's shape and dtype, and `versions`."""
    digest = hashlib.sha256(f"{model!r}|{tuple(example_input.shape)}|{example_input.dtype}|{versions}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_export(model, example_input, cache_dir=None, versions=None):
    """The ONNX file of `model` on inputs shaped like `example_input`, exported on the first
    call and reused while the model, the input shape and the exporter versions are the same."""
    key = export_key(model, example_input, exporter_versions() if versions is None else versions)
    label = f"{type(model).__name__}-{'x'.join(map(str, example_input.shape))}".lower()
    path = Path(cache_dir or CACHE_DIR) / f"{label}-{key}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, example_input.cpu(), path)
    return path
