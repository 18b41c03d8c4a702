"""The CUDA paths on a CPU machine, through fakes of ``torch.cuda`` and ``pynvml``: the right GPU is measured
(torch index -> NVML by UUID, calls under the item's device), every memory figure is the item's own, and the
machine record and the gate's machine check know the settings that move GPU timings."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_tbench.core.errors import RunStopped
from pytest_tbench.core.measurement import Measurement
from pytest_tbench.judge.gate import Gate
from pytest_tbench.judge.runs import machine_differences
from pytest_tbench.machine import devices, nvml
from pytest_tbench.machine.environment import TORCH_FLAGS, environment, torch_flags
from pytest_tbench.measure.trackers.memory import CudaTracker, memory_tracker

MIB = 1024 * 1024

# torch's order: cuda:0 is the GPU NVML lists second (CUDA orders fastest first, NVML by PCI bus).
TORCH_UUIDS = ["aaaaaaaa-0000-0000-0000-000000000000", "bbbbbbbb-1111-1111-1111-111111111111"]


@dataclass
class FakeAllocator:
    """The caching allocator's arithmetic: freed blocks stay reserved until ``empty_cache``."""

    allocated: int = 0
    reserved: int = 0
    max_allocated: int = 0
    max_reserved: int = 0

    def alloc(self, size: int) -> None:
        self.allocated += size
        self.reserved = max(self.reserved, self.allocated)
        self.max_allocated = max(self.max_allocated, self.allocated)
        self.max_reserved = max(self.max_reserved, self.reserved)

    def free(self, size: int) -> None:
        self.allocated -= size


class FakeUuid:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:  # torch writes the bare 8-4-4-4-12 form
        return self.text


