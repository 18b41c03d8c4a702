"""Steps in a series: where one metric's level moved over the runs of a store.

``detect`` finds them in four moves, chosen by measuring (``benches/changepoint_detection.py``, its table in
``benches/changepoint_detection.md``) on noise shaped like real CI history: independent, heavy-tailed,
autocorrelated (a machine slow tonight tends to be slow tomorrow), a runner that lands on a slower machine
kind one session in five, and slow spells of a few sessions.

1. Outliers out. A point further than ``outlier_sigmas`` (5) robust deviations from the running median of the
   7 points around it is replaced by that median (a Hampel filter); the scale is the median absolute
   deviation from that running median, which neither a step nor autocorrelation inflates or shrinks much
   (neighbour differences shrink to sigma x sqrt(1 - phi) under autocorrelation). A running median keeps
   steps sharp (a level held for 4 points wins its window), so this removes spikes without blurring real
   steps. The cut is high on purpose: at 3 deviations it clipped half the sessions of a slower machine kind
   (6% up in 1.5% noise), and the half it kept looked like levels (5/50 false alarms, against 0/50 at 5).
2. Candidates. ruptures' PELT (the exact minimiser of the squared error of a piecewise-constant fit plus a
   penalty per break) with a lenient penalty, so that it proposes every plausible break and a few more.
3. The noise. An AR(1) model (marginal variance and lag-1 correlation phi) fitted to the residuals of a
   segmentation by the method of moments, with the expectations computed exactly for that segmentation
   (removing each segment's mean biases a plain lag-1 correlation down by about (1 + 3 phi) / n per segment).
   phi is kept at 0 or above (negative values are estimation noise in benchmark history) and raised by one
   standard error: breaks are put where the noise happened to wander, so residuals look less correlated than
   the noise is.
4. Tests. A break is judged on its two neighbouring segments: the difference of their means over its
   standard deviation under that AR(1) noise (exact for the two segments: c' R c for the contrast c), against
   a Student t with the degrees of freedom of the noise's variance estimate (n (1 - phi^2) / (1 + phi^2));
   its p-value is corrected for the places the break could have been put in those two segments (the break
   was searched for, not given) by Hunter and Worsley's bound on the largest of the contrasts over those
   places (``searched_p``), which counts how alike neighbouring places are under that noise: a quarter of
   Bonferroni's correction at 60 points of AR(1) 0.5 noise, where it is within 15% of the exact chance.
   The candidates are taken forward first (``_forward``): the strongest that passes when added to the ones
   accepted, the noise fitted to those alone, then the next; where none passes alone, a pair of them (a
   level that came and went, for longer than ``max_spell`` points). Fitting the noise to every candidate at
   once let a staircase of them explain autocorrelated wandering away (phi fitted 0.1 on AR(1) 0.8 noise).
   The breaks accepted are then pruned backwards: the weakest (the largest corrected p-value above
   ``alpha``, else the smallest relative change below ``min_change``) is dropped, its neighbours' segments
   merge and are tested again with the noise refitted, until every break left passes both. This is the
   merge step of Otava (Hunter, Fleming et al. 2023) with a corrected test in place of its fixed threshold.
   Last, spells: a level that lasted ``max_spell`` points or fewer between a step up and a step down (or
   down and up), or that the series starts with, is not a change, and the weaker of its breaks (the only
   one, at the start) is dropped and the rest tested again. A level held by the newest ``max_spell`` points
   or fewer is reported while the newest point, as measured, is nearer it than the level before (a new
   level the night it shows), not once the newest run is back (a spell that just ended).

A step's ratio (after / before, the means of its two segments after step 1) comes with a confidence interval
of the difference of the two means under the same noise model, divided by the level before.

ruptures is imported inside ``detect`` (the ``trend`` extra), so that the rest of the history package needs
only numpy and scipy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize, special, stats

from pytest_tbench.history.series import Step, worse

# Fewer points than this give no steps: two segments of a few points each cannot tell a step from noise.
MIN_POINTS = 8
# The running median's window (points): a step must hold for half of it plus one point to survive it.
_MEDIAN_WINDOW = 7
# PELT's penalty per break, in units of the variance of neighbour differences: lenient (BIC would be
# 2 ln n, about 8 at 60 points), since the tests prune; it only bounds how many candidates the tests see.
_PENALTY_VARIANCES = 3.0
# The noise model's lag-1 correlation is searched in [0, _MAX_PHI]: at 0.97 a series of 60 points holds about
# one independent point, and no test of it means anything.
_MAX_PHI = 0.97
# How many standard errors phi is raised by (see the module's step 3), chosen with the forward selection and
# the Hunter-Worsley bound (benches/changepoint_detection.md, notes of 2026-12-06): 1.0.
_PHI_RAISE = 1.0
# Pairs of candidates tried at once (step 4) only among this many, the strongest alone: the pairs are
# quadratic in the candidates, and a long series' PELT may propose dozens.
_PAIR_CANDIDATES = 12


def detect(
    values: Sequence[float],
    *,
    higher_is_better: bool = False,
    alpha: float = 0.01,
    min_change: float = 0.01,
    min_size: int = 3,
    outlier_sigmas: float | None = 5.0,
    confidence: float = 0.95,
    max_spell: int = 7,
) -> list[Step]:
    """The steps in ``values`` (oldest first), oldest first.

    higher_is_better: the metric's direction (throughput: True), which sets each step's ``regression``.
    alpha: the chance, at most, of reporting a step in a series without one (corrected for the search).
    min_change: the smallest relative change reported (0.01: 1%), however significant.
    min_size: the fewest points on either side of a step: a step in the last ``min_size - 1`` points of a
        series is not reported yet.
    outlier_sigmas: a point this many robust deviations from its neighbours' median is an outlier (None:
        keep every point as it is).
    confidence: of each step's ratio interval.
    max_spell: a level held for this many points or fewer between two steps of opposite directions is a
        spell, not reported (0: report every level that passes the tests).
    """
    _check(alpha, min_change, min_size, outlier_sigmas, confidence)
    if max_spell < 0:
        raise ValueError(f"max_spell is a number of points, 0 or more (e.g. 7), got {max_spell}")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be one series of numbers, got an array of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = [i for i, v in enumerate(x) if not math.isfinite(v)]
        raise ValueError(f"values must be finite numbers; points {bad[:5]} are not (drop or fill them first)")
    if len(x) < max(MIN_POINTS, 2 * min_size) or np.ptp(x) == 0.0:
        return []
    newest = float(x[-1])  # as measured: the filter may take a newest point back at the old level for a spike
    if outlier_sigmas is not None:
        x = _without_outliers(x, outlier_sigmas)
    breaks = _candidates(x, _difference_noise(x), min_size)
    chosen = _forward(x, breaks, alpha=alpha, min_change=min_change, min_size=min_size, max_spell=max_spell)
    found = _prune(
        x, chosen, alpha=alpha, min_change=min_change, min_size=min_size, max_spell=max_spell, newest=newest
    )
    return [_step(x, s, higher_is_better, confidence) for s in found]


@dataclass(frozen=True)
class Noise:
    """An AR(1) model of a series' noise: marginal variance and lag-1 correlation."""

    variance: float
    phi: float

    def correlation(self, n: int) -> np.ndarray:
        lags = np.arange(n)
        return np.asarray(self.phi ** np.abs(lags[:, None] - lags[None, :]), dtype=np.float64)

    def _block_sum(self, n: int) -> float:
        """The sum of the correlations of ``n`` consecutive points with each other (n + 2 sum (n-k) phi^k)."""
        k = np.arange(1, n)
        return n + 2.0 * float(np.sum((n - k) * self.phi**k))

    def difference_variance(self, before: int, after: int) -> float:
        """The variance of (mean of ``after`` points - mean of the ``before`` points just before them), in
        O(n) rather than the n x n c' R c: the two blocks' own sums and the geometric sum between them."""
        phi = self.phi
        between = phi * (1 - phi**before) * (1 - phi**after) / (1 - phi) ** 2 if phi > 0 else 0.0
        return self.variance * (
            self._block_sum(before) / before**2
            + self._block_sum(after) / after**2
            - 2 * between / (before * after)
        )

    def variance_points(self, n: int) -> float:
        """How many independent points ``n`` correlated ones are worth for a variance (n (1 - phi^2) / (1 +
        phi^2)): the degrees of freedom of the noise's variance estimate."""
        return n * (1.0 - self.phi**2) / (1.0 + self.phi**2)


