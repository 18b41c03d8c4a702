"""The GPU self-check's CPU-side logic: its verdicts, its hand-written loops, a whole dry run on the CPU."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_tbench.selfcheck import loops
from pytest_tbench.selfcheck.verdicts import Check, agreement, at_most, bracketed, exit_code, holds, render

ROOT = Path(__file__).resolve().parent.parent


def test_agreement_passes_inside_the_tolerance_and_fails_outside() -> None:
    assert agreement("x", 10.29, 10.0, 0.03, "ms").verdict == "pass"
    assert agreement("x", 9.71, 10.0, 0.03, "ms").verdict == "pass"
    low = agreement("x", 9.6, 10.0, 0.03, "ms")
    assert low.verdict == "fail"
    assert low.measured == "9.6 ms (-4.0%)"
    assert low.expected == "10 ms ±3%"
    with pytest.raises(ValueError, match="positive"):
        agreement("x", 1.0, 0.0, 0.03, "ms")


def test_a_bracketed_reference_that_moved_fails_as_an_unstable_machine() -> None:
    steady = bracketed("x", 10.2, 9.9, 10.1, 0.03, "ms")
    assert steady.verdict == "pass"
    assert steady.expected == "10 ms ±3% (before 9.9, after 10.1)"
    assert bracketed("x", 10.5, 9.9, 10.1, 0.03, "ms").verdict == "fail"  # a disagreement
    moved = bracketed("x", 10.0, 9.0, 11.0, 0.03, "ms")  # agrees with the mean, but the reference moved 22%
    assert moved.verdict == "fail"
    assert "the reference moved +22.2%" in moved.expected


def test_limits_table_and_exit_code() -> None:
    rows = [
        at_most("reserved", 70.0, 512.0, "MiB"),
        holds("train", "loss 6.9", "finite", True),
        Check.skipped("nvml", "CUDA only"),
    ]
    assert [r.verdict for r in rows] == ["pass", "pass", "skip"]
    assert exit_code(rows) == 0
    failed = [*rows, at_most("reserved", 1024.0, 512.0, "MiB")]
    assert exit_code(failed) == 1
    table = render(failed)
    assert [c.strip() for c in table.splitlines()[0].split("|")[1:5]] == [
        "check",
        "measured",
        "expected",
        "verdict",
    ]
    assert "| FAIL" in table and "| SKIP" in table


class FakeEvent:
    def __init__(self, enable_timing: bool = False) -> None:
        self.stream: Any = None
        self.time_ms = 0.0

    def record(self, stream: Any = None) -> None:
        self.stream = stream
        FakeEvent.clock_ms += 2.5
        self.time_ms = FakeEvent.clock_ms

    def synchronize(self) -> None:
        FakeEvent.synchronized += 1

    def elapsed_time(self, other: FakeEvent) -> float:
        return other.time_ms - self.time_ms

    clock_ms = 0.0
    synchronized = 0


def test_stopwatch_records_on_the_stream_of_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(
        torch.cuda, "current_stream", lambda device: asked.append(device) or f"stream of {device}"
    )
    watch = loops.Stopwatch("cuda:1")
    for _ in range(3):
        watch.mark()
    assert asked == [torch.device("cuda:1")] * 3
    assert watch._marks[0].stream == "stream of cuda:1"
    assert watch.seconds() == pytest.approx([0.0, 0.0025, 0.005])
    assert FakeEvent.synchronized == 1  # waits for the last mark only


def test_the_hand_decode_loop_times_every_token() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64)).eval()
    ids = torch.randint(0, 100, (2, 8))
    first, steps = loops.greedy_decode(model, ids, 5, "cpu")
    assert first > 0 and len(steps) == 4 and all(s > 0 for s in steps)


def test_without_cuda_it_says_so_and_checks_nothing(pytester: pytest.Pytester) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = pytester.run(sys.executable, str(ROOT / "benches" / "gpu_selfcheck.py"))
    assert result.ret == 0
    result.stdout.fnmatch_lines(["gpu_selfcheck: no CUDA device*--device cpu runs the CPU dry run"])


def test_cpu_dry_run_checks_everything_that_applies(pytester: pytest.Pytester) -> None:
    """Timing verdicts depend on the machine's load, so only the table's completeness is asserted: every check
    ran to a verdict, none broke, and the CUDA-only ones say why they were skipped."""
    result = pytester.run(
        sys.executable, str(ROOT / "benches" / "gpu_selfcheck.py"),
        "--device", "cpu", "--model", "tiny-gpt2", "--batch-size", "1", "--seq-len", "16",
        "--new-tokens", "4", "--rounds", "5", "--warmup", "1", "--allocation-mib", "128", "48",
        timeout=300,
    )  # fmt: skip
    table = result.stdout.str().split("\n\n")[-1]
    rows = {
        cells[0]: cells[1:]
        for line in table.splitlines()[2:]
        if len(cells := [c.strip() for c in line.strip().strip("|").split("|")]) == 4
    }
    names = "\n".join(rows)
    for expected in (
        "--tbench-isolate item runs",
        "forkserver holds no CUDA context",
        "forward float32 median",
        "forward bfloat16 median",
        "generate bfloat16 TTFT (median)",
        "generate bfloat16 decode per token (median)",
        "train bfloat16",
        "train bfloat16 step median vs hand-written step",
        "known allocation of 128 MiB: item +mem (peak_rss)",
        # Above glibc's 32 MiB mmap ceiling: a 16 MiB block is heap memory, where its repeated allocation left
        # ~4 blocks resident (+64 MiB of real RSS growth, 2026-12-07): not a probe of the tracker.
        "known allocation of 48 MiB: item +mem (peak_rss)",
        "reserved peak after a larger item",
        "NVML fields mapped to the item's GPU",
        "bf16 GEMM 8192^3 within [50%, 100%] of the table's peak",
        "forward float32 median, --tbench-isolate",
        "forward float32 median, --tbench-ab A/A, current side",
    ):
        assert expected in rows, f"{expected!r} missing from:\n{names}"
    broken = {name: cells for name, cells in rows.items() if cells[1] == "no error"}
    assert not broken, broken
    assert rows["forkserver holds no CUDA context"][2] == "PASS"
    assert rows["reserved peak after a larger item"][2] == "SKIP"
    assert rows["NVML fields mapped to the item's GPU"][2] == "SKIP"
    assert rows["bf16 GEMM 8192^3 within [50%, 100%] of the table's peak"][2] == "SKIP"
    assert rows["forward float32 median, --tbench-ab A/A, current side"][2] == "SKIP"
    assert result.ret == (1 if any(cells[2] == "FAIL" for cells in rows.values()) else 0)


def _nvml_run(
    uuid: str, total: int, item_uuid: str, process: int | None = 2 * 2**30, reason: str = ""
) -> Any:
    from pytest_tbench.selfcheck.checks import PluginRun

    info = {
        "cuda_device_uuid": item_uuid,
        "nvml_device_used_bytes": 5 * 2**30,
        "nvml_process_used_at_end_bytes": process,
        "nvml_unavailable_reason": reason or None,
        "cuda_max_allocated_bytes": 2**30,
    }
    gpus = [{"torch_index": 0, "nvml_index": 1, "uuid": f"GPU-{uuid}", "memory_total_bytes": total}]
    return PluginRun(0, {"benchmarks": [{"extra_info": info}], "machine_info": {"tbench": {"gpus": gpus}}})


def _check_nvml_on_one_gpu(monkeypatch: pytest.MonkeyPatch, run: Any) -> list[Any]:
    """check_nvml on one 80 GiB GPU (cuda:0, UUID aaaa-1111) whose plugin run is ``run``."""
    from types import SimpleNamespace

    from pytest_tbench.selfcheck import checks

    monkeypatch.setattr(checks, "run_plugin", lambda source, args: run)
    monkeypatch.setattr(checks, "cuda_index", lambda device: 0)
    monkeypatch.setattr(checks, "cuda_uuid", lambda index: "aaaa-1111")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda index: SimpleNamespace(total_memory=80 * 2**30)
    )
    return checks.check_nvml(checks.Setup(device="cuda"))


@pytest.mark.parametrize(
    ("nvml_uuid", "nvml_total", "item_uuid", "verdict"),
    [
        ("aaaa-1111", 80 * 2**30, "aaaa-1111", "pass"),
        ("aaaa-1111", 80 * 2**30 + 480 * 2**20, "aaaa-1111", "pass"),  # the driver's reserve (H100 80GB)
        ("bbbb-2222", 80 * 2**30, "aaaa-1111", "fail"),  # NVML's record of another GPU
        ("aaaa-1111", 40 * 2**30, "aaaa-1111", "fail"),  # same UUID, another GPU's memory size
    ],
)
def test_nvml_check_names_a_record_of_another_gpu(
    monkeypatch: pytest.MonkeyPatch, nvml_uuid: str, nvml_total: int, item_uuid: str, verdict: str
) -> None:
    run = _nvml_run(nvml_uuid, nvml_total, item_uuid)
    present, record, two_gpus = _check_nvml_on_one_gpu(monkeypatch, run)
    assert present.verdict == "pass"
    assert record.verdict == verdict, record
    assert two_gpus.verdict == "skip"


@pytest.mark.parametrize(
    ("reason", "verdict"),
    [
        # A container: NVML lists the host's pids, not this namespace's (the forkserver check skips too).
        (
            "NVML lists no compute process with this process's pid 12 on the GPU (1 listed); in a container",
            "skip",
        ),
        ("NVML cannot list the GPU's compute processes: NVMLError_Unknown", "fail"),  # NVML itself failed
    ],
)
def test_the_nvml_check_skips_a_process_nvml_cannot_see(
    monkeypatch: pytest.MonkeyPatch, reason: str, verdict: str
) -> None:
    run = _nvml_run("aaaa-1111", 80 * 2**30, "aaaa-1111", process=None, reason=reason)
    present, record, _ = _check_nvml_on_one_gpu(monkeypatch, run)
    assert present.verdict == verdict, present
    assert record.verdict == "pass"


@pytest.mark.parametrize(
    ("listed", "verdict"),
    [({100, 200}, "pass"), ({100, 200, 4242}, "fail"), ({200}, "skip"), ("NVML: not found", "skip")],
)
def test_the_forkserver_check_reads_nvml_contexts_on_cuda(
    monkeypatch: pytest.MonkeyPatch, listed: Any, verdict: str
) -> None:
    """On CUDA the verdict is whether NVML lists the forkserver among the GPU's processes with a context
    (a mapped libcuda alone is not one); skipped where NVML cannot list this process' own pid."""
    from pytest_tbench.selfcheck import checks

    monkeypatch.setattr(checks, "forkserver_pid", lambda: 4242)
    monkeypatch.setattr(checks, "maps_libcuda", lambda pid: True)
    monkeypatch.setattr(checks, "cuda_index", lambda device: 0)
    monkeypatch.setattr(checks, "cuda_uuid", lambda index: "aaaa-1111")
    monkeypatch.setattr(checks.os, "getpid", lambda: 100)
    monkeypatch.setattr(checks.torch, "zeros", lambda *args, **kwargs: None)
    monkeypatch.setattr(checks.nvml, "context_pids", lambda uuid: listed)
    row = checks.check_forkserver(checks.Setup(device="cuda"))
    assert row.verdict == verdict, row
    assert row.name == "forkserver holds no CUDA context"


