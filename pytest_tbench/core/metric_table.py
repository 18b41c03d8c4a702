"""The one table of what an item reports: every metric's ``extra_info`` key, unit, better direction, whether
it has per-round values, what the regression gate may do with it, and how tables show it.

The ``extra_info`` keys are the JSON's public contract: modules name them through the constants here, never
as strings of their own. Torch-free, so that the report and the gate load without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

MIB = 1024 * 1024

# extra_info keys written by more than one module (or read back by another than the one that writes them).
MODE = "mode"
MODEL = "model"
ROUNDS = "rounds"
MEDIAN_S = "median_s"
TOKENS_PER_CALL = "tokens_per_call"
SAMPLES_PER_CALL = "samples_per_call"
THROUGHPUT_TOKENS_PER_S = "throughput_tokens_per_s"
THROUGHPUT_SAMPLES_PER_S = "throughput_samples_per_s"
E2E_TOKENS_PER_S = "e2e_tokens_per_s"
DECODE_TOKENS_PER_S = "decode_tokens_per_s"
TTFT_MEAN_S = "ttft_mean_s"
TTFT_PER_ROUND_S = "ttft_per_round_s"
DECODE_TIME_MEAN_S = "decode_time_mean_s"
TOTAL_TIME_MEAN_S = "total_time_mean_s"
DECODE_TOKEN_LATENCY_MEAN_S = "decode_token_latency_mean_s"
PEAK_MEMORY_BYTES = "peak_memory_bytes"
PEAK_MEMORY_INCREASE_BYTES = "peak_memory_increase_bytes"
PARAMETER_BYTES = "parameter_bytes"
OPTIMIZER_STATE_BYTES = "optimizer_state_bytes"
TRAIN_PRECISION = "train_precision"
TRAIN_STEPS = "train_steps"
MODEL_LOAD_TIME_S = "model_load_time_s"
# Variant axes (axes.py): the attention implementation that ran, and a compiled item's compiling, kept out of
# its rounds (scenarios/compiled.py).
ATTN_IMPLEMENTATION_USED = "attn_implementation_used"
COMPILE_TIME_S = "compile_time_s"
COMPILE_WARMUP_ROUNDS = "compile_warmup_rounds"
COMPILE_FRAMES = "compile_frames"
RECOMPILES_MEASURED = "recompiles_measured"
# A forward run by another backend (--tbench-backend, backends/): its export (or trace), kept out of the
# rounds, how far its output is from PyTorch's, and the ONNX export and runtime it ran on.
BACKEND = "backend"
EXPORT_TIME_S = "export_time_s"
BACKEND_MAX_ABS_DIFF = "backend_max_abs_diff"
ONNX_OPSET = "onnx_opset"
ONNXRUNTIME_VERSION = "onnxruntime_version"
ONNXRUNTIME_PROVIDER = "onnxruntime_provider"
# CUDA: whether ONNX Runtime's float32 matmuls ran in TF32 (set to match PyTorch; its provider's default: on).
ONNXRUNTIME_USE_TF32 = "onnxruntime_use_tf32"
# --tbench-backend tensorrt (ONNX Runtime's TensorRT provider): TensorRT's version, whether its engine was
# built with float16 layers, and the engine build (the first run), which export_time_s includes.
TENSORRT_VERSION = "tensorrt_version"
TENSORRT_FP16 = "tensorrt_fp16"
TENSORRT_ENGINE_BUILD_S = "tensorrt_engine_build_s"
# Several worker processes (--tbench-processes): how the rounds split over them, and per-process figures.
PROCESSES = "processes"
PROCESS_ROUNDS = "process_rounds"
PROCESS_MEDIANS_S = "process_medians_s"
PEAK_MEMORY_PER_PROCESS_BYTES = "peak_memory_per_process_bytes"
# --tbench-ab: each pair's process's own item memory (peak_memory_increase_bytes), in pair order, per side.
PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES = "peak_memory_increase_per_process_bytes"
# A model spread over several devices (--tbench-device-map, --tbench-tp): where its modules went, and peak
# memory per GPU (peak_memory_bytes is then their sum) or per tensor-parallel rank (summed likewise).
DEVICE_MAP_PLACEMENT = "device_map_placement"
MODEL_DEVICES = "model_devices"
PEAK_MEMORY_PER_DEVICE_BYTES = "peak_memory_per_device_bytes"
TP_RANKS = "tp_ranks"
PEAK_MEMORY_PER_RANK_BYTES = "peak_memory_per_rank_bytes"
RANK_MEDIANS_S = "rank_medians_s"
# An item measured on two sides (--tbench-ab): the base side's pooled extra_info (with its raw rounds), and
# the sides, pairing and paired verdicts.
AB = "ab"
AB_BASE = "ab_base"
# --tbench-profile: the item's profiled rounds (measure/profile.py): its trace file and top operators.
PROFILE = "profile"
# An item the gate measured again (--tbench-compare-retries): how many measurements are pooled, and each
# earlier one alone.
GATE_ATTEMPTS = "gate_attempts"
GATE_EARLIER_ATTEMPTS = "gate_earlier_attempts"
# Under pytest-xdist (plugin/xdist.py): the worker that measured an item, its CUDA_VISIBLE_DEVICES
# entries and its pinned cores (--tbench-allow-shared-cpu).
XDIST_WORKER = "xdist_worker"
VISIBLE_DEVICES = "visible_devices"
WORKER_CPUS = "worker_cpus"
# A side's raw rounds (seconds) where they are not pytest-benchmark's stats: --tbench-ab's base side.
ROUNDS_S = "rounds_s"
# How close to the hardware's limit (machine/hardware.py, models/flops.py, measure/trackers/energy.py): the
# facts an item's process records, then what the pytest process derives from them with the median and the
# peaks.
DEVICE_NAME = "device_name"
MATMUL_PRECISION = "matmul_precision"
FLOPS_PER_CALL = "flops_per_call"
FLOPS_METHOD = "flops_method"
FLOPS_ESTIMATE_REASON = "flops_estimate_reason"
ACHIEVED_TFLOPS = "achieved_tflops"
PEAK_TFLOPS = "peak_tflops"
PEAK_TFLOPS_SOURCE = "peak_tflops_source"
PEAK_TFLOPS_UNAVAILABLE = "peak_tflops_unavailable"
MFU = "mfu"
DECODE_WEIGHTS_READ_BYTES = "decode_weights_read_bytes"
DECODE_KV_READ_BYTES = "decode_kv_read_bytes"
DECODE_BANDWIDTH_UNAVAILABLE = "decode_bandwidth_unavailable"
DECODE_BANDWIDTH_BYTES_PER_S = "decode_bandwidth_bytes_per_s"
PEAK_BANDWIDTH_BYTES_PER_S = "peak_bandwidth_bytes_per_s"
PEAK_BANDWIDTH_SOURCE = "peak_bandwidth_source"
PEAK_BANDWIDTH_UNAVAILABLE = "peak_bandwidth_unavailable"
MBU = "mbu"
ENERGY_METER = "energy_meter"
ENERGY_UNAVAILABLE = "energy_unavailable"
ENERGY_WINDOW_J = "energy_window_j"
ENERGY_WINDOW_S = "energy_window_s"
ENERGY_BUSY_S = "energy_busy_s"
AVERAGE_POWER_W = "average_power_w"
ENERGY_PER_CALL_J = "energy_per_call_j"
ENERGY_PER_TOKEN_J = "energy_per_token_j"
# Set on a pooled baseline (--tbench-compare-last): how many saved runs it pools.
BASELINE_RUNS = "baseline_runs"
BASELINE_RUN_ROUNDS = "baseline_run_rounds"  # rounds per pooled run, in the order of the pooled rounds

Better = Literal["lower", "higher"]
# What the gate may judge a metric by (a --tbench-compare-fail METRIC); None: the gate ignores it.
GateMetric = Literal["time", "tokens_per_s", "ttft", "peak_memory"]


def stored_unit(key: str) -> str:
    """The unit an extra_info key's suffix says its values are in ("" where it says none)."""
    if key.endswith("_tflops"):  # a rate: 1e12 FLOPs per second, as datasheets give peaks
        return "TFLOP/s"
    if "flops" in key.split("_"):  # flops_per_call, prefill_flops: a count of FLOPs
        return "FLOP"
    if key.endswith("_j"):
        return "J"
    if key.endswith("_w"):
        return "W"
    if key.endswith("_per_s"):
        what = key.removesuffix("_per_s").rsplit("_", 1)[-1]
        return f"{what}/s"
    if key.endswith("_s"):
        return "s"
    if key.endswith("_bytes"):
        return "bytes"
    return ""