@dataclass(frozen=True)
class _Split:
    """A candidate break judged on its two neighbouring segments, ``x[start:index]`` and ``x[index:stop]``."""

    start: int
    index: int
    stop: int
    p_corrected: float
    change: float  # |after / before - 1|
    sd: float  # standard deviation of (after - before) under the noise model
    df: float  # the t distribution's degrees of freedom


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
            f"outlier_sigmas must be above 0 (e.g. 5.0), or None to keep outliers; got {outlier_sigmas}"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")


def _difference_noise(x: np.ndarray) -> float:
    """A noise scale for PELT's penalty, from the median absolute difference of neighbours, which steps (one
    large difference each) hardly move. It is too small under autocorrelation, which only gives the tests more
    candidates. Never 0, so that a series that is exact within its segments still has a scale."""
    diffs = np.diff(x)
    sigma = float(stats.median_abs_deviation(diffs, scale="normal")) / math.sqrt(2.0)
    return max(sigma, 1e-9 * max(float(np.median(np.abs(x))), 1e-300))


def _without_outliers(x: np.ndarray, sigmas: float) -> np.ndarray:
    # "mirror" pads each end with its own neighbours, so a spike in the last point is still seen as one, and
    # a new level in the last 3 points holds 4 of the 7 and is kept.
    median = ndimage.median_filter(x, size=_MEDIAN_WINDOW, mode="mirror")
    deviation = x - median
    scale = float(stats.median_abs_deviation(deviation, scale="normal"))
    if scale == 0.0:  # most points sit on their running median (exact levels): only a clear spike goes
        scale = 1e-9 * max(float(np.median(np.abs(x))), 1e-300)
    return np.where(np.abs(deviation) > sigmas * scale, median, x)


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


