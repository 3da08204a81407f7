"""System-level accuracy/throughput trade-off of appendix G (the formula: util/cascade.py).

A specialized CNN (latency T_s) filters inputs for a general-purpose CNN (latency T_g) and
forwards the fraction it gets wrong. A FoldedCNN that is x times faster but loses `a` of
accuracy raises the cascade's throughput as long as

    T_g / T_s < (1 / a) * (1 - 1 / x).

    python -m scripts.tradeoff 2.50 0.0021          # the paper's N2 at f=4: 285
    python -m scripts.tradeoff --summary results/summary.csv --results results/results.csv
"""
import argparse

from scripts.report import load_report_data, tradeoff_rows
from util.args import finite_float, positive_float
from util.cascade import describe, max_latency_ratio
from util.errors import UserError, cli_main


def accuracy_drop(text):
    """The accuracy lost as a fraction: `0.0021`, or in percent `0.21%`. A bare number above 1
    is almost surely percentage points, which would make the bound 100 times too small."""
    percent = text.strip().endswith("%")
    value = finite_float(text.strip().rstrip("%"))
    if percent:
        value /= 100
    elif value > 1:
        raise argparse.ArgumentTypeError(f"{text} looks like percentage points: give {text}% or the fraction "
                                         f"{value / 100:g}")
    if not -1 <= value <= 1:
        raise argparse.ArgumentTypeError(f"an accuracy change lies between -100% and 100%, got {text}")
    return value


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("speedup", type=positive_float, nargs="?", help="throughput of the FoldedCNN over the original, x")
    parser.add_argument("accuracy_drop", type=accuracy_drop, nargs="?",
                        help="accuracy lost, as a fraction (0.0021) or in percent (0.21%%)")
    parser.add_argument("--summary", help="train.py's summary.csv: print the bound for every trained (dataset, f)")
    parser.add_argument("--results", help="run_inference.sh's CSV with the speedups (needed with --summary)")
    args = parser.parse_args(argv)
    if args.summary:
        if not args.results:
            raise UserError("--summary needs --results RESULTS.csv for the speedups")
        data = load_report_data(args.summary, args.results)
        print("dataset,fold,speedup,accuracy_drop,max_Tg_over_Ts")
        for row in tradeoff_rows(data):
            print(",".join(map(str, row)))
        return
    if args.speedup is None or args.accuracy_drop is None:
        raise UserError("give SPEEDUP and ACCURACY_DROP (e.g. 2.5 0.0021), or --summary and --results")
    ratio = max_latency_ratio(args.speedup, args.accuracy_drop)
    print(f"folding helps while the general-purpose CNN is less than {describe(ratio)} "
          f"slower than the specialized one (T_g/T_s < {ratio:.1f})")


if __name__ == "__main__":
    main()
