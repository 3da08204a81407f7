"""OpenVINO on a CPU: the model's ONNX export (the same file and cache as the onnxruntime
backend, util.onnx_export) compiled by OpenVINO's CPU plugin with the THROUGHPUT hint.

Precision is OpenVINO's INFERENCE_PRECISION_HINT: bf16 runs its convolutions on the CPU's
bf16 matrix instructions (AMX tiles, or AVX512_BF16 dot products), fp16 where the plugin
reports FP16 among the CPU's capabilities (AVX512_FP16 / AMX-FP16), fp32 otherwise. Inputs
and outputs stay float32; the plugin converts at the graph's edges. The THROUGHPUT hint
runs several streams, each on its share of INFERENCE_NUM_THREADS (= torch's threads, so
`--threads` holds); the runtime decides how many requests keep them busy
(OPTIMAL_NUMBER_OF_INFER_REQUESTS). The batch is therefore cut into that many equal
sub-batches (the graph reshaped to one), the last padded with zeros whose outputs are
dropped, and one call of `run` starts them all on an AsyncInferQueue sized by the runtime
and waits for them. Inputs are shared with OpenVINO (no copy); each request's logits are
copied into one output tensor as it finishes.
"""
import math

import torch

from util.errors import UserError
from util.onnx_export import cached_export

NEEDS_CUDA = False
CHANNELS_LAST = None  # the plugin picks its own blocked layouts
CPU_BF16_DEFAULT = True  # bf16 by default where the CPU has native bf16, as OpenVINO's own default
# Our precision names -> OpenVINO element types and the CPU capability that each needs.
OV_TYPES = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise UserError("the openvino backend needs the `openvino` package: pip install openvino") from None
    return openvino


def supported_precisions(core):
    """Our names of the precisions OpenVINO's CPU plugin runs natively on this CPU."""
    from openvino.properties import device as ov_device

    capabilities = set(core.get_property("CPU", ov_device.capabilities()))
    return [p for p, cap in CAPABILITY.items() if cap in capabilities]


def compile_options(ov, precision, threads):
    from openvino import properties
    from openvino.properties import hint

    return {hint.performance_mode(): hint.PerformanceMode.THROUGHPUT,
            hint.inference_precision(): getattr(ov.Type, OV_TYPES[precision]),
            properties.inference_num_threads(): threads}


def compile_graph(core, path, batch, precision, threads):
    """The ONNX graph at `path` reshaped to `batch` inputs and compiled for the CPU."""
    ov = import_openvino()
    graph = core.read_model(str(path))
    shape = list(graph.inputs[0].partial_shape.to_shape())
    if shape[0] != batch:
        graph.reshape({0: [batch, *shape[1:]]})
    return core.compile_model(graph, "CPU", compile_options(ov, precision, threads))


class QueueRunner:
    """Sub-batches of a padded input run on an AsyncInferQueue; calling it runs them all
    and returns the logits of the `count` real inputs."""

    def __init__(self, ov, compiled, padded, chunk, count):
        self.compiled = compiled
        self.queue = ov.AsyncInferQueue(compiled)  # jobs=0: the runtime's optimal number of requests
        self.inputs = [ov.Tensor(part.numpy(), shared_memory=True) for part in padded.split(chunk)]
        self.padded_output = torch.empty(len(padded), *compiled.outputs[0].partial_shape.to_shape()[1:])
        self.parts = list(self.padded_output.numpy().reshape(len(self.inputs), chunk, -1))
        self.output = self.padded_output[:count]
        self.queue.set_callback(self.collect)

    def collect(self, request, index):
        self.parts[index][...] = request.get_output_tensor(0).data.reshape(self.parts[index].shape)

    def __call__(self):
        for index, tensor in enumerate(self.inputs):
            self.queue.start_async({0: tensor}, index)
        self.queue.wait_all()
        return self.output


def prepare(model, inputs, precision, device, channels_last=False):
    ov = import_openvino()
    if device.type != "cpu":
        raise UserError(f"the openvino backend runs on a CPU here, not on {device}: use --device cpu")
    core = ov.Core()
    if precision not in supported_precisions(core):
        raise UserError(f"OpenVINO's CPU plugin has no {precision} kernels on this CPU "
                        f"(it supports {', '.join(supported_precisions(core))}): use another --precision")
    model, x = model.float().eval(), inputs.float().contiguous()
    path = cached_export(model, x)
    threads = torch.get_num_threads()
    compiled = compile_graph(core, path, len(x), precision, threads)
    requests = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    chunk = math.ceil(len(x) / max(1, min(requests, len(x))))
    padded = torch.zeros(math.ceil(len(x) / chunk) * chunk, *x.shape[1:])
    padded[:len(x)] = x
    if chunk != len(x):
        compiled = compile_graph(core, path, chunk, precision, threads)
    return QueueRunner(ov, compiled, padded, chunk, len(x))
