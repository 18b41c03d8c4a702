"""Energy of an item's measured rounds, from a cumulative hardware counter read around them.

Meters: on an NVIDIA GPU, NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules,
the whole board); on a CPU, RAPL through ``/sys/class/powercap`` (the ``package-N`` domains: cores, caches and
uncore of every socket, not DRAM; every process on them). Where neither can be read the item records
``energy_unavailable`` with the reason, and nothing else about energy.

The window. The counter is read once just before the first measured call (after its untimed ``before_round``
hook) and once just after the last measured call (before its ``after_round``): never inside a timed call,
never around a warm-up round. Per-call reads would not do: NVML's counter advances in steps (every 10 to 100
ms depending on the GPU: pynvml's maintainers saw 10 ms on a V100, others about 100 ms on A100/H100), so a
millisecond call would read 0 or a whole step. Nor is one step the whole error on A100 and H100: their power
sensor samples about a quarter of each ~100 ms period and the counter integrates those samples (Yang et al.,
"Part-time Power Measurements: nvidia-smi's Lack of Attention", arXiv 2312.02741), so a load whose power
changes faster than that is metered by the part it showed the sensor. Over many periods a steady load's
unsampled share averages out; a window of a few periods does not. So the window must last at least
``min_window_s`` (NVML 5 s, 50 periods of 100 ms; RAPL 0.1 s: it updates about every millisecond and measures
continuously), else the energy is recorded as unavailable, with how many rounds would do. The window is never
extended past the measured rounds: that would meter calls that are not the item's.

The window holds the measured calls and the untimed gaps between them (synchronisation, the per-round hooks,
pytest-benchmark's bookkeeping). ``average_power_w`` is the window's energy over its length; a call's energy
is that power times the call's mean duration (``energy_busy_s`` / measured calls), so the gaps' share of the
energy is not charged to the calls; ``energy_busy_s`` against ``energy_window_s`` shows how large they were.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pytest_tbench.core.metric_table import (
    AVERAGE_POWER_W,
    ENERGY_BUSY_S,
    ENERGY_METER,
    ENERGY_PER_CALL_J,
    ENERGY_PER_TOKEN_J,
    ENERGY_UNAVAILABLE,
    ENERGY_WINDOW_J,
    ENERGY_WINDOW_S,
)
from pytest_tbench.machine import nvml
from pytest_tbench.machine.devices import cuda_index, cuda_uuid, is_cuda
from pytest_tbench.measure.work import Work, WorkWrapper

POWERCAP = Path("/sys/class/powercap")
NVML_MIN_WINDOW_S = 5.0  # the module says why: periods sampled in part, averaged over many
RAPL_MIN_WINDOW_S = 0.1

Reading = tuple[int, ...]


class EnergyMeter(Protocol):
    """A cumulative energy counter: ``read`` it twice, ``joules`` between the two readings."""

    @property
    def name(self) -> str: ...  # what it measures, recorded as energy_meter

    @property
    def min_window_s(self) -> float: ...  # the shortest window its update steps allow

    def read(self) -> Reading: ...

    def joules(self, start: Reading, end: Reading) -> float: ...


@dataclass(frozen=True)
class NvmlEnergyMeter:
    """NVML's total-energy counters of the item's GPUs (one, or each GPU a device map spreads the model
    over), in millijoules, summed."""

    counters: tuple[Callable[[], int], ...]
    uuids: tuple[str, ...]
    min_window_s: float = NVML_MIN_WINDOW_S

    @property
    def name(self) -> str:
        if len(self.uuids) == 1:
            return f"nvml total energy of GPU {self.uuids[0]} (the whole board)"
        spanned = ", ".join(self.uuids)
        return f"nvml total energy of the {len(self.uuids)} GPUs the model spans, summed ({spanned})"

    def read(self) -> Reading:
        return tuple(counter() for counter in self.counters)

    def joules(self, start: Reading, end: Reading) -> float:
        return sum(after - before for before, after in zip(start, end, strict=True)) / 1000


@dataclass(frozen=True)
class RaplDomain:
    name: str  # "package-0"
    energy_uj: Path
    max_energy_range_uj: int  # the counter wraps to 0 past this


@dataclass(frozen=True)
class RaplEnergyMeter:
    """The RAPL package domains' counters, in microjoules, summed."""

    domains: tuple[RaplDomain, ...]
    min_window_s: float = RAPL_MIN_WINDOW_S

    @property
    def name(self) -> str:
        return f"rapl {'+'.join(d.name for d in self.domains)} (whole CPU packages, not DRAM)"

    def read(self) -> Reading:
        return tuple(int(d.energy_uj.read_text()) for d in self.domains)

    def joules(self, start: Reading, end: Reading) -> float:
        total = 0
        for domain, before, after in zip(self.domains, start, end, strict=True):
            # One wrap at most: at 200 W a 262 J-range counter (a common max_energy_range_uj is 262143328850
            # uJ = 262 kJ) wraps every 20 minutes, longer than any window here.
            total += after - before if after >= before else after + domain.max_energy_range_uj - before
        return total / 1e6


