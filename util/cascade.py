"""The system-level trade-off of appendix G.

A specialized CNN (latency T_s) filters inputs for a general-purpose CNN (latency T_g) and
forwards the fraction it gets wrong. A FoldedCNN that is x times faster but loses `a` of
accuracy raises the cascade's throughput as long as

    T_g / T_s < (1 / a) * (1 - 1 / x).
"""
import math


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
