"""The families besides the game models on files in their real formats: a NoScope model
trained on frames that the NoScope pipeline split, and CIFAR's python batch files (written
here in the format the CIFAR page documents) read into the ResNet-18 path, which trains on them."""
import json
import pickle

import numpy as np
import pytest
import torch

import datasets
import models
from datasets import noscope_synth
from fold_trainer import train_job
from util.job_folder import read_metrics
from tests.helpers import run_cli
from util.checkpoint import load_weights
from util.errors import UserError


def test_a_noscope_model_trains_on_split_video_frames(tmp_path):
    root = tmp_path / "data"
    noscope_synth.build("night", root, frames=1500, size=(64, 48), seed=0)
    # The quick profile with the per-image paths of f = 2 kept apart from a block-diagonal start
    # (its narrow CNN, the default start, learns too slowly on 188 frames: a recipe question,
    # not the data's); f = 1 teaches f = 2.
    proc = run_cli("fold_trainer.py", "N2", "2", tmp_path / "runs", "--data-root", root, "--epochs", "8",
                   "--init", "block", "--keep-blocks", "--device", "cpu", "--threads", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    job = tmp_path / "runs" / "night" / "fold2"
    done = json.loads((job / "done.json").read_text())
    _, test_labels = datasets.load_split("night", "test", root)
    assert done["test_images"] == len(test_labels) == len(list((root / "night" / "test").rglob("*.png")))
    # It learns the 188 training frames of its chunk and carries that to the test chunk, a
    # later segment of the video: well above always answering the commoner class (measured
    # after 8 epochs: train 86%, test 78% against a majority share of about 52%).
    rows = read_metrics(job / "metrics.csv")
    assert len(rows) == 8 and float(rows[-1]["train_top1"]) > 0.7
    majority = max(test_labels.float().mean().item(), 1 - test_labels.float().mean().item())
    assert done["test_top1"] > majority + 0.1, (done["test_top1"], majority)
    load_weights(models.build_model("night", 2), job / "best.pth")  # the paper's N2 architecture at f = 2


def write_cifar10(root, train_images, train_labels, test_images, test_labels):
    """The python version of CIFAR-10: five pickled training batches, a test batch and the meta
    file; rows of 3072 bytes (the red, green and blue 32x32 planes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = models.load_config("cifar10")["classes"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": names, "num_cases_per_batch": len(train_labels) // 5, "num_vis": 3072}, fh, protocol=2)
    for i, part in enumerate(np.array_split(np.arange(len(train_labels)), 5)):
        with open(folder / f"data_batch_{i + 1}", "wb") as fh:
            pickle.dump({"batch_label": f"training batch {i + 1} of 5", "data": train_images[part].reshape(len(part), -1),
                         "labels": train_labels[part].tolist(), "filenames": [f"{j}.png" for j in part]}, fh, protocol=2)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"batch_label": "testing batch 1 of 1", "data": test_images.reshape(len(test_images), -1),
                     "labels": test_labels.tolist(), "filenames": [f"t{j}.png" for j in range(len(test_labels))]},
                    fh, protocol=2)


def test_cifar_batch_files_load_into_the_resnet18_path(tmp_path):
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (5040, 3, 32, 32), dtype=np.uint8)  # 5,000 are held out for validation
    train_labels = rng.integers(0, 10, 5040)
    test_images = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    test_labels = rng.integers(0, 10, 20)
    write_cifar10(tmp_path, train_images, train_labels, test_images, test_labels)

    train, val, test = (datasets.load_split("cifar10", s, tmp_path) for s in ("train", "val", "test"))
    assert len(train[1]) == 40 and len(val[1]) == 5000
    assert torch.equal(test[0], torch.from_numpy(test_images)) and test[1].tolist() == test_labels.tolist()
    # train and val partition the training batches, each image with its own label
    written = {train_images[i].tobytes(): int(train_labels[i]) for i in range(len(train_labels))}
    seen = [(x.numpy().tobytes(), int(y)) for images, labels in (train, val) for x, y in zip(images, labels)]
    assert len({x for x, _ in seen}) == 5040 and all(written[x] == y for x, y in seen)
    assert torch.equal(datasets.load_split("cifar10", "val", tmp_path)[0], val[0])  # a fixed hold-out

    model = models.build_model("cifar10", 2).eval()  # the folded ResNet-18 on the loaded test images
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in datasets.normalization("cifar10"))
    with torch.no_grad():
        logits = models.unfold_outputs(model(models.fold_inputs((test[0] / 255 - mean) / std, 2)), 2)
    assert logits.shape == (20, 10) and torch.isfinite(logits).all()


def color_coded_cifar(rng, labels):
    """Noise images whose class shows in one channel's brightness (class c lifts channel c % 3
    by 40 + 15 c): learnable in one epoch, so that training can be seen to work."""
    images = rng.integers(0, 64, (len(labels), 3, 32, 32))
    images[np.arange(len(labels)), labels % 3] += 40 + 15 * labels[:, None, None]
    return np.clip(images, 0, 255).astype(np.uint8)


def test_the_resnet18_path_trains_on_cifar_batch_files(tmp_path):
    """One epoch of the paper's CIFAR-10 recipe (ResNet-18, f = 1) on batch files in the
    documented format: 1,000 training images beside the config's 5,000 held out for validation,
    and a test batch of 200; the model learns the classes well above chance (10%)."""
    rng = np.random.default_rng(0)
    train_labels, test_labels = rng.integers(0, 10, 6000), rng.integers(0, 10, 200)
    write_cifar10(tmp_path, color_coded_cifar(rng, train_labels), train_labels,
                  color_coded_cifar(rng, test_labels), test_labels)
    result = train_job("cifar10", 1, tmp_path / "runs", profile="paper", data_root=tmp_path, epochs=1, lr=1e-3,
                       device="cpu", progress=False)
    assert (result["val_images"], result["test_images"]) == (5000, 200)
    assert result["test_top1"] > 0.3, result["test_top1"]  # measured: 53.5% (train 70.6%, val 60.4%)
    load_weights(models.build_model("cifar10", 1), tmp_path / "runs" / "cifar10" / "fold1" / "best.pth")


def test_damaged_cifar_files_are_one_line_errors(tmp_path):
    rng = np.random.default_rng(0)
    write_cifar10(tmp_path, rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 10),
                  rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 2))
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(UserError, match="cannot read .*data_batch_3"):
        datasets.load_split("cifar10", "train", tmp_path)
    batch.unlink()
    with pytest.raises(UserError, match="data_batch_3 is missing"):
        datasets.load_split("cifar10", "train", tmp_path)
