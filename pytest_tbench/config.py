"""All tbench settings of a session as one frozen dataclass.

Precedence, highest first: command line, config file (``--tbench-config``), ini key, preset, default. A config
file's ``benchmarks:`` list (benchlist.py) gives each of its entries a config of its own: this one, with the
entry's values over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .ab.sequential import DEFAULT_PAIRS, PairBudget
from .ab.sides import Side
from .axes import ATTN_AUTO, BACKEND_PYTORCH, COMPILE_OFF, DEVICE_MAP_NONE, QUANT_NONE, TP_NONE
from .configfile import load_config_file
from .errors import OptionError
from .history.location import StoreLocation
from .models.registry import DEFAULT_MODELS, CustomModel, parse_custom_models
from .options import SETTINGS
from .presets import DEFAULT_PRESET, PRESETS, rounds_for_mode
from .seeds_format import translate

if TYPE_CHECKING:  # imported when called: the scenarios package imports this module
    from .benchlist import BenchmarkEntry
    from .scenarios.generate_settings import GenerateSettings

DEFAULT_WARMUP = 2
DEFAULT_MAX_BATCH_INPUT_PRODUCT = 131072


@dataclass(frozen=True)
class TBenchConfig:
    preset: str = DEFAULT_PRESET
    models: tuple[str, ...] = DEFAULT_MODELS
    batch_sizes: tuple[int, ...] = PRESETS[DEFAULT_PRESET].batch_sizes
    seq_lens: tuple[int, ...] = PRESETS[DEFAULT_PRESET].seq_lens
    devices: tuple[str, ...] = ("auto",)
    dtype: tuple[str, ...] = ("auto",)
    # Variant axes (axes.AXES): each a tuple of values swept like the coordinates above.
    attn_implementation: tuple[str, ...] = (ATTN_AUTO,)
    quantization: tuple[str, ...] = (QUANT_NONE,)
    compile: tuple[str, ...] = (COMPILE_OFF,)
    backend: tuple[str, ...] = (BACKEND_PYTORCH,)
    device_map: tuple[str, ...] = (DEVICE_MAP_NONE,)
    tp: tuple[str, ...] = (TP_NONE,)
    runs: int = PRESETS[DEFAULT_PRESET].runs
    rounds: int | None = None  # set only when given explicitly; else derived from runs per mode
    new_tokens: int = PRESETS[DEFAULT_PRESET].new_tokens
    temperature: float | None = None
    top_p: float | None = None
    use_cache: bool = True
    cache_implementation: str | None = None
    optimizer: str = "adamw"
    isolate: bool = False
    processes: int = 1  # worker processes per item; > 1 implies isolation
    oom_skip: bool = False
    fit_check: bool = True  # skip an item whose estimated memory exceeds the device's free memory
    compare: str | None = None  # None: no gate; "": the newest saved run; else a run or a JSON path
    compare_fail: tuple[Any, ...] = ()  # Criterion objects; empty: the defaults
    compare_last: int = 1  # saved runs pooled into the baseline
    compare_retries: int = 2  # re-measurements of an item whose timing regressed, judged pooled
    compare_any_machine: bool = False
    compare_drift: float | None = None  # drift to allow against a one-session baseline; None: the default
    ab: Side | None = None  # --tbench-ab: the base side every item is also measured on, interleaved
    ab_pairs: PairBudget = DEFAULT_PAIRS  # pairs of worker processes per item under --tbench-ab
    ab_undecided: str = "warn"  # what an undecided A/B item does to the run: pass, warn or fail
    ab_path: tuple[str, ...] = ()  # base worktree directories put first on the import path; (): the default
    report: str | None = None  # a folder for tbench's report of this run
    store: StoreLocation | None = None  # --tbench-store: the history store the run is written into
    store_required: bool = False  # a failed store write fails the session
    item_timeout: float | None = None  # seconds a worker may take for an item; None: no limit
    peak_tflops: float | None = None  # the device's dense peak for MFU; None: the known-GPU table's
    peak_bandwidth: float | None = None  # the device's peak memory bandwidth in GB/s for MBU; None: table's
    warmup: int = DEFAULT_WARMUP
    max_batch_input_product: int = DEFAULT_MAX_BATCH_INPUT_PRODUCT
    trust_remote_code: bool = False  # passed to from_pretrained / AutoConfig.from_pretrained
    gpus_per_worker: int = 1  # GPUs each pytest-xdist worker owns
    allow_shared_cpu: bool = False  # CPU items under several xdist workers, each on its own cores
    custom_models: dict[str, CustomModel] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # where each non-default setting came from
    # The config file's benchmark list: when given, its entries' items replace the models x shapes grid.
    benchmarks: tuple[BenchmarkEntry, ...] = ()
    notes: tuple[str, ...] = ()  # what the config file asked for that does not apply, for the summary

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> TBenchConfig:
        try:
            return cls._resolve(config)
        except OptionError as exc:
            raise pytest.UsageError(str(exc)) from None

    @classmethod
    def _resolve(cls, config: pytest.Config) -> TBenchConfig:
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
        session = cls(**resolved, runs=preset.runs, custom_models=custom, sources=sources, notes=notes)
        if "benchmarks" not in file_values:
            return session
        from .benchlist import overridden_notes, parse_benchmarks

        where = f"config file {file_path}"
        if sources.get("models") in ("command line", where):
            given = "--tbench-models" if sources["models"] == "command line" else f"models in {file_path}"
            raise OptionError(
                f"{given} and a benchmark list ({where}: benchmarks) are both given: the list's entries "
                "replace the models grid, each naming its model; drop one of them (select entries with -k)"
            )
        entries = parse_benchmarks(file_values["benchmarks"], session, where)
        notes = (*session.notes, *overridden_notes(entries, session))
        return replace(session, benchmarks=entries, notes=notes)

    def record(self) -> dict[str, dict[str, Any]]:
        """The settings that were set, with their source, for the run's JSON (results travel with them)."""

        def plain(value: Any) -> Any:
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            if isinstance(value, (str, int, float, bool, type(None))):
                return value
            return str(value)  # e.g. compare criteria, written as on the command line

        return {key: {"value": plain(getattr(self, key)), "source": src} for key, src in self.sources.items()}

    @property
    def isolated(self) -> bool:
        """Items run in worker processes: --tbench-isolate, rounds spread over several processes, or A/B."""
        return self.isolate or self.processes > 1 or self.ab is not None

    def rounds_for(self, mode: str) -> int:
        """Measured rounds of an item: ``--tbench-rounds``, else derived from the preset's runs per mode."""
        return self.rounds if self.rounds is not None else rounds_for_mode(self.runs, mode)

    def generate_settings(self, new_tokens: int) -> GenerateSettings:
        from .scenarios.generate_settings import GenerateSettings

        return GenerateSettings(
            new_tokens, self.temperature, self.top_p, self.use_cache, self.cache_implementation
        )
