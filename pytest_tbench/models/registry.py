"""Turning a model spec string into something that can make its config and weights.

Resolution order, first match wins:
1. a user-defined model: ``register_model()`` in a conftest.py, or ``custom_models`` in the config file;
2. a built-in architecture name (real-size configs, random weights, no network);
3. an existing local directory, loaded with ``from_pretrained``;
4. anything else is a Hugging Face Hub id, loaded with ``from_pretrained``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from pytest_tbench.core.errors import OptionError
from pytest_tbench.models.builtins import BUILTIN_MODELS, DEFAULT_MODELS, ConfigFactory
from pytest_tbench.models.hub import pretrained_kwargs

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODELS", "ConfigFactory", "register_model", "resolve"]

_REGISTERED: dict[str, ConfigFactory] = {}


def register_model(name: str, config: PretrainedConfig | ConfigFactory) -> None:
    """Make ``name`` usable in ``--tbench-models``: a config (or a factory of one), built with random weights.

    >>> register_model("bert-384-hid", BertConfig(hidden_size=384))
    """
    if isinstance(config, PretrainedConfig):
        frozen = config.to_dict()
        config_class = type(config)
        _REGISTERED[name] = lambda: config_class.from_dict(frozen)
    elif callable(config):
        _REGISTERED[name] = config
    else:
        raise TypeError(f"register_model({name!r}, ...) needs a PretrainedConfig or a callable returning one")


@dataclass(frozen=True)
class CustomModel:
    """A config-file entry: ``base`` (a built-in name, a model_type such as "bert", a local dir or a hub id)
    plus attribute overrides, like the classic ``bert-384-hid = BertConfig(hidden_size=384)``."""

    base: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


def parse_custom_models(value: Any, source: str) -> dict[str, CustomModel]:
    if not isinstance(value, Mapping):
        raise OptionError(f"{source}: custom_models must map names to {{base: ..., overrides: {{...}}}}")
    models = {}
    for name, entry in value.items():
        where = f"{source}: custom_models.{name}"
        if not isinstance(entry, Mapping) or "base" not in entry:
            raise OptionError(
                f"{where} needs a 'base' (e.g. base: bert-base-uncased) and optional 'overrides'"
            )
        unknown = set(entry) - {"base", "overrides"}
        if unknown:
            raise OptionError(f"{where}: unknown key(s) {sorted(unknown)}; valid: base, overrides")
        overrides = entry.get("overrides", {})
        if not isinstance(overrides, Mapping):
            raise OptionError(f"{where}.overrides must be a mapping of config attributes to values")
        models[str(name)] = CustomModel(str(entry["base"]), dict(overrides))
    return models


SpecKind = Literal["user", "builtin", "local", "hub"]


@dataclass(frozen=True)
class ResolvedSpec:
    spec: str
    kind: SpecKind
    # "user"/"builtin": builds the config (weights are random); "local"/"hub": the from_pretrained target.
    make_config: ConfigFactory | None = None
    target: str | None = None
    trust_remote_code: bool = False  # for from_pretrained targets: run the repository's own code

    @property
    def label(self) -> str:
        """A short name for test ids: a local directory is named by its last part."""
        return Path(self.spec).name if self.kind == "local" else self.spec

    def load_config(self) -> PretrainedConfig:
        if self.make_config is not None:
            return self.make_config()
        assert self.target is not None
        return AutoConfig.from_pretrained(
            self.target, **pretrained_kwargs(self.target, self.trust_remote_code)
        )

    def describe(self) -> str:
        if self.kind in ("user", "builtin"):
            return f"{self.kind} config, random weights"
        trusted = ", trust_remote_code=True" if self.trust_remote_code else ""
        return f"from_pretrained({self.target!r}{trusted})"


def _config_of_base(base: str, custom: Mapping[str, CustomModel]) -> PretrainedConfig:
    if base in CONFIG_MAPPING and base not in BUILTIN_MODELS and not os.path.isdir(base):
        return AutoConfig.for_model(base)
    return resolve(base, custom).load_config()


def _custom_factory(name: str, entry: CustomModel, custom: Mapping[str, CustomModel]) -> ConfigFactory:
    def make() -> PretrainedConfig:
        config = _config_of_base(entry.base, {k: v for k, v in custom.items() if k != name})
        unknown = [key for key in entry.overrides if not hasattr(config, key)]
        if unknown:
            raise OptionError(
                f"custom model {name!r}: {type(config).__name__} has no attribute(s) {unknown}; "
                "use the config's own names (e.g. hidden_size, num_hidden_layers)"
            )
        for key, value in entry.overrides.items():
            setattr(config, key, value)
        return config

    return make


def resolve(
    spec: str, custom: Mapping[str, CustomModel] | None = None, trust_remote_code: bool = False
) -> ResolvedSpec:
    """``trust_remote_code``: what a local or Hub model's from_pretrained is given."""
    custom = custom or {}
    if spec in custom:
        return ResolvedSpec(spec, "user", make_config=_custom_factory(spec, custom[spec], custom))
    if spec in _REGISTERED:
        return ResolvedSpec(spec, "user", make_config=_REGISTERED[spec])
    if spec in BUILTIN_MODELS:
        return ResolvedSpec(spec, "builtin", make_config=BUILTIN_MODELS[spec])
    if os.path.isdir(spec):
        return ResolvedSpec(
            spec, "local", target=str(Path(spec).resolve()), trust_remote_code=trust_remote_code
        )
    return ResolvedSpec(spec, "hub", target=spec, trust_remote_code=trust_remote_code)


def known_names(custom: Mapping[str, CustomModel] | None = None) -> list[str]:
    return [*(custom or {}), *_REGISTERED, *BUILTIN_MODELS]
