"""The seeds' benchmark list file, read as given: its spellings mapped to tbench's settings.

That file (the transformers ``benchmark/`` module's ``default.yml``) has a top-level ``benchmarks`` list whose
entries say ``model_name_or_path``, ``batch_size``, ``sequence_length``, ``num_iterations`` and ``device``, a
``global_settings`` section (``warmup_iterations``, ``torch_dtype``, ``trust_remote_code``, ``use_cache``) and
an ``output_settings`` section. An entry is in this format when it has ``model_name_or_path``; its keys are
then read through ``ENTRY_ALIASES`` (tbench's own keys work there too). ``global_settings`` become top-level
settings of the file; ``output_settings`` have no switch in tbench (everything they ask for is always
recorded, plots come with ``--tbench-report``), so each becomes a note in the terminal summary, never silently
dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_tbench.core.errors import OptionError
from pytest_tbench.settings.options import SETTINGS_BY_KEY

# The key that marks an entry as written in the seeds' format.
SEEDS_MODEL_KEY = "model_name_or_path"

# The seeds' spelling -> tbench's key, for entries and global_settings alike.
ENTRY_ALIASES = {
    SEEDS_MODEL_KEY: "model",
    "batch_size": "batch_sizes",
    "sequence_length": "seq_lens",
    "num_iterations": "rounds",
    "device": "devices",
    "warmup_iterations": "warmup",
    "torch_dtype": "dtype",
}

# What tbench does where the seeds' output_settings would switch something: the save_* ones are always on.
ALWAYS_RECORDED = {
    "save_detailed_results": "every round's time is kept in the pytest-benchmark JSON (--benchmark-json FILE "
    "or --benchmark-autosave)",
    "save_model_info": "each item's extra_info records the model (model_source, num_parameters, "
    "parameter_bytes, model_load_time_s)",
    "save_system_info": "machine_info.tbench records the machine and software",
}
PLOTS_KEY = "generate_plots"
OUTPUT_SETTINGS = (*ALWAYS_RECORDED, PLOTS_KEY)


def is_seeds_entry(entry: Any) -> bool:
    return isinstance(entry, Mapping) and SEEDS_MODEL_KEY in entry


def global_settings(value: Any, source: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The section's values under tbench's keys, and each key's spelling in the file (for error messages)."""
    if not isinstance(value, Mapping):
        raise OptionError(
            f"{source}: global_settings must be a mapping of settings (warmup_iterations: 10 ...)"
        )
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for raw_key, raw in value.items():
        key = ENTRY_ALIASES.get(str(raw_key), str(raw_key))
        if key not in SETTINGS_BY_KEY:
            valid = [*ENTRY_ALIASES, "trust_remote_code", "use_cache", "(or any tbench setting)"]
            raise OptionError(
                f"{source}: global_settings: unknown key {raw_key!r}; valid keys: {', '.join(valid)}"
            )
        if key in values:
            raise OptionError(
                f"{source}: global_settings gives {key} twice ({spelled[key]!r} and {raw_key!r}); keep one"
            )
        values[key] = raw
        spelled[key] = f"global_settings.{raw_key}"
    return values, spelled


def output_notes(value: Any, source: str) -> tuple[str, ...]:
    """One line per output setting, saying what tbench does instead."""
    if not isinstance(value, Mapping):
        raise OptionError(f"{source}: output_settings must be a mapping (save_detailed_results: true ...)")
    notes = []
    for raw_key, raw in value.items():
        key = str(raw_key)
        if key not in OUTPUT_SETTINGS:
            raise OptionError(
                f"{source}: output_settings: unknown key {raw_key!r}; valid keys: "
                f"{', '.join(OUTPUT_SETTINGS)}"
            )
        notes.append(f"{source}: output_settings.{key}: {_output_note(key, raw)}")
    return tuple(notes)


def translate(values: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
    """A config file's top-level values with the seeds' sections folded in: ``global_settings`` as top-level
    settings (a key given both ways is an error), ``output_settings`` as notes. Returns the values, the
    spelling of each folded key in the file, and the notes."""
    values = dict(values)
    spelled: dict[str, str] = {}
    notes: tuple[str, ...] = ()
    if "global_settings" in values:
        folded, spelled = global_settings(values.pop("global_settings"), source)
        for key in folded:
            if key in values:
                raise OptionError(
                    f"{source}: {key} is given at the top level and as {spelled[key]}; keep one of them"
                )
        values.update(folded)
    if "output_settings" in values:
        notes = output_notes(values.pop("output_settings"), source)
    return values, spelled, notes


def _output_note(key: str, value: Any) -> str:
    on = bool(value)
    if key == PLOTS_KEY:
        if on:
            return "not applied from here: tbench draws plots in its report, --tbench-report DIR"
        return "as asked: tbench draws plots only in its report, with --tbench-report DIR"
    fact = ALWAYS_RECORDED[key]
    return f"{'as asked' if on else 'cannot be switched off'}: always on in tbench, {fact}"
