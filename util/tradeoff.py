"""System-level accuracy/throughput trade-off of appendix G.

A specialized CNN (latency T_s) filters inputs for a general-purpose CNN (latency T_g) and
forwards the fraction it gets wrong. A FoldedCNN that is x times faster but loses `a` of
accuracy raises the cascade's throughput as long as

    T_g / T_s < (1 / a) * (1 - 1 / x).

    python util/tradeoff.py 2.50 0.0021          # the paper's N2 at f=4: 285
    python util/tradeoff.py --summary results/summary.csv --results results/results.csv
"""
import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from util.errors import UserError, cli_main  # noqa: E402


def max_latency_ratio(speedup, accuracy_drop):
    """Largest T_g / T_s for which the FoldedCNN still helps; inf if it loses no accuracy,
    0 if it is not faster (then it never helps)."""
    if speedup <= 1:
        return 0.0
    if accuracy_drop <= 0:
        return math.inf
    return (1 - 1 / speedup) / accuracy_drop


def describe(ratio):
    if ratio == 0:
        return "never (not faster)"
    if math.isinf(ratio):
        return "always (no accuracy lost)"
    return f"{math.floor(ratio):,}x" if ratio >= 10 else f"{math.floor(ratio * 10) / 10:.1f}x"


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("speedup", type=float, nargs="?", help="throughput of the FoldedCNN over the original, x")
    parser.add_argument("accuracy_drop", type=float, nargs="?",
                        help="accuracy lost as a fraction, a (0.0021 = 0.21 points)")
    parser.add_argument("--summary", help="train.py's summary.csv: print the bound for every trained (dataset, f)")
    parser.add_argument("--results", help="run_inference.sh's CSV with the speedups (needed with --summary)")
    args = parser.parse_args(argv)
    if args.summary:
        from util.report import load_report_data, tradeoff_rows

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
