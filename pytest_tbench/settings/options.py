"""The table of tbench settings: one entry gives the command-line option, the ini key and the config-file key.

A value can arrive as a string (command line, ini file) or as a native YAML/TOML value (config file); every
parser takes both and raises ``OptionError`` naming the bad value and what would be valid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_tbench.core.axes import BACKENDS, COMPILE_MODES, DEVICE_MAPS, QUANTIZATIONS
from pytest_tbench.core.criteria import parse_criteria
from pytest_tbench.core.errors import OptionError
from pytest_tbench.settings.ab import SPEC_HELP, UNDECIDED_MODES, parse_pairs, parse_side
from pytest_tbench.settings.presets import PRESETS
from pytest_tbench.settings.store import StoreLocation

DTYPES = ("float32", "float16", "bfloat16", "auto")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value.strip()) if part]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _int(value: Any, *, minimum: int) -> int:
    try:
        number = int(value)
        if isinstance(value, float) or str(number) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        raise OptionError(f"{value!r} is not an integer") from None
    if number < minimum:
        raise OptionError(f"{value!r} is below the minimum of {minimum}")
    return number


def parse_int_list(value: Any) -> tuple[int, ...]:
    numbers = tuple(_int(item, minimum=1) for item in _items(value))
    if not numbers:
        raise OptionError("no values given")
    return numbers


def parse_str_list(value: Any) -> tuple[str, ...]:
    names = tuple(str(item) for item in _items(value))
    if not names:
        raise OptionError("no values given")
    return names


def parse_devices(value: Any) -> tuple[str, ...]:
    devices = parse_str_list(value)
    for device in devices:
        if not _DEVICE_RE.match(device):
            raise OptionError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N")
    return devices


def parse_dtypes(value: Any) -> tuple[str, ...]:
    dtypes = parse_str_list(value)
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise OptionError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return dtypes


def _choice(what: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        name = str(value).strip()
        if name not in choices:
            raise OptionError(f"unknown {what} {name!r}; valid: {', '.join(choices)}")
        return name

    return parse


parse_preset = _choice("preset", tuple(PRESETS))


def _parse_min(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        return _int(value, minimum=minimum)

    return parse


def _parse_float_in(low: float, high: float, low_open: bool = True) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OptionError(f"{value!r} is not a number") from None
        if not (low < number <= high if low_open else low <= number <= high):
            bracket = "(" if low_open else "["
            raise OptionError(f"{value!r} is outside {bracket}{low}, {high}]")
        return number

    return parse


_BOOLS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    found = _BOOLS.get(str(value).strip().lower())
    if found is None:
        raise OptionError(f"{value!r} is not a boolean; use true or false")
    return found


CACHE_IMPLEMENTATIONS = ("dynamic", "static")
# What scenarios.train can build; listed here so that parsing settings needs no torch code.
OPTIMIZERS = ("adamw", "sgd", "none")


parse_optimizer = _choice("optimizer", OPTIMIZERS)


parse_cache_implementation = _choice("cache implementation", CACHE_IMPLEMENTATIONS)


def parse_name(value: Any) -> str:
    """A name checked later against a table this layer cannot import (--tbench-launcher's launchers)."""
    name = str(value).strip()
    if not name.isidentifier():
        raise OptionError(f"{value!r} is not a name")
    return name


def parse_attn_implementations(value: Any) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(parse_str_list(value)))
    # Asked of the installed transformers (its attention registry), so imported only when the option is given.
    from pytest_tbench.models.attention import attention_choices

    choices = attention_choices()
    for name in names:
        if name not in choices:
            raise OptionError(
                f"unknown attention implementation {name!r}; valid: {', '.join(choices)} (auto: the model's "
                "own choice; the rest as the installed transformers registers them)"
            )
    return names


def parse_quantizations(value: Any) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(parse_str_list(value)))
    for method in methods:
        if method not in QUANTIZATIONS:
            raise OptionError(f"unknown quantization {method!r}; valid: {', '.join(QUANTIZATIONS)}")
    return methods


def parse_backends(value: Any) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(parse_str_list(value)))
    for name in names:
        if name not in BACKENDS:
            raise OptionError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    return names


