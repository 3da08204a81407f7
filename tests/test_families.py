"""Adding a model family (README, "Adding a model"): a toy family registered here is one
builder and one registration; its configs are checked against its own schema, its models
fold at every f, train with BatchNorm folded away, find their data, and run through every
registered inference backend."""
import importlib.util
import json

import pytest
import torch
import torch.nn as nn

import datasets
import models
from infer import TOLERANCE, Prepared, Workload
from models.registry import FAMILIES, Family, build_from_config, read_configs, register_family
from tests.helpers import REPO
from util import backends, onnx_export
from util.backends import torch_compile
from util.errors import UserError


def build_toy_cnn(cfg, fold=1, channel_mult=None, align=1):
    """conv -> ReLU -> pool -> linear, folded: f*C inputs, width x sqrt(f), f*K outputs."""
    width = models.folded_width(cfg["arch"]["width"], fold, channel_mult, align)
    height, width_px = cfg["input"]["height"] // 2, cfg["input"]["width"] // 2
    return nn.Sequential(nn.Conv2d(cfg["input"]["channels"] * fold, width, 3, padding=1), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width * height * width_px, len(cfg["classes"]) * fold))


TOY = Family("toy", build_toy_cnn, schema={"arch.width": int, "data.source": str}, at_least={"arch.width": 1},
             data_folders=lambda cfg: [cfg["name"], cfg["data"]["source"]],
             make_data="python -m toy_synth {name} --out {root}", batchnorm_while_training=True)


@pytest.fixture
def toy_config(tmp_path):
    """A toy family registered for the test, and a config of it read back from disk."""
    register_family(TOY)
    cfg = json.loads((REPO / "config" / "lol-gold1.json").read_text())
    cfg.update(name="toy-dots", id="T1", family="toy", description="coloured dots", classes=["a", "b", "c"],
               input={"channels": 3, "height": 12, "width": 10}, arch={"width": 6},
               data={"kind": "generated", "source": "dots"})
    (tmp_path / "toy-dots.json").write_text(json.dumps(cfg))
    try:
        yield read_configs(tmp_path)["toy-dots"]
    finally:
        del FAMILIES["toy"]


def test_a_family_is_registered_once_and_checks_its_own_config_fields(toy_config, tmp_path):
    with pytest.raises(ValueError, match="'toy' is registered already"):
        register_family(TOY)
    for edit, message in [(lambda c: c["arch"].pop("width"), "missing field 'arch.width'"),
                          (lambda c: c["arch"].update(width=0), "field 'arch.width' must be at least 1, got 0")]:
        cfg = json.loads(json.dumps(toy_config))
        edit(cfg)
        (tmp_path / "toy-dots.json").write_text(json.dumps(cfg))
        with pytest.raises(UserError, match=message):
            read_configs(tmp_path)
    assert models.has_compound_scaled("V1") and not models.has_compound_scaled("N2")  # game has one, NoScope not


@pytest.mark.parametrize("fold", models.FOLDS)
def test_a_toy_family_folds_and_trains_with_batchnorm_folded_away(toy_config, fold):
    model = build_from_config(toy_config, fold)
    images = torch.rand(2 * fold, 3, 12, 10)
    assert models.unfold_outputs(model(models.fold_inputs(images, fold)), fold).shape == (2 * fold, 3)
    assert model[0].out_channels == models.folded_width(6, fold)
    assert TOY.batchnorm_while_training
    trained = models.insert_batchnorm(model)
    trained(models.fold_inputs(images, fold))  # training mode: the running statistics move
    plain = build_from_config(toy_config, fold)
    plain.load_state_dict(models.fold_batchnorm(trained.eval()).state_dict())  # the family's own architecture


def test_a_toy_familys_missing_data_names_its_command(toy_config, tmp_path):
    folders = [tmp_path / name for name in TOY.data_folders(toy_config)]
    assert folders == [tmp_path / "toy-dots", tmp_path / "dots"]
    assert "python -m toy_synth toy-dots --out" in TOY.make_data.format(name="toy-dots", root=tmp_path)
    assert set(datasets.LOADERS) >= {TOY.data_format}


@pytest.mark.parametrize("backend", list(backends.BACKENDS))
def test_every_registered_backend_runs_a_tiny_model(toy_config, backend, tmp_path, monkeypatch):
    module = backends.BACKENDS[backend]
    assert callable(module.prepare) and module.NEEDS_CUDA in (True, False)
    assert module.CHANNELS_LAST in (True, False, None)
    if module.NEEDS_CUDA and not torch.cuda.is_available():
        pytest.skip(f"{backend} needs a CUDA GPU")
    if backend == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        pytest.skip("tensorrt does not import here")
    if backend == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime does not import here")
    monkeypatch.setattr(onnx_export, "CACHE_DIR", tmp_path / "onnx")
    monkeypatch.setattr(torch_compile, "MODE", "default")  # seconds, not max-autotune's search
    device = torch.device("cuda" if module.NEEDS_CUDA else "cpu")
    precision = backends.default_precision(device, backend)
    torch.manual_seed(0)
    workload = Workload("toy-dots", 2, "Folded", build_from_config(toy_config, 2).eval(), (6, 12, 10), 4, 0.0)
    prepared = Prepared(workload, backend, precision, device)  # checked against float32 eager PyTorch
    assert prepared.error <= TOLERANCE[precision]
    with prepared.on_device(), torch.inference_mode():  # the contract: the caller's mode and device
        assert prepared.run().shape == (2, 6)
    seconds = prepared.time(2)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
