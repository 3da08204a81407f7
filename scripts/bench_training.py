"""Training throughput: our tensor pipeline against a plain ImageFolder + DataLoader one.

    python -m scripts.bench_training                      # generates a small V1 set in a temp dir
    python -m scripts.bench_training --data-root data --steps 200 --folds 1 2 4 --threads 1

Both pipelines train the same model (V1 at each fold) for the same number of steps at the
same batch size and report images/second of the whole step (data + forward + backward +
update). Ours indexes a uint8 tensor cache kept on the training device (what
fold_trainer.py does, with datasets/batches.py); the baseline decodes PNGs with PIL in DataLoader workers and copies
each batch to the device. A few warm-up steps are not timed. This is a benchmark, not a test.
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
from util.device import resolve_device, set_threads
from util.errors import cli_main

NAME = "lol-gold1"  # V1
WARMUP_STEPS = 5


def train_steps(model, optimizer, batches, fold, device, steps):
    """Images/second over `steps` training steps after WARMUP_STEPS untimed ones."""
    model.train()
    seen = 0
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started, seen = time.perf_counter(), 0
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(models.unfold_outputs(model(models.fold_inputs(x, fold)), fold), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def tensor_batches(train, batch_size, fold):
    """Endless batches from the on-device uint8 cache, as the trainer forms them."""
    generator = torch.Generator().manual_seed(0)
    while True:
        for positions in training_batches(train.labels_cpu, batch_size, fold, generator):
            if len(positions) == batch_size:
                yield train.batch(positions)


def image_folder_batches(folder, batch_size, workers):
    """Endless batches from torchvision's ImageFolder (PIL decoding in DataLoader workers)."""
    dataset = tv_datasets.ImageFolder(folder, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(0))
    while True:
        yield from loader


def fresh_model(fold, device):
    torch.manual_seed(0)
    model = models.build_model(NAME, fold).to(device)
    return model, torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", "--data_root", dest="data_root",
                        help="folder holding lol-gold1/ (default: generate a small one in a temp dir)")
    parser.add_argument("--folds", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per pipeline (default 100)")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=32, help="images per step (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline (default 2)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="CPU threads of torch in the training process (default: torch's)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        set_threads(args.threads)
    for fold in args.folds:
        models.folding.check_fold(fold)

    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root
        if data_root is None:
            data_root = tmp
            print(f"generating a small {NAME} dataset in {tmp} ...", flush=True)
            game_synth.generate(NAME, tmp, scale=0.05, seed=0)
        started = time.perf_counter()
        train, _, _ = load_job_data(NAME, data_root, device)
        print(f"loaded {len(train)} training images into the tensor cache on {device} "
              f"in {time.perf_counter() - started:.1f}s (packing happens once per dataset)")
        folder = dataset_dir(NAME, data_root) / "train"
        rows = []
        for fold in args.folds:
            batch_size = args.batch_size // fold * fold
            model, optimizer = fresh_model(fold, device)
            ours = train_steps(model, optimizer, tensor_batches(train, batch_size, fold), fold, device, args.steps)
            model, optimizer = fresh_model(fold, device)
            baseline = train_steps(model, optimizer, image_folder_batches(folder, batch_size, args.workers),
                                   fold, device, args.steps)
            rows.append((fold, batch_size, ours, baseline))
            print(f"f={fold}: tensor cache {ours:.0f} img/s, ImageFolder+DataLoader {baseline:.0f} img/s", flush=True)

    print(f"\nV1 ({NAME}) training throughput, {args.steps} steps, device {device}, "
          f"{torch.get_num_threads()} threads, baseline with {args.workers} DataLoader workers")
    print(f"{'fold':>4}  {'batch':>5}  {'tensor cache img/s':>18}  {'ImageFolder img/s':>17}  {'ratio':>6}")
    for fold, batch_size, ours, baseline in rows:
        print(f"{fold:>4}  {batch_size:>5}  {ours:>18.0f}  {baseline:>17.0f}  {ours / baseline:>5.2f}x")


if __name__ == "__main__":
    main()