def test_the_host_clock_loop_times_the_call_with_the_device_synchronised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    clock = iter([1.0, 1.004, 2.0, 2.006])
    monkeypatch.setattr(loops.torch.cuda, "synchronize", lambda device: events.append(f"sync:{device}"))
    monkeypatch.setattr(loops.time, "perf_counter", lambda: events.append("clock") or next(clock))
    times = loops.host_timed_calls(lambda: events.append("call"), "cuda:1", rounds=2)
    assert times == pytest.approx([0.004, 0.006])
    assert events == ["sync:cuda:1", "clock", "call", "sync:cuda:1", "clock"] * 2


def test_the_roofline_check_bounds_a_measured_gemm_by_the_tables_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_tbench.selfcheck import checks

    monkeypatch.setattr(checks, "device_name", lambda device: "NVIDIA H100 80GB HBM3")
    setup = checks.Setup(device="cuda:0")
    for achieved, verdict in ((700.0, "pass"), (1200.0, "fail"), (300.0, "fail")):
        monkeypatch.setattr(checks, "matmul_tflops", lambda *args, a=achieved: a)
        (check,) = checks.check_roofline(setup)
        assert check.verdict == verdict, (achieved, check)
    assert "TFLOP/s on NVIDIA H100" in check.measured
    monkeypatch.setattr(checks, "device_name", lambda device: "NVIDIA A100-SXM4-40GB MIG 1g.5gb")
    (check,) = checks.check_roofline(setup)
    assert check.verdict == "skip" and "MIG slice" in check.expected


