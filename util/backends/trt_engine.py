"""TensorRT, as the paper measured: the model exported to ONNX with static shapes, built
into an engine through TensorRT's Python API, and run on PyTorch CUDA tensors.

Precision: the ONNX graph is exported in the requested dtype. TensorRT 8.6 and 10.x then
build it with the builder's precision flag (BuilderFlag.FP16 or BF16), as the original
system did; TensorRT 11 removed those flags, so there the network is strongly typed and
runs in the graph's own dtype. fp32 disables TF32 so that it means IEEE float32.

Engines are cached in engines/ (gitignored). The file name says what the engine is, and its
digest covers what it computes (the architecture, every weight, the input's shape and dtype)
and what it was built with (precision, PyTorch's exporter, TensorRT, the GPU). Benchmarks
draw their weights from a seed, so a rerun finds the engine it built before, and a
checkpoint or another machine gets an engine of its own. Beside them, TensorRT's timing
cache of each TensorRT version and GPU model (timing_cache_path) keeps the measured layer
timings, so that building an engine for new weights or another fold of known layers skips
most of the tactic timing.
"""
import functools
import hashlib
import re
import tempfile
from pathlib import Path

import torch

from util.errors import UserError
from util.files import atomic_write_bytes
from util.onnx_export import export_onnx

from .common import place

NEEDS_CUDA = True
CHANNELS_LAST = None  # TensorRT takes NCHW buffers and picks its own internal layouts
ENGINE_DIR = Path(__file__).resolve().parent.parent.parent / "engines"
WORKSPACE_BYTES = 4 << 30
INSTALL_HINT = ("the tensorrt backend needs the `tensorrt` Python package, which is not installed: "
                "run inside the NGC container of dockerfiles/FoldDockerfile "
                "(docker build -t fold -f dockerfiles/FoldDockerfile .), or pip install tensorrt")
# TensorRT's tensor types by name (not every version has every one) and torch's equivalents.
TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
                "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8}


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


def timing_cache_path(trt_version, gpu):
    """TensorRT's timing cache of one TensorRT version on one GPU model: the measured speed of
    each layer tactic, shared by every engine built there, so that a rerun (another seed,
    checkpoint or fold of the same layers) builds in a fraction of the time."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return ENGINE_DIR / f"timing-trt{trt_version}-{slug}.cache"


def use_timing_cache(config, path):
    """Give the builder `config` the timing cache saved at `path` (an empty one if there is
    none, or if it is from another TensorRT or GPU and TensorRT refuses it)."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def build_engine(trt, onnx_bytes, precision, timing_cache=None):
    """Serialized engine for the ONNX graph (a TensorRT IHostMemory); with the timing cache
    file `timing_cache`, its layer timings are reused and the new ones saved there."""
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
    if timing_cache is not None:
        use_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError("TensorRT failed to build an engine (see its log above); "
                        "try --backend cudagraph")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return serialized


def engine_path(model, inputs, precision, trt_version, gpu):
    """Where the engine of float32 `model` on `inputs` (CPU tensors) built for `precision`
    with TensorRT `trt_version` on GPU `gpu` is cached (see the module's docstring)."""
    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    digest.update(f"|{tuple(inputs.shape)}|{inputs.dtype}|{precision}|torch{torch.__version__}"
                  f"|trt{trt_version}|{gpu}".encode())
    label = f"{type(model).__name__}-{'x'.join(map(str, inputs.shape))}".lower()
    return ENGINE_DIR / f"{label}-{precision}-trt{trt_version}-{digest.hexdigest()[:16]}.engine"


def torch_dtype(trt, dtype):
    """The torch dtype of a TensorRT tensor type."""
    for name, torch_type in TORCH_DTYPES.items():
        if getattr(trt.DataType, name, None) == dtype:
            return torch_type
    raise UserError(f"the TensorRT engine has a tensor of type {dtype}, which PyTorch cannot hold")


class EngineRunner:
    """A deserialized engine bound to fixed input and output buffers; calling it runs once on
    the stream that was current when it was made (a dedicated one: util.device.on_device),
    so that TensorRT does not synchronise with the legacy default stream on every call."""

    def __init__(self, trt, engine_bytes, x):
        self.runtime = trt.Runtime(_logger(trt))  # must outlive the engine
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise UserError("TensorRT could not load the cached engine; delete engines/ and rerun")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.current_stream(x.device)
        if self.stream.cuda_stream == torch.cuda.default_stream(x.device).cuda_stream:
            raise RuntimeError("run TensorRT on a dedicated CUDA stream (util.device.on_device)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        modes = {n: self.engine.get_tensor_mode(n) for n in names}
        (input_name,) = [n for n in names if modes[n] == trt.TensorIOMode.INPUT]
        (output_name,) = [n for n in names if modes[n] == trt.TensorIOMode.OUTPUT]
        input_dtype = torch_dtype(trt, self.engine.get_tensor_dtype(input_name))
        if input_dtype != x.dtype or tuple(self.engine.get_tensor_shape(input_name)) != tuple(x.shape):
            raise RuntimeError(f"the engine expects {input_dtype} {tuple(self.engine.get_tensor_shape(input_name))}, "
                               f"not {x.dtype} {tuple(x.shape)}")
        self.x = x
        self.output = torch.empty(tuple(self.engine.get_tensor_shape(output_name)), device=x.device,
                                  dtype=torch_dtype(trt, self.engine.get_tensor_dtype(output_name)))
        for name, tensor in ((input_name, self.x), (output_name, self.output)):
            if not self.context.set_tensor_address(name, tensor.data_ptr()):
                raise RuntimeError(f"TensorRT refused the buffer of tensor {name!r}")

    def __call__(self):
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return self.output


def prepare(model, inputs, precision, device, channels_last=False):
    trt = import_tensorrt()
    gpu = torch.cuda.get_device_name(device)
    path = engine_path(model, inputs, precision, trt.__version__, gpu)
    model, x = place(model, inputs, precision, device, channels_last=False)
    if not path.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            onnx_bytes = export_onnx(model, x, Path(tmp) / "model.onnx").read_bytes()
        ENGINE_DIR.mkdir(exist_ok=True)
        atomic_write_bytes(path, bytes(build_engine(trt, onnx_bytes, precision,
                                                    timing_cache_path(trt.__version__, gpu))))
    return EngineRunner(trt, path.read_bytes(), x)
