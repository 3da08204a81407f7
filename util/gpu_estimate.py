"""How long a GPU command will take, printed before it starts: seconds on one NVIDIA H100
(SXM, fp16) from each workload's FLOPs and the per-workload costs stated in H100 below.

The costs are meant as upper bounds, so that a printed "under 10 minutes" holds:
- a timed call takes its FLOPs at ACHIEVED_FLOPS, a small fraction of the H100's 989 dense
  fp16 TFLOP/s (these CNNs are small and memory-bound), and never less than CALL_FLOOR_S
  (one CUDA-graph launch plus a few tiny kernels);
- preparing a workload (the float32 reference on the GPU, the backend's work, the output
  check) costs PREPARE_S of its backend: cuDNN autotuning and a graph capture for
  cudagraph, Inductor's default mode for compile, a full engine build for tensorrt (a rerun
  reuses the engines and the timing cache, and takes far less).
"""
from dataclasses import dataclass

H100 = {
    "ACHIEVED_FLOPS": 50e12,
    "CALL_FLOOR_S": 50e-6,
    "PREPARE_S": {"cudagraph": 4.0, "eager": 2.0, "compile": 20.0, "tensorrt": 30.0, "onnxruntime": 10.0},
}


@dataclass
class TimedWork:
    """One workload of `flops_per_call` FLOPs per call, prepared by `backend` and called
    trials x (warmup + iterations) times."""
    backend: str
    flops_per_call: float
    trials: int
    warmup: int
    iterations: int

    def seconds(self, costs=H100):
        call = max(costs["CALL_FLOOR_S"], self.flops_per_call / costs["ACHIEVED_FLOPS"])
        return costs["PREPARE_S"][self.backend] + self.trials * (self.warmup + self.iterations) * call


def estimate_seconds(work, fixed_s=0.0, costs=H100):
    """Seconds of every TimedWork in `work` plus `fixed_s` of other steps."""
    return fixed_s + sum(w.seconds(costs) for w in work)


def format_estimate(seconds, what):
    return (f"estimated time of {what} on one H100: {seconds / 60:.1f} min "
            f"(costs per workload assumed in util/gpu_estimate.py)")
