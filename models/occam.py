"""OCCAM's optimal partitioning of a CNN's layer chain ("Optimal Data Reuse for Convolutional
Neural Networks", arXiv 2021), measured on our models: off-chip traffic per image for an
on-chip buffer of S bytes.

The traffic model:
- A model is a chain of layers: conv, pool and linear. ReLU and BatchNorm (elementwise) and
  Flatten (a view) belong to the layer before them and move nothing of their own.
- A partition is a run of consecutive layers computed together. It reads its input (the
  run's first input) once per input, its weights (weights and biases of all its layers) once
  per batch, and writes its output once per input; every tensor inside the run stays on chip.
  Cost of a run = inputs x (input bytes + output bytes) + weight bytes.
- A run is computed band by band: a band is `rows` consecutive rows of the run's output at
  full width and all channels. Its dependence closure is the region of every tensor of the
  run that the band depends on, carried back layer by layer: a layer with kernel k, stride s
  and padding p needs input rows [a*s - p, (b-1)*s - p + k) for output rows [a, b), clipped
  to the input (padding is not stored); columns likewise; a linear layer needs its whole
  input. Consecutive bands overlap in their closures; the overlap stays on chip (a rolling
  buffer), so no element crosses the chip boundary twice.
- A run fits at capacity S when its largest band closure (over band positions, for one
  folded input) plus its weights is at most S bytes. The closure grows with the band, so a
  run fits iff its one-row band fits; of the bands that fit we report the tallest (fewest
  passes), found by trying every band height.
- A run of one layer is always allowed and costs input + weights + output: the ideal reuse
  inside a layer that the paper's eq. 3 charges every layer. What OCCAM adds is fusion.
- The dynamic program: best(j) = min over i of best(i - 1) + cost(i..j), over the runs i..j
  that fit (and every single layer); O(n^2) runs for n layers.
A batch of B images is B // f folded inputs. Traffic per image = the batch's traffic / its
images; arithmetic intensity = FLOPs (2 x MACs of conv and linear layers, as in eq. 3) /
traffic. Unlike eq. 3 (util/arith_intensity.py), pooling layers are layers here and the
weights include biases, so the layer-by-layer traffic is a little above eq. 3's.
"""
import functools
from dataclasses import dataclass

import torch.nn as nn

from util.errors import UserError

from .registry import build_model, input_shape, load_config

# Modules that move no data of their own in this model (elementwise, or a view).
FUSED = (nn.ReLU, nn.BatchNorm2d, nn.Dropout, nn.Identity, nn.Flatten)


@dataclass(frozen=True)
class Layer:
    kind: str              # "conv", "pool" or "linear"
    in_shape: tuple        # (C, H, W) of one input
    out_shape: tuple
    kernel: tuple = None   # (kh, kw); None: the layer needs its whole input (linear)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    params: int = 0        # weights and biases
    macs: int = 0          # multiply-accumulates for one input

    @property
    def in_elements(self):
        return _numel(self.in_shape)

    @property
    def out_elements(self):
        return _numel(self.out_shape)

    def input_span(self, axis, start, stop):
        """The input rows (axis 0) or columns (axis 1) [start, stop) of output [start, stop) needs."""
        size = self.in_shape[1 + axis]
        if self.kernel is None:
            return 0, size
        k, s, p = self.kernel[axis], self.stride[axis], self.padding[axis]
        return max(0, start * s - p), min(size, (stop - 1) * s - p + k)


def _numel(shape):
    c, h, w = shape
    return c * h * w


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _out_size(size, k, s, p):
    out = (size + 2 * p - k) // s + 1
    if out < 1:
        raise UserError(f"a kernel of {k} with padding {p} does not fit an input of {size}")
    return out