class HasMetrics(Protocol):
    """Anything a metric can be read from: an item record, a report row."""

    def metric(self, key: str) -> float | None: ...


@dataclass(frozen=True)
class Metric:
    key: str  # extra_info key; its suffix says the unit stored (_s seconds, _bytes bytes, _per_s a rate)
    title: str
    unit: str  # the unit shown, after ``scale``
    scale: float = 1.0
    digits: int = 1
    better: Better | None = None
    # The extra_info key of its per-round values, or "stats" for pytest-benchmark's raw rounds; None: the
    # metric is one value per item (memory, means).
    rounds_key: str | None = None
    gate: GateMetric | None = None

    @property
    def sampled(self) -> bool:
        return self.rounds_key is not None

    def value(self, item: HasMetrics) -> float | None:
        raw = item.metric(self.key)
        return None if raw is None else raw * self.scale

    @property
    def label(self) -> str:
        return f"{self.title} ({self.unit})"

    def format(self, value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.{self.digits}f}"


LATENCY = Metric(MEDIAN_S, "median latency", "ms", 1000, 2, "lower", "stats", "time")
TOKENS_PER_S = Metric(
    THROUGHPUT_TOKENS_PER_S, "throughput", "tokens/s", 1, 0, "higher", "stats", "tokens_per_s"
)
SAMPLES_PER_S = Metric(THROUGHPUT_SAMPLES_PER_S, "throughput", "samples/s", 1, 1, "higher", "stats")
E2E_TOKENS_PER_S_METRIC = Metric(E2E_TOKENS_PER_S, "end-to-end throughput", "tokens/s", 1, 1, "higher")
DECODE_TOKENS_PER_S_METRIC = Metric(DECODE_TOKENS_PER_S, "decode throughput", "tokens/s", 1, 1, "higher")
PEAK_MEMORY = Metric(PEAK_MEMORY_BYTES, "peak memory", "MiB", 1 / MIB, 1, "lower", None, "peak_memory")
ITEM_MEMORY = Metric(PEAK_MEMORY_INCREASE_BYTES, "item +memory", "MiB", 1 / MIB, 1, "lower")
PREFILL = Metric(TTFT_MEAN_S, "prefill (TTFT)", "ms", 1000, 1, "lower", TTFT_PER_ROUND_S, "ttft")
DECODE = Metric(DECODE_TIME_MEAN_S, "decode", "ms", 1000, 1, "lower")
TOTAL = Metric(TOTAL_TIME_MEAN_S, "total", "ms", 1000, 1, "lower")
TOKEN_LATENCY = Metric(DECODE_TOKEN_LATENCY_MEAN_S, "decode step", "ms/token", 1000, 2, "lower")
PARAMETERS = Metric(PARAMETER_BYTES, "parameters", "MiB", 1 / MIB, 1)
OPTIMIZER_STATE = Metric(OPTIMIZER_STATE_BYTES, "optimizer state", "MiB", 1 / MIB, 1)
ACHIEVED = Metric(ACHIEVED_TFLOPS, "achieved", "TFLOP/s", 1, 3, "higher")
MFU_METRIC = Metric(MFU, "MFU", "%", 100, 1, "higher")
DECODE_BANDWIDTH = Metric(DECODE_BANDWIDTH_BYTES_PER_S, "decode bandwidth", "GB/s", 1e-9, 1, "higher")
MBU_METRIC = Metric(MBU, "MBU", "%", 100, 1, "higher")
AVERAGE_POWER = Metric(AVERAGE_POWER_W, "average power", "W", 1, 1)
ENERGY_PER_TOKEN = Metric(ENERGY_PER_TOKEN_J, "energy", "mJ/token", 1000, 3, "lower")

METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        LATENCY,
        TOKENS_PER_S,
        SAMPLES_PER_S,
        E2E_TOKENS_PER_S_METRIC,
        DECODE_TOKENS_PER_S_METRIC,
        PEAK_MEMORY,
        ITEM_MEMORY,
        PREFILL,
        DECODE,
        TOTAL,
        TOKEN_LATENCY,
        PARAMETERS,
        OPTIMIZER_STATE,
        ACHIEVED,
        MFU_METRIC,
        DECODE_BANDWIDTH,
        MBU_METRIC,
        AVERAGE_POWER,
        ENERGY_PER_TOKEN,
    )
}

# The metric each gate criterion reads, by criterion name (criteria.py parses the names).
GATE_METRICS: dict[str, Metric] = {m.gate: m for m in METRICS.values() if m.gate is not None}
