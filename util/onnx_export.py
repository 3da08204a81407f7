"""ONNX export with static shapes, and a cache of exports keyed by what they depend on.
The graph takes the model's (folded) input batch as `input` and returns `output`, both of
the exact shapes and dtype of the example. TensorRT builds its engines from it, the
onnxruntime backend runs it, and tests check it against onnxruntime."""
import hashlib
import sys
from pathlib import Path

import onnx
import onnxscript
import torch

from util.files import atomic_path

OPSET = 18  # the lowest opset torch's exporter writes natively; TensorRT 8.6+ parses it
CACHE_DIR = Path(__file__).resolve().parent.parent / "engines" / "onnx"


def export_onnx(model, example_input, path):
    """Write `model` traced on `example_input` to `path` (atomically: a failed export, a full
    disk included, leaves no file behind); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(model.eval(), (example_input,), tmp, input_names=["input"],
                                  output_names=["output"], opset_version=OPSET, external_data=False,
                                  dynamo=True, verbose=False)
        except Exception as err:  # the exporter wraps the OSError of a full disk in its own error
            os_error = _os_error_in(err)
            if os_error is None:
                raise
            raise os_error from None
    return path


def _os_error_in(err):
    """The OSError in the chain of causes of `err`, or None."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


def check_onnx_file(path):
    """None if `path` is a complete ONNX graph with our `input` and `output`, else what is wrong."""
    try:
        proto = onnx.load(path)
        onnx.checker.check_model(proto)
    except Exception as err:  # onnx raises many types for a damaged file
        return (str(err).strip().splitlines() or [type(err).__name__])[0]
    graph = proto.graph
    if [i.name for i in graph.input] != ["input"] or [o.name for o in graph.output] != ["output"]:
        return "not an export of this project (its inputs and outputs are not `input` and `output`)"
    return None


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
    call and reused while the model, the input shape and the exporter versions are the same
    (and the file is a complete graph: a truncated or foreign one is exported again)."""
    key = export_key(model, example_input, exporter_versions() if versions is None else versions)
    label = f"{type(model).__name__}-{'x'.join(map(str, example_input.shape))}".lower()
    path = Path(cache_dir or CACHE_DIR) / f"{label}-{key}.onnx"
    problem = check_onnx_file(path) if path.is_file() else None
    if problem is not None:  # derived data: say so, and export it again
        print(f"note: the cached ONNX file {path} is damaged ({problem}); exporting it again", file=sys.stderr)
    if problem is not None or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, example_input.cpu(), path)
    return path