def conv(in_shape, out_channels, kernel, stride=1, padding=0, groups=1, bias=True):
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    c, h, w = in_shape
    out = (out_channels, _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw))
    params = out_channels * (c // groups) * kh * kw + (out_channels if bias else 0)
    return Layer("conv", tuple(in_shape), out, (kh, kw), (sh, sw), (ph, pw), params,
                 _numel(out) * (c // groups) * kh * kw)


def pool(in_shape, kernel, stride=None, padding=0):
    (kh, kw), (ph, pw) = _pair(kernel), _pair(padding)
    sh, sw = _pair(kernel if stride is None else stride)
    c, h, w = in_shape
    out = (c, _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw))
    return Layer("pool", tuple(in_shape), out, (kh, kw), (sh, sw), (ph, pw))


def linear(in_shape, out_features, bias=True):
    features = _numel(in_shape)
    return Layer("linear", tuple(in_shape), (out_features, 1, 1), params=out_features * (features + bias),
                 macs=out_features * features)


def chain_of(model, shape):
    """The layers of an nn.Sequential of conv/pool/linear (and fused) modules, for inputs of
    `shape`; a UserError for anything that is not such a chain."""
    if not isinstance(model, nn.Sequential):
        raise UserError(f"the OCCAM analysis needs a chain of layers, not a {type(model).__name__}")
    layers, shape = [], tuple(shape)
    for module in model:
        if isinstance(module, nn.Conv2d):
            if _pair(module.dilation) != (1, 1) or isinstance(module.padding, str):
                raise UserError("the OCCAM analysis handles convolutions without dilation and with numeric padding")
            layer = conv(shape, module.out_channels, module.kernel_size, module.stride, module.padding,
                         module.groups, module.bias is not None)
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            if module.ceil_mode or _pair(getattr(module, "dilation", 1)) != (1, 1):
                raise UserError("the OCCAM analysis handles pools without ceil_mode or dilation")
            layer = pool(shape, module.kernel_size, module.stride, module.padding)
        elif isinstance(module, nn.Linear):
            if module.in_features != _numel(shape):
                raise UserError(f"a linear layer of {module.in_features} inputs follows a tensor of shape {shape}")
            layer = linear(shape, module.out_features, module.bias is not None)
        elif isinstance(module, FUSED):
            continue
        else:
            raise UserError(f"the OCCAM analysis does not model a {type(module).__name__} layer")
        layers.append(layer)
        shape = layer.out_shape
    return layers


def supports(name):
    """Whether model `name` is a chain of layers (the game and NoScope CNNs; not ResNet-18)."""
    return isinstance(build_model(name), nn.Sequential)


@functools.lru_cache(maxsize=None)
def _chain(name, fold):
    model = build_model(name, fold)
    if not isinstance(model, nn.Sequential):
        cfg = load_config(name)
        label = cfg["name"] if cfg["id"] == cfg["name"] else f"{cfg['id']} ({cfg['name']})"
        raise UserError(f"{label} has residual branches; the OCCAM analysis covers chains of layers "
                        f"(the game and NoScope CNNs)")
    return tuple(chain_of(model, input_shape(name, fold)))


def model_chain(name, fold=1):
    """The layer chain of model `name` folded `fold` times."""
    return list(_chain(load_config(name)["name"], fold))


# ----------------------------------------------------------------------------------------
# Dependence closure and on-chip footprint.

def closure(layers, rows, cols=None):
    """The dependence closure of the output tile rows [r0, r1) x cols [c0, c1) (all columns
    if None) of the run `layers`: [(channels, (r0, r1), (c0, c1))] per tensor, from the run's
    output back to its input."""
    last = layers[-1].out_shape
    cols = (0, last[2]) if cols is None else cols
    regions = [(last[0], tuple(rows), tuple(cols))]
    for layer in reversed(layers):
        rows, cols = layer.input_span(0, *rows), layer.input_span(1, *cols)
        regions.append((layer.in_shape[0], rows, cols))
    return regions


def region_elements(regions):
    return sum(c * (r1 - r0) * (c1 - c0) for c, (r0, r1), (c0, c1) in regions)


def band_elements(layers, band):
    """The largest closure (elements, one input) of a band of `band` output rows of the run,
    over the band positions 0, band, 2*band, ..."""
    height = layers[-1].out_shape[1]
    return max(region_elements(closure(layers, (r, min(r + band, height))))
               for r in range(0, height, band))


def min_footprints(layers, bytes_per_element=2):
    """{(i, j): bytes} for every run of two or more layers i..j: its one-row band's largest
    closure plus its weights, the least on-chip memory it can run in. Carrying each band back
    from layer j once gives the closures of every run ending at j."""
    footprints = {}
    for j in range(len(layers)):
        worst = [0] * (j + 1)  # worst[i]: largest closure of run i..j seen so far
        for r in range(layers[j].out_shape[1]):
            rows, cols = (r, r + 1), (0, layers[j].out_shape[2])
            total = layers[j].out_shape[0] * layers[j].out_shape[2]
            for i in range(j, -1, -1):
                rows, cols = layers[i].input_span(0, *rows), layers[i].input_span(1, *cols)
                total += layers[i].in_shape[0] * (rows[1] - rows[0]) * (cols[1] - cols[0])
                worst[i] = max(worst[i], total)
        params = 0
        for i in range(j, -1, -1):
            params += layers[i].params
            if i < j:
                footprints[(i, j)] = bytes_per_element * (worst[i] + params)
    return footprints


def tallest_band(layers, capacity, bytes_per_element=2):
    """(rows, footprint bytes) of the tallest output band of the run whose closure and
    weights fit in `capacity` bytes, or None if not even one row fits."""
    weights = sum(layer.params for layer in layers)
    for band in range(layers[-1].out_shape[1], 0, -1):
        footprint = bytes_per_element * (band_elements(layers, band) + weights)
        if footprint <= capacity:
            return band, footprint
    return None


# ----------------------------------------------------------------------------------------
# Traffic and the dynamic program.

def run_cost(layers, i, j, inputs, bytes_per_element=2):
    """Off-chip bytes of run i..j (inclusive) for `inputs` inputs: input + weights + output."""
    weights = sum(layer.params for layer in layers[i:j + 1])
    return bytes_per_element * (inputs * (layers[i].in_elements + layers[j].out_elements) + weights)


def run_allowed(footprints, i, j, capacity):
    """A single layer always; a longer run if its least footprint fits in `capacity`."""
    return i == j or footprints[(i, j)] <= capacity


def best_partitioning(layers, capacity, inputs, bytes_per_element=2, footprints=None):
    """(bytes, [(i, j), ...]): the partitioning of the chain into runs with the least
    off-chip traffic at `capacity` bytes, for `inputs` inputs (OCCAM's dynamic program)."""
    if footprints is None:
        footprints = min_footprints(layers, bytes_per_element)
    best, choice = [0], [None]  # best[j]: least traffic of layers 0..j-1; choice[j]: its last run's start
    for j in range(len(layers)):
        options = ((best[i] + run_cost(layers, i, j, inputs, bytes_per_element), i)
                   for i in range(j + 1) if run_allowed(footprints, i, j, capacity))
        cost, start = min(options)
        best.append(cost)
        choice.append(start)
    runs, end = [], len(layers)
    while end:
        runs.append((choice[end], end - 1))
        end = choice[end]
    return best[-1], runs[::-1]


@dataclass
class Plan:
    """One model folded `fold` times at one capacity, for a batch of `batch` images."""
    fold: int
    capacity: int
    batch: int
    bytes_per_element: int
    runs: list             # [(i, j)]: the partitions, inclusive layer indices
    traffic: int           # bytes per batch
    layerwise: int         # bytes per batch with every layer its own partition
    ops: int               # FLOPs per batch (2 x MACs)

    @property
    def images(self):
        return self.batch // self.fold * self.fold

    @property
    def traffic_per_image(self):
        return self.traffic / self.images

    @property
    def layerwise_per_image(self):
        return self.layerwise / self.images

    @property
    def intensity(self):
        return self.ops / self.traffic


def plan(layers, fold, capacity, batch=1024, bytes_per_element=2, footprints=None):
    """OCCAM's partitioning of `layers` (a model folded `fold` times) at `capacity` bytes."""
    inputs = batch // fold
    if inputs < 1:
        raise UserError(f"a batch of {batch} images holds no folded input of f={fold}: use a batch of at least {fold}")
    traffic, runs = best_partitioning(layers, capacity, inputs, bytes_per_element, footprints)
    layerwise = sum(run_cost(layers, i, i, inputs, bytes_per_element) for i in range(len(layers)))
    ops = 2 * inputs * sum(layer.macs for layer in layers)
    return Plan(fold, capacity, batch, bytes_per_element, runs, traffic, layerwise, ops)
