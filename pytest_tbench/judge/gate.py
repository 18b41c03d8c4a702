"""The gate inside a pytest session: each item is judged against its baseline as soon as it is measured."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The significance test's scipy (judge.py imports it late, for the console script) is loaded with the
# gate, before any item is measured: loaded at the first judgement, it would land in the next item's peak RSS.
import scipy.stats  # noqa: F401

from pytest_tbench.core.criteria import DEFAULT_CRITERIA, Criterion, parse_criteria
from pytest_tbench.core.errors import OptionError, RunStopped
from pytest_tbench.core.record import ItemRecord
from pytest_tbench.core.run_file import find_saved_runs, load_run
from pytest_tbench.judge.baseline import pool_runs
from pytest_tbench.judge.judge import Verdict
from pytest_tbench.judge.runs import Comparer, machine_differences, torch_flag_differences
from pytest_tbench.judge.stored import is_store_baseline, stored_baselines, this_machine
from pytest_tbench.machine.environment import environment, torch_flags
from pytest_tbench.settings.config import TBenchConfig

MAX_SAVED_RUNS = 1000  # searched newest first for readable baselines


class Gate(Comparer):
    def __init__(
        self,
        baseline: dict[str, Any],
        names: list[str],
        criteria: tuple[Criterion, ...],
        flag_baselines: dict[str, dict[str, Any]] | None = None,
        drift: float | None = None,
    ) -> None:
        super().__init__(baseline, criteria, drift)
        self.names = names  # the baseline runs': a saved file's name, or "store run 12"
        self.skipped: list[str] = []  # saved runs that could not be read, each with why (said in the summary)
        # Runs whose torch flags are checked when the first item is judged: bench modules and fixtures set
        # TF32 and cuDNN flags after the session starts, and the baselines recorded them at their end.
        self._flag_baselines = flag_baselines or {}

    def check_torch_flags(self) -> None:
        """Stop the session (``RunStopped``: a usage error) if the torch flags now differ from a baseline's;
        once."""
        pending, self._flag_baselines = self._flag_baselines, {}
        now = torch_flags() if pending else {}
        for name, run in pending.items():
            differences = torch_flag_differences(run, now)
            if differences:
                raise RunStopped(
                    f"--tbench-compare: baseline {name} ran with other torch flags ("
                    + "; ".join(differences)
                    + "); its timings are not comparable. Set the same flags, or pass "
                    "--tbench-compare-any-machine to compare anyway."
                )

    @property
    def label(self) -> str:
        """The baseline's name, or the names of the runs pooled into it."""
        if len(self.names) == 1:
            return self.names[0]
        return f"{len(self.names)} pooled runs ({', '.join(self.names)})"

    def judge(self, fullname: str, samples: list[float], info: Mapping[str, Any]) -> list[Verdict]:
        """Judge an attempt at an item (its raw timings and extra_info, in the shape of its JSON entry),
        recording nothing: a new measurement may replace it."""
        self.check_torch_flags()
        return self.verdicts(ItemRecord.from_extra_info(None, info, {"data": samples}, fullname))

    def record_attempts(self, fullname: str, verdicts: list[Verdict], earlier: list[list[Verdict]]) -> None:
        """Enter an item's last attempt in the session's comparison, and the regressions of the earlier
        attempts it replaced."""
        self.record(fullname, verdicts)
        if earlier:
            self.comparison.remeasured[fullname] = "; ".join(_brief(attempt) for attempt in earlier)

    def failure_message(self, verdicts: list[Verdict], earlier: Sequence[list[Verdict]] = ()) -> str:
        pooled = f" ({len(earlier) + 1} measurements, judged together)" if earlier else ""
        lines = [f"performance regression against baseline {self.label}{pooled}:"]
        lines.extend(f"  {v.describe()}" for v in verdicts)
        for number, attempt in enumerate(earlier, start=1):
            lines.append(f"  measurements 1-{number} had regressed: {_brief(attempt)}")
        return "\n".join(lines)


def retryable(verdicts: list[Verdict]) -> list[Verdict]:
    """The regressions of an attempt that a new measurement may overturn, or confirm where the run's share of
    its error rate left them unconfirmed; [] when the verdicts stand: no regression, or one on memory, which
    measuring again does not change."""
    failed = [v for v in verdicts if v.failed]
    if any(v.criterion.metric == "peak_memory" for v in failed):
        return []
    return failed + [v for v in verdicts if v.unconfirmed]


def _brief(verdicts: list[Verdict]) -> str:
    return ", ".join(f"{v.criterion.metric} {v.change:+.1%} (p={v.significance})" for v in verdicts)


def open_gate(settings: TBenchConfig, storage: Path, cwd: Path) -> Gate | None:
    """The session's gate under --tbench-compare, baseline loaded and checked (``storage``: the folder this
    machine's saved runs are in; ``cwd``: where a store URL's relative path starts); raises OptionError
    naming what is wrong (the plugin's usage error)."""
    if settings.gate.baseline is None and settings.gate.last == 1:
        return None
    here_env = environment()
    del here_env["torch_flags"]  # not known yet: checked at the first item (Gate.check_torch_flags)
    skipped: list[str] = []
    try:
        named = _baseline_runs(settings, storage, cwd, here_env, skipped)
    except OptionError as exc:
        raise OptionError(f"--tbench-compare: {exc}") from None
    here = {"machine_info": {"tbench": here_env}}
    for name, run in named:
        differences = machine_differences(run, here)
        if differences and not settings.gate.any_machine:
            raise OptionError(
                f"--tbench-compare: baseline {name} comes from another machine or software ("
                + "; ".join(differences)
                + "); its timings are not comparable. Pass --tbench-compare-any-machine to compare anyway."
            )
    flag_baselines = {} if settings.gate.any_machine else dict(named)
    criteria = settings.gate.criteria or parse_criteria(DEFAULT_CRITERIA)
    runs = [run for _, run in named]
    gate = Gate(pool_runs(runs), [name for name, _ in named], criteria, flag_baselines, settings.gate.drift)
    gate.skipped = skipped
    return gate


def _baseline_runs(
    settings: TBenchConfig, storage: Path, cwd: Path, here_env: dict[str, Any], skipped: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """(name, run) of each baseline run, oldest first: from the history store (``store:[BRANCH]``), else
    saved files. A saved run found by search that cannot be read (a save cut short) is left out, said in
    ``skipped``, and the next older one taken: one broken file must not turn the gate off. A file named
    by its path is read or refused."""
    if is_store_baseline(settings.gate.baseline):
        assert settings.gate.baseline is not None
        machine = None if settings.gate.any_machine else this_machine(here_env)
        store = settings.output.store.url if settings.output.store else None
        return stored_baselines(settings.gate.baseline, store, settings.gate.last, machine, cwd)
    wanted = settings.gate.baseline or None
    if wanted and (wanted.endswith(".json") or Path(wanted).is_file()):
        paths = find_saved_runs(storage, wanted, settings.gate.last)
        return [(path.name, load_run(path)) for path in paths]
    found: list[tuple[str, dict[str, Any]]] = []
    for path in reversed(find_saved_runs(storage, wanted, last=MAX_SAVED_RUNS)):
        try:
            found.append((path.name, load_run(path)))
        except OptionError as exc:
            skipped.append(str(exc))
        if len(found) == settings.gate.last:
            break
    if not found:
        raise OptionError("no saved run could be read: " + "; ".join(skipped))
    return found[::-1]
