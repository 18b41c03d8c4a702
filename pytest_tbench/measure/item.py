"""One item's rounds under the memory tracker, on its device, and the extra_info every item carries, whichever
launcher ran them (in the pytest process or in a worker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_tbench.core.axes import BACKEND_PYTORCH
from pytest_tbench.core.measurement import Measurement
from pytest_tbench.core.metric_table import (
    ATTN_IMPLEMENTATION_USED,
    BACKEND,
    DEVICE_MAP_PLACEMENT,
    DEVICE_NAME,
    MATMUL_PRECISION,
    MEDIAN_S,
    MODE,
    MODEL,
    MODEL_DEVICES,
    MODEL_LOAD_TIME_S,
    PARAMETER_BYTES,
    PROFILE,
    ROUNDS,
    SAMPLES_PER_CALL,
    THROUGHPUT_SAMPLES_PER_S,
    THROUGHPUT_TOKENS_PER_S,
    TOKENS_PER_CALL,
)
from pytest_tbench.machine.devices import device_name, matmul_precision, on_device
from pytest_tbench.measure.profile import ProfileRequest, profile_or_reason
from pytest_tbench.measure.rounds import RoundBody
from pytest_tbench.measure.trackers import memory_tracker
from pytest_tbench.measure.trackers.energy import EnergyWindow, open_meter
from pytest_tbench.measure.work import Work
from pytest_tbench.models.attention import implementation_used
from pytest_tbench.models.code import MODEL_CODE, fingerprint
from pytest_tbench.models.flops import count_flops
from pytest_tbench.models.loading import LoadedModel
from pytest_tbench.models.placement import placement_summary
from pytest_tbench.models.quantization import quantized_matmuls
from pytest_tbench.settings.cases import BenchCase


def run_item(
    case: BenchCase,
    loaded: LoadedModel,
    work: Work,
    rounds: int,
    warmup: int,
    run_rounds: Callable[[Work], object],
    energy_unavailable: str | None = None,
    flops_pass: bool = True,
    profile: ProfileRequest | None = None,
) -> Measurement:
    """Run the rounds (``run_rounds`` of the work it is given, in whichever launcher) under the memory tracker
    and the energy meter, count one call's FLOPs after them (unless ``flops_pass`` is False: another worker of
    the item counts them), profile more rounds where ``profile`` asks (--tbench-profile; after the metrics
    are read), and return the item's measurement; the work's cleanup runs even when a round fails.
    ``energy_unavailable``: why this launcher's rounds cannot be metered (None: they can, where the device has
    a meter)."""
    try:
        # The item's GPU is the current device throughout: calls that take no device (events, streams,
        # empty_cache, transformers' own CUDA calls) then act on it, not on GPU 0.
        with on_device(case.device):
            meter = (
                energy_unavailable
                if energy_unavailable is not None
                else open_meter(case.device, loaded.devices)
            )
            energy = EnergyWindow(meter, warmup, rounds)
            # Before the memory tracking: a compiled item's compiling (inductor's autotuning and its scratch)
            # is not the item's peak. What it leaves allocated (compiled graphs' buffers) is memory in use
            # when the item starts, in its peak but not in its "item +mem", as the weights are.
            work.prepare()
            # Another backend's runtime (ONNX Runtime) allocates outside PyTorch's allocator.
            torch_memory = case.backend == BACKEND_PYTORCH
            with memory_tracker(
                case.device, devices=loaded.devices, pytorch_allocator=torch_memory
            ) as memory:
                run_rounds(energy.wrap(work))
            # After the rounds and outside the memory tracker: never timed, and not in the item's peak memory.
            # FlopCounterMode has no formula for torchao's int8 matmuls or bitsandbytes' kernels: it would
            # count the rest alone.
            uncountable = (
                f"FlopCounterMode does not count {quantized_matmuls(case.quantization)} "
                f"({loaded.quantized_layers} quantized layers)"
                if loaded.quantized_layers
                else None
            )
            flops = (
                count_flops(work.flops, uncountable).extra_info()
                if work.flops is not None and flops_pass
                else {}
            )
            hardware = {
                DEVICE_NAME: device_name(case.device),
                MATMUL_PRECISION: matmul_precision(case.device, case.dtype),
            }
        metrics = work.metrics(warmup)  # before cleanup, which drops what it reads
        profiled: dict[str, Any] = {}
        if profile is not None:  # after the metrics: its rounds must not enter the per-round records
            with on_device(case.device):
                profiled[PROFILE] = profile_or_reason(RoundBody(work, case.device, loaded.devices), profile)
    finally:
        work.cleanup()
    return Measurement.of(
        ("item", describe(case, loaded, work, rounds, warmup)),
        ("hardware", hardware),
        ("memory", memory),
        ("metrics", metrics),
        ("flops", flops),
        ("energy", energy.extra_info(work.tokens)),
        ("profile", profiled),
    )


def describe(case: BenchCase, loaded: LoadedModel, work: Work, rounds: int, warmup: int) -> dict[str, Any]:
    return {
        MODE: case.mode,
        MODEL: case.model,
        "model_class": type(loaded.model).__name__,
        # The code the model ran here, to compare with the pytest process' and the other A/B side's.
        MODEL_CODE: fingerprint(loaded.model).as_json(),
        "model_source": loaded.source,
        MODEL_LOAD_TIME_S: loaded.load_time_s,
        "num_parameters": loaded.num_parameters,
        PARAMETER_BYTES: loaded.parameter_bytes,
        "batch_size": case.batch_size,
        "seq_len": case.seq_len,
        "media": case.media,  # an image's or audio window's tag ("" for text): models/families.py
        "device": case.device,
        "dtype": case.dtype,
        "attn_implementation": case.attn_implementation,
        ATTN_IMPLEMENTATION_USED: implementation_used(loaded.model),
        "compile": case.compile,
        "quantization": case.quantization,
        "quantized_layers": loaded.quantized_layers,
        BACKEND: case.backend,
        "device_map": case.device_map,
        "tp": case.tp,
        # Where a spread model's weights are (models/placement.py): empty for a model on the item's device.
        MODEL_DEVICES: list(loaded.devices),
        DEVICE_MAP_PLACEMENT: placement_summary(loaded.model),
        ROUNDS: rounds,
        "warmup_rounds": warmup,
        SAMPLES_PER_CALL: work.samples,
        TOKENS_PER_CALL: work.tokens,
    }


def throughput(samples_per_call: int, tokens_per_call: int, median_s: float | None) -> dict[str, Any]:
    """Per-call median and the rates it gives; nothing when no timing was kept (--benchmark-disable)."""
    if median_s is None or median_s <= 0:
        return {}
    info: dict[str, Any] = {
        MEDIAN_S: median_s,
        THROUGHPUT_SAMPLES_PER_S: samples_per_call / median_s,
    }
    if tokens_per_call:
        info[THROUGHPUT_TOKENS_PER_S] = tokens_per_call / median_s
    return info
