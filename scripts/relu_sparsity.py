"""ReLU sparsity of trained models: on the test split of every trained model of a sweep
(f = 1..4), the share of zeros after each ReLU, and the multiplications per image that a
computation skipping zero activations needs against the dense count (models/sparsity.py
defines both; the dense count equals models/flops.py's, FLOPs / 2). This is the saving that
predictive layer fusion (Olyaiy, Ng and Lis, ICS 2021) goes after.

    python -m scripts.relu_sparsity runs/quick [--data-root data] [--out results] [--max-images 10000]

A model is a finished job of train.py: RUN_DIR/<dataset>/fold<f>/best.pth with its done.json.
Images are grouped into folded inputs as in evaluation (datasets/batches.py); the < f images
left over are left out. Writes OUT/relu_sparsity.csv when --out is given.
"""
import argparse
import csv
import io
from pathlib import Path

import torch
from tqdm import tqdm

import datasets
import models
from datasets.batches import DeviceSplit, evaluation_order
from models.sparsity import compare_folds, count_sparsity
from util.args import positive_int
from util.checkpoint import load_weights
from util.errors import UserError, cli_main
from util.files import atomic_write_text, check_output_dir

CSV_COLUMNS = ["model", "fold", "test_images", "zero_share", "relu_zero_shares", "dense_per_image",
               "sparse_per_image", "reduction"]
BATCH_IMAGES = 1024


def trained_models(run_dir):
    """[(dataset name, fold, best.pth)] of the finished jobs under `run_dir`, in registry order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder: give the SAVEDIR of a train.py sweep")
    found = []
    for best in run_dir.glob("*/fold*/best.pth"):
        fold_text = best.parent.name[len("fold"):]
        if not fold_text.isdigit() or not (best.parent / "done.json").is_file():
            continue
        found.append((models.load_config(best.parent.parent.name)["name"], int(fold_text), best))
    if not found:
        raise UserError(f"no trained models under {run_dir} (no <dataset>/fold<f>/best.pth with done.json): "
                        f"train them with `python train.py {run_dir}` first")
    return sorted(found, key=lambda job: (models.name_rank(job[0]), job[1]))


def load_test_split(name, data_root):
    images, labels = datasets.load_split(name, "test", data_root)
    expected = models.input_shape(name, 1)
    if tuple(images.shape[1:]) != expected:
        raise UserError(f"{name} test images under {data_root} have shape {tuple(images.shape[1:])}, "
                        f"the model expects {expected}; give the --data-root the sweep was trained on")
    return DeviceSplit(images, labels, "cpu", datasets.normalization(name))


def folded_batches(split, fold, max_images=None):
    """The test images in evaluation order as folded inputs, whole groups of f only."""
    order, count = evaluation_order(split.labels_cpu, fold)
    count = min(count, max_images or count) // fold * fold
    if count == 0:
        raise UserError(f"the test split has fewer than {fold} images: f={fold} needs a whole group")
    for start in range(0, count, BATCH_IMAGES // fold * fold):
        x, _ = split.batch(order[start:min(count, start + BATCH_IMAGES // fold * fold)])
        yield models.fold_inputs(x, fold)


def measure(run_dir, data_root, max_images=None, progress=True):
    """A CSV row per trained model of the sweep."""
    rows, splits = [], {}
    for name, fold, path in tqdm(trained_models(run_dir), desc="models", disable=not progress):
        if name not in splits:
            splits[name] = load_test_split(name, data_root)
        model = load_weights(models.build_model(name, fold), path, "model file",
                             f"does not hold a {name} model folded {fold} times")
        count = count_sparsity(model, folded_batches(splits[name], fold, max_images))
        images = count.inputs * fold
        rows.append({"model": models.load_config(name)["id"], "fold": fold, "test_images": images,
                     "zero_share": round(count.zero_share, 4),
                     "relu_zero_shares": " ".join(f"{s:.4f}" for s in count.zero_shares),
                     "dense_per_image": round(count.dense / images), "sparse_per_image": round(count.sparse / images),
                     "reduction": round(count.dense / count.sparse, 3)})
    return rows


def table(rows):
    lines = ["| model | f | test images | zeros after each ReLU (%) | all ReLUs | dense mults/image | "
             "zeros skipped | fewer |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shares = " / ".join(f"{100 * float(s):.0f}" for s in str(r["relu_zero_shares"]).split())
        lines.append(f"| {r['model']} | {r['fold']} | {r['test_images']} | {shares} | {100 * float(r['zero_share']):.1f}% | "
                     f"{float(r['dense_per_image']) / 1e6:,.2f} M | {float(r['sparse_per_image']) / 1e6:,.2f} M | "
                     f"{float(r['reduction']):.2f}x |")
    return lines


def verdict(rows):
    return compare_folds({(r["model"], int(r["fold"])): float(r["zero_share"]) for r in rows})


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a train.py sweep folder (its SAVEDIR)")
    parser.add_argument("--data-root", default="data", help="where the test splits are (default %(default)s)")
    parser.add_argument("--max-images", type=positive_int, help="at most this many test images per model (default: all)")
    parser.add_argument("--out", help="folder for relu_sparsity.csv")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    args = parser.parse_args(argv)
    out = check_output_dir(args.out, "output folder") if args.out else None
    with torch.inference_mode():  # a mode of this call only: main() also runs inside other programs
        rows = measure(args.run_dir, args.data_root, args.max_images, args.progress)
    print("\n".join(table(rows)) + "\n\n" + verdict(rows))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        text = io.StringIO()
        writer = csv.DictWriter(text, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out / "relu_sparsity.csv", text.getvalue())
        print(f"\nwrote {out / 'relu_sparsity.csv'}")


if __name__ == "__main__":
    main()
