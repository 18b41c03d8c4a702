"""All tbench settings of a session as one frozen dataclass.

Made by resolve.py from the command line, config file, ini keys and preset. A config file's ``benchmarks:``
list (benchlist.py) gives each of its entries (``BenchmarkEntry``) a config of its own: this one, with the
entry's values over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_tbench.core.axes import (
    ATTN_AUTO,
    BACKEND_PYTORCH,
    COMPILE_OFF,
    DEVICE_MAP_NONE,
    QUANT_NONE,
    TP_NONE,
)
from pytest_tbench.models.registry import DEFAULT_MODELS, CustomModel
from pytest_tbench.settings.ab import DEFAULT_PAIRS, PairBudget, Side
from pytest_tbench.settings.presets import DEFAULT_PRESET, PRESETS, rounds_for_mode
from pytest_tbench.settings.store import StoreLocation

if TYPE_CHECKING:  # imported when called: the scenarios package imports this module
    from pytest_tbench.settings.generate import GenerateSettings

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
        from pytest_tbench.settings.generate import GenerateSettings

        return GenerateSettings(
            new_tokens, self.temperature, self.top_p, self.use_cache, self.cache_implementation
        )


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
