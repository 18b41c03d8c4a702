"""How close an item came to the hardware's limit, derived in the pytest process from what its process
recorded (FLOPs per call, the device's name and matmul precision, generate's bytes read per decode step), its
median and the device's peaks:

- ``achieved_tflops`` = ``flops_per_call`` / ``median_s`` / 1e12, and ``mfu`` = achieved / ``peak_tflops``;
- ``decode_bandwidth_bytes_per_s`` = (``decode_weights_read_bytes`` + ``decode_kv_read_bytes``) /
  ``decode_token_latency_mean_s`` (bytes a decode step reads over the mean time of a step), and ``mbu`` =
  that / ``peak_bandwidth_bytes_per_s``.

Derived here, not where the rounds ran, because the median is the pooled one (worker processes, the gate's
re-measurements) and the peaks come from the session's options. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_tbench.core.metric_table import (
    ACHIEVED_TFLOPS,
    DECODE_BANDWIDTH_BYTES_PER_S,
    DECODE_KV_READ_BYTES,
    DECODE_TOKEN_LATENCY_MEAN_S,
    DECODE_WEIGHTS_READ_BYTES,
    DEVICE_NAME,
    FLOPS_PER_CALL,
    MATMUL_PRECISION,
    MBU,
    MFU,
    PEAK_BANDWIDTH_BYTES_PER_S,
    PEAK_BANDWIDTH_SOURCE,
    PEAK_BANDWIDTH_UNAVAILABLE,
    PEAK_TFLOPS,
    PEAK_TFLOPS_SOURCE,
    PEAK_TFLOPS_UNAVAILABLE,
    TP_RANKS,
)
from pytest_tbench.core.record import number
from pytest_tbench.machine.hardware import TERA, Peak, peak_bandwidth, peak_tflops


@dataclass(frozen=True)
class GivenPeaks:
    """The peaks the user gave (``--tbench-peak-tflops``, ``--tbench-peak-bandwidth`` in GB/s); None: the
    known-GPU table's."""

    tflops: float | None = None
    bandwidth_gb_per_s: float | None = None


def achieved_tflops(flops_per_call: float, median_s: float) -> float:
    return flops_per_call / median_s / TERA


def _peak_info(peak: Peak, value_key: str, source_key: str, unavailable_key: str) -> dict[str, Any]:
    if peak.value is None:
        return {unavailable_key: peak.source}
    return {value_key: peak.value, source_key: peak.source}


def _devices(info: Mapping[str, Any], device: str) -> int:
    """How many devices of the peak's kind the item's work ran on at once: a tensor-parallel item's ranks
    each own a GPU (its FLOPs and bytes are the ranks' sum); ranks on the CPU share its cores, one peak."""
    ranks = number(info.get(TP_RANKS))
    return int(ranks) if ranks and device.startswith("cuda") else 1


def _scaled(peak: Peak, devices: int) -> Peak:
    if peak.value is None or devices == 1:
        return peak
    return Peak(peak.value * devices, f"{peak.source}, x {devices} GPUs (one per tensor-parallel rank)")


def limits_info(info: Mapping[str, Any], median_s: float | None, given: GivenPeaks) -> dict[str, Any]:
    """The keys above for an item's extra_info ``info`` and median; nothing for what it did not record (a
    user's ``tbench.measure`` call has no FLOP count, only generate reads a KV cache)."""
    device, name = info.get("device"), info.get(DEVICE_NAME)
    if not isinstance(device, str) or not isinstance(name, str):
        return {}
    out: dict[str, Any] = {}
    flops = number(info.get(FLOPS_PER_CALL))
    if flops is not None:
        precision = str(info.get(MATMUL_PRECISION) or info.get("dtype"))
        peak = _scaled(peak_tflops(device, name, precision, given.tflops), _devices(info, device))
        out.update(_peak_info(peak, PEAK_TFLOPS, PEAK_TFLOPS_SOURCE, PEAK_TFLOPS_UNAVAILABLE))
        if median_s is not None and median_s > 0:
            out[ACHIEVED_TFLOPS] = achieved_tflops(flops, median_s)
            if peak.value is not None:
                out[MFU] = out[ACHIEVED_TFLOPS] / peak.value
    weights, kv = number(info.get(DECODE_WEIGHTS_READ_BYTES)), number(info.get(DECODE_KV_READ_BYTES))
    if weights is not None and kv is not None:
        peak = _scaled(peak_bandwidth(device, name, given.bandwidth_gb_per_s), _devices(info, device))
        out.update(
            _peak_info(peak, PEAK_BANDWIDTH_BYTES_PER_S, PEAK_BANDWIDTH_SOURCE, PEAK_BANDWIDTH_UNAVAILABLE)
        )
        latency = number(info.get(DECODE_TOKEN_LATENCY_MEAN_S))
        if latency is not None and latency > 0:
            out[DECODE_BANDWIDTH_BYTES_PER_S] = (weights + kv) / latency
            if peak.value is not None:
                out[MBU] = out[DECODE_BANDWIDTH_BYTES_PER_S] / peak.value
    return out
