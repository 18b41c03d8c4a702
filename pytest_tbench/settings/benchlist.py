"""Benchmark lists: a config file's ``benchmarks:`` entries, each a model with its own settings.

An entry names one ``model`` and any per-item setting under the same key, parsed by the same ``Setting``, as
at the top level (batch_sizes, seq_lens, devices, dtype, rounds, warmup, new_tokens, the variant axes, the
generate settings ...), plus an optional ``name`` (its label in reports; default the model) and ``modes`` (the
benchmark functions it runs under; default all, as the grid). Where an entry is silent the session's settings
apply: the command line, the file's top level, ini, preset, default. So a command-line value is a default for
every entry that an entry's own value overrides. Settings of the whole session (isolation, the gate, A/B,
reports, presets, trust_remote_code) are not entry keys.

A list replaces the grid: the items are the entries' items, each expanded by ``build_cases`` from the entry's
own ``TBenchConfig`` (the session's, replaced by the entry's values), so ids are the usual ones. Two entries
that make the same item are an error naming both. The entries of the seeds' format (``seeds_format.py``) are
read through its aliases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.modes import mode_names
from pytest_tbench.settings.cases import BenchCase, ConfigReader, build_cases
from pytest_tbench.settings.config import BenchmarkEntry, TBenchConfig
from pytest_tbench.settings.options import SETTINGS, SETTINGS_BY_KEY, parse_str_list
from pytest_tbench.settings.seeds_format import ENTRY_ALIASES, SEEDS_MODEL_KEY, is_seeds_entry

# Settings that hold for the whole session: the launcher and load decisions, the gate, A/B, reports and the
# preset are made once per session, and trust_remote_code is a property of how models are loaded at all.
SESSION_KEYS = frozenset(
    {
        "preset",
        "models",
        "launcher",
        "isolate",
        "processes",
        "oom_skip",
        "compare",
        "compare_fail",
        "compare_last",
        "compare_retries",
        "compare_drift",
        "compare_any_machine",
        "ab",
        "ab_pairs",
        "ab_undecided",
        "ab_path",
        "report",
        "store",
        "store_required",
        "trust_remote_code",
        # The xdist session's layout: decided once, before any entry's item runs.
        "gpus_per_worker",
        "allow_shared_cpu",
    }
)
ENTRY_SETTINGS = tuple(s.key for s in SETTINGS if s.key not in SESSION_KEYS)
OWN_KEYS = ("model", "name", "modes")
ENTRY_KEYS = (*OWN_KEYS, *ENTRY_SETTINGS)

# extra_info key: which entry made an item (None for items of the grid).
BENCHMARK_ENTRY = "benchmark_entry"


def _where(source: str, index: int, raw: Mapping[str, Any]) -> str:
    model = raw.get("model", raw.get(SEEDS_MODEL_KEY))
    return f"{source}: benchmarks[{index}]" + (f" (model {model})" if model is not None else "")


def _unknown(where: str, raw_key: str, seeds: bool) -> OptionError:
    key = raw_key.removeprefix("tbench_").replace("-", "_")
    if key == "models":
        return OptionError(
            f"{where}: unknown key {raw_key!r}: an entry names one model with 'model'; give each model its "
            "own entry"
        )
    if key in SESSION_KEYS:
        return OptionError(
            f"{where}: {raw_key!r} applies to the whole session, not to one entry; set it at the top level "
            "of the file or on the command line"
        )
    valid = [*ENTRY_KEYS, *ENTRY_ALIASES] if seeds else list(ENTRY_KEYS)
    hint = ""
    if not seeds and key in ENTRY_ALIASES:
        hint = f" ({raw_key!r} is the seeds' spelling, read in entries that give {SEEDS_MODEL_KEY}: here use "
        hint += f"{ENTRY_ALIASES[key]!r})"
    return OptionError(f"{where}: unknown key {raw_key!r}{hint}; valid keys: {', '.join(valid)}")


def parse_entry(raw: Any, index: int, session: TBenchConfig, source: str) -> BenchmarkEntry:
    """One entry, its values parsed as at the top level and laid over the session's settings."""
    if not isinstance(raw, Mapping):
        raise OptionError(
            f"{source}: benchmarks[{index}] must be a mapping of keys (model: NAME, batch_sizes: ...), "
            f"not {raw!r}"
        )
    where = _where(source, index, raw)
    seeds = is_seeds_entry(raw)
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for raw_key, value in raw.items():
        text = str(raw_key)
        key = text.removeprefix("tbench_").replace("-", "_")
        if seeds:
            key = ENTRY_ALIASES.get(key, key)
        if key not in ENTRY_KEYS:
            raise _unknown(where, text, seeds)
        if key in values:
            raise OptionError(f"{where}: {key} is given twice ({spelled[key]!r} and {text!r}); keep one")
        values[key] = value
        spelled[key] = text

    model = values.pop("model", None)
    if model is None or not str(model).strip():
        wanted = SEEDS_MODEL_KEY if seeds else "model"
        raise OptionError(
            f"{where}: no model; give {wanted}: NAME (a built-in name such as tiny-gpt2, a local directory "
            "or a Hub id)"
        )
    model = str(model).strip()
    name = str(values.pop("name", model))
    modes = None
    if "modes" in values:
        modes = _parse_modes(values.pop("modes"), f"{where} key {spelled['modes']}")

    parsed = {
        key: SETTINGS_BY_KEY[key].parse_from(v, f"{where} key {spelled[key]}") for key, v in values.items()
    }
    origin = f"{source} benchmarks[{index}]"
    config = session.with_values(
        models=(model,),
        benchmarks=(),
        sources={**session.sources, **dict.fromkeys(parsed, origin)},
        **parsed,
    )
    return BenchmarkEntry(source, index, model, name, modes, config, tuple(parsed))


