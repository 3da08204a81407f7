"""TensorRT, as the paper measured: the model exported to ONNX with static shapes, built
into an engine through TensorRT's Python API, and run on PyTorch CUDA tensors.

Precision: the ONNX graph is exported in the requested dtype. TensorRT 8.6 and 10.x then
build it with the builder's precision flag (BuilderFlag.FP16 or BF16), as the original
system did; TensorRT 11 removed those flags, so there the network is strongly typed and
runs in the graph's own dtype. fp32 disables TF32 so that it means IEEE float32.

Engines are cached in engines/ (gitignored): the file name says what the engine is, and
its hash covers the ONNX bytes (architecture, fold, batch, align and weights), the
precision, the TensorRT version and the GPU, so a stale engine is never reused.
"""
import functools
import hashlib
import tempfile
from pathlib import Path

import torch

from util.errors import UserError
from util.files import atomic_write_bytes
from util.onnx_export import export_onnx

from .common import place

NEEDS_CUDA = True
CHANNELS_LAST = False  # TensorRT takes NCHW buffers and picks its own internal layouts
ENGINE_DIR = Path(__file__).resolve().parent.parent.parent / "engines"
WORKSPACE_BYTES = 4 << 30
INSTALL_HINT = ("the tensorrt backend needs the `tensorrt` Python package, which is not installed: "
                "run inside the NGC container of dockerfiles/FoldDockerfile "
                "(docker build -t fold -f dockerfiles/FoldDockerfile .), or pip install tensorrt")


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return tensorrt


@functools.lru_cache(maxsize=None)
def _logger(trt):
    """One logger per process: TensorRT keeps the first one it is given."""
    return trt.Logger(trt.Logger.WARNING)


def _network_mode(trt):
    """(creation flags, strongly typed?): explicit batch before TensorRT 10 (its ONNX parser
    needs it; 10 made it the only mode), strongly typed where the precision flags are gone."""
    if int(trt.__version__.split(".")[0]) < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH), False
    if not hasattr(trt.BuilderFlag, "FP16"):
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED), True
    return 0, False


def build_engine(trt, onnx_bytes, precision):
    """Serialized engine for the ONNX graph (a TensorRT IHostMemory)."""
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags, strongly_typed = _network_mode(trt)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT could not parse the exported ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision != "fp32" and not strongly_typed:
        flag = {"fp16": "FP16", "bf16": "BF16"}[precision]
        if not hasattr(trt.BuilderFlag, flag):
            raise UserError(f"TensorRT {trt.__version__} cannot build {precision} engines; "
                            f"use --precision fp16 or TensorRT 10+")
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError("TensorRT failed to build an engine (see its log above); "
                        "try --backend cudagraph")
    return serialized


def cached_engine(trt, onnx_bytes, precision, label, device):
    """Engine bytes from engines/, building and caching them on a miss."""
    gpu = torch.cuda.get_device_name(device)
    digest = hashlib.sha256(onnx_bytes + f"|{precision}|{trt.__version__}|{gpu}".encode()).hexdigest()[:16]
    path = ENGINE_DIR / f"{label}-{precision}-trt{trt.__version__}-{digest}.engine"
    if not path.is_file():
        blob = bytes(build_engine(trt, onnx_bytes, precision))
        ENGINE_DIR.mkdir(exist_ok=True)
        atomic_write_bytes(path, blob)
    return path.read_bytes()


class EngineRunner:
    """A deserialized engine bound to fixed input and output buffers; calling it runs once."""

    def __init__(self, trt, engine_bytes, x):
        self.runtime = trt.Runtime(_logger(trt))  # must outlive the engine
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise UserError("TensorRT could not load the cached engine; delete engines/ and rerun")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        (output_name,) = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.x = x
        self.output = torch.empty(tuple(self.engine.get_tensor_shape(output_name)), device=x.device,
                                  dtype=x.dtype)
        self.context.set_tensor_address("input", x.data_ptr())
        self.context.set_tensor_address(output_name, self.output.data_ptr())

    def __call__(self):
        # Enqueue on PyTorch's current stream, so CUDA events and synchronization see it.
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.x.device).cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return self.output


def prepare(model, inputs, precision, device, channels_last=False):
    trt = import_tensorrt()
    model, x = place(model, inputs, precision, device, channels_last=False)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_bytes = export_onnx(model, x, Path(tmp) / "model.onnx").read_bytes()
    label = f"{type(model).__name__}-{'x'.join(map(str, x.shape))}".lower()
    return EngineRunner(trt, cached_engine(trt, onnx_bytes, precision, label, x.device), x)