@dataclass
class FakeCuda:
    """Two GPUs; records every call with the device it names and the current device when it ran."""

    current: int = 0
    calls: list[tuple[str, int | None, int]] = field(default_factory=list)
    allocators: list[FakeAllocator] = field(default_factory=lambda: [FakeAllocator(), FakeAllocator()])

    def index(self, device: Any) -> int:
        if device is None:
            return self.current
        if isinstance(device, int):
            return device
        parsed = torch.device(device)
        return self.current if parsed.index is None else parsed.index

    def record(self, name: str, device: Any) -> int:
        index = self.index(device)
        self.calls.append((name, None if device is None else index, self.current))
        return index

    @contextmanager
    def device(self, index: int) -> Iterator[None]:
        before, self.current = self.current, index
        try:
            yield
        finally:
            self.current = before

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        cuda = torch.cuda
        stats = {
            "memory_allocated": "allocated",
            "memory_reserved": "reserved",
            "max_memory_allocated": "max_allocated",
            "max_memory_reserved": "max_reserved",
        }
        for name, attribute in stats.items():

            def read(device: Any = None, name: str = name, attribute: str = attribute) -> int:
                return int(getattr(self.allocators[self.record(name, device)], attribute))

            monkeypatch.setattr(cuda, name, read)

        def reset_peak(device: Any = None) -> None:
            allocator = self.allocators[self.record("reset_peak_memory_stats", device)]
            allocator.max_allocated, allocator.max_reserved = allocator.allocated, allocator.reserved

        def empty_cache() -> None:
            # Checked on the current device: what the caller made current is what it meant to empty.
            allocator = self.allocators[self.record("empty_cache", None)]
            allocator.reserved = allocator.allocated

        monkeypatch.setattr(cuda, "is_available", lambda: True)
        monkeypatch.setattr(cuda, "is_initialized", lambda: True)
        monkeypatch.setattr(cuda, "device_count", lambda: 2)
        monkeypatch.setattr(cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(cuda, "device", self.device)
        monkeypatch.setattr(cuda, "synchronize", lambda device=None: self.record("synchronize", device))
        monkeypatch.setattr(cuda, "empty_cache", empty_cache)
        monkeypatch.setattr(cuda, "reset_peak_memory_stats", reset_peak)
        monkeypatch.setattr(cuda, "get_device_name", lambda i: f"Fake GPU {TORCH_UUIDS[i][:4]}")
        monkeypatch.setattr(
            cuda,
            "get_device_properties",
            lambda i: types.SimpleNamespace(uuid=FakeUuid(TORCH_UUIDS[i]), total_memory=80 << 30),
        )


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: str
    used: int
    process_used: int | None
    sm_max: int = 1980
    ecc: int = 1
    pids: list[int] = field(default_factory=lambda: [os.getpid()])
    energy_mj: int = 0  # NVML's total-energy counter


def fake_pynvml(gpus: list[FakeGpu], mig: dict[str, FakeGpu] | None = None) -> types.ModuleType:
    """pynvml over ``gpus`` in NVML (PCI) order; ``mig`` are instances found only by UUID. Handles are the
    FakeGpu objects. UUIDs come back as bytes, as old pynvml releases return them."""
    module = types.ModuleType("pynvml")
    by_uuid = {g.uuid: g for g in gpus} | (mig or {})

    def handle_by_uuid(uuid: str) -> FakeGpu:
        if uuid not in by_uuid:
            raise NVMLError(f"Not Found: {uuid}")
        return by_uuid[uuid]

    def max_clock(gpu: FakeGpu, clock: int) -> int:
        return gpu.sm_max if clock == module.NVML_CLOCK_SM else 2619

    def not_supported(*args: object) -> None:
        raise NVMLError("Not Supported")

    def processes(gpu: FakeGpu) -> list[Any]:
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=gpu.process_used) for pid in gpu.pids]

    functions: dict[str, Any] = {
        "NVML_CLOCK_SM": 1,
        "NVML_CLOCK_MEM": 2,
        "nvmlInit": lambda: None,
        "nvmlSystemGetDriverVersion": lambda: b"550.54",
        "nvmlDeviceGetCount": lambda: len(gpus),
        "nvmlDeviceGetHandleByIndex": lambda i: gpus[i],
        "nvmlDeviceGetHandleByUUID": handle_by_uuid,
        "nvmlDeviceGetUUID": lambda g: g.uuid.encode(),
        "nvmlDeviceGetName": lambda g: f"Fake GPU {g.uuid[4:8]}",
        "nvmlDeviceGetMemoryInfo": lambda g: types.SimpleNamespace(total=80 << 30, used=g.used),
        "nvmlDeviceGetComputeRunningProcesses": processes,
        "nvmlDeviceGetPowerManagementLimit": lambda g: 700_000,
        "nvmlDeviceGetPerformanceState": lambda g: 0,
        "nvmlDeviceGetClockInfo": lambda g, clock: max_clock(g, clock) // 2,
        "nvmlDeviceGetMaxClockInfo": max_clock,
        "nvmlDeviceGetPersistenceMode": lambda g: 1,
        "nvmlDeviceGetEccMode": lambda g: (g.ecc, g.ecc),
        "nvmlDeviceGetMigMode": not_supported,  # as on a GPU without MIG
        "nvmlDeviceGetComputeMode": lambda g: 3,
        "nvmlDeviceGetTotalEnergyConsumption": lambda g: g.energy_mj,
    }
    for name, value in functions.items():
        setattr(module, name, value)
    return module


# NVML lists torch's cuda:1 first and cuda:0 second.
GPU_OF_CUDA1 = FakeGpu("GPU-" + TORCH_UUIDS[1], used=30_000 * MIB, process_used=12_000 * MIB, sm_max=1755)
GPU_OF_CUDA0 = FakeGpu("GPU-" + TORCH_UUIDS[0], used=70_000 * MIB, process_used=None, pids=[1])


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    fake = FakeCuda()
    fake.install(monkeypatch)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([GPU_OF_CUDA1, GPU_OF_CUDA0]))
    return fake


def test_tracker_reads_nvml_of_the_gpu_whose_uuid_is_torchs(cuda: FakeCuda) -> None:
    info = CudaTracker("cuda:1")
    info.start()
    result = info.stop()
    assert result["nvml_device_used_bytes"] == GPU_OF_CUDA1.used  # not NVML index 1, which is cuda:0
    assert result["nvml_process_used_at_end_bytes"] == GPU_OF_CUDA1.process_used
    assert result["nvml_unavailable_reason"] is None


def test_process_memory_unknown_to_nvml_is_none_with_the_reason(cuda: FakeCuda) -> None:
    tracker = CudaTracker("cuda:0")  # its GPU lists only pid 1: a container's view of host pids
    tracker.start()
    result = tracker.stop()
    assert result["nvml_device_used_bytes"] == GPU_OF_CUDA0.used
    assert result["nvml_process_used_at_end_bytes"] is None
    assert f"pid {os.getpid()}" in result["nvml_unavailable_reason"]