def _near_sum(t: np.ndarray, start: np.ndarray, stop: np.ndarray, phi: float) -> np.ndarray:
    """sum over j in [start, stop) of phi^|t - j|, elementwise: the correlation of point t with a segment's
    sum, by the geometric series on either side of t (O(1) each, where the n x n matrix is O(n^2))."""
    length = stop - start
    inside = (1 - phi ** (t - start + 1)) / (1 - phi) + phi * (1 - phi ** np.maximum(stop - 1 - t, 0)) / (
        1 - phi
    )
    block = (1 - phi**length) / (1 - phi)
    before = phi ** np.maximum(start - t, 0) * block  # t before the segment
    after = phi ** np.maximum(t - stop + 1, 0) * block  # t after it
    return np.where(t < start, before, np.where(t >= stop, after, inside))


def _residual_moments(n: int, starts: np.ndarray, phi: float) -> tuple[float, float]:
    """E[e'e] and E[sum e_t e_t+1] per unit variance, e the residuals from the segment means, for AR(1) noise
    (the traces of M R M and of its first superdiagonal, M = I - P the residual projection), in O(n)."""
    stops = np.append(starts[1:], n)
    lengths = (stops - starts).astype(np.float64)
    # Each segment's sum of correlations within itself: L (1+phi)/(1-phi) - 2 phi (1 - phi^L) / (1-phi)^2.
    within = lengths * (1 + phi) / (1 - phi) - 2 * phi * (1 - phi**lengths) / (1 - phi) ** 2
    squares = n - float(np.sum(within / lengths))
    t = np.arange(n - 1)
    segment = np.repeat(np.arange(len(starts)), (stops - starts))
    here, there = segment[:-1], segment[1:]  # the segments of t and of t + 1
    point_to_next_mean = _near_sum(t, starts[there], stops[there], phi) / lengths[there]
    next_point_to_mean = _near_sum(t + 1, starts[here], stops[here], phi) / lengths[here]
    # Two adjacent segments' sums: phi (1 - phi^L1) (1 - phi^L2) / (1 - phi)^2 between them.
    between = phi * (1 - phi ** lengths[here]) * (1 - phi ** lengths[there]) / (1 - phi) ** 2
    means = np.where(
        here == there, within[here] / lengths[here] ** 2, between / (lengths[here] * lengths[there])
    )
    products = float(np.sum(phi - point_to_next_mean - next_point_to_mean + means))
    return squares, products


