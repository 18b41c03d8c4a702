"""Two saved runs side by side: loading a baseline, checking it came from the same kind of machine, and
judging every item present in both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_tbench.core.criteria import Criterion
from pytest_tbench.core.record import ItemRecord
from pytest_tbench.judge.judge import Verdict, judge
from pytest_tbench.judge.metrics import extract
from pytest_tbench.judge.spread import SessionSpread, session_spread

# What must match for timings to be comparable; dtype is part of every item's id.
IDENTITY_KEYS = ("cpu", "gpus", "torch_version", "transformers_version", "cuda_version")
# Each GPU's settings that change timings on the same model of GPU (not its current clocks, which move with
# load and temperature all the time).
GPU_SETTING_KEYS = ("sm_clock_max_mhz", "memory_clock_max_mhz", "ecc_enabled", "mig_enabled")
# How a difference names the two runs: a baseline and the run judged against it, unless told (tbench merge
# names its shards' files).
SIDES = ("baseline", "now")


def gpu_names(environment: dict[str, Any]) -> list[str]:
    """The GPU names in a run's ``machine_info.tbench``, tolerant of what other versions wrote."""
    return [str(gpu.get("name", "?")) for gpu in environment.get("gpus") or [] if isinstance(gpu, dict)]


def _recorded_differences(
    where: str, left: Any, right: Any, keys: Any = None, sides: tuple[str, str] = SIDES
) -> list[str]:
    """``keys`` (all of both by default) whose values differ, among those both records have: runs saved
    before a setting was recorded lack it, and a setting absent on either side is not a difference."""
    if not isinstance(left, dict) or not isinstance(right, dict):
        return []
    shared = [k for k in (keys if keys is not None else sorted(left)) if k in left and k in right]
    a, b = sides
    return [f"{where}{k}: {a} {left[k]!r}, {b} {right[k]!r}" for k in shared if left[k] != right[k]]


def torch_flag_differences(base: dict[str, Any], flags: Any, sides: tuple[str, str] = SIDES) -> list[str]:
    """How the torch flags (``machine_info.tbench.torch_flags``) of run ``base`` differ from ``flags``."""
    recorded = base.get("machine_info", {}).get("tbench", {}).get("torch_flags")
    return _recorded_differences("torch_flags.", recorded, flags, sides=sides)


def machine_differences(
    base: dict[str, Any], now: dict[str, Any], sides: tuple[str, str] = SIDES
) -> list[str]:
    a = base.get("machine_info", {}).get("tbench", {})
    b = now.get("machine_info", {}).get("tbench", {})
    differences = []
    for key in IDENTITY_KEYS:
        left, right = (gpu_names(a), gpu_names(b)) if key == "gpus" else (a.get(key), b.get(key))
        if left != right:
            differences.append(f"{key}: {sides[0]} {left!r}, {sides[1]} {right!r}")
    differences += torch_flag_differences(base, b.get("torch_flags"), sides)
    # GPU lists of different lengths already differ by name; compare the settings of the GPUs both have.
    for i, (left, right) in enumerate(zip(a.get("gpus") or [], b.get("gpus") or [], strict=False)):
        differences += _recorded_differences(f"gpus.{i}.", left, right, GPU_SETTING_KEYS, sides)
    return differences


@dataclass
class Comparison:
    verdicts: list[Verdict] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # in this run only
    missing: list[str] = field(default_factory=list)  # in the baseline only
    not_measured: dict[str, str] = field(default_factory=dict)  # baseline items that errored or skipped
    remeasured: dict[str, str] = field(default_factory=dict)  # item -> the earlier attempts' regressions

    @property
    def regressions(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failed]


def not_measured(run: dict[str, Any]) -> dict[str, str]:
    """Items of a run that were skipped or errored, as this plugin records them beside the benchmarks."""
    return {entry["fullname"]: entry["outcome"] for entry in run.get("tbench", {}).get("not_measured", [])}