def _parse_modes(value: Any, label: str) -> tuple[str, ...]:
    try:
        modes = tuple(dict.fromkeys(parse_str_list(value)))
    except OptionError as exc:
        raise OptionError(f"{label}: {exc}") from None
    valid = mode_names()
    for mode in modes:
        if mode not in valid:
            raise OptionError(
                f"{label}: unknown mode {mode!r}; valid: {', '.join(valid)} (more with "
                "pytest_tbench.register_mode)"
            )
    return modes


def parse_benchmarks(value: Any, session: TBenchConfig, source: str) -> tuple[BenchmarkEntry, ...]:
    """The ``benchmarks:`` value of a config file (a list; TOML's ``[[benchmarks]]``) as entries."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not value:
        raise OptionError(
            f"{source}: benchmarks must be a non-empty list of entries, each a mapping with a model "
            "(YAML: '- model: NAME', TOML: '[[benchmarks]]')"
        )
    return tuple(parse_entry(raw, index, session, source) for index, raw in enumerate(value))


def overridden_notes(entries: Sequence[BenchmarkEntry], session: TBenchConfig) -> tuple[str, ...]:
    """A line for each command-line setting that entries give themselves: the command line is a default for
    the list, which an entry's own value overrides, and the user is told where it did."""
    notes = []
    for setting in SETTINGS:
        if session.sources.get(setting.key) != "command line":
            continue
        own = [f"benchmarks[{e.index}]" for e in entries if setting.key in e.keys]
        if own:
            notes.append(
                f"{setting.cli} is a default for the benchmark list; {', '.join(own)} of {entries[0].source} "
                f"give their own {setting.key}, which they keep"
            )
    return tuple(notes)


def list_cases(
    entries: Sequence[BenchmarkEntry], mode: str, head: str, read_config: ConfigReader | None = None
) -> list[tuple[BenchCase, BenchmarkEntry]]:
    """The items of a benchmark function of ``mode``: each entry that runs under it, expanded on its own
    settings, in the list's order. Raises OptionError naming both entries when two make the same item."""
    made: dict[str, tuple[BenchCase, BenchmarkEntry]] = {}
    for entry in entries:
        if not entry.runs_under(mode):
            continue
        for case in build_cases(entry.config, mode, head, read_config):
            first = made.setdefault(case.id, (case, entry))[1]
            if first.index != entry.index:
                raise OptionError(
                    f"{first.label} and benchmarks[{entry.index}] (model {entry.model}) both make the item "
                    f"{case.id} (mode {mode}): pytest would run it twice under one id; drop one, or give "
                    "them different batch sizes, lengths, devices, dtypes, variants or modes"
                )
    return list(made.values())


def check_unique(entries: Sequence[BenchmarkEntry], read_config: ConfigReader) -> None:
    """Raise OptionError for two entries making the same item under any registered mode, before collection
    (the ids do not depend on the head). ``read_config``: the session's, so each model's config is read once
    for every mode and for collection after."""
    for mode in mode_names():
        list_cases(entries, mode, "base", read_config)
