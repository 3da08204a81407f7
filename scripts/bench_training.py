"""Training throughput: steps/s and images/s of the trainer's step, and what each part of it
buys, on a CPU or a GPU.

    python -m scripts.bench_training                     # generates a small V1 set in a temp dir
    python -m scripts.bench_training --device cuda --steps 500 --folds 1 2 4
    python -m scripts.bench_training --data-root data --threads 1 --name V2

Every variant trains the model (V1 by default) at each fold for the same steps at the same
batch size from the same initial weights, with its config's recipe (optimizer, lr, weight
decay), and is timed over the whole step
(batch + forward + backward + update) after a few untimed warm-up steps:
- ImageFolder: torchvision's ImageFolder + DataLoader (PNG decoding in workers, a copy of
  each batch to the device): the plain PyTorch pipeline, as a baseline;
- tensor cache: the trainer's pipeline, batches indexed from a uint8 cache on the device;
- + fused Adam (GPU): one kernel for the whole update, the trainer's default on a GPU;
- + CUDA graph (GPU): the step replayed from a CUDA graph (`fold_trainer.py --cuda-graph`).
This is a benchmark, not a test: it prints a table.
"""
import argparse
import tempfile
import time

import torch
import torch.nn.functional as F
from torchvision import datasets as tv_datasets, transforms

import models
from datasets import dataset_dir, game_synth
from datasets.batches import load_job_data, training_batches
from fold_trainer import make_optimizer, make_train_step, resolve_recipe
from util.args import add_flag, device_string, nonnegative_int, positive_int
from util.cuda_graphs import GraphedStep
from util.device import on_device, resolve_device, set_threads
from util.errors import cli_main

WARMUP_STEPS = 10  # more than GraphedStep's eager warm-up, so its capture is not timed


def tensor_batches(train, batch_size, fold):
    """Endless full batches from the on-device uint8 cache, as the trainer forms them."""
    generator = torch.Generator().manual_seed(0)
    while True:
        order = torch.cat(training_batches(train.labels_cpu, batch_size, fold, generator)).to(train.images.device)
        for positions in order.split(batch_size):
            if len(positions) == batch_size:
                yield train.batch(positions)


def image_folder_batches(folder, batch_size, workers, device):
    """Endless batches from torchvision's ImageFolder (PIL decoding in DataLoader workers)."""
    dataset = tv_datasets.ImageFolder(folder, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         pin_memory=device.type == "cuda",
                                         generator=torch.Generator().manual_seed(0))
    while True:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def steps_per_second(step, batches, steps, device):
    """Training steps/second over `steps` steps after WARMUP_STEPS untimed ones."""
    for _ in range(WARMUP_STEPS):
        step(*next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps / (time.perf_counter() - started)


def variants(device):
    """(label, pipeline, fused, cuda_graph) of every variant this device runs."""
    rows = [("ImageFolder", "folder", False, False), ("tensor cache", "cache", False, False)]
    if device.type == "cuda":
        rows += [("+ fused Adam", "cache", True, False), ("+ CUDA graph", "cache", True, True)]
    return rows


def trainer_step(name, fold, batch_size, device, fused, cuda_graph):
    """The trainer's step for `name` at `fold` from fixed initial weights."""
    recipe = resolve_recipe(name, fold, batch_size=batch_size)
    torch.manual_seed(0)
    model = models.build_model(name, fold).to(device).train()
    optimizer = make_optimizer(recipe, model.parameters(), fused=fused, capturable=cuda_graph)
    step = make_train_step(model, optimizer, fold, lambda x, y, logits: F.cross_entropy(logits, y))
    return GraphedStep(step, optimizer, recipe["batch_size"], device) if cuda_graph else step


def print_table(name, rows, steps, device, workers):
    print(f"\n{name} training throughput, {steps} timed steps, device {device}, "
          f"{torch.get_num_threads()} CPU threads, ImageFolder with {workers} DataLoader workers")
    print(f"{'fold':>4}  {'batch':>5}  {'variant':<14}  {'steps/s':>9}  {'images/s':>10}  {'vs ImageFolder':>14}")
    for fold, batch_size, label, rate in rows:
        baseline = next(r for f, _, lab, r in rows if f == fold and lab == "ImageFolder")
        print(f"{fold:>4}  {batch_size:>5}  {label:<14}  {rate:>9.1f}  {rate * batch_size:>10.0f}  "
              f"{rate / baseline:>13.2f}x")


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="lol-gold1", help="dataset/model name or id (default lol-gold1, V1)")
    add_flag(parser, "data_root", help="folder holding the dataset (default: generate a small one in a temp dir)")
    parser.add_argument("--folds", nargs="+", type=positive_int, default=[1, 4])
    parser.add_argument("--steps", type=positive_int, default=100, help="timed steps per variant (default 100)")
    add_flag(parser, "batch_size", type=positive_int, default=32, help="images per step (default 32)")
    parser.add_argument("--workers", type=nonnegative_int, default=2, help="DataLoader workers of the baseline (default 2)")
    parser.add_argument("--device", type=device_string, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads of torch in the training process (default: torch's)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        set_threads(args.threads)
    for fold in args.folds:
        models.folding.check_fold(fold)
    name = models.load_config(args.name)["name"]

    with tempfile.TemporaryDirectory() as tmp, on_device(device):
        data_root = args.data_root
        if data_root is None:
            data_root = tmp
            print(f"generating a small {name} dataset in {tmp} ...", flush=True)
            game_synth.generate(name, tmp, scale=0.05, seed=0)
        train, _, _ = load_job_data(name, data_root, device)
        folder = dataset_dir(name, data_root) / "train"
        rows = []
        for fold in args.folds:
            batch_size = args.batch_size // fold * fold
            for label, pipeline, fused, cuda_graph in variants(device):
                batches = (tensor_batches(train, batch_size, fold) if pipeline == "cache"
                           else image_folder_batches(folder, batch_size, args.workers, device))
                step = trainer_step(name, fold, batch_size, device, fused, cuda_graph)
                rate = steps_per_second(step, batches, args.steps, device)
                rows.append((fold, batch_size, label, rate))
                print(f"f={fold} {label}: {rate:.1f} steps/s, {rate * batch_size:.0f} images/s", flush=True)
    print_table(name, rows, args.steps, device, args.workers)


if __name__ == "__main__":
    main()
