"""tbench trend's detector as of 2026-11 (independent points assumed), kept for
benches/changepoint_detection.py to compare against; not used by pytest-tbench. Its original description:

``detect`` finds them in three moves, chosen by measuring (``benches/changepoint_detection.py``, its table in
``benches/changepoint_detection.md``):

1. Outliers out. A point further than ``outlier_sigmas`` noise deviations from the running median of the 7
   points around it is replaced by that median (a Hampel filter). A running median keeps steps sharp (a level
   held for 4 points wins its window), so this removes a lone spike, which would otherwise pass for a short
   step or inflate the noise of a real one, without blurring real steps.
2. Candidates. ruptures' PELT (the exact minimiser of the squared error of a piecewise-constant fit plus a
   penalty per break) with a lenient penalty, so that it proposes every plausible break and a few more.
3. Tests. Each candidate is judged on its two neighbouring segments by a Student t test with their pooled
   variance; its p-value is multiplied by the number of places the break could have been put in those two
   segments (a Bonferroni correction: the break was searched for, not given). The weakest candidate (the
   largest corrected p-value above ``alpha``, else the smallest relative change below ``min_change``) is
   dropped, its neighbours' segments merge and are tested again, until every break left passes both. This is
   the merge step of Otava (Hunter, Fleming et al. 2023) with a corrected test in place of its fixed
   threshold: on a flat series the chance of any reported step is at most about ``alpha``.

A step's ratio (after / before, the means of its two segments after step 1) comes with a Student t
confidence interval of the difference of the two means (pooled variance), divided by the level before.

ruptures is imported inside ``detect`` (the ``trend`` extra), so that the rest of the history package needs
only numpy and scipy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats

from pytest_tbench.history.series import Step, worse

# Fewer points than this give no steps: two segments of a few points each cannot tell a step from noise.
MIN_POINTS = 8
# The running median's window (points): a step must hold for half of it plus one point to survive it.
_MEDIAN_WINDOW = 7
# PELT's penalty per break, in units of noise variance: lenient (BIC would be 2 ln n, about 8 at 60 points),
# since the tests prune; it only bounds how many candidates the tests see.
_PENALTY_VARIANCES = 3.0


def detect(
    values: Sequence[float],
    *,
    higher_is_better: bool = False,
    alpha: float = 0.01,
    min_change: float = 0.01,
    min_size: int = 3,
    outlier_sigmas: float | None = 4.0,
    confidence: float = 0.95,
) -> list[Step]:
    """The steps in ``values`` (oldest first), oldest first.

    higher_is_better: the metric's direction (throughput: True), which sets each step's ``regression``.
    alpha: the chance, at most, of reporting a step in a series without one (corrected for the search).
    min_change: the smallest relative change reported (0.01: 1%), however significant.
    min_size: the fewest points on either side of a step: a step in the last ``min_size - 1`` points of a
        series is not reported yet.
    outlier_sigmas: a point this many noise deviations from its neighbours' median is an outlier (None:
        keep every point as it is).
    confidence: of each step's ratio interval.
    """
    _check(alpha, min_change, min_size, outlier_sigmas, confidence)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be one series of numbers, got an array of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = [i for i, v in enumerate(x) if not math.isfinite(v)]
        raise ValueError(f"values must be finite numbers; points {bad[:5]} are not (drop or fill them first)")
    if len(x) < max(MIN_POINTS, 2 * min_size) or np.ptp(x) == 0.0:
        return []
    sigma = _noise(x)
    if outlier_sigmas is not None:
        x = _without_outliers(x, outlier_sigmas * sigma)
    breaks = _candidates(x, sigma, min_size)
    found = _prune(x, breaks, alpha=alpha, min_change=min_change, min_size=min_size)
    return [_step(x, s, higher_is_better, confidence) for s in found]


@dataclass(frozen=True)
class _Split:
    """A candidate break judged on its two neighbouring segments, ``x[start:index]`` and ``x[index:stop]``."""

    start: int
    index: int
    stop: int
    p_corrected: float
    change: float  # |after / before - 1|


def _check(
    alpha: float, min_change: float, min_size: int, outlier_sigmas: float | None, confidence: float
) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be a probability between 0 and 1 (e.g. 0.01), got {alpha}")
    if min_change < 0.0:
        raise ValueError(f"min_change is a relative change, 0 or more (e.g. 0.01 for 1%), got {min_change}")
    if min_size < 2:
        raise ValueError(f"min_size must be 2 points or more (a segment needs a spread), got {min_size}")
    if outlier_sigmas is not None and outlier_sigmas <= 0.0:
        raise ValueError(
            f"outlier_sigmas must be above 0 (e.g. 4.0), or None to keep outliers; got {outlier_sigmas}"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")


def _noise(x: np.ndarray) -> float:
    """The noise's standard deviation, from the median absolute difference of neighbours, which steps (one
    large difference each) and lone outliers (two) hardly move. Never 0, so that a series that is exact
    within its segments (bytes of memory) still has a scale."""
    diffs = np.diff(x)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    sigma = 1.4826 * mad / math.sqrt(2.0)  # MAD to sd of a difference, then to sd of one point
    return max(sigma, 1e-9 * max(float(np.median(np.abs(x))), 1e-300))


def _without_outliers(x: np.ndarray, threshold: float) -> np.ndarray:
    # "mirror" pads each end with its own neighbours, so a spike in the last point is still seen as one.
    median = ndimage.median_filter(x, size=_MEDIAN_WINDOW, mode="mirror")
    return np.where(np.abs(x - median) > threshold, median, x)


def _candidates(x: np.ndarray, sigma: float, min_size: int) -> list[int]:
    try:
        import ruptures
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "change-point detection needs ruptures: pip install 'pytest-tbench[trend]'"
        ) from error
    penalty = _PENALTY_VARIANCES * sigma**2 * math.log(len(x))
    ends = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(x).predict(pen=penalty)
    return [int(e) for e in ends[:-1]]  # the last "break" is the series' end


def _judge(x: np.ndarray, start: int, index: int, stop: int, min_size: int) -> _Split:
    left, right = x[start:index], x[index:stop]
    before, after = float(left.mean()), float(right.mean())
    if np.ptp(left) == 0.0 and np.ptp(right) == 0.0:  # both exact (bytes of memory): a step if levels differ
        p = 0.0 if before != after else 1.0
    else:
        # Segments of nearly equal values (memory that moved by a few bytes) make scipy warn of precision
        # loss: the p-value is still right for the verdict (tiny or 1), so the warning only alarms users.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(right, left, equal_var=True).pvalue)
    places = (stop - start) - 2 * min_size + 1  # where the break could have been put in x[start:stop]
    change = abs(after / before - 1.0) if before != 0.0 else math.inf
    return _Split(start, index, stop, min(1.0, p * max(places, 1)), change)


def _prune(
    x: np.ndarray, breaks: list[int], *, alpha: float, min_change: float, min_size: int
) -> list[_Split]:
    breaks = list(breaks)
    while breaks:
        bounds = [0, *breaks, len(x)]
        splits = [_judge(x, bounds[i], bounds[i + 1], bounds[i + 2], min_size) for i in range(len(breaks))]
        unsure = [s for s in splits if s.p_corrected > alpha]
        small = [s for s in splits if s.change < min_change]
        if unsure:
            weakest = max(unsure, key=lambda s: s.p_corrected)
        elif small:
            weakest = min(small, key=lambda s: s.change)
        else:
            return splits
        breaks.remove(weakest.index)
    return []


def _step(x: np.ndarray, split: _Split, higher_is_better: bool, confidence: float) -> Step:
    left, right = x[split.start : split.index], x[split.index : split.stop]
    before, after = float(left.mean()), float(right.mean())
    n_left, n_right = len(left), len(right)
    pooled = (float(left.var(ddof=1)) * (n_left - 1) + float(right.var(ddof=1)) * (n_right - 1)) / (
        n_left + n_right - 2
    )
    half = float(stats.t.ppf(0.5 + confidence / 2, n_left + n_right - 2)) * math.sqrt(
        pooled * (1 / n_left + 1 / n_right)
    )
    diff = after - before
    if before == 0.0:
        ratio = ratio_low = ratio_high = math.inf if diff > 0 else -math.inf
    else:
        ratio = after / before
        ends = ((diff - half) / before + 1.0, (diff + half) / before + 1.0)
        ratio_low, ratio_high = min(ends), max(ends)
    return Step(
        index=split.index,
        before=before,
        after=after,
        ratio=ratio,
        ratio_low=ratio_low,
        ratio_high=ratio_high,
        p_value=split.p_corrected,
        regression=worse(ratio, higher_is_better),
    )