def parse_device_maps(value: Any) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(parse_str_list(value)))
    for name in names:
        if name not in DEVICE_MAPS:
            raise OptionError(
                f"unknown device map {name!r}; valid: {', '.join(DEVICE_MAPS)} (none: the model on the "
                "item's device; the rest as from_pretrained's device_map takes them)"
            )
    return names


def parse_tp(value: Any) -> tuple[str, ...]:
    """Tensor parallel sizes, kept as strings like every axis value ("1": no tensor parallel)."""
    return tuple(dict.fromkeys(str(size) for size in parse_int_list(value)))


def parse_compile_modes(value: Any) -> tuple[str, ...]:
    # YAML reads a bare ``off`` as false: in a config file that is the mode "off".
    modes = tuple(dict.fromkeys(parse_str_list(["off" if item is False else item for item in _items(value)])))
    for mode in modes:
        if mode not in COMPILE_MODES:
            raise OptionError(
                f"unknown compile mode {mode!r}; valid: {', '.join(COMPILE_MODES)} (off: no torch.compile; "
                "the rest are torch.compile modes)"
            )
    return modes


def parse_compare_fail(value: Any) -> tuple[Any, ...]:
    return parse_criteria(value)  # the gate's grammar lives with the gate


def parse_compare(value: Any) -> str:
    """A saved run (number or name prefix), a JSON path, or "" / "latest" for the newest saved run."""
    text = str(value).strip()
    return "" if text == "latest" else text


def parse_percent(value: Any) -> float:
    """``10%`` or ``10`` as the fraction 0.1."""
    text = str(value).strip().removesuffix("%")
    try:
        number = float(text)
    except ValueError:
        raise OptionError(f"{value!r} is not a percentage; use e.g. 10%") from None
    if not 0 <= number < 1000:
        raise OptionError(f"{value!r} is outside 0% to 1000%")
    return number / 100