def fit_noise(x: np.ndarray, breaks: Sequence[int]) -> Noise:
    """The AR(1) noise of ``x`` around its segment means (``breaks``: the first index of each new segment), by
    the method of moments with the expectations exact for this segmentation; phi kept in [0, 0.97]."""
    n = len(x)
    starts = np.array([0, *breaks])
    lengths = np.diff(np.append(starts, n))
    means = np.add.reduceat(x, starts) / lengths
    e = x - np.repeat(means, lengths)
    total, lagged = float(e @ e), float(e[:-1] @ e[1:])
    if total == 0.0:  # exact within every segment (bytes of memory)
        return Noise(0.0, 0.0)
    observed = lagged / total

    def excess(phi: float) -> float:
        squares, products = _residual_moments(n, starts, phi)
        return products / squares - observed

    if excess(0.0) >= 0.0:
        phi = 0.0
    elif excess(_MAX_PHI) <= 0.0:
        phi = _MAX_PHI
    else:
        phi = float(optimize.brentq(excess, 0.0, _MAX_PHI, xtol=1e-4))
    squares, _ = _residual_moments(n, starts, phi)
    return Noise(total / squares, phi)


def _raised(noise: Noise, n: int) -> Noise:
    # The large-sample standard error of a lag-1 correlation estimate: sqrt((1 - phi^2) / n).
    phi = min(_MAX_PHI, noise.phi + _PHI_RAISE * math.sqrt((1.0 - noise.phi**2) / n))
    return Noise(noise.variance, phi)


def _judge(x: np.ndarray, start: int, index: int, stop: int, min_size: int, noise: Noise) -> _Split:
    left, right = x[start:index], x[index:stop]
    before, after = float(left.mean()), float(right.mean())
    sd = math.sqrt(max(noise.difference_variance(len(left), len(right)), 0.0))
    df = max(noise.variance_points(len(x)) - 2.0, 2.0)
    if sd == 0.0:  # exact levels (bytes of memory): a step if the levels differ
        p = 0.0 if before != after else 1.0
    else:
        p = float(2.0 * stats.t.sf(abs(after - before) / sd, df))
    places = (stop - start) - 2 * min_size + 1  # where the break could have been put in x[start:stop]
    corrected = min(1.0, p * max(places, 1))  # Bonferroni
    if p > 0.0 and places > 1:
        corrected = min(corrected, searched_p(p, stop - start, min_size, noise.phi))
    change = abs(after / before - 1.0) if before != 0.0 else math.inf
    return _Split(start, index, stop, corrected, change, sd, df)


def _prefix_variance(i: np.ndarray, phi: float) -> np.ndarray:
    """Var(e_0 + ... + e_(i-1)) for unit-variance AR(1) noise."""
    if phi == 0.0:
        return i
    return np.asarray(i * (1 + phi) / (1 - phi) - 2 * phi * (1 - phi**i) / (1 - phi) ** 2)