def test_mig_instance_found_by_uuid() -> None:
    instance = FakeGpu("MIG-" + TORCH_UUIDS[0], used=5 * MIB, process_used=3 * MIB)
    module = fake_pynvml([GPU_OF_CUDA1], mig={instance.uuid: instance})
    assert nvml.handle_for_uuid(module, TORCH_UUIDS[0]) is instance
    assert nvml.handle_for_uuid(module, "cccccccc-2222-2222-2222-222222222222") is None


def test_every_cuda_call_acts_on_the_items_device(cuda: FakeCuda) -> None:
    with memory_tracker("cuda:1"):
        cuda.allocators[1].alloc(10 * MIB)
    devices.empty_cache("cuda:1")
    devices.synchronize("cuda:1")
    assert cuda.calls, "the tracker made no CUDA call"
    for name, named, current in cuda.calls:
        assert (named if named is not None else current) == 1, f"{name} acted on device {named or current}"
    assert ("empty_cache", None, 1) in cuda.calls
    assert cuda.current == 0  # restored after each call


def test_a_device_mapped_item_tracks_and_synchronises_each_gpu(cuda: FakeCuda) -> None:
    """--tbench-device-map: a model on both fake GPUs gets each GPU's own peak and their sum, and every round
    synchronises both (by name, never only the current device)."""
    from pytest_tbench.measure.rounds import RoundBody
    from pytest_tbench.measure.work import Work

    cuda.allocators[0].alloc(100 * MIB)  # the first half of the weights
    cuda.allocators[1].alloc(60 * MIB)  # the second half
    work = Work(lambda: (cuda.allocators[0].alloc(30 * MIB), cuda.allocators[1].alloc(5 * MIB)), 1, 1)
    with memory_tracker("cuda", devices=("cuda:0", "cuda:1")) as info:
        cuda.calls.clear()
        RoundBody(work, "cuda", ("cuda:0", "cuda:1")).whole()
        synced = [named for name, named, _ in cuda.calls if name == "synchronize"]
    assert synced == [0, 1, 0, 1]  # before the round and inside the timed call, each GPU
    assert info["peak_memory_per_device_bytes"] == {"cuda:0": 130 * MIB, "cuda:1": 65 * MIB}
    assert info["peak_memory_bytes"] == 195 * MIB
    assert info["peak_memory_increase_bytes"] == 35 * MIB
    assert info["cuda_device_uuids"] == TORCH_UUIDS


def test_bare_cuda_is_the_current_device_resolved_once(cuda: FakeCuda) -> None:
    with devices.on_device("cuda:1"):
        assert devices.cuda_index("cuda") == 1
        tracker = CudaTracker("cuda")
    tracker.start()  # the current device is 0 again: the tracker keeps the GPU it was made for
    tracker.stop()
    assert {named if named is not None else current for _, named, current in cuda.calls} == {1}
    with devices.on_device("cpu"):
        assert cuda.current == 0


def test_small_item_after_a_large_one_reports_its_own_reserved_peak(cuda: FakeCuda) -> None:
    gpu = cuda.allocators[1]
    gpu.alloc(100 * MIB)  # the model's weights, kept between items
    with memory_tracker("cuda:1") as large:
        gpu.alloc(2000 * MIB)
        gpu.free(2000 * MIB)  # freed, but still reserved by the caching allocator
    with memory_tracker("cuda:1") as small:
        gpu.alloc(10 * MIB)
        gpu.free(10 * MIB)
    assert large["cuda_max_reserved_bytes"] == 2100 * MIB
    assert small["cuda_max_reserved_bytes"] == 110 * MIB
    assert small["cuda_reserved_at_start_bytes"] == 100 * MIB
    assert small["cuda_max_allocated_bytes"] == 110 * MIB
    assert small["peak_memory_increase_bytes"] == 10 * MIB


