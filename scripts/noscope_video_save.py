"""Write every frame of a NoScope video as a 50x50 PNG (nearest neighbour), named by frame index.

    python -m scripts.noscope_video_save coral-reef-long.mp4 noscope-coral-frames-all

Frames already in OUTDIR are skipped, so an interrupted run can simply be restarted.
"""
import argparse

from datasets.noscope import save_video_frames
from util.args import nonnegative_int, positive_int
from util.errors import cli_main


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", help="input video (anything OpenCV reads, e.g. .mp4)")
    parser.add_argument("outdir", help="folder for <frame>.png (created if missing)")
    parser.add_argument("--start", type=nonnegative_int, default=0, help="first frame to write (0-based, default 0)")
    parser.add_argument("--end", type=positive_int, default=None, help="stop before this frame (default: end of video)")
    args = parser.parse_args(argv)
    written = save_video_frames(args.video, args.outdir, args.start, args.end)
    print(f"{args.outdir}: wrote {written} new frames")


if __name__ == "__main__":
    main()