def test_the_hand_matmul_counts_two_flops_per_multiply_add(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_tbench.selfcheck import loops

    monkeypatch.setattr(loops, "timed_calls", lambda call, device, rounds, warmup: [0.5, 0.25, 1.0])
    assert loops.matmul_tflops("cpu", "float32", 100, 3) == pytest.approx(2 * 100**3 / 0.5 / 1e12)


def test_the_launchers_check_brackets_each_launchers_median_by_the_hand_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from pytest_tbench.selfcheck import checks
    from pytest_tbench.selfcheck.checks import PluginRun

    args: list[list[str]] = []
    medians = iter([0.010, 0.0125])  # the isolated item agrees with the loop, the A/A's side does not

    def run_plugin(source: str, given: list[str]) -> PluginRun:
        args.append(given)
        return PluginRun(0, {"benchmarks": [{"stats": {"median": next(medians)}, "extra_info": {}}]})

    monkeypatch.setattr(checks, "run_plugin", run_plugin)
    monkeypatch.setattr(checks, "is_cuda", lambda device: True)
    monkeypatch.setattr(checks, "_load", lambda setup, head, dtype: SimpleNamespace(model=None, config=None))
    monkeypatch.setattr(checks, "make_inputs", lambda *a: {})
    monkeypatch.setattr(checks, "forward_medians_s", lambda *a: (0.010, 0.010))
    isolated, ab = checks.check_launchers(checks.Setup(device="cuda"))
    assert (isolated.verdict, ab.verdict) == ("pass", "fail")
    assert args[0][-1] == "--tbench-isolate" and "--tbench-ab" in args[1]
