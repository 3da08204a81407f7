"""Train one (dataset, fold) job: the original CNN (fold 1) or a FoldedCNN (fold > 1).

    python fold_trainer.py lol-gold1 2 runs/paper
    python fold_trainer.py V1 4 runs/quick --epochs 20 --batch_size 64 --lr 1e-3 --curriculum_epochs 1

writes runs/.../<dataset>/fold<f>/{metrics.csv, best.pth, current.pth, done.json}. Rerunning
the same command continues an unfinished job from current.pth and skips a finished one.
The recipe defaults to the config's `train` section (reference.md section 4). As a module:
`from fold_trainer import train_job` (see util/training.py).
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from util.errors import cli_main  # noqa: E402
from util.training import add_job_arguments, job_options, train_job  # noqa: E402

__all__ = ["train_job"]


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="dataset/model name or id (e.g. lol-gold1 or V1)")
    parser.add_argument("fold", type=int, help="fold f: 1 is the original CNN")
    parser.add_argument("savedir", help="root folder of the runs; the job writes <savedir>/<dataset>/fold<f>/")
    parser.add_argument("--continue_from_file", "--continue-from-file",
                        help="continue from this current.pth instead of the job folder's own")
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    result = train_job(args.name, args.fold, args.savedir, continue_from_file=args.continue_from_file,
                       **job_options(args))
    print(json.dumps({k: v for k, v in result.items() if k != "recipe"}, indent=2))


if __name__ == "__main__":
    main()