def _prefix_covariance(i: np.ndarray, j: np.ndarray, phi: float) -> np.ndarray:
    """Cov(sum of the first i points, sum of the first j points), i <= j, for unit-variance AR(1) noise: the
    first's variance and the geometric sum between it and the j - i points after it."""
    between = phi * (1 - phi**i) * (1 - phi ** (j - i)) / (1 - phi) ** 2 if phi > 0 else 0.0 * i
    return np.asarray(_prefix_variance(i, phi) + between)


def neighbour_correlations(length: int, min_size: int, phi: float) -> np.ndarray:
    """The correlation of the two-segment contrast (mean after - mean before) with a break after k points and
    the one with a break after k + 1, for each k from min_size to length - min_size - 1, under AR(1) noise.
    The contrast is S_L / (L - k) - S_k L / (k (L - k)) in the prefix sums S, so each covariance is O(1)."""
    size = float(length)
    k = np.arange(min_size, length - min_size + 1, dtype=np.float64)
    whole = float(_prefix_variance(np.asarray(size), phi))
    with_whole = _prefix_covariance(k, np.full_like(k, size), phi)

    def covariance(
        a: np.ndarray, b: np.ndarray, ab: np.ndarray, a_whole: np.ndarray, b_whole: np.ndarray
    ) -> np.ndarray:
        return np.asarray(
            whole / ((size - a) * (size - b))
            - a_whole * size / (a * (size - a) * (size - b))
            - b_whole * size / (b * (size - b) * (size - a))
            + ab * size * size / (a * (size - a) * b * (size - b))
        )

    variance = covariance(k, k, _prefix_variance(k, phi), with_whole, with_whole)
    a, b = k[:-1], k[1:]
    between = covariance(a, b, _prefix_covariance(a, b, phi), with_whole[:-1], with_whole[1:])
    return np.asarray(np.clip(between / np.sqrt(variance[:-1] * variance[1:]), -1.0, 1.0))


def searched_p(p: float, length: int, min_size: int, phi: float) -> float:
    """The chance that the largest of the two-segment contrasts over every place a break could be put in
    ``length`` points reaches the one seen (two-sided p-value ``p`` at one place), bounded above by Hunter
    and Worsley's first-exceedance bound: P(Z_1 > z) + sum over neighbours of P(Z_k <= z < Z_(k+1)), each
    term 2 T(z, sqrt((1 - rho) / (1 + rho))) (Owen's T) for neighbours correlated rho. Neighbouring places
    share all points but one, so this is far below Bonferroni's places x p (4 times, at 60 points of AR(1)
    0.5 noise and a p of 0.01 searched, where the bound is within 15% of the true chance)."""
    z = float(stats.norm.isf(p / 2.0))
    rho = neighbour_correlations(length, min_size, phi)
    a = np.sqrt(np.maximum(1.0 - rho, 0.0) / (1.0 + rho))
    return min(1.0, 2.0 * (float(stats.norm.sf(z)) + float(np.sum(2.0 * special.owens_t(z, a)))))


def _judge_among(x: np.ndarray, breaks: list[int], chosen: Sequence[int], min_size: int) -> list[_Split]:
    """The breaks ``chosen`` among ``breaks`` (sorted), each judged on its two neighbouring segments under the
    noise fitted to that segmentation."""
    noise = _raised(fit_noise(x, breaks), len(x))
    bounds = [0, *breaks, len(x)]
    splits = []
    for index in chosen:
        i = breaks.index(index) + 1
        splits.append(_judge(x, bounds[i - 1], index, bounds[i + 1], min_size, noise))
    return splits


