"""Paired evidence of an A/B item: the change current/base from paired rounds, with a confidence interval in
which the pairs of worker processes are the unit of replication, and the verdict it supports. Torch-free.

Per pair of processes, the estimate is the mean of its paired rounds' log ratios log(current / base): adjacent
rounds share the machine's state, so drift and bursts cancel in each ratio. A process also has an offset of
its own (allocator layout, thread placement) that its rounds cannot average away, so the interval is a
Student t interval over the per-pair means (scipy), with pairs - 1 degrees of freedom: round-level noise and
per-process offsets both widen it, and only more pairs narrow the latter.

A verdict reads the interval against the threshold (``--tbench-compare-fail``'s METRIC:N%), where N% is the
smallest change the gate must catch:
- REGRESSED: the interval lies wholly on the worse side of no change, and does not rule out a change of the
  threshold's size (so a point estimate alone never fails an item, and a real slowdown of the threshold's
  size is caught once the interval is narrower than it);
- unchanged (or improved): the interval rules out a worsening of the threshold's size;
- cannot tell: the interval holds both no change and the threshold: more pairs are needed, said as such.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..compare.criteria import Criterion
from ..compare.judge import IMPROVED, REGRESSED, TOO_FEW, UNCHANGED, format_value, judge
from ..compare.metrics import MetricValues, extract
from ..record import ItemRecord

CONFIDENCE = 0.99
CANNOT_TELL = "cannot tell"
MIN_PAIRS = 2  # a spread between pairs needs two


@dataclass(frozen=True)
class PairedEstimate:
    ratio: float  # current / base: the geometric mean over pairs of each pair's geometric mean ratio
    low: float  # the interval of the ratio
    high: float
    pairs: int
    paired_rounds: int  # per pair (the smallest, where they differ)
    confidence: float = CONFIDENCE
    pair_ratios: tuple[float, ...] = ()
    pair_sd: float = 0.0  # sd of the per-pair mean log ratios
    round_sd: float = 0.0  # one paired round's log ratio, sd within pairs (root mean square over pairs)

    def describe(self) -> str:
        return (
            f"{self.ratio - 1:+.1%} [{self.low - 1:+.1%}, {self.high - 1:+.1%}] ({self.confidence:.0%} CI, "
            f"{self.pairs} process pairs x {self.paired_rounds} paired rounds)"
        )


def paired_estimate(
    base: Sequence[Sequence[float]], current: Sequence[Sequence[float]], confidence: float = CONFIDENCE
) -> PairedEstimate | None:
    """The change from per-pair values (``base[p][i]`` and ``current[p][i]``: pair p's i-th paired round);
    None with fewer than MIN_PAIRS pairs that have a paired round."""
    means = []
    counts = []
    variances = []
    # A side's i-th process was paired with the other's i-th; a side that ran fewer rounds pairs fewer.
    for base_rounds, current_rounds in zip(base, current, strict=False):
        logs = [math.log(c / b) for b, c in zip(base_rounds, current_rounds, strict=False) if b > 0 and c > 0]
        if logs:
            means.append(statistics.fmean(logs))
            counts.append(len(logs))
        if len(logs) > 1:
            variances.append(statistics.variance(logs))
    if len(means) < MIN_PAIRS:
        return None
    center = statistics.fmean(means)
    spread = statistics.stdev(means) / math.sqrt(len(means))
    half = _t(confidence, len(means)) * spread
    return PairedEstimate(
        math.exp(center),
        math.exp(center - half),
        math.exp(center + half),
        len(means),
        min(counts),
        confidence,
        tuple(math.exp(m) for m in means),
        statistics.stdev(means),
        math.sqrt(statistics.fmean(variances)) if variances else 0.0,
    )


def _t(confidence: float, pairs: int) -> float:
    """Student t's two-sided quantile on pairs - 1 degrees of freedom."""
    from scipy.stats import t  # here, not at the top: scipy costs a second of `tbench compare --help`

    return float(t.ppf(0.5 + confidence / 2, pairs - 1))


def what_would_decide(estimate: PairedEstimate, threshold: float) -> str:
    """For a "cannot tell": how many pairs, or paired rounds per pair, would make the interval narrower than
    the threshold (it then excludes no change or the threshold, whatever the change), if the spreads stay as
    measured. A pair's mean scatters by the rounds' scatter over its rounds plus its processes' own offset:
    more rounds shrink only the first, more pairs both."""
    half = math.log1p(threshold) / 2
    n, pairs = estimate.paired_rounds, estimate.pairs
    round_part = estimate.round_sd**2 / n
    process_part = max(0.0, estimate.pair_sd**2 - round_part)
    needed = next(
        (
            p
            for p in range(MIN_PAIRS, 1001)
            if _t(estimate.confidence, p) * estimate.pair_sd / math.sqrt(p) <= half
        ),
        None,
    )
    text = (
        f"pair means scatter {estimate.pair_sd:.1%} (one round: {estimate.round_sd:.1%}, "
        f"the processes' own part: {math.sqrt(process_part):.1%}); "
    )
    text += f"about {needed} pairs" if needed is not None else "over 1000 pairs"
    text += f" (--tbench-ab-pairs) would decide at {threshold:.0%}"
    room = (half / _t(estimate.confidence, pairs)) ** 2 * pairs - process_part
    rounds = math.ceil(estimate.round_sd**2 / room) if room > 0 else None
    if rounds is not None and rounds > n:
        text += f", or {rounds} paired rounds per pair at {pairs} pairs (--tbench-rounds {rounds * pairs})"
    elif rounds is None:
        text += f"; more rounds would not at {pairs} pairs (the processes differ)"
    return text


@dataclass(frozen=True)
class PairedVerdict:
    item: str
    criterion: Criterion
    base: float  # each side's figure (the median of its rounds; the peak for memory)
    current: float
    change: float  # current / base - 1: the paired estimate where there is one
    status: str
    unit: str
    estimate: PairedEstimate | None = None

    @property
    def failed(self) -> bool:
        return self.status == REGRESSED

    def describe(self) -> str:
        metric = self.criterion.metric
        if self.estimate is not None:
            how = self.estimate.describe()
        else:
            how = f"{self.change:+.1%} (base {format_value(self.base, self.unit)}, current " + (
                f"{format_value(self.current, self.unit)})"
            )
        return f"{metric} {how}, threshold {self.criterion.threshold:.0%}: {self.status}"

    def as_json(self) -> dict[str, object]:
        found = self.estimate
        return {
            "criterion": str(self.criterion),
            "status": self.status,
            "base": self.base,
            "current": self.current,
            "change": self.change,
            "unit": self.unit,
            "low": found.low - 1 if found else None,
            "high": found.high - 1 if found else None,
            "confidence": found.confidence if found else None,
            "pairs": found.pairs if found else None,
            "paired_rounds": found.paired_rounds if found else None,
            "pair_sd": found.pair_sd if found else None,
            "round_sd": found.round_sd if found else None,
            "advice": self.advice,
            "text": self.describe(),
        }

    @property
    def advice(self) -> str | None:
        """What would turn a "cannot tell" into a verdict; None for any other status."""
        if self.status != CANNOT_TELL or self.estimate is None:
            return None
        return what_would_decide(self.estimate, self.criterion.threshold)


def status_of(estimate: PairedEstimate, threshold: float, higher_is_better: bool) -> str:
    """The verdict the interval supports (see the module's docstring)."""
    if higher_is_better:  # worse means lower: a drop of 5% is worse by 5%
        worse_low, worse_high = 1 - estimate.high, 1 - estimate.low
    else:
        worse_low, worse_high = estimate.low - 1, estimate.high - 1
    if worse_low > 0 and worse_high >= threshold:
        return REGRESSED
    if worse_high < threshold:
        return IMPROVED if worse_high < 0 and worse_low <= -threshold else UNCHANGED
    return CANNOT_TELL


def judge_paired(
    item: str, criteria: Sequence[Criterion], base: ItemRecord, current: ItemRecord
) -> list[PairedVerdict]:
    """Every criterion that applies to the item and that both sides have values for. Each side's rounds are
    split by process (``process_rounds``): the i-th process of each side were a pair."""
    verdicts = []
    for criterion in criteria:
        if not criterion.applies_to(current):
            continue
        ours, theirs = extract(criterion.metric, current), extract(criterion.metric, base)
        if ours is None or theirs is None:
            continue
        verdicts.append(_verdict(item, criterion, theirs, ours))
    return verdicts


def _verdict(item: str, criterion: Criterion, base: MetricValues, current: MetricValues) -> PairedVerdict:
    if not base.samples:  # measured once per item (memory): the plain rule, threshold and floor
        plain = judge(item, criterion, base, current)
        return PairedVerdict(
            item, criterion, base.point, current.point, plain.change, plain.status, base.unit
        )
    estimate = paired_estimate(_per_pair(base), _per_pair(current))
    if estimate is None:
        change = current.point / base.point - 1 if base.point else 0.0
        return PairedVerdict(item, criterion, base.point, current.point, change, TOO_FEW, base.unit)
    status = status_of(estimate, criterion.threshold, base.higher_is_better)
    return PairedVerdict(
        item, criterion, base.point, current.point, estimate.ratio - 1, status, base.unit, estimate
    )


def _per_pair(values: MetricValues) -> list[tuple[float, ...]]:
    return list(values.groups) if values.groups else [values.samples]
