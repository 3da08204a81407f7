"""CUDA graphs (torch.cuda.graphs): GPU work captured once and replayed with a single launch.
The paper's specialized CNNs are so small that launching their kernels one by one costs
more host time than the GPU spends running them; a replay removes that cost. Two uses:
an inference call on fixed buffers (the cudagraph and compile backends) and a whole
training step on fixed batch buffers (`fold_trainer.py --cuda-graph`). Both follow
PyTorch's recipe: a few eager warm-up calls (lazy initialisation, cuDNN autotuning,
optimizer state), then capture on a non-default stream, then replay.
"""
import torch

WARMUP_CALLS = 3


def capture(fn, device, warmup=WARMUP_CALLS):
    """Capture `fn()` (a function of no arguments that reads fixed buffers) in a CUDA graph
    after `warmup` calls on a side stream; returns a function that replays it and returns
    the output buffers the capture produced."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        output = fn()

    def replay():
        graph.replay()
        return output

    return replay


class GraphedStep:
    """A training step `step(x, y) -> (loss, logits)` (forward, loss, backward and optimizer
    update) replayed from a CUDA graph for batches of `batch_size` images; batches of other
    sizes (an epoch's last, partial one) run eagerly. The first `warmup` full batches run
    eagerly on a side stream as capture requires; they are real training steps, so the
    graphed run trains on exactly the batches the eager one does.

    The optimizer must be built with capturable=True. A graph bakes scalar arguments in, so
    during capture each param group's learning rate is a device tensor, which every call
    refreshes from the group's (float) lr: schedulers keep working as they do eagerly.
    """

    def __init__(self, step, optimizer, batch_size, device, warmup=WARMUP_CALLS):
        self.step, self.optimizer, self.batch_size = step, optimizer, batch_size
        self.device, self.warmup = torch.device(device), warmup
        self.eager_calls = 0
        self.graph = None
        self.lrs = [torch.tensor(float(g["lr"]), device=self.device) for g in optimizer.param_groups]

    def __call__(self, x, y):
        if len(x) != self.batch_size:
            return self.step(x, y)
        if self.graph is None and self.eager_calls < self.warmup:
            self.eager_calls += 1
            return self._on_side_stream(x, y)
        if self.graph is None:
            self._capture(x, y)
        for lr, group in zip(self.lrs, self.optimizer.param_groups):
            lr.fill_(group["lr"])
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.loss, self.logits

    def _on_side_stream(self, x, y):
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            loss, logits = self.step(x, y)
        current.wait_stream(side)
        # Tensors made on one stream and used or freed on the other (CUDA semantics notes).
        for tensor in (x, y):
            tensor.record_stream(side)
        for tensor in (loss, logits):
            tensor.record_stream(current)
        return loss, logits

    def _capture(self, x, y):
        self.x, self.y = x.clone(), y.clone()
        floats = [g["lr"] for g in self.optimizer.param_groups]
        for lr, group in zip(self.lrs, self.optimizer.param_groups):
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates the grads in the graph's pool
        self.graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream(self.device)
        try:
            with torch.cuda.graph(self.graph, stream=side):
                self.loss, self.logits = self.step(self.x, self.y)
        finally:
            for value, group in zip(floats, self.optimizer.param_groups):
                group["lr"] = value
