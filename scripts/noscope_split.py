"""Split a folder of NoScope frames into train/val/test image folders of one task (N1-N4).

    python -m scripts.noscope_split coral data/coral --infile coral-reef-long.csv --indir noscope-coral-frames-all

The frames are cut into the task's contiguous chunks (config data.chunks, data.split); a frame
is class 1 when the label CSV names the task's object (data.object) in it, else class 0.
"""
import argparse

from datasets.noscope import format_stats, split_frames
from models import load_config, model_names
from util.args import add_flag
from util.errors import cli_main


@cli_main
def main(argv=None):
    tasks = [n for n in model_names() if load_config(n)["family"] == "noscope"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=tasks, help="NoScope task")
    parser.add_argument("outdir", help="output folder: OUTDIR/{train,val,test}/{0,1}/<frame>.png")
    parser.add_argument("--infile", required=True, help="NoScope label CSV (columns frame, object_name, ...)")
    parser.add_argument("--indir", required=True, help="frames written by scripts/noscope_video_save.py")
    add_flag(parser, "print_stats", action="store_true",
             help="print the positive fraction of each split")
    parser.add_argument("--link", action="store_true", help="hard-link the frames instead of copying them")
    parser.add_argument("--force", action="store_true",
                        help="replace OUTDIR even if it is not a split this tool wrote (deletes its files)")
    args = parser.parse_args(argv)
    stats = split_frames(args.name, args.outdir, args.infile, args.indir, link=args.link, force=args.force)
    if args.print_stats:
        print(format_stats(stats))
    print(f"{args.outdir}: {sum(n for n, _ in stats.values())} frames split")


if __name__ == "__main__":
    main()
