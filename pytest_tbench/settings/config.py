"""All tbench settings of a session: one frozen dataclass of frozen sections, each what one part reads.

Made by resolve.py from the command line, config file, ini keys and preset. A config file's ``benchmarks:``
list (benchlist.py) gives each of its entries (``BenchmarkEntry``) a config of its own: this one, with the
entry's values over it.

A section's field is named after its setting's key (``--tbench-<key>``), or names the key in its metadata
where the section's name already says it (``ab.pairs`` is ``ab_pairs``). ``TBenchConfig.of`` and ``value``
work by key, for the resolver, the benchmark list and the run's JSON record.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from pytest_tbench.core.axes import (
    ATTN_AUTO,
    BACKEND_PYTORCH,
    COMPILE_OFF,
    DEVICE_MAP_NONE,
    QUANT_NONE,
    TP_NONE,
)
from pytest_tbench.core.errors import OptionError
from pytest_tbench.models.registry import DEFAULT_MODELS, CustomModel
from pytest_tbench.settings.ab import DEFAULT_PAIRS, PairBudget, Side
from pytest_tbench.settings.presets import DEFAULT_PRESET, PRESETS, rounds_for_mode
from pytest_tbench.settings.store import StoreLocation

if TYPE_CHECKING:  # imported when called: the scenarios package imports this module
    from pytest_tbench.settings.generate import GenerateSettings

DEFAULT_WARMUP = 2
LAUNCHER_AUTO = "auto"  # --tbench-launcher's default: the launcher --tbench-isolate / --tbench-processes say
DEFAULT_MAX_BATCH_INPUT_PRODUCT = 131072


def _key(name: str) -> dict[str, str]:
    """A field's metadata naming the setting it holds, where the field's own name is shorter."""
    return {"key": name}


@dataclass(frozen=True)
class SweepSettings:
    """What is swept: the grid's coordinates and variant axes (settings/cases.py), or the config file's
    benchmark list, whose entries' items replace the models x shapes grid."""

    preset: str = DEFAULT_PRESET
    models: tuple[str, ...] = DEFAULT_MODELS
    batch_sizes: tuple[int, ...] = PRESETS[DEFAULT_PRESET].batch_sizes
    seq_lens: tuple[int, ...] = PRESETS[DEFAULT_PRESET].seq_lens
    new_tokens: int = PRESETS[DEFAULT_PRESET].new_tokens
    devices: tuple[str, ...] = ("auto",)
    dtype: tuple[str, ...] = ("auto",)
    # Variant axes (axes.AXES): each a tuple of values swept like the coordinates above.
    attn_implementation: tuple[str, ...] = (ATTN_AUTO,)
    quantization: tuple[str, ...] = (QUANT_NONE,)
    compile: tuple[str, ...] = (COMPILE_OFF,)
    backend: tuple[str, ...] = (BACKEND_PYTORCH,)
    device_map: tuple[str, ...] = (DEVICE_MAP_NONE,)
    tp: tuple[str, ...] = (TP_NONE,)
    max_batch_input_product: int = DEFAULT_MAX_BATCH_INPUT_PRODUCT
    custom_models: dict[str, CustomModel] = field(default_factory=dict)
    benchmarks: tuple[BenchmarkEntry, ...] = ()


@dataclass(frozen=True)
class MeasureSettings:
    """How each item is measured (measure/): its rounds, warm-up, memory checks and the device's peaks."""

    runs: int = PRESETS[DEFAULT_PRESET].runs
    rounds: int | None = None  # set only when given explicitly; else derived from runs per mode
    warmup: int = DEFAULT_WARMUP
    oom_skip: bool = False
    fit_check: bool = True  # skip an item whose estimated memory exceeds the device's free memory
    peak_tflops: float | None = None  # the device's dense peak for MFU; None: the known-GPU table's
    peak_bandwidth: float | None = None  # the device's peak memory bandwidth in GB/s for MBU; None: table's
    profile: str | None = None  # --tbench-profile: the (absolute) folder for the profiled rounds' traces
    profile_rounds: int = 1
    profile_memory: bool = False  # --tbench-profile-memory: CUDA's allocator history for one more round

    def __post_init__(self) -> None:
        if self.profile_memory and self.profile is None:
            raise OptionError(
                "--tbench-profile-memory saves its snapshot in --tbench-profile's folder: "
                "add --tbench-profile DIR (or drop --tbench-profile-memory)"
            )

    def rounds_for(self, mode: str) -> int:
        """Measured rounds of an item: ``--tbench-rounds``, else derived from the preset's runs per mode."""
        return self.rounds if self.rounds is not None else rounds_for_mode(self.runs, mode)


@dataclass(frozen=True)
class RunSettings:
    """What a worker reads to load a model and build an item's work (scenarios/): all that a ``Job``
    carries of the session's settings."""

    temperature: float | None = None
    top_p: float | None = None
    use_cache: bool = True
    cache_implementation: str | None = None
    optimizer: str = "adamw"
    trust_remote_code: bool = False  # passed to from_pretrained / AutoConfig.from_pretrained

    def generate_settings(self, new_tokens: int) -> GenerateSettings:
        from pytest_tbench.settings.generate import GenerateSettings

        return GenerateSettings(
            new_tokens, self.temperature, self.top_p, self.use_cache, self.cache_implementation
        )


