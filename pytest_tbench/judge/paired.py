"""Paired evidence of an A/B item: the change current/base from paired rounds, with a confidence interval in
which the pairs of worker processes are the unit of replication, and the outcome it supports. Torch-free.

Per pair of processes, the estimate is the mean of its paired rounds' log ratios log(current / base): adjacent
rounds share the machine's state, so drift and bursts cancel in each ratio. A process also has an offset of
its own (allocator layout, thread placement) that its rounds cannot average away, so the interval is a
Student t interval over the per-pair means (scipy), with pairs - 1 degrees of freedom: round-level noise and
per-process offsets both widen it, and only more pairs narrow the latter.

An outcome names what the interval rules out, against the threshold (``--tbench-compare-fail``'s METRIC:N%,
the smallest change the gate must catch):
- REGRESSED: the interval lies wholly on the worse side of no change, and does not rule out a change of the
  threshold's size (so a point estimate alone never fails an item, and a real slowdown of the threshold's
  size is caught once the interval is narrower than it); and the run's multiplicity procedure confirms it
  (run_verdict.py: one test among many is held to the run's error rate);
- "slower, within threshold": wholly on the worse side, and rules out the threshold;
- unchanged: inside +-threshold, holding no change; "not worse past threshold": holds no change and rules out
  the threshold, but not a larger improvement; faster: wholly on the better side (memory: larger, smaller);
- cannot tell: the interval holds both no change and the threshold (or a regression the run's procedure did
  not confirm): more pairs are needed, said as such.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_tbench.core.criteria import Criterion
from pytest_tbench.core.metric_table import PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES
from pytest_tbench.core.record import ItemRecord
from pytest_tbench.judge.judge import REGRESSED, TOO_FEW, UNCHANGED, format_value, judge
from pytest_tbench.judge.metrics import MetricValues, extract
from pytest_tbench.settings.ab import MIN_PAIRS

CONFIDENCE = 0.99
CANNOT_TELL = "cannot tell"
SLOWER_WITHIN, FASTER = "slower, within threshold", "faster"
LARGER_WITHIN, SMALLER = "larger, within threshold", "smaller"
NOT_WORSE_PAST = "not worse past threshold"
# An item's own memory (its peak over its process's memory at the start) moves between unchanged processes by
# the allocator's granularity (glibc's heap grows and trims in steps, RSS counts whole pages). Measured in an
# A/A (2026-12-06, this 2-core VM, tiny-gpt2 forward b1/b4 x s8/s64, 4 pairs each: own memory 7.4-11.7 MiB):
# the 16 paired differences were within +-0.5 MiB but for two of 1.2 and 2.0 MiB. The floor is twice the
# largest. What it cannot see: one extra MLP activation of gpt2's forward at b4 x s64 (4 x 64 x 3072 floats,
# 3 MiB); it sees one of a 7B model's hidden states at b1 x s512 (4096 x 512 floats, 8 MiB).
ITEM_MEMORY_FLOOR_BYTES = 4 * 1024 * 1024


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


@functools.lru_cache(maxsize=4096)
def _t(confidence: float, pairs: int) -> float:
    """Student t's two-sided quantile on pairs - 1 degrees of freedom (cached: what_would_decide asks for a
    thousand, and a run judges every item)."""
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
    base: float  # each side's figure (the median of its rounds; memory: the item's own, the mean over pairs)
    current: float
    change: float  # current / base - 1: the paired estimate where there is one
    status: str
    unit: str
    estimate: PairedEstimate | None = None
    # The interval of the change (current / base - 1) and the change counted as a regression: the threshold
    # (memory: at least the floor, as a fraction of the base). None where nothing was paired.
    interval: tuple[float, float] | None = None
    limit: float = 0.0
    # One-sided: how likely a change this far on the worse side is with no change at all. The run's
    # multiplicity procedure (run_verdict.py) decides on these; None where nothing was paired.
    p_value: float | None = None
    # What the p-value tests: verdicts of one item with the same test are one test (time and tokens/s are
    # the same rounds, their paired log ratios the same numbers of opposite sign).
    test: str = ""
    pair_log_ratios: tuple[float, ...] = ()  # time's per-pair means, for the run-level test

    @property
    def failed(self) -> bool:
        return self.status == REGRESSED

    def describe(self) -> str:
        metric = self.criterion.metric
        if self.estimate is not None:
            how = self.estimate.describe()
        elif self.interval is not None:
            low, high = self.interval
            how = f"{self.change:+.1%} [{low:+.1%}, {high:+.1%}] of the item's own memory ("
            how += (
                f"base {format_value(self.base, self.unit)}, current {format_value(self.current, self.unit)})"
            )
        else:
            how = f"{self.change:+.1%} (base {format_value(self.base, self.unit)}, current " + (
                f"{format_value(self.current, self.unit)})"
            )
        limit = f"threshold {self.criterion.threshold:.0%}"
        if self.limit > self.criterion.threshold:
            limit += f" (the floor: {self.limit:+.1%})"
        return f"{metric} {how}, {limit}: {self.status}"

    def as_json(self) -> dict[str, object]:
        found = self.estimate
        low, high = self.interval if self.interval is not None else (None, None)
        return {
            "criterion": str(self.criterion),
            "status": self.status,
            "base": self.base,
            "current": self.current,
            "change": self.change,
            "unit": self.unit,
            "low": low,
            "high": high,
            "limit": self.limit,
            "p_value": self.p_value,
            "test": self.test,
            "pair_log_ratios": list(self.pair_log_ratios),
            "confidence": CONFIDENCE if self.interval is not None else None,
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


def worse_interval(low: float, high: float, higher_is_better: bool) -> tuple[float, float]:
    """An interval of the change (current / base - 1) as how much worse: a drop of throughput is worse."""
    return (-high, -low) if higher_is_better else (low, high)


def words(metric: str) -> tuple[str, str]:
    """The words for "worse, within threshold" and "better" of a metric."""
    return (LARGER_WITHIN, SMALLER) if metric == "peak_memory" else (SLOWER_WITHIN, FASTER)


def status_from(
    worse_low: float, worse_high: float, limit: float, metric: str, confirmed: bool = True
) -> str:
    """The outcome the interval (as how much worse) supports; ``confirmed``: the run's multiplicity procedure
    rejected "no worse" for this test (a single item's interval alone never fails a run of many)."""
    worse_within, better = words(metric)
    if worse_low > 0:
        if worse_high < limit:
            return worse_within
        return REGRESSED if confirmed else CANNOT_TELL
    if worse_high < 0:
        return better
    if worse_high < limit:
        return UNCHANGED if worse_low > -limit else NOT_WORSE_PAST
    return CANNOT_TELL


def status_of(
    estimate: PairedEstimate, threshold: float, higher_is_better: bool, metric: str = "time"
) -> str:
    """The outcome the interval supports on its own (see the module's docstring)."""
    low, high = worse_interval(estimate.low - 1, estimate.high - 1, higher_is_better)
    return status_from(low, high, threshold, metric)


def one_sided_p(values: Sequence[float], worse_is_higher: bool) -> float:
    """The one-sided p-value of Student's one-sample t test that the values' mean is worse than zero (the
    t distribution's tail from scipy: ``ttest_1samp`` gives the same, at a hundred times the cost, which a
    run of many items pays per item); with no spread at all (identical values: memory often), 0 or 1 by the
    side the mean is on."""
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    if sd == 0:
        worse = mean > 0 if worse_is_higher else mean < 0
        return 0.0 if worse else 1.0
    from scipy.special import stdtr  # late, as _t

    t = mean / (sd / math.sqrt(len(values)))
    return float(stdtr(len(values) - 1, -t if worse_is_higher else t))


def judge_paired(
    item: str, criteria: Sequence[Criterion], base: ItemRecord, current: ItemRecord
) -> list[PairedVerdict]:
    """Every criterion that applies to the item and that both sides have values for. Each side's rounds are
    split by process (``process_rounds``): the i-th process of each side were a pair. Statuses are the
    item's own; the run's procedure (run_verdict.py) confirms or withholds each REGRESSED."""
    verdicts = []
    for criterion in criteria:
        if not criterion.applies_to(current):
            continue
        if criterion.metric == "peak_memory":
            own = _own_memory(item, criterion, base, current)
            if own is not None:
                verdicts.append(own)
                continue
        ours, theirs = extract(criterion.metric, current), extract(criterion.metric, base)
        if ours is None or theirs is None:
            continue
        verdicts.append(_verdict(item, criterion, theirs, ours))
    return verdicts


def _verdict(item: str, criterion: Criterion, base: MetricValues, current: MetricValues) -> PairedVerdict:
    if not base.samples:  # measured once per item, no per-pair figures (older runs' memory): the plain rule
        plain = judge(item, criterion, base, current)
        return PairedVerdict(
            item, criterion, base.point, current.point, plain.change, plain.status, base.unit
        )
    estimate = paired_estimate(_per_pair(base), _per_pair(current))
    if estimate is None:
        change = current.point / base.point - 1 if base.point else 0.0
        return PairedVerdict(item, criterion, base.point, current.point, change, TOO_FEW, base.unit)
    status = status_of(estimate, criterion.threshold, base.higher_is_better, criterion.metric)
    logs = tuple(math.log(r) for r in estimate.pair_ratios)
    return PairedVerdict(
        item,
        criterion,
        base.point,
        current.point,
        estimate.ratio - 1,
        status,
        base.unit,
        estimate,
        (estimate.low - 1, estimate.high - 1),
        criterion.threshold,
        one_sided_p(logs, worse_is_higher=not base.higher_is_better),
        # tokens/s is tokens over the same rounds' times: one test with time
        "rounds" if criterion.metric in ("time", "tokens_per_s") else criterion.metric,
        logs if criterion.metric == "time" else (),
    )


def _own_memory(
    item: str, criterion: Criterion, base: ItemRecord, current: ItemRecord
) -> PairedVerdict | None:
    """Memory judged on the item's own memory (its peak over what its process held at the start), pair by
    pair: the whole process's peak is mostly the model and the interpreter, and a 5% threshold of that
    cannot see the item triple its own. The change is the mean paired difference as a fraction of the base's
    own memory, and a difference under ITEM_MEMORY_FLOOR_BYTES (what an unchanged item moves by) never
    counts. None where a side has no per-pair figures (runs saved before they were recorded)."""
    ours = current.metrics.get(PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES)
    theirs = base.metrics.get(PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES)
    if not isinstance(ours, list) or not isinstance(theirs, list):
        return None
    differences = [float(c) - float(b) for b, c in zip(theirs, ours, strict=False)]
    base_mean = statistics.fmean(theirs) if theirs else 0.0
    current_mean = statistics.fmean(ours) if ours else 0.0
    scale = max(base_mean, ITEM_MEMORY_FLOOR_BYTES)
    change = (current_mean - base_mean) / scale
    if len(differences) < MIN_PAIRS:
        return PairedVerdict(item, criterion, base_mean, current_mean, change, TOO_FEW, "bytes")
    center = statistics.fmean(differences)
    half = _t(CONFIDENCE, len(differences)) * statistics.stdev(differences) / math.sqrt(len(differences))
    low, high = (center - half) / scale, (center + half) / scale
    limit = max(criterion.threshold * base_mean, ITEM_MEMORY_FLOOR_BYTES) / scale
    return PairedVerdict(
        item,
        criterion,
        base_mean,
        current_mean,
        change,
        status_from(low, high, limit, criterion.metric),
        "bytes",
        None,
        (low, high),
        limit,
        one_sided_p(differences, worse_is_higher=True),
        "memory",
    )


def _per_pair(values: MetricValues) -> list[tuple[float, ...]]:
    return list(values.groups) if values.groups else [values.samples]