def parse_report_dir(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise OptionError("no folder given")
    return text


def parse_profile_dir(value: Any) -> str:
    """The folder for --tbench-profile's traces, made absolute here: workers (an A/B base side's in its
    worktree) may run in another directory."""
    return str(Path(parse_report_dir(value)).resolve())


def parse_store(value: Any) -> StoreLocation:
    """A store URL or file path (history/urls.py), checked now so that a bad one is a usage error at once;
    SQLAlchemy parses it when the run is written (store.py says why not before)."""
    from pytest_tbench.settings.store import check_store_text

    text = str(value).strip()
    problem = check_store_text(text)
    if problem is not None:
        raise OptionError(problem)
    return StoreLocation(text)


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Callable[[Any], Any]
    metavar: str
    help: str
    flag: bool = False  # on the command line a bare switch; in ini and config files a boolean
    repeat: bool = False  # on the command line may be given several times
    bare: str | None = None  # on the command line the value may be left out; this is then the value

    @property
    def cli(self) -> str:
        return "--tbench-" + self.key.replace("_", "-")

    @property
    def dest(self) -> str:
        return "tbench_" + self.key

    @property
    def ini(self) -> str:
        return "tbench_" + self.key

    def parse_from(self, value: Any, source: str) -> Any:
        try:
            return self.parse(value)
        except OptionError as exc:
            raise OptionError(f"{source}: {exc}") from None


SETTINGS: tuple[Setting, ...] = (
    Setting("preset", parse_preset, "NAME", f"sweep preset: {', '.join(PRESETS)} (default quick_test)"),
    Setting(
        "models",
        parse_str_list,
        "SPECS",
        "comma-separated model specs (default gpt2,bert-base-uncased,smollm-135m,t5-small; see "
        "--tbench-list-models)",
    ),
    Setting("batch_sizes", parse_int_list, "N,N", "comma-separated batch sizes (default: the preset's)"),
    Setting("seq_lens", parse_int_list, "N,N", "comma-separated input lengths (default: the preset's)"),
    Setting(
        "devices",
        parse_devices,
        "DEV,DEV",
        "auto (the default: cuda if available, else cpu), cpu, cuda, cuda:N; several allowed",
    ),
    Setting(
        "dtype",
        parse_dtypes,
        "DTYPE",
        "float32, float16, bfloat16 or auto (the default: float16 on cuda, float32 on cpu); several allowed",
    ),
    Setting(
        "attn_implementation",
        parse_attn_implementations,
        "NAME,NAME",
        "attention implementations to sweep: auto (the model's own choice, the default), eager, sdpa, "
        "flash_attention_2, flex_attention ... as the installed transformers offers them; one a model, "
        "device or installation cannot run is skipped with transformers' reason",
    ),
    Setting(
        "quantization",
        parse_quantizations,
        "METHOD,METHOD",
        f"weight quantizations to sweep: {', '.join(QUANTIZATIONS)} (default none; int8-*: torchao, "
        "bnb-*: bitsandbytes, pip install 'pytest-tbench[quant]'); inference items only, the quantized "
        "weights' bytes recorded",
    ),
    Setting(
        "compile",
        parse_compile_modes,
        "MODE,MODE",
        f"torch.compile modes to sweep: {', '.join(COMPILE_MODES)} (default off); compile time is recorded "
        "apart (compile_time_s), never in the rounds; generate compiles its decode step over a static cache",
    ),
    Setting(
        "backend",
        parse_backends,
        "NAME,NAME",
        f"forward runtimes to sweep: {', '.join(BACKENDS)} (default pytorch); the model is exported once per "
        "item, outside the rounds (export_time_s); onnxruntime needs pip install 'pytest-tbench[onnx]', "
        "tensorrt (a CUDA GPU) 'pytest-tbench[tensorrt]'",
    ),
    Setting(
        "device_map",
        parse_device_maps,
        "MAP,MAP",
        f"spread the model over the visible GPUs with from_pretrained's device_map: {', '.join(DEVICE_MAPS)} "
        "(default none); memory is recorded per GPU and every GPU the model touches is synchronised; needs "
        "pip install 'pytest-tbench[multi-gpu]' (accelerate)",
    ),
    Setting(
        "tp",
        parse_tp,
        "N,N",
        "tensor parallel over N ranks (transformers' tp_plan='auto'), one process per rank started by "
        "torch.distributed's elastic launch; latency from the slowest rank, memory per rank and summed "
        "(default 1: none)",
    ),
    Setting(
        "rounds",
        _parse_min(1),
        "N",
        "measured rounds per item (default: the preset's runs, x 10 for forward and train)",
    ),
    Setting("warmup", _parse_min(0), "N", "warm-up rounds per item, never counted (default 2)"),
    Setting("new_tokens", _parse_min(1), "N", "tokens generated per row in generate (default: the preset's)"),
    Setting(
        "temperature",
        _parse_float_in(0.0, 100.0),
        "T",
        "sample in generate with this temperature (default: greedy, no sampling)",
    ),
    Setting(
        "top_p",
        _parse_float_in(0.0, 1.0),
        "P",
        "sample in generate with nucleus top_p, 0 < P <= 1 (default: greedy, no sampling)",
    ),
    Setting("use_cache", parse_bool, "BOOL", "use the KV cache in generate (default true)"),
    Setting(
        "cache_implementation",
        parse_cache_implementation,
        "NAME",
        "KV cache for generate: dynamic or static (default: the model's)",
    ),
    Setting("optimizer", parse_optimizer, "NAME", "train: adamw (default), sgd, or none (forward+backward)"),
    Setting(
        "launcher",
        parse_name,
        "NAME",
        "where each item runs: auto (default: in this process, unless --tbench-isolate or --tbench-processes "
        "say otherwise), inprocess, isolated, processes (with --tbench-processes N); an unknown name's error "
        "lists every launcher",
    ),
    Setting("isolate", parse_bool, "", "run each item in a fresh worker process", flag=True),
    Setting(
        "processes",
        _parse_min(1),
        "N",
        "spread each item's rounds over N fresh worker processes, so that timings and the gate see the "
        "spread between processes (default 1; N > 1 implies --tbench-isolate)",
    ),
    Setting(
        "oom_skip",
        parse_bool,
        "",
        "after an item runs out of memory, skip the same model's items that are no smaller",
        flag=True,
    ),
    Setting(
        "fit_check",
        parse_bool,
        "BOOL",
        "before building a model, skip an item whose estimated memory exceeds the device's free memory "
        "(default true)",
    ),
    Setting(
        "compare",
        parse_compare,
        "RUN",
        "gate every item against a saved run: the newest for this machine, or =RUN (0001, a name, a .json); "
        "=store:[BRANCH] reads the newest run of this machine (of BRANCH, a glob) from the history store "
        "(--tbench-store, else $TBENCH_STORE, else .benchmarks/tbench.sqlite)",
        bare="latest",
    ),
    Setting(
        "compare_fail",
        parse_compare_fail,
        "EXPR",
        "gate criterion METRIC:N%[:mode=M][:model=GLOB], repeatable (default: time:5% tokens_per_s:5% "
        "ttft:10% peak_memory:5%)",
        repeat=True,
    ),
    Setting(
        "compare_last",
        _parse_min(1),
        "N",
        "pool the newest N saved runs (of --tbench-compare's name prefix, if given; or stored runs, with "
        "--tbench-compare store:) into one baseline, so that the gate sees the spread between sessions "
        "(default 1); N > 1 implies --tbench-compare",
    ),
    Setting(
        "compare_retries",
        _parse_min(0),
        "N",
        "measure an item whose timing regressed again, up to N times (new worker processes under "
        "--tbench-processes), judging all its measurements pooled each time: a burst of load in one is "
        "outweighed by the others, a real slowdown is in all (default 2; 0 fails on the first)",
    ),
    Setting(
        "compare_drift",
        parse_percent,
        "N%",
        "how far timings may drift between sessions on this machine, allowed when the baseline is one saved "
        "session (which cannot show it): a timing fails only past the baseline moved by N% and then the "
        "threshold (default 15%, the largest drift seen on a small shared VM and half again; 0% allows "
        "none); pooled baselines (--tbench-compare-last N) use the drift between their sessions instead",
    ),
    Setting(
        "compare_any_machine", parse_bool, "", "allow a baseline from other hardware/software", flag=True
    ),
    Setting(
        "ab",
        parse_side,
        "SIDE",
        "measure every item on a base side too, interleaved with the current code in this session, and gate "
        f"on the paired change (criteria as --tbench-compare-fail). SIDE: {SPEC_HELP}",
        repeat=True,
    ),
    Setting(
        "ab_pairs",
        parse_pairs,
        "N|MIN:MAX",
        "--tbench-ab: pairs of worker processes (one per side) per item, the confidence interval's unit "
        "(default 8); MIN:MAX gives an item that MIN pairs leave undecided more, up to MAX, the error spent "
        "over the two looks",
    ),
    Setting(
        "ab_undecided",
        _choice("--tbench-ab-undecided mode", UNDECIDED_MODES),
        "pass|warn|fail",
        '--tbench-ab: what an item the run cannot decide ("cannot tell") does to the run: pass, warn (a '
        "pytest warning and the count in the closing line; the default) or fail",
    ),
    Setting(
        "ab_path",
        parse_str_list,
        "DIRS",
        "--tbench-ab REV: the base worktree's directories put first on the import path, relative to its "
        "top level (default: src if the tree has one, else the top level)",
    ),
    Setting(
        "report",
        parse_report_dir,
        "DIR",
        "at the end of the session write CSV, Markdown, PNG plots and HTML of the run into DIR",
    ),
    Setting(
        "profile",
        parse_profile_dir,
        "DIR",
        "after each item's measured rounds, profile more rounds with torch.profiler (never timed): a gzipped "
        "Chrome/Perfetto trace per item (and A/B side) in DIR, the top operators by self time in the item's "
        "extra_info (profile) and the terminal summary",
    ),
    Setting(
        "profile_rounds",
        _parse_min(1),
        "N",
        "rounds profiled per item under --tbench-profile (default 1)",
    ),
    Setting(
        "profile_memory",
        parse_bool,
        "",
        "under --tbench-profile, one more round with CUDA's allocator history recorded: its snapshot "
        "(for https://pytorch.org/memory_viz) in the profile folder, the round's largest allocations and "
        "where they were made in extra_info (profile.memory); on a CPU item, the reason there is none",
        flag=True,
    ),
    Setting(
        "store",
        parse_store,
        "URL",
        "at the end of the session write the run into the history store URL: a file path or sqlite:///PATH "
        "(SQLite), or postgresql://USER@HOST[:PORT]/DB (a password from PGPASSWORD or ~/.pgpass, or in the "
        "URL; it is masked in all output)",
    ),
    Setting(
        "item_timeout",
        _parse_float_in(0.0, 1e7),
        "SECONDS",
        "an item measured in worker processes (--tbench-isolate, --tbench-processes, --tbench-ab) fails when "
        "its worker takes longer than this, naming what it was doing (loading and warming up, a round, "
        "finishing), and the worker is ended; the session goes on (default: no limit)",
    ),
    Setting(
        "store_required",
        parse_bool,
        "",
        "a run --tbench-store could not write fails the session (exit 1) instead of warning: where the store "
        "is the only record of the run (no --benchmark-json, no autosave)",
        flag=True,
    ),
    Setting(
        "peak_tflops",
        _parse_float_in(0.0, 1e6),
        "TFLOPS",
        "the device's dense peak TFLOPS for the items' dtype (not the sparsity figure), for MFU (default: a "
        "table of known GPUs; on CPU no MFU without it)",
    ),
    Setting(
        "peak_bandwidth",
        _parse_float_in(0.0, 1e6),
        "GB/S",
        "the device's peak memory bandwidth in GB/s, for generate's decode MBU (default: a table of known "
        "GPUs; on CPU no MBU without it)",
    ),
    Setting(
        "max_batch_input_product",
        _parse_min(1),
        "N",
        "skip items whose batch x input length exceeds N (default 131072)",
    ),
    Setting(
        "gpus_per_worker",
        _parse_min(1),
        "K",
        "under pytest-xdist (-n N): GPUs each worker owns; worker gwI gets entries I*K..I*K+K-1 of this "
        "process's visible GPUs, as its CUDA_VISIBLE_DEVICES (default 1)",
    ),
    Setting(
        "allow_shared_cpu",
        parse_bool,
        "",
        "allow CPU items under pytest-xdist with several workers: each worker gets a disjoint slice of the "
        "CPUs (affinity and torch threads), recorded as worker_cpus; without it such a run is refused, as "
        "workers sharing cores disturb each other's timings",
        flag=True,
    ),
    Setting(
        "trust_remote_code",
        parse_bool,
        "",
        "let from_pretrained / AutoConfig.from_pretrained run the model repository's own Python code (a Hub "
        "model that needs it fails without); off by default: only for repositories you trust",
        flag=True,
    ),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}

# Keys a config file may hold beyond the settings above.
# ``benchmarks``: a benchmark list (benchlist.py); ``global_settings`` / ``output_settings``: the sections of
# the seeds' benchmark list file, read as given (seeds_format.py).
CONFIG_FILE_ONLY_KEYS = ("custom_models", "benchmarks", "global_settings", "output_settings")

# Spellings of the classic PyTorchBenchmark command line and of earlier drafts, mapped to the fix.
_LEGACY_FLAGS = {
    "--models": "--tbench-models",
    "--batch_sizes": "--tbench-batch-sizes",
    "--sequence_lengths": "--tbench-seq-lens",
    "--fp16": "--tbench-dtype float16",
    "--no_memory": "nothing: speed and memory are always both measured",
    "--no-memory": "nothing: speed and memory are always both measured",
    "--no_speed": "nothing: speed and memory are always both measured",
    "--no-speed": "nothing: speed and memory are always both measured",
    "--no_env_print": "nothing: the environment is always recorded in machine_info",
}


# `--tbench-compare RUN` takes RUN only when it is plainly a run; anything else (benches/) stays a path.
_RUN_WORD = re.compile(r"^(\d{4}\S*|\S+\.json|store:\S*)$")


def normalise_compare_args(args: list[str]) -> None:
    """Rewrite ``--tbench-compare [RUN]`` in place to the ``=`` form, so a following test path is never taken
    as its value."""
    index = 0
    while index < len(args):
        if args[index] == "--tbench-compare":
            following = args[index + 1] if index + 1 < len(args) else ""
            if _RUN_WORD.match(following):
                args[index : index + 2] = [f"--tbench-compare={following}"]
            else:
                args[index] = "--tbench-compare=latest"
        index += 1


def legacy_spelling_errors(args: Sequence[str]) -> list[str]:
    """Messages for command-line words that use an old spelling, each naming the new one."""
    errors = []
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--tbench_"):
            fixed = "--tbench-" + flag[len("--tbench_") :].replace("_", "-")
            errors.append(f"Arg {flag} is no longer used, please use {fixed} instead")
        elif flag in _LEGACY_FLAGS:
            errors.append(
                f"Arg {flag} is a classic benchmark flag; in pytest-tbench use {_LEGACY_FLAGS[flag]}"
            )
    return errors