_TOP_ZONE = re.compile(r"^intel-rapl:\d+$")  # a package or psys zone; intel-rapl:N:M are its subzones


def rapl_meter(root: Path = POWERCAP) -> RaplEnergyMeter | str:
    """The meter over every RAPL package domain under ``root``, or why there is none. AMD CPUs expose theirs
    under the same intel-rapl names."""
    if not root.is_dir():
        return f"no RAPL: {root} does not exist (no powercap driver, or it is not visible in this container)"
    domains = []
    try:
        for zone in sorted(root.iterdir()):
            if not _TOP_ZONE.match(zone.name):
                continue
            name = (zone / "name").read_text().strip()
            if not name.startswith("package"):
                continue  # psys would count the packages again
            domain = RaplDomain(name, zone / "energy_uj", int((zone / "max_energy_range_uj").read_text()))
            int(domain.energy_uj.read_text())  # readable now, so readable in the rounds
            domains.append(domain)
    except PermissionError as exc:
        return (
            f"RAPL counters not readable ({exc.filename}): energy_uj is readable by root only since Linux "
            "5.10 (CVE-2020-8694); run as root or grant read access to it"
        )
    except (OSError, ValueError) as exc:
        return f"RAPL counters under {root} unreadable: {type(exc).__name__}: {exc}"
    if not domains:
        return f"no RAPL package domain under {root}"
    return RaplEnergyMeter(tuple(domains))


def nvml_meter(devices: Sequence[str]) -> NvmlEnergyMeter | str:
    """One meter over the CUDA ``devices`` (every GPU of a device-mapped model: metering one would leave the
    others' energy out), or why there is none."""
    counters, uuids = [], []
    for device in dict.fromkeys(devices):
        uuid = cuda_uuid(cuda_index(device))
        counter = nvml.energy_counter(uuid)
        if isinstance(counter, str):
            return counter
        assert uuid is not None  # energy_counter found the GPU by it
        counters.append(counter)
        uuids.append(uuid)
    return NvmlEnergyMeter(tuple(counters), tuple(uuids))


def open_meter(device: str, model_devices: Sequence[str] = ()) -> EnergyMeter | str:
    """The meter of ``device`` (NVML for a CUDA device, RAPL for the CPU), or why there is none;
    ``model_devices``: where a device map put the model, whose every GPU is metered (a CPU it offloaded to
    is not)."""
    if not is_cuda(device):
        return rapl_meter()
    gpus = [d for d in model_devices if is_cuda(d)] or [device]
    return nvml_meter(gpus)


@dataclass(frozen=True)
class EnergyMeasurement:
    """What a meter read across measured rounds: ``joules`` over ``window_s`` seconds, ``busy_s`` of which
    the ``calls`` measured calls took."""

    meter: str
    joules: float
    window_s: float
    busy_s: float
    calls: int

    @property
    def average_power_w(self) -> float:
        return self.joules / self.window_s

    @property
    def energy_per_call_j(self) -> float:
        return self.average_power_w * self.busy_s / self.calls

    def extra_info(self, tokens_per_call: int) -> dict[str, Any]:
        info: dict[str, Any] = {
            ENERGY_METER: self.meter,
            ENERGY_WINDOW_J: self.joules,
            ENERGY_WINDOW_S: self.window_s,
            ENERGY_BUSY_S: self.busy_s,
            AVERAGE_POWER_W: self.average_power_w,
            ENERGY_PER_CALL_J: self.energy_per_call_j,
        }
        if tokens_per_call:
            info[ENERGY_PER_TOKEN_J] = self.energy_per_call_j / tokens_per_call
        return info

    @classmethod
    def from_extra_info(cls, info: Mapping[str, Any], calls: int) -> EnergyMeasurement | None:
        if ENERGY_WINDOW_J not in info:
            return None
        return cls(
            str(info[ENERGY_METER]),
            float(info[ENERGY_WINDOW_J]),
            float(info[ENERGY_WINDOW_S]),
            float(info[ENERGY_BUSY_S]),
            calls,
        )


