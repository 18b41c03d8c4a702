"""How far a new session of unchanged code may land from a pooled baseline (``--tbench-compare-last N``): a
prediction bound with a stated error rate, from the baseline's own sessions.

A session's timings move in two ways (seen on a 2-core VM: session medians moved 9-10% in minutes, every item
alike). Each saved run is one session; in log units an item's session median is

    log m[i, s] = mu[i] + D[s] + e[i, s]

with D[s] the session's drift, shared by all its items, and e[i, s] the item's own scatter. The baseline shows
both: D[s] as the median over items of each session's deviation from the item's mean (N - 1 degrees of
freedom), e as what is left (pooled over items). A new session of unchanged code moves an item by
D[new] - mean(D) + e[i, new] - mean(e[i]): each part has a Student t prediction bound, with the sd times
sqrt(1 + 1/N). The drift is one draw per run, so it gets half the run's error rate; the items' own scatter
gets the other half shared over the run's timing tests (Bonferroni). So an unchanged run fails on the two
together with probability at most ALPHA, whatever its number of items, where sessions are exchangeable. They
are not quite: a slow session is followed by a slow one, so N consecutive sessions on a machine that drifts
slowly show less than its drift over days (pool runs of several days, or gate with --tbench-ab).

With three sessions the drift's bound is wide (t at 2 degrees of freedom): a run must move past about ten
times the sessions' drift sd before it can fail. That is the honest price of three sessions; more sessions
(--tbench-compare-last 10) narrow it, and --tbench-ab measures without any.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionSpread:
    """A pooled baseline's sessions, in log units: ``drift_sd`` of the sessions' shared shift, ``item_sd`` of
    an item's own scatter around it, with ``item_df`` degrees of freedom (0: one item, nothing to pool)."""

    sessions: int
    drift_sd: float
    item_sd: float
    item_df: int

    def allowance(self, alpha: float, tests: int) -> float:
        """The log change that an item of an unchanged new session stays under with probability
        ``1 - alpha`` for the whole run of ``tests`` timing tests: alpha / 2 for the run's drift, alpha / 2
        shared over the items' own scatter."""
        from scipy.stats import t  # late: the console script's `tbench compare --help` does not need scipy

        factor = math.sqrt(1 + 1 / self.sessions)
        drift = float(t.ppf(1 - alpha / 2, self.sessions - 1)) * self.drift_sd * factor
        if self.item_df < 1:
            return drift
        item = float(t.ppf(1 - alpha / (2 * max(1, tests)), self.item_df)) * self.item_sd * factor
        return drift + item

    def describe(self, alpha: float, tests: int) -> str:
        return (
            f"{math.expm1(self.allowance(alpha, tests)):.1%} ({self.sessions} sessions: drift sd "
            f"{math.expm1(self.drift_sd):.1%}, items' own sd {math.expm1(self.item_sd):.1%}; an unchanged "
            f"run fails with probability at most {alpha:.0%})"
        )


def session_spread(items: Iterable[tuple[float, ...]]) -> SessionSpread | None:
    """The spread of a pooled baseline from each item's per-session figures (one metric's, in session order);
    None where fewer than two sessions measured an item. Items measured by fewer sessions than the most do
    not count: their sessions cannot be lined up."""
    rows = [tuple(math.log(x) for x in row) for row in items if row and min(row) > 0]
    n = max((len(row) for row in rows), default=0)
    rows = [row for row in rows if len(row) == n]
    if n < 2 or not rows:
        return None
    centred = [[x - statistics.fmean(row) for x in row] for row in rows]
    shifts = [statistics.median(row[s] for row in centred) for s in range(n)]
    mean_shift = statistics.fmean(shifts)
    drift_sd = statistics.stdev(shifts)
    residuals = [row[s] - (shifts[s] - mean_shift) for row in centred for s in range(n)]
    item_df = (n - 1) * (len(rows) - 1)
    item_sd = math.sqrt(sum(r * r for r in residuals) / item_df) if item_df > 0 else 0.0
    return SessionSpread(n, drift_sd, item_sd, item_df)