def _forward(
    x: np.ndarray, candidates: list[int], *, alpha: float, min_change: float, min_size: int, max_spell: int
) -> list[int]:
    """The candidates that pass when added one at a time to the ones accepted (the strongest first), the
    noise fitted to the accepted breaks and the one tried; where no single one passes, a pair of them (a level
    that came and went, which neither break alone fits), its p-values multiplied by the pairs tried. Fitting
    the noise to breaks that passed, rather than to every candidate, keeps a staircase of candidates from
    explaining away autocorrelated wandering (with PELT's dozen breaks on AR(1) 0.8 noise, phi fitted 0.1)."""
    accepted: list[int] = []
    left = sorted(candidates)
    while left:
        alone = [_judge_among(x, sorted([*accepted, index]), [index], min_size)[0] for index in left]
        best = min((s for s in alone if s.change >= min_change), key=lambda s: s.p_corrected, default=None)
        if best is not None and best.p_corrected <= alpha:
            accepted.append(best.index)
            left.remove(best.index)
            continue
        strongest = sorted(s.index for s in sorted(alone, key=lambda s: s.p_corrected)[:_PAIR_CANDIDATES])
        pairs = [(a, b) for a, b in itertools.combinations(strongest, 2) if b - a > max_spell]
        chosen, weakest = None, 1.0
        for pair in pairs:
            splits = _judge_among(x, sorted([*accepted, *pair]), pair, min_size)
            if all(s.change >= min_change for s in splits):
                p = max(s.p_corrected for s in splits) * len(pairs)
                if p < weakest:
                    chosen, weakest = pair, p
        if chosen is None or weakest > alpha:
            break
        accepted += chosen
        left = [index for index in left if index not in chosen]
    return sorted(accepted)


def _prune(
    x: np.ndarray,
    breaks: list[int],
    *,
    alpha: float,
    min_change: float,
    min_size: int,
    max_spell: int,
    newest: float,
) -> list[_Split]:
    breaks = list(breaks)
    while breaks:
        noise = _raised(fit_noise(x, breaks), len(x))
        bounds = [0, *breaks, len(x)]
        splits = [
            _judge(x, bounds[i], bounds[i + 1], bounds[i + 2], min_size, noise) for i in range(len(breaks))
        ]
        unsure = [s for s in splits if s.p_corrected > alpha]
        small = [s for s in splits if s.change < min_change]
        if unsure:
            weakest = max(unsure, key=lambda s: s.p_corrected)
        elif small:
            weakest = min(small, key=lambda s: s.change)
        else:
            spell = _first_spell(x, splits, max_spell) or _end_spell(x, splits, max_spell, newest)
            if spell is None:
                return splits
            weakest = spell
        breaks.remove(weakest.index)
    return []


def _end_spell(x: np.ndarray, splits: list[_Split], max_spell: int, newest: float) -> _Split | None:
    """A break next to a level held only at an end of the series, for max_spell points or fewer, that may be
    a spell cut off by the end: the first break, where the first level is that short (the first runs may
    have been a slow spell, and nothing before them says); the last one, where the newest level is that
    short and the newest point, as measured, is nearer the old level than the new one (a spell that ended
    with the newest run; a new level the night it is first seen has its newest point on it)."""
    if max_spell == 0:
        return None
    first, last = splits[0], splits[-1]
    if first.index <= max_spell:
        return first
    if len(x) - last.index <= max_spell:
        before, after = float(x[last.start : last.index].mean()), float(x[last.index :].mean())
        if abs(newest - before) < abs(newest - after):
            return last
    return None


def _first_spell(x: np.ndarray, splits: list[_Split], max_spell: int) -> _Split | None:
    """The weaker break of the first short level between steps of opposite directions (a slow spell, or a
    run of sessions on a slower machine kind), if any."""
    for first, second in itertools.pairwise(splits):
        up_first = x[first.index : first.stop].mean() > x[first.start : first.index].mean()
        up_second = x[second.index : second.stop].mean() > x[second.start : second.index].mean()
        if second.index - first.index <= max_spell and up_first != up_second:
            return first if first.p_corrected >= second.p_corrected else second
    return None


def _step(x: np.ndarray, split: _Split, higher_is_better: bool, confidence: float) -> Step:
    left, right = x[split.start : split.index], x[split.index : split.stop]
    before, after = float(left.mean()), float(right.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, split.df)) * split.sd
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