def pooled_energy(
    infos: Sequence[Mapping[str, Any]], calls: Sequence[int], tokens_per_call: int
) -> dict[str, Any]:
    """The energy of several processes' windows as one (energies, lengths and busy times summed), when every
    process measured it; else nothing (the caller keeps one process's figures)."""
    found = [EnergyMeasurement.from_extra_info(info, n) for info, n in zip(infos, calls, strict=True)]
    measured = [m for m in found if m is not None]
    if not measured or len(measured) < len(found):
        return {}
    pooled = EnergyMeasurement(
        measured[0].meter,
        sum(m.joules for m in measured),
        sum(m.window_s for m in measured),
        sum(m.busy_s for m in measured),
        sum(m.calls for m in measured),
    )
    return pooled.extra_info(tokens_per_call)


class EnergyWindow:
    """Reads ``meter`` from the start of the first measured call to the end of the last one (rounds
    ``warmup`` to ``warmup + rounds - 1``, counted by ``wrap``'s hooks), and adds up the calls' own time.
    ``meter`` a string: there is no meter, and why."""

    def __init__(
        self,
        meter: EnergyMeter | str,
        warmup: int,
        rounds: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.meter = meter
        self.first, self.last = warmup, warmup + rounds - 1
        self.clock = clock
        self.index = 0  # the round whose call comes next
        self.call_start = 0.0
        self.busy_s = 0.0
        self.calls = 0
        self.start: tuple[Reading, float] | None = None
        self.end: tuple[Reading, float] | None = None
        self.failure: str | None = None

    def wrap(self, work: Work) -> Work:
        """``work`` with the window's reads at the edges of its calls: after its ``before_round`` and before
        its ``after_round``, where the rounds are untimed and the device is synchronised."""
        return work if isinstance(self.meter, str) else _Metered(work, self)

    def _read(self) -> tuple[Reading, float] | None:
        assert not isinstance(self.meter, str)
        try:
            return self.meter.read(), self.clock()
        except Exception as exc:  # a counter that fails mid-item costs the item its energy, not its timings
            self.failure = f"{self.meter.name} failed to read: {type(exc).__name__}: {exc}"
            return None

    def _call_starting(self) -> None:
        if self.index == self.first:
            self.start = self._read()
        self.call_start = self.clock()

    def _call_ended(self) -> None:
        ended = self.clock()
        if self.first <= self.index <= self.last:
            self.busy_s += ended - self.call_start
            self.calls += 1
        if self.index == self.last:
            self.end = self._read()
        self.index += 1  # rounds past the last (pytest-benchmark's cprofile pass) are not the item's

    def result(self) -> EnergyMeasurement | str:
        """What the window measured, or why it measured nothing usable."""
        meter = self.meter
        if isinstance(meter, str):
            return meter
        if self.failure is not None:
            return self.failure
        if self.start is None or self.end is None:
            planned = self.last - self.first + 1
            return f"{meter.name}: the measured rounds did not all run ({self.calls} of {planned})"
        window_s = self.end[1] - self.start[1]
        if window_s < meter.min_window_s:
            per_round = window_s / self.calls if self.calls else 0.0
            needed = f" to about {int(meter.min_window_s / per_round) + 1}" if per_round > 0 else ""
            return (
                f"{meter.name}: the measured rounds lasted {window_s:.3f} s, under the "
                f"{meter.min_window_s} s its counter's update steps need; raise --tbench-rounds{needed}"
            )
        return EnergyMeasurement(
            meter.name, meter.joules(self.start[0], self.end[0]), window_s, self.busy_s, self.calls
        )

    def extra_info(self, tokens_per_call: int) -> dict[str, Any]:
        result = self.result()
        if isinstance(result, str):
            return {ENERGY_UNAVAILABLE: result}
        return result.extra_info(tokens_per_call)


class _Metered(WorkWrapper):
    """A work whose rounds an energy window reads around each call."""

    def __init__(self, inner: Work, window: EnergyWindow) -> None:
        super().__init__(inner)
        self.window = window

    def before_round(self) -> None:
        self.inner.before_round()
        self.window._call_starting()

    def after_round(self) -> None:
        self.window._call_ended()
        self.inner.after_round()