@dataclass(frozen=True)
class LaunchSettings:
    """Where items run (launch/, plugin/xdist.py): in this process or in workers, and with what limits."""

    # A name in launch/choose.py's LAUNCHERS (checked there: this layer cannot see the launchers).
    launcher: str = LAUNCHER_AUTO
    isolate: bool = False
    processes: int = 1  # worker processes per item; > 1 implies isolation
    item_timeout: float | None = None  # seconds a worker may take for an item; None: no limit
    gpus_per_worker: int = 1  # GPUs each pytest-xdist worker owns
    allow_shared_cpu: bool = False  # CPU items under several xdist workers, each on its own cores


@dataclass(frozen=True)
class GateSettings:
    """The gate against saved runs (judge/): which baseline, which criteria, how it re-measures."""

    baseline: str | None = field(default=None, metadata=_key("compare"))  # None: no gate; "": the newest
    criteria: tuple[Any, ...] = field(default=(), metadata=_key("compare_fail"))  # Criterion; (): defaults
    last: int = field(default=1, metadata=_key("compare_last"))  # saved runs pooled into the baseline
    # Re-measurements of an item whose timing regressed, judged pooled.
    retries: int = field(default=2, metadata=_key("compare_retries"))
    any_machine: bool = field(default=False, metadata=_key("compare_any_machine"))
    # Drift to allow against a one-session baseline; None: the default.
    drift: float | None = field(default=None, metadata=_key("compare_drift"))


@dataclass(frozen=True)
class ABSettings:
    """--tbench-ab (launch/ab, judge/paired.py): the base side every item is also measured on, interleaved."""

    side: Side | None = field(default=None, metadata=_key("ab"))
    pairs: PairBudget = field(default=DEFAULT_PAIRS, metadata=_key("ab_pairs"))  # worker pairs per item
    # What an undecided item does to the run: pass, warn or fail.
    undecided: str = field(default="warn", metadata=_key("ab_undecided"))
    # Base worktree directories put first on the import path; (): the default.
    path: tuple[str, ...] = field(default=(), metadata=_key("ab_path"))


@dataclass(frozen=True)
class OutputSettings:
    """Where the run's results go besides pytest-benchmark's JSON (show/report, history/)."""

    report: str | None = None  # a folder for tbench's report of this run
    store: StoreLocation | None = None  # --tbench-store: the history store the run is written into
    store_required: bool = False  # a failed store write fails the session


SECTIONS: dict[str, type] = {
    "sweep": SweepSettings,
    "measure": MeasureSettings,
    "run": RunSettings,
    "launch": LaunchSettings,
    "gate": GateSettings,
    "ab": ABSettings,
    "output": OutputSettings,
}
# A setting's key -> its section and the field there.
PATHS: dict[str, tuple[str, str]] = {
    f.metadata.get("key", f.name): (section, f.name) for section, cls in SECTIONS.items() for f in fields(cls)
}


@dataclass(frozen=True)
class TBenchConfig:
    sweep: SweepSettings = SweepSettings()
    measure: MeasureSettings = MeasureSettings()
    run: RunSettings = RunSettings()
    launch: LaunchSettings = LaunchSettings()
    gate: GateSettings = GateSettings()
    ab: ABSettings = ABSettings()
    output: OutputSettings = OutputSettings()
    sources: dict[str, str] = field(default_factory=dict)  # where each non-default setting came from
    notes: tuple[str, ...] = ()  # what the config file asked for that does not apply, for the summary

    @classmethod
    def of(cls, **values: Any) -> TBenchConfig:
        """A config with these settings (by key, as ``--tbench-<key>``) over the defaults; ``sources`` and
        ``notes`` as given."""
        return cls().with_values(**values)

    def with_values(self, **values: Any) -> TBenchConfig:
        """This config with these settings (by key) replaced."""
        sections: dict[str, dict[str, Any]] = {}
        rest = {name: values.pop(name) for name in ("sources", "notes") if name in values}
        for key, value in values.items():
            if key not in PATHS:
                raise TypeError(f"no tbench setting {key!r}")
            section, name = PATHS[key]
            sections.setdefault(section, {})[name] = value
        replaced = {section: replace(getattr(self, section), **new) for section, new in sections.items()}
        return replace(self, **replaced, **rest)

    def value(self, key: str) -> Any:
        """The value of the setting ``key`` (``--tbench-<key>``)."""
        section, name = PATHS[key]
        return getattr(getattr(self, section), name)

    def record(self) -> dict[str, dict[str, Any]]:
        """The settings that were set, with their source, for the run's JSON (results travel with them)."""

        def plain(value: Any) -> Any:
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            if isinstance(value, (str, int, float, bool, type(None))):
                return value
            return str(value)  # e.g. compare criteria, written as on the command line

        return {key: {"value": plain(self.value(key)), "source": src} for key, src in self.sources.items()}


@dataclass(frozen=True)
class BenchmarkEntry:
    """One entry of the list: where it is, its model and label, the modes it runs under (None: every mode),
    the settings its items run with, and the keys it set itself."""

    source: str
    index: int
    model: str
    name: str
    modes: tuple[str, ...] | None
    config: TBenchConfig
    keys: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        return f"{self.source}: benchmarks[{self.index}] (model {self.model})"

    def runs_under(self, mode: str) -> bool:
        return self.modes is None or mode in self.modes

    def record(self) -> dict[str, Any]:
        """What an item's extra_info says of its entry: index, name and the entry's own settings."""
        recorded = self.config.record()
        settings = {key: recorded[key]["value"] for key in self.keys if key in recorded}
        if self.modes is not None:
            settings["modes"] = list(self.modes)
        return {"index": self.index, "name": self.name, "model": self.model, "settings": settings}
