"""OCCAM's partitioning (models/occam.py, scripts/occam.py): the dynamic program against a
brute-force search, the cost of one layer, a dependence closure computed by hand, the chains
of our models against PyTorch's shapes, and the tool's output and errors."""
import csv
import itertools
import random

import pytest
import torch
import torch.nn as nn

import models
from models import occam
from scripts import occam as occam_tool
from util.arith_intensity import layer_costs
from util.cpu_cache import cache_bytes
from util.errors import UserError


def random_chain(rng):
    """1 to 10 layers of random convs and pools (a linear may end the chain), shapes consistent."""
    shape, layers = (rng.randint(1, 8), rng.randint(6, 32), rng.randint(6, 32)), []
    for _ in range(rng.randint(1, 10)):
        kind = rng.choice(["conv", "conv", "conv", "pool", "linear"] if shape[1] > 1 else ["linear"])
        k = rng.choice([1, 3, 5] if kind == "conv" else [2, 3])
        if kind != "linear" and k > min(shape[1:]):
            kind = "linear"
        if kind == "conv":
            layer = occam.conv(shape, rng.randint(1, 16), k, rng.choice([1, 1, 2]), rng.randint(0, k // 2))
        elif kind == "pool":
            layer = occam.pool(shape, k, rng.choice([1, 2]))
        else:
            layer = occam.linear(shape, rng.randint(1, 32))
        layers.append(layer)
        shape = layer.out_shape
    return layers


def brute_force(layers, capacity, inputs, bpe):
    """The least traffic over all 2^(n-1) partitionings of the chain into allowed runs."""
    footprints, n, best = occam.min_footprints(layers, bpe), len(layers), None
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [n]
        runs = [(a, b - 1) for a, b in zip(bounds, bounds[1:])]
        if all(occam.run_allowed(footprints, i, j, capacity) for i, j in runs):
            cost = sum(occam.run_cost(layers, i, j, inputs, bpe) for i, j in runs)
            best = cost if best is None else min(best, cost)
    return best


def test_dynamic_program_equals_brute_force_on_100_random_chains():
    rng = random.Random(0)
    lengths = []
    for _ in range(100):
        layers = random_chain(rng)
        lengths.append(len(layers))
        bpe, inputs = rng.choice([1, 2, 4]), rng.randint(1, 64)
        footprints = occam.min_footprints(layers, bpe)
        # capacities between fitting nothing and fitting every run, and one at a run's exact footprint
        sizes = sorted(footprints.values()) or [1]
        for capacity in (0, rng.choice(sizes), rng.randint(0, 2 * sizes[-1]), 10 ** 12):
            traffic, runs = occam.best_partitioning(layers, capacity, inputs, bpe)
            assert traffic == brute_force(layers, capacity, inputs, bpe)
            assert [i for i, _ in runs] == [0] + [j + 1 for _, j in runs[:-1]] and runs[-1][1] == len(layers) - 1
            assert all(occam.run_allowed(footprints, i, j, capacity) for i, j in runs)
            assert traffic == sum(occam.run_cost(layers, i, j, inputs, bpe) for i, j in runs)
    assert max(lengths) == 10 and min(lengths) <= 2  # the chains cover the sizes asked for


def test_one_layer_costs_input_plus_weights_plus_output():
    layer = occam.conv((3, 8, 8), 4, 3, padding=1)  # in 3*8*8, out 4*8*8, weights 4*3*3*3 + 4 biases
    assert (layer.in_elements, layer.out_elements, layer.params) == (192, 256, 112)
    for capacity in (0, 10 ** 9):
        traffic, runs = occam.best_partitioning([layer], capacity, inputs=10, bytes_per_element=2)
        assert runs == [(0, 0)] and traffic == 2 * (10 * (192 + 256) + 112)
    p = occam.plan([layer], fold=2, capacity=0, batch=20, bytes_per_element=2)  # 10 inputs of 2 images
    assert p.traffic_per_image == 2 * (10 * (192 + 256) + 112) / 20 and p.layerwise == p.traffic


def test_closure_of_a_hand_built_chain():
    # 1x10x10 -> conv 3x3 pad 1 (2 channels) -> max-pool 2 stride 2 (2x5x5) -> conv 3x3 pad 0 (4x3x3)
    layers = [occam.conv((1, 10, 10), 2, 3, padding=1), occam.pool((2, 10, 10), 2, 2), occam.conv((2, 5, 5), 4, 3)]
    assert [layer.out_shape for layer in layers] == [(2, 10, 10), (2, 5, 5), (4, 3, 3)]
    # Output pixel (1, 1): conv2 needs pool rows 1..3; the pool, conv1 rows 2..7; conv1 (pad 1), input rows 1..8.
    centre = occam.closure(layers, (1, 2), (1, 2))
    assert centre == [(4, (1, 2), (1, 2)), (2, (1, 4), (1, 4)), (2, (2, 8), (2, 8)), (1, (1, 9), (1, 9))]
    assert occam.region_elements(centre) == 4 * 1 + 2 * 9 + 2 * 36 + 1 * 64  # 158
    # Output pixel (0, 0): conv1's padding clips the input rows -1..6 to 0..6.
    assert occam.closure(layers, (0, 1), (0, 1))[-1] == (1, (0, 7), (0, 7))
    # One-row bands at full width: the worst is row 1 or 2 (8 input rows), or row 0 with 7 rows, 10 columns:
    # output 4x1x3 + pool 2x3x5 + conv1 2x6x10 + input 1x8x10 = 12 + 30 + 120 + 80 = 242 elements.
    assert occam.band_elements(layers, 1) == 242
    weights = (2 * 9 + 2) + (4 * 2 * 9 + 4)
    assert occam.min_footprints(layers, bytes_per_element=2)[(0, 2)] == 2 * (242 + weights)
    assert occam.tallest_band(layers, 2 * (242 + weights), 2) == (1, 2 * (242 + weights))
    assert occam.tallest_band(layers, 2 * (242 + weights) - 1, 2) is None
    # The whole output at once: every tensor whole.
    assert occam.band_elements(layers, 3) == 36 + 50 + 200 + 100


@pytest.mark.parametrize("name", ["V1", "V2", "N2"])
@pytest.mark.parametrize("fold", [1, 4])
def test_model_chains_match_pytorch_and_eq3_flops(name, fold):
    model, shape = models.build_model(name, fold), models.input_shape(name, fold)
    layers = occam.model_chain(name, fold)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((tuple(i[0].shape[1:]), tuple(o.shape[1:]))))
             for m in model if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for hook in hooks:
        hook.remove()
    flat = [(layer.in_shape if layer.kind != "linear" else (layer.in_elements,),
             layer.out_shape if layer.kind != "linear" else (layer.out_shape[0],)) for layer in layers]
    assert flat == seen
    assert 2 * sum(layer.macs for layer in layers) == sum(c.ops for c in layer_costs(model, shape, 1))
    assert sum(layer.params for layer in layers) == sum(p.numel() for p in model.parameters())


def test_capacity_orders_the_traffic_and_bounds_it():
    layers = occam.model_chain("V1", 4)
    footprints = occam.min_footprints(layers)
    traffic = [occam.plan(layers, 4, c, footprints=footprints).traffic for c in (0, 2 ** 18, 2 ** 20, 2 ** 30)]
    assert traffic == sorted(traffic, reverse=True)
    nothing_fits = occam.plan(layers, 4, 0)
    assert nothing_fits.traffic == nothing_fits.layerwise and len(nothing_fits.runs) == len(layers)
    everything = occam.plan(layers, 4, 2 ** 30)
    inputs = 1024 // 4
    assert everything.runs == [(0, len(layers) - 1)]
    assert everything.traffic == 2 * (inputs * (layers[0].in_elements + layers[-1].out_elements)
                                      + sum(layer.params for layer in layers))


def test_resnet_is_not_a_chain():
    assert not occam.supports("cifar10") and occam.supports("N2")
    with pytest.raises(UserError, match="residual branches"):
        occam.model_chain("cifar10")


def test_occam_tool_prints_partitions_and_writes_csv_and_plot(tmp_path, capsys):
    occam_tool.main(["V1", "N2", "--fold", "2", "--capacity", "256KiB", "--runs", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| conv1 | 6x22x52 | 45x22x52 | 3x3/1x1/1x1 |" in out  # V1 folded twice: 3f channels in
    assert "Partitions at 256 KiB:" in out and "| conv1..conv2 |" in out
    rows = list(csv.DictReader((tmp_path / "occam.csv").open()))
    assert {(r["model"], int(r["fold"])) for r in rows} == {(m, f) for m in ("V1", "N2") for f in (1, 2, 3, 4)}
    assert {r["capacity_name"] for r in rows} >= {"--capacity 256 KiB", "H100 L2 (50 MB)"}
    for r in rows:
        assert float(r["traffic_per_image"]) <= float(r["layerwise_per_image"])
        assert float(r["intensity"]) == pytest.approx(float(r["ops_per_image"]) / float(r["traffic_per_image"]),
                                                      rel=1e-3)
    big = [r for r in rows if r["capacity_name"].startswith("H100") and r["model"] == "N2"]
    assert all(r["partitions"] == "[conv1..linear2]" for r in big)  # 50 MB holds all of N2
    assert (tmp_path / "occam.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["V1", "--capacity", "12XB"], "argument --capacity: expected a size such as 1MiB, 50MB or 262144, got '12XB'"),
    (["V1", "--capacity", "0"], "argument --capacity: must be at least 1 byte"),
    (["cifar10"], "error: cifar10 has residual branches"),
    (["V9"], "error: unknown dataset/model 'V9'"),
    (["V1", "--batch", "2"], "error: --batch 2 holds no folded input at f=4"),
])
def test_occam_tool_errors_are_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        occam_tool.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and message in err.strip().splitlines()[-1], err



def test_cache_sizes_from_a_sysfs_tree(tmp_path):
    for index, (level, kind, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "32K"),
                                                 (2, "Unified", "1024K"), (3, "Unified", "32768K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(f"{value}\n")
    assert cache_bytes(1, tmp_path) == 32 * 1024 and cache_bytes(2, tmp_path) == 2 ** 20
    assert cache_bytes(3, tmp_path) == 32 * 2 ** 20 and cache_bytes(2, tmp_path / "none") is None
