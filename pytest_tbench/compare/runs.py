"""Two saved runs side by side: loading a baseline, checking it came from the same kind of machine, and
judging every item present in both."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OptionError
from ..record import ItemRecord
from .criteria import Criterion
from .judge import Verdict, judge
from .metrics import extract
from .spread import SessionSpread, session_spread

# What must match for timings to be comparable; dtype is part of every item's id.
IDENTITY_KEYS = ("cpu", "gpus", "torch_version", "transformers_version", "cuda_version")
# Each GPU's settings that change timings on the same model of GPU (not its current clocks, which move with
# load and temperature all the time).
GPU_SETTING_KEYS = ("sm_clock_max_mhz", "memory_clock_max_mhz", "ecc_enabled", "mig_enabled")
# How a difference names the two runs: a baseline and the run judged against it, unless told (tbench merge
# names its shards' files).
SIDES = ("baseline", "now")


def load_run(path: Path, role: str = "baseline") -> dict[str, Any]:
    """A pytest-benchmark JSON file, or an OptionError naming the file (as ``role``: a baseline, a run) and
    what is wrong with it."""
    if not path.is_file():
        raise OptionError(f"{role} {str(path)!r} does not exist or is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OptionError(f"{role} {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise OptionError(f"{role} {path} is not a pytest-benchmark run: it has no 'benchmarks' list")
    problem = shape_problem(data)
    if problem:
        raise OptionError(f"{role} {path} is not a pytest-benchmark run as tbench reads it: {problem}")
    return data


# The parts of a run file every reader (the gate, compare, merge, report, store import) takes as given: where
# one is of another type, the file is refused here, by name, instead of failing deep inside a reader.
_MAPPINGS = ("machine_info", "commit_info", "tbench")
_ENTRY_MAPPINGS = ("stats", "extra_info", "params")
SHARD_KEYS = ("path", "datetime", "node", "commit", "items", "not_measured")  # a merged run's tbench.shards


def shape_problem(data: dict[str, Any]) -> str | None:
    """What in a run file is not of the type pytest-benchmark and tbench write; None: nothing."""
    for key in _MAPPINGS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            return f"its {key!r} is a {type(data[key]).__name__}, not a mapping"
    for index, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict):
            return f"benchmarks[{index}] is a {type(bench).__name__}, not a mapping"
        for key in _ENTRY_MAPPINGS:
            if bench.get(key) is not None and not isinstance(bench[key], dict):
                return f"benchmarks[{index}].{key} is a {type(bench[key]).__name__}, not a mapping"
        if not isinstance(bench.get("fullname"), str):
            return f"benchmarks[{index}] has no item id (a 'fullname' string, which pytest-benchmark writes)"
    tbench = data.get("tbench") or {}
    for key, needs in (("not_measured", ("fullname", "outcome")), ("shards", SHARD_KEYS)):
        entries = tbench.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and all(k in e for k in needs) for e in entries
        ):
            return f"its tbench.{key} is not a list of entries with {', '.join(needs)}"
    return None


def find_saved_runs(storage: Path, run: str | None, last: int = 1) -> list[Path]:
    """``run`` as a JSON path, or the newest ``last`` saved runs (oldest first) in this machine's
    pytest-benchmark storage folder, those whose name starts with ``run`` where it is given."""
    if run and (run.endswith(".json") or Path(run).is_file()):
        if not Path(run).is_file():
            raise OptionError(f"baseline {run!r} does not exist; give a saved run (e.g. 0001) or a JSON path")
        if last > 1:
            raise OptionError(
                f"{run!r} is one file, and --tbench-compare-last {last} pools the newest saved runs; "
                "give a saved run's name prefix, or no run, to pool several"
            )
        return [Path(run)]
    saved = sorted(storage.glob("*.json")) if storage.is_dir() else []
    if run:
        saved = [p for p in saved if p.name.startswith(run)]
    if not saved:
        what = f"run {run!r}" if run else "any saved run"
        raise OptionError(
            f"no baseline: {what} not found in {storage}; save one with --benchmark-autosave or "
            "--benchmark-save NAME, or pass --tbench-compare=PATH.json"
        )
    return sorted(saved, key=lambda p: p.name)[-last:]


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
        # A pooled baseline's sessions, per gate metric: the drift bound of its timings (compare/spread.py).
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
