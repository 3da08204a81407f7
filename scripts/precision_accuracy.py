"""Test top-1 of the trained models in the inference precision beside float32, so that half
precision (bf16 on a CPU, fp16 on a GPU) costs no accuracy unseen: every original and folded
job of a train.py sweep (not its narrow and compound baselines), its best.pth evaluated on its whole test split through the inference engine, and
through float32 eager PyTorch on the same images in the same folded groups.

    python -m scripts.precision_accuracy runs/quick --out results/precision_accuracy.csv
    python -m scripts.precision_accuracy runs/quick --engine openvino:bf16 --data-root data

The engine defaults to the default backend in its default precision here (util.backends:
OpenVINO bf16 on a CPU with AMX or AVX512_BF16). Images are grouped into folded inputs as in
training's evaluation (datasets.batches.evaluation_order): one fixed shuffle, the last group
padded and its padding not scored. The whole test split is one batch.
"""
import argparse
import copy
import csv
import io

import torch

import datasets
import models
from datasets.batches import DeviceSplit, evaluation_order
from fold_trainer import best_path
from util import backends
from util.checkpoint import load_weights
from util.device import cpu_isa, resolve_device, set_threads
from util.args import device_string, positive_int
from util.errors import UserError, cli_main
from util.files import atomic_write_text, check_output_file
from util.results import read_summary

COLUMNS = ["dataset", "fold", "test_images", "backend", "precision", "isa", "fp32_top1", "top1", "change"]


def engine_top1(model, images, labels, fold, engine, device):
    """Top-1 (fraction) of `model` on `images` folded `fold` times, run by `engine`
    (backend, precision) on `device`."""
    order, count = evaluation_order(labels, fold)
    x = models.fold_inputs(images[order], fold)
    backend, precision = engine
    with torch.inference_mode():
        run = backends.BACKENDS[backend].prepare(copy.deepcopy(model).eval(), x, precision, device, False)
        logits = models.unfold_outputs(run(), fold).float().cpu()[:count]
    return (logits.argmax(1) == labels[order][:count]).float().mean().item()


def job_row(savedir, name, fold, engine, device, data_root):
    """The COLUMNS row of one trained job."""
    model = load_weights(models.build_model(name, fold), best_path(savedir, name, fold), "trained model",
                         f"does not hold a {name} f={fold} model")
    images, labels = datasets.load_split(name, "test", data_root)
    if len(labels) == 0:
        raise UserError(f"the {name} test split under {data_root} is empty; regenerate the data")
    split = DeviceSplit(images, labels, "cpu", datasets.normalization(name))
    images = split.batch(torch.arange(len(labels)))[0]
    fp32 = engine_top1(model, images, labels, fold, ("eager", "fp32"), torch.device("cpu"))
    top1 = engine_top1(model, images, labels, fold, engine, device)
    return {"dataset": name, "fold": fold, "test_images": len(labels), "backend": engine[0], "precision": engine[1],
            "isa": cpu_isa() if device.type == "cpu" else torch.cuda.get_device_name(device),
            "fp32_top1": f"{100 * fp32:.2f}", "top1": f"{100 * top1:.2f}", "change": f"{100 * (top1 - fp32):+.2f}"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("savedir", help="train.py's folder (its summary.csv lists the jobs)")
    parser.add_argument("--out", default="results/precision_accuracy.csv", help="default: %(default)s")
    parser.add_argument("--engine", metavar="BACKEND[:PRECISION]",
                        help="default: the default backend here in its default precision")
    parser.add_argument("--data-root", default="data", help="where the test splits are (default %(default)s)")
    parser.add_argument("--device", type=device_string, help="cpu, cuda or cuda:N (default: cuda if there is a GPU)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads of the engines")
    return parser.parse_args(argv)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        set_threads(args.threads)
    device = resolve_device(args.device)
    engine = backends.parse_engine(args.engine or backends.default_backend(device), device)
    backends.check_device(engine[0], device)
    out = check_output_file(args.out, "precision accuracy CSV")
    summary = read_summary(f"{args.savedir}/summary.csv")
    # the paper's models (original and folded); the baselines of summary.csv are not re-evaluated
    jobs = [(models.load_config(r["dataset"])["name"], int(r["fold"])) for r in summary
            if r["variant"] in ("original", "folded")]
    rows = [job_row(args.savedir, name, fold, engine, device, args.data_root) for name, fold in jobs]
    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text.getvalue())
    for row in rows:
        print(f"{row['dataset']} f={row['fold']}: fp32 {row['fp32_top1']}%, {row['backend']} {row['precision']} "
              f"{row['top1']}% ({row['change']})")


if __name__ == "__main__":
    main()
