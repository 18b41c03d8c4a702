"""Reading a ``--tbench-config`` file (YAML or TOML) into raw values, with errors that point at the line."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from pytest_tbench.core.errors import OptionError
from pytest_tbench.settings.options import CONFIG_FILE_ONLY_KEYS, SETTINGS_BY_KEY

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KNOWN_KEYS = (*SETTINGS_BY_KEY, *CONFIG_FILE_ONLY_KEYS)


def _yaml_key_lines(text: str) -> dict[str, int]:
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


def _toml_key_lines(text: str) -> dict[str, int]:
    """Line of each top-level key or table header: a bare key at the line's start followed by ``=``, or a
    ``[table]``; the values of a multi-line array never match."""
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = re.match(r"(?:([A-Za-z0-9_\-]+)\s*=|\[\s*([A-Za-z0-9_\-]+))", line)
        if match:
            lines.setdefault(match.group(1) or match.group(2), number)
    return lines


def load_config_file(path: Path) -> dict[str, Any]:
    """Top-level keys of the file, ``tbench_`` prefixes removed; raises OptionError on any problem."""
    if not path.is_file():
        raise OptionError(f"config file {str(path)!r} does not exist; give the path to a .yaml or .toml file")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
            lines = _toml_key_lines(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
            lines = _yaml_key_lines(text)
        else:
            raise OptionError(f"config file {path}: unknown suffix {suffix!r}; use .yaml, .yml or .toml")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise OptionError(f"config file {path}{where} does not parse as YAML: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"config file {path} does not parse as TOML: {exc}") from None
    if not isinstance(data, dict):
        raise OptionError(f"config file {path}: expected a mapping of keys at the top level")

    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).removeprefix("tbench_").replace("-", "_")
        if key not in KNOWN_KEYS:
            line = lines.get(str(raw_key))
            where = f" line {line}" if line else ""
            raise OptionError(
                f"config file {path}{where}: unknown key {raw_key!r}; valid keys: {', '.join(KNOWN_KEYS)}"
            )
        values[key] = value
    return values
