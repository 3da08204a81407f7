"""ONNX export (util.onnx_export, the TensorRT backend's first step) checked numerically with
onnxruntime, and the TensorRT backend itself where TensorRT and a GPU exist."""
import importlib.util

import numpy as np
import onnxruntime
import pytest
import torch

import models
from infer import Prepared, build_workload
from tests.helpers import needs_cuda
from util.errors import UserError
from util.onnx_export import export_onnx


@pytest.mark.parametrize("name", ["lol-gold1", "night", "cifar10"])
@pytest.mark.parametrize("fold", [1, 4])
def test_onnx_export_matches_pytorch_per_image(tmp_path, name, fold):
    model = models.build_model(name, fold).eval()
    if name == "cifar10":  # non-trivial BatchNorm statistics, so that eval-mode folding is tested
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    images = torch.randn(2 * fold, *models.input_shape(name), generator=torch.Generator().manual_seed(fold))
    inputs = models.fold_inputs(images, fold)
    path = export_onnx(model, inputs, tmp_path / "model.onnx")

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_input,) = session.get_inputs()
    assert onnx_input.name == "input" and onnx_input.shape == list(inputs.shape)  # static shapes
    got = models.unfold_outputs(torch.from_numpy(session.run(None, {"input": inputs.numpy()})[0]), fold)
    with torch.no_grad():
        want = models.unfold_outputs(model(inputs), fold)
    assert got.shape == (2 * fold, len(models.load_config(name)["classes"]))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5 * want.abs().max().item())


def test_export_is_deterministic_and_atomic(tmp_path):
    model = models.build_model("night", 2)
    inputs = torch.randn(3, *models.input_shape("night", 2))
    first = export_onnx(model, inputs, tmp_path / "a.onnx").read_bytes()
    assert export_onnx(model, inputs, tmp_path / "b.onnx").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_names_the_container():
    from util.backends import trt_engine

    with pytest.raises(UserError, match="dockerfiles/FoldDockerfile"):
        trt_engine.import_tensorrt()


@needs_cuda
def test_tensorrt_engine_matches_pytorch_and_is_cached(tmp_path, monkeypatch):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it comes with the NGC container)")
    from util.backends import trt_engine

    monkeypatch.setattr(trt_engine, "ENGINE_DIR", tmp_path)
    first = Prepared(build_workload("night", 2, batch_size=64), "tensorrt", "fp16", "cuda")  # checks fp16 output
    engines = list(tmp_path.glob("*.engine"))
    assert len(engines) == 1 and first.error <= 2e-2
    assert first.run().dtype == torch.float16 and first.channels_last is None  # TensorRT picks its layouts
    built_at = engines[0].stat().st_mtime_ns
    # The next run builds the workload afresh, with the same seeded weights: the engine is reused.
    again = Prepared(build_workload("night", 2, batch_size=64), "tensorrt", "fp16", "cuda")
    assert [p.stat().st_mtime_ns for p in tmp_path.glob("*.engine")] == [built_at]
    assert len(again.time(5)) == 5
    fp32 = Prepared(build_workload("night", 2, batch_size=64), "tensorrt", "fp32", "cuda")
    assert fp32.run().dtype == torch.float32 and fp32.error <= 1e-4
    assert len(list(tmp_path.glob("*.engine"))) == 2  # another precision is another engine
