"""A session's settings, resolved from where they are given: the pytest side of settings/, whose other modules
read no pytest. Precedence, highest first: command line, config file (``--tbench-config``), ini key, preset,
default; a config file's ``benchmarks:`` list (settings/benchlist.py) then gives each of its entries a config
of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_tbench.core.errors import OptionError
from pytest_tbench.launch.choose import launcher_error
from pytest_tbench.models.registry import parse_custom_models
from pytest_tbench.settings.benchlist import overridden_notes, parse_benchmarks
from pytest_tbench.settings.config import TBenchConfig
from pytest_tbench.settings.configfile import load_config_file
from pytest_tbench.settings.options import SETTINGS
from pytest_tbench.settings.presets import DEFAULT_PRESET, PRESETS
from pytest_tbench.settings.seeds_format import translate


def session_settings(config: pytest.Config) -> TBenchConfig:
    try:
        settings = _resolve(config)
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    error = launcher_error(settings)
    if error:
        raise pytest.UsageError(error)
    return settings


def _resolve(config: pytest.Config) -> TBenchConfig:
    layers: list[tuple[str, dict[str, Any]]] = []  # highest precedence first
    cli = {s.key: config.getoption(s.dest) for s in SETTINGS}
    layers.append(("command line", {k: v for k, v in cli.items() if v is not None}))

    file_path = config.getoption("tbench_config") or config.getini("tbench_config")
    file_values: dict[str, Any] = {}
    spelled: dict[str, str] = {}  # a file key's spelling where it is not the setting's own (the seeds')
    notes: tuple[str, ...] = ()
    if file_path:
        from_ini = not config.getoption("tbench_config")
        base = (config.inipath.parent if config.inipath else config.rootpath) if from_ini else Path.cwd()
        file_values, spelled, notes = translate(
            load_config_file(base / file_path), f"config file {file_path}"
        )
        layers.append((f"config file {file_path}", file_values))

    ini = {s.key: config.getini(s.ini) for s in SETTINGS}
    layers.append(("ini", {k: v for k, v in ini.items() if v not in ("", None)}))

    def pick(key: str) -> tuple[str, Any] | None:
        for source, values in layers:
            if key in values:
                return source, values[key]
        return None

    resolved: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        found = pick(setting.key)
        if found is None:
            continue
        source, raw = found
        key = setting.ini if source == "ini" else spelled.get(setting.key, setting.key)
        label = setting.cli if source == "command line" else f"{source} key {key}"
        resolved[setting.key] = setting.parse_from(raw, label)
        sources[setting.key] = source

    preset = PRESETS[resolved.get("preset", DEFAULT_PRESET)]
    for key, value in (
        ("batch_sizes", preset.batch_sizes),
        ("seq_lens", preset.seq_lens),
        ("new_tokens", preset.new_tokens),
    ):
        if key not in resolved:
            resolved[key] = value
            sources[key] = f"preset {preset.name}"

    custom = parse_custom_models(file_values.get("custom_models", {}), source=f"config file {file_path}")
    session = TBenchConfig.of(
        **resolved, runs=preset.runs, custom_models=custom, sources=sources, notes=notes
    )
    if "benchmarks" not in file_values:
        return session
    where = f"config file {file_path}"
    if sources.get("models") in ("command line", where):
        given = "--tbench-models" if sources["models"] == "command line" else f"models in {file_path}"
        raise OptionError(
            f"{given} and a benchmark list ({where}: benchmarks) are both given: the list's entries "
            "replace the models grid, each naming its model; drop one of them (select entries with -k)"
        )
    entries = parse_benchmarks(file_values["benchmarks"], session, where)
    notes = (*session.notes, *overridden_notes(entries, session))
    return session.with_values(benchmarks=entries, notes=notes)