def test_machine_info_maps_gpus_by_uuid_and_records_timing_settings(cuda: FakeCuda) -> None:
    info = environment()
    assert set(info["torch_flags"]) == set(TORCH_FLAGS)
    assert info["torch_flags"]["cudnn_benchmark"] is torch.backends.cudnn.benchmark
    first, second = info["gpus"]
    assert (first["nvml_index"], first["uuid"], first["torch_index"]) == (0, GPU_OF_CUDA1.uuid, 1)
    assert (second["nvml_index"], second["uuid"], second["torch_index"]) == (1, GPU_OF_CUDA0.uuid, 0)
    assert first["sm_clock_max_mhz"] == 1755 and first["sm_clock_mhz"] == 877
    assert first["memory_clock_max_mhz"] == 2619
    assert first["ecc_enabled"] is True and first["persistence_mode"] is True
    assert first["compute_mode"] == "exclusive_process"
    assert first["mig_enabled"] is None  # NotSupported: unknown, not an error
    assert info["nvidia_driver_version"] == "550.54"


def test_machine_info_without_nvml_keeps_torchs_uuid_and_index(
    cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails: NVML absent
    info = environment()
    assert info["nvml"].startswith("NVML absent")
    assert [(g["torch_index"], g["uuid"], g["nvml_index"]) for g in info["gpus"]] == [
        (0, TORCH_UUIDS[0], None),
        (1, TORCH_UUIDS[1], None),
    ]


def test_torch_flags_are_recorded_on_cpu() -> None:
    flags = environment()["torch_flags"]
    assert flags["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert flags["cudnn_allow_tf32"] is torch.backends.cudnn.allow_tf32
    assert flags["deterministic_algorithms"] is torch.are_deterministic_algorithms_enabled()


def _run(flags: dict[str, Any] | None = None, gpu: dict[str, Any] | None = None) -> dict[str, Any]:
    tbench: dict[str, Any] = {"cpu": "x", "gpus": [{"name": "H100", **(gpu or {})}], "torch_version": "2"}
    if flags is not None:
        tbench["torch_flags"] = flags
    return {"machine_info": {"tbench": tbench}}


def test_gate_machine_check_flags_settings_that_move_timings() -> None:
    assert machine_differences(
        _run({"cuda_matmul_allow_tf32": False}), _run({"cuda_matmul_allow_tf32": True})
    ) == ["torch_flags.cuda_matmul_allow_tf32: baseline False, now True"]
    assert machine_differences(
        _run(gpu={"sm_clock_max_mhz": 1980, "ecc_enabled": True}),
        _run(gpu={"sm_clock_max_mhz": 1755, "ecc_enabled": True}),
    ) == ["gpus.0.sm_clock_max_mhz: baseline 1980, now 1755"]


def test_gate_machine_check_ignores_current_clocks_and_absent_keys() -> None:
    settings = {"sm_clock_mhz": 1980, "sm_clock_max_mhz": 1980, "mig_enabled": False}
    assert machine_differences(_run(gpu=settings), _run(gpu={**settings, "sm_clock_mhz": 345})) == []
    # A baseline saved before these were recorded compares with a run that has them, both ways.
    now = _run({"cuda_matmul_allow_tf32": True, "cudnn_benchmark": True}, settings)
    assert machine_differences(_run(), now) == []
    assert machine_differences(now, _run()) == []
    assert machine_differences(_run({"cudnn_benchmark": True}), now) == []


def test_gate_checks_torch_flags_when_the_first_item_is_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    # The baseline recorded its flags at its end; a bench module that sets them on import has not run yet
    # when the session starts, so the gate compares them at the first item, not at the start.
    baseline = {"benchmarks": [], **_run({**torch_flags(), "cudnn_benchmark": True})}
    gate = Gate(baseline, [Path("base.json")], (), {Path("base.json"): baseline})
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # as a bench module would, after the start
    assert gate.judge("item", [0.1], {}) == []
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    stale = Gate(baseline, [Path("base.json")], (), {Path("base.json"): baseline})
    # RunStopped: the plugin's fixture stops the session with a usage error (pytest.exit).
    with pytest.raises(RunStopped, match=r"torch_flags.cudnn_benchmark: baseline True, now False"):
        stale.judge("item", [0.1], {})


def test_the_whole_item_runs_with_its_gpu_current(cuda: FakeCuda) -> None:
    """Calls without a device (transformers', a user's ``torch.cuda.current_stream()``) inside the rounds and
    the cleanup act on the item's GPU, in every launcher (they all measure through ``run_item``)."""
    from pytest_tbench.measure.item import run_item
    from pytest_tbench.measure.work import Work
    from pytest_tbench.settings.cases import BenchCase

    seen: list[tuple[str, int]] = []
    work = Work(
        lambda: seen.append(("call", cuda.current)),
        samples=1,
        tokens=1,
        cleanup=lambda: seen.append(("cleanup", cuda.current)),
    )
    case = BenchCase("forward", "tiny-gpt2", "base", 1, 8, "cuda:1", "float32")
    loaded = types.SimpleNamespace(
        model=object(),
        source="x",
        load_time_s=0.0,
        num_parameters=1,
        parameter_bytes=4,
        quantized_layers=0,
        devices=(),
    )
    info = run_item(case, loaded, work, 1, 0, lambda metered: metered.call())  # type: ignore[arg-type]
    assert seen[0] == ("call", 1)
    assert cuda.current == 0  # put back after the item
    assert info["device_name"] == f"Fake GPU {TORCH_UUIDS[1][:4]}"  # the name the peak table matches


def test_the_energy_meter_reads_the_item_gpus_counter(cuda: FakeCuda) -> None:
    """NVML's energy counter of the GPU torch calls cuda:1 (found by UUID, NVML's index 0), read for a bare
    ``cuda`` under the item's device too."""
    from pytest_tbench.measure.trackers.energy import open_meter

    GPU_OF_CUDA1.energy_mj, GPU_OF_CUDA0.energy_mj = 7_000, 1_000
    meter = open_meter("cuda:1")
    assert not isinstance(meter, str) and meter.read() == (7_000,)
    with devices.on_device("cuda:1"):
        bare = open_meter("cuda")
    assert not isinstance(bare, str) and bare.read() == (7_000,)
    assert TORCH_UUIDS[1] in bare.name
    # A device-mapped model spans both GPUs: each board's counter is read, and their energy summed.
    spread = open_meter("cuda:0", ("cuda:0", "cuda:1", "cpu"))
    assert not isinstance(spread, str) and spread.read() == (1_000, 7_000)
    start = spread.read()
    GPU_OF_CUDA1.energy_mj, GPU_OF_CUDA0.energy_mj = 9_000, 1_500
    assert spread.joules(start, spread.read()) == 2.5 and "2 GPUs the model spans" in spread.name


def test_ab_worker_rounds_synchronise_every_gpu_of_a_device_mapped_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An A/B worker times its rounds as the other launchers do: a device-mapped model's GPUs all synchronised
    (it once passed none, so only the current GPU was waited for)."""
    from types import SimpleNamespace

    from pytest_tbench.launch import worker as ab_worker
    from pytest_tbench.launch.base import Job
    from pytest_tbench.settings.cases import BenchCase
    from pytest_tbench.settings.config import RunSettings

    mapped = ("cuda:0", "cuda:1")
    synchronised: list[tuple[str, ...]] = []

    def run_rounds(work: Any, device: str, rounds: int, warmup: int, rules: Any, devices: Any = ()) -> Any:
        synchronised.append(devices)
        return [0.001] * rounds

    monkeypatch.setattr(ab_worker, "load_model", lambda spec, key: SimpleNamespace(devices=mapped))
    monkeypatch.setattr(ab_worker, "build_work", lambda *_: SimpleNamespace(records=lambda warmup: []))
    monkeypatch.setattr(ab_worker, "run_rounds", run_rounds)
    monkeypatch.setattr(ab_worker, "run_item", lambda *args, **kwargs: args[5](args[2]) or Measurement())

    class Conn:
        def __init__(self) -> None:
            self.replies: list[Any] = [("rounds", 1), ("rounds", 1), ("stop",)]
            self.sent: list[Any] = []

        def recv(self) -> Any:
            return self.replies.pop(0)

        def send(self, message: Any) -> None:
            self.sent.append(message)

    case = BenchCase("forward", "tiny-gpt2", "base", 1, 8, "cuda", "float32")
    job = Job(case, "tiny-gpt2", "builtin", None, None, RunSettings(), rounds=2, warmup=1)
    conn = Conn()
    drive = ab_worker._conversation(conn, job)  # type: ignore[arg-type]
    outcome = ab_worker.measure(job, ab_worker.ModelSlot(), drive)
    assert outcome.samples == [0.001, 0.001]
    assert synchronised == [mapped] * 3  # the warm-up and each measured round
