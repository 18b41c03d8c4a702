"""Holm against Benjamini-Hochberg for --tbench-ab's run decision (pytest_tbench/judge/run_verdict.py),
simulated: how often each fails a run of unchanged items, and how many real slowdowns each catches, with
the gate's other rule (an item regresses only where its 99% interval does not rule out the threshold)
applied to both.

Each item's pairs give per-pair mean log ratios scattering 2.6% and 4.6% (the README's quiet and noisy
figures); the one-sided p-value is the paired t test's, as in judge/paired.py.

    python benches/multiplicity_power.py [--runs 4000] [--items 48] [--pairs 8] [--seed 1]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

ALPHA, THRESHOLD = 0.01, 0.05


def holm(p: np.ndarray, alpha: float) -> np.ndarray:
    order = np.argsort(p)
    rejected = np.zeros(len(p), bool)
    for rank, index in enumerate(order):
        if p[index] > alpha / (len(p) - rank):
            break
        rejected[index] = True
    return rejected


def benjamini_hochberg(p: np.ndarray, alpha: float) -> np.ndarray:
    return np.asarray(stats.false_discovery_control(p) <= alpha)


def simulate(
    rng: np.random.Generator, effects: np.ndarray, pairs: int, pair_sd: float, runs: int
) -> dict[str, tuple[float, float, float]]:
    """Per procedure: (runs failed, real slowdowns caught per slowed item, unchanged items failed per run)."""
    found = {}
    for name, procedure in (("holm", holm), ("bh", benjamini_hochberg)):
        failed = caught = wrong = 0
        slowed = effects > 0
        for _ in range(runs):
            logs = rng.normal(np.log1p(effects)[:, None], pair_sd, (len(effects), pairs))
            mean, se = logs.mean(1), logs.std(1, ddof=1) / np.sqrt(pairs)
            p = stats.t.sf(mean / se, pairs - 1)
            high = mean + stats.t.ppf(0.995, pairs - 1) * se
            regressed = procedure(p, ALPHA) & (np.expm1(high) >= THRESHOLD)
            failed += regressed.any()
            caught += (regressed & slowed).sum()
            wrong += (regressed & ~slowed).sum()
        found[name] = (failed / runs, caught / max(1, slowed.sum() * runs), wrong / runs)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n = args.items
    cases = {
        "A/A": np.zeros(n),
        "one item +10%": np.r_[0.10, np.zeros(n - 1)],
        "one item +5%": np.r_[0.05, np.zeros(n - 1)],
        "every item +5%": np.full(n, 0.05),
        "half the items +5%": np.r_[np.full(n // 2, 0.05), np.zeros(n - n // 2)],
    }
    print("pair sd  case                 procedure  runs failed  slowdowns caught  unchanged failed/run")
    for pair_sd in (0.026, 0.046):
        for label, effects in cases.items():
            for name, (failed, caught, wrong) in simulate(
                rng, effects, args.pairs, pair_sd, args.runs
            ).items():
                print(f"{pair_sd:7.1%}  {label:20} {name:9}  {failed:11.2%}  {caught:16.1%}  {wrong:20.4f}")


if __name__ == "__main__":
    main()