class Comparer:
    """Judges the items of a run one at a time against a baseline run; ``finish`` gives the whole picture.
    Used item by item inside a pytest session (the gate) and for two saved runs (``tbench compare``)."""

    def __init__(
        self, baseline: dict[str, Any], criteria: tuple[Criterion, ...], drift: float | None = None
    ) -> None:
        self.criteria = criteria
        self.drift = drift  # the drift between sessions to allow against a one-session baseline
        self._baseline = {bench["fullname"]: bench for bench in baseline["benchmarks"]}
        self._seen: set[str] = set()
        self.comparison = Comparison(not_measured=not_measured(baseline))
        self.tests = 1  # the run's timing tests, over which the significance level is shared (``plan``)
        # A pooled baseline's sessions, per gate metric: the drift bound of its timings (spread.py).
        self.spreads = {
            criterion.metric: _spread(criterion.metric, baseline["benchmarks"]) for criterion in criteria
        }

    def plan(self, names: list[str]) -> None:
        """The items the run will judge (in a session: those collected), so that each timing test gets its
        share of the run's error rate: one test per item and timing metric its baseline has, time and
        tokens/s being one (the same rounds)."""
        tests = 0
        for name in names:
            base = self._baseline.get(name)
            if base is not None:
                tests += len(timing_tests(base, self.criteria))
        self.tests = max(1, tests)

    def verdicts(self, bench: dict[str, Any] | ItemRecord) -> list[Verdict]:
        """Judge one item of the current run, recording nothing (an attempt that may be measured again)."""
        record = bench if isinstance(bench, ItemRecord) else ItemRecord.from_bench(bench)
        name = record.fullname
        base = self._baseline.get(name)
        if base is None:
            return []
        verdicts = []
        for criterion in self.criteria:
            if not criterion.applies_to(record):
                continue
            a, b = extract(criterion.metric, base), extract(criterion.metric, record)
            if a is not None and b is not None:
                spread = self.spreads.get(criterion.metric)
                verdicts.append(judge(name, criterion, a, b, self.drift, self.tests, spread))
        return verdicts

    def record(self, name: str, verdicts: list[Verdict]) -> None:
        """Enter an item of the current run, judged by ``verdicts``, in the comparison."""
        self._seen.add(name)
        if name not in self._baseline and name not in self.comparison.not_measured:
            self.comparison.new.append(name)
        self.comparison.verdicts.extend(verdicts)

    def add(self, bench: dict[str, Any]) -> list[Verdict]:
        """Judge one item of the current run and record its verdicts in the comparison."""
        verdicts = self.verdicts(bench)
        self.record(bench["fullname"], verdicts)
        return verdicts

    def finish(self) -> Comparison:
        self.comparison.missing = [name for name in self._baseline if name not in self._seen]
        return self.comparison


def _spread(metric: str, benches: list[dict[str, Any]]) -> SessionSpread | None:
    """The spread of ``metric``'s per-session figures over a pooled baseline's items; None for one run."""
    found = (extract(metric, bench) for bench in benches)
    return session_spread(values.sessions for values in found if values is not None)


def timing_tests(bench: dict[str, Any], criteria: tuple[Criterion, ...]) -> set[str]:
    """The significance tests the gate makes of an item (its baseline entry): one per timing metric with
    rounds, time and tokens/s being the same rounds' one test."""
    found = set()
    for criterion in criteria:
        if criterion.metric == "peak_memory" or not criterion.applies_to(bench):
            continue
        values = extract(criterion.metric, bench)
        if values is not None and values.samples:
            found.add("rounds" if criterion.metric in ("time", "tokens_per_s") else criterion.metric)
    return found


def compare_runs(
    base: dict[str, Any], now: dict[str, Any], criteria: tuple[Criterion, ...], drift: float | None = None
) -> Comparison:
    comparer = Comparer(base, criteria, drift)
    comparer.plan([bench["fullname"] for bench in now["benchmarks"]])
    for bench in now["benchmarks"]:
        comparer.add(bench)
    return comparer.finish()
