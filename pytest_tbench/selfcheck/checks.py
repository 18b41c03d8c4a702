"""The checks: each runs the plugin in this process (``pytest.main`` on a small bench file) and sets what it
reported beside an independent measurement of the same model and inputs, or beside a known quantity.

The references share no measuring code with the plugin: their models and inputs are built here from the
model's config (``hand_built``), their loops are ``loops``' (CUDA events, the host clock) and ``probes``'
(ONNX Runtime's own ``run()``, NVML's power readings, a worker forked from the forkserver).

The reference loops run before and after the plugin's item and their medians are averaged, so that a slow
drift of the machine does not fall on one side only; a forward whose reference moved more than the tolerance
between the two fails as "machine unstable" rather than as a disagreement.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import multiprocessing.forkserver
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_tbench.core.metric_table import AVERAGE_POWER_W, ENERGY_UNAVAILABLE
from pytest_tbench.core.record import Case
from pytest_tbench.machine import nvml
from pytest_tbench.machine.devices import cuda_index, cuda_uuid, device_name, is_cuda
from pytest_tbench.machine.hardware import peak_tflops
from pytest_tbench.measure.trackers.energy import NVML_MIN_WINDOW_S
from pytest_tbench.models.registry import resolve
from pytest_tbench.scenarios.backends import ONNXRUNTIME, unavailable_reason
from pytest_tbench.selfcheck.loops import (
    calls_for,
    decode_medians_s,
    forward_call,
    forward_kwargs,
    forward_medians_s,
    matmul_tflops,
    train_step_median_s,
)
from pytest_tbench.selfcheck.probes import (
    mean_power_w,
    nvml_power_reader,
    onnxruntime_call,
    probe_forkserver,
    sample_power,
    session_median_s,
)
from pytest_tbench.selfcheck.verdicts import Check, agreement, at_most, bracketed, holds

FORWARD = """
from pytest_tbench import TBench

def test_forward(tbench: TBench) -> None:
    tbench.forward()
"""

GENERATE = """
import pytest
from pytest_tbench import TBench

@pytest.mark.tbench(mode="generate")
def test_generate(tbench: TBench) -> None:
    tbench.generate()
"""

TRAIN = """
import pytest
from pytest_tbench import TBench

@pytest.mark.tbench(mode="train")
def test_train(tbench: TBench) -> None:
    tbench.train()
"""

# Each call allocates a known number of bytes on the item's device and frees it; ones, not empty, so that
# on the CPU the pages are touched and count in the resident set.
ALLOCATION = """
import pytest
import torch
from pytest_tbench import TBench

@pytest.mark.parametrize("mib", {sizes})
def test_allocation(tbench: TBench, mib: int) -> None:
    device = tbench.case.device

    def call() -> None:
        block = torch.ones(mib * 2**20, dtype=torch.uint8, device=device)
        del block

    tbench.measure(call)
"""

# The CPU dry run's shape: small enough for tiny models (256 positions) and a 2-core machine.
CPU_SHAPE = (4, 128)
FORWARD_TOLERANCE = 0.03
MEMORY_TOLERANCE = 0.02
# generate() does host-side work a bare loop does not (argument checks, logits processors, stopping
# criteria, cache set-up before the prefill): its TTFT may exceed a bare prefill by that much.
TTFT_TOLERANCE = 0.25
DECODE_TOLERANCE = 0.15
# A train step's optimizer and backward launch many small kernels: wider than the forward's 3%.
TRAIN_TOLERANCE = 0.08
# ONNX Runtime's thread pool spins, then parks, between runs, and the plugin's rounds add their host-side
# bookkeeping to a call that can be a tenth of a millisecond on a CPU: wider than the forward's 3%. On a
# 2-core VM (tiny-gpt2, 30 rounds; 0.1 ms at 1 x 16, 1.4 ms at 4 x 128) the item and the loop agreed within
# 1-4%; at the dry-run test's 5 rounds the loop itself moved 11-41% between before and after (2026-12-07).
ONNXRUNTIME_TOLERANCE = 0.10
# The item's power is NVML's energy counter over its window, the reference NVML's power readings over another
# window of the same load: two readings of one sensor that samples part of each ~100 ms period (the energy
# module's docstring), each window holding its own idle gaps between calls, at a temperature that moves.
POWER_TOLERANCE = 0.15
# The item's rounds and the sampled window last this many times the tracker's minimum window.
ENERGY_WINDOW_MARGIN = 1.5
POWER_SETTLE_S = 1.5
ROOFLINE_SIZE = 8192
ROOFLINE_ROUNDS = 20


class SelfCheckError(RuntimeError):
    """A plugin run that produced no result to check."""


@dataclass(frozen=True)
class Setup:
    """What the checks run: one model at one batch size and input length on one device."""

    device: str
    model: str = "gpt2"
    # GPU-bound on an H100 (gpt2, 8192 tokens: ~7 ms of fp16 kernels, more than the ~4 ms the host takes to
    # launch them): at 4 x 256 the forward was launch-bound, and the VM's host speed, which moved by 10-80%
    # between processes and within one, decided the verdict (H100, 2026-11-27).
    batch_size: int = 16
    seq_len: int = 512
    new_tokens: int = 32
    rounds: int = 30
    warmup: int = 5
    allocation_mib: tuple[int, int] = (1024, 64)  # a large item, then a small one

    def args(self, dtype: str, model: str | None = None) -> list[str]:
        return [
            "--tbench-models", model or self.model,
            "--tbench-batch-sizes", str(self.batch_size),
            "--tbench-seq-lens", str(self.seq_len),
            "--tbench-devices", self.device,
            "--tbench-dtype", dtype,
            "--tbench-rounds", str(self.rounds),
            "--tbench-warmup", str(self.warmup),
            "--tbench-new-tokens", str(self.new_tokens),
        ]  # fmt: skip


@dataclass(frozen=True)
class PluginRun:
    exit_code: int
    json: dict[str, Any]

    @property
    def items(self) -> list[dict[str, Any]]:
        return list(self.json.get("benchmarks", []))

    def only_item(self) -> dict[str, Any]:
        if len(self.items) != 1:
            raise SelfCheckError(
                f"expected one measured item, the run has {len(self.items)} (exit {self.exit_code})"
            )
        return self.items[0]


def run_plugin(source: str, args: list[str]) -> PluginRun:
    """One pytest session in this process over a bench file holding ``source``."""
    folder = Path(tempfile.mkdtemp(prefix="tbench-selfcheck-"))
    # A name of its own: pytest imports each bench file as a module, and a second session in this process
    # would otherwise find the first one's module under the same name.
    (folder / f"test_{folder.name.replace('-', '_')}.py").write_text(source)
    ini = folder / "pytest.ini"
    ini.write_text("[pytest]\n")  # keeps the session away from any project's ini and conftest
    out = folder / "run.json"
    console = io.StringIO()  # the table says what matters; the session's own output only when it broke
    with contextlib.redirect_stdout(console):
        code = pytest.main(
            [str(folder), "-c", str(ini), "--rootdir", str(folder), "-q", "-p", "no:cacheprovider",
             f"--benchmark-json={out}", *args]
        )  # fmt: skip
    if not out.exists():
        tail = " | ".join(console.getvalue().strip().splitlines()[-3:])
        raise SelfCheckError(f"the plugin's session exited {int(code)} without a JSON: {tail}")
    return PluginRun(int(code), json.loads(out.read_text()))


def _bracketed(
    reference: Callable[[], tuple[float, ...]], plugin: Callable[[], PluginRun]
) -> tuple[tuple[float, ...], tuple[float, ...], PluginRun]:
    """The reference figures measured before and after the plugin's run."""
    before = reference()
    run = plugin()
    after = reference()
    return before, after, run


def hand_built(setup: Setup, head: str, dtype: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The model and inputs built here, not by the plugin's loader and input maker: transformers' class for
    ``head`` ("base": ``AutoModel``, the plugin's forward head; "lm": ``AutoModelForCausalLM``, its generate
    and train head for a decoder) from the model's config, random weights in ``dtype``; the inputs the plugin
    gives a decoder LM (int64 ids and an all-ones attention mask, batch x length), ids from a seeded
    generator. The weights and ids are not the plugin's: a forward's time does not depend on their values."""
    from transformers import AutoModel, AutoModelForCausalLM

    model_class = AutoModel if head == "base" else AutoModelForCausalLM
    torch.manual_seed(0)
    config = resolve(setup.model).load_config()  # the architecture only: make_config() for a built-in
    model = model_class.from_config(config, dtype=getattr(torch, dtype)).to(setup.device).eval()
    generator = torch.Generator(device=setup.device).manual_seed(0)
    shape = (setup.batch_size, setup.seq_len)
    ids = torch.randint(0, config.vocab_size, shape, device=setup.device, generator=generator)
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _bracketed_forward(
    setup: Setup, dtype: str, extra: tuple[str, ...] = ()
) -> tuple[tuple[float, ...], tuple[float, ...], PluginRun]:
    """The hand forward loop's (events, host clock) medians before and after the plugin's forward item, run
    with ``extra`` arguments (another launcher)."""
    model, inputs = hand_built(setup, "base", dtype)
    return _bracketed(
        lambda: forward_medians_s(model, inputs, setup.device, setup.rounds, setup.warmup),
        lambda: run_plugin(FORWARD, [*setup.args(dtype), *extra]),
    )


def check_forward(setup: Setup, dtype: str) -> list[Check]:
    (before, host_before), (after, host_after), run = _bracketed_forward(setup, dtype)
    median = run.only_item()["stats"]["median"]
    if not is_cuda(setup.device):
        return [
            bracketed(
                f"forward {dtype} median", median * 1e3, before * 1e3, after * 1e3, FORWARD_TOLERANCE, "ms"
            )
        ]
    check = bracketed(
        f"forward {dtype} median vs CUDA-event loop",
        median * 1e3,
        before * 1e3,
        after * 1e3,
        FORWARD_TOLERANCE,
        "ms",
    )
    # The same loop by the host clock (the plugin's way): where it agrees with the plugin and not with the
    # events, the clocks differ; where it agrees with the events, the plugin's run does.
    host = (host_before + host_after) / 2 * 1e3
    return [replace(check, measured=f"{check.measured}; host-clock loop {host:.4g} ms")]


def check_second_gpu(setup: Setup) -> list[Check]:
    """check_forward on ``cuda:1``: an item timed on the stream of another GPU than its own, or its model put
    on GPU 0, disagrees with the events recorded on cuda:1's stream."""
    name = "forward float32 median on cuda:1 vs CUDA-event loop"
    if not is_cuda(setup.device):
        return [Check.skipped(name, "CUDA only")]
    if torch.cuda.device_count() < 2:
        return [Check.skipped(name, "needs 2 GPUs")]
    return [replace(check, name=name) for check in check_forward(replace(setup, device="cuda:1"), "float32")]


def check_generate(setup: Setup, dtype: str) -> list[Check]:
    model, inputs = hand_built(setup, "lm", dtype)
    rounds = max(1, setup.rounds // 3)  # each round is a whole generation
    before, after, run = _bracketed(
        lambda: decode_medians_s(model, inputs, setup.new_tokens, setup.device, rounds, setup.warmup),
        lambda: run_plugin(GENERATE, setup.args(dtype)),
    )
    # generate's checks have wide tolerances for its own host-side work; the bracket's mean is the reference.
    ttft, step = ((b + a) / 2 for b, a in zip(before, after, strict=True))
    info = run.only_item()["extra_info"]
    return [
        agreement(
            f"generate {dtype} TTFT (median)", info["ttft_median_s"] * 1e3, ttft * 1e3, TTFT_TOLERANCE, "ms"
        ),
        agreement(
            f"generate {dtype} decode per token (median)",
            info["decode_token_latency_median_s"] * 1e3,
            step * 1e3,
            DECODE_TOLERANCE,
            "ms",
        ),
    ]


def check_train(setup: Setup, dtype: str) -> list[Check]:
    model, inputs = hand_built(setup, "lm", "float32")  # float32 master weights, as the plugin's train copies
    ids = inputs["input_ids"]
    (before,), (after,), run = _bracketed(
        lambda: (train_step_median_s(model, ids, setup.device, dtype, setup.rounds, setup.warmup),),
        lambda: run_plugin(TRAIN, setup.args(dtype)),
    )
    info = run.only_item()["extra_info"]
    loss = info.get("last_loss")
    finite = isinstance(loss, float) and math.isfinite(loss)
    changed = bool(info.get("weights_changed"))
    precision = info.get("train_precision")
    expected_precision = "float32" if dtype == "float32" else f"amp-{dtype}"
    step_ms = run.only_item()["stats"]["median"] * 1e3
    return [
        holds(
            f"train {dtype}",
            f"last loss {loss}, weights changed: {changed}, {precision}, {step_ms:.4g} ms/step",
            f"finite loss, weights changed, {expected_precision}",
            finite and changed and precision == expected_precision,
        ),
        # A step whose device work the plugin's timer did not wait for would be shorter than the events say.
        bracketed(
            f"train {dtype} step median vs hand-written step",
            step_ms,
            before * 1e3,
            after * 1e3,
            TRAIN_TOLERANCE,
            "ms",
        ),
    ]


# What the other launchers add to a run of the forward: a worker of its own, or an A/A's pairs of side
# processes (the side variable changes nothing: both sides run the same code).
LAUNCHERS = (
    ("--tbench-isolate", ("--tbench-isolate",)),
    (
        "--tbench-ab A/A, current side",
        ("--tbench-ab", "env:TBENCH_SELFCHECK_SIDE=base", "--tbench-ab-pairs", "2"),
    ),
)


def check_launchers(setup: Setup) -> list[Check]:
    """The forward's median as a worker measures it (isolated) and as an A/A's current side pools it, each
    against the hand loop run before and after it, as the in-process forward is: a worker that timed
    something else, or a side's figure that is not its own, disagrees. The A/A runs on a GPU only (on a CPU
    its side processes take longer than the rest of the dry run)."""
    checks = []
    for name, extra in LAUNCHERS:
        row = f"forward float32 median, {name}"
        if "--tbench-ab" in extra and not is_cuda(setup.device):
            checks.append(
                Check.skipped(row, "CUDA only (an A/A's side processes on a CPU: slow for a dry run)")
            )
            continue
        (before, _), (after, _), run = _bracketed_forward(setup, "float32", extra)
        median = run.only_item()["stats"]["median"]
        checks.append(bracketed(row, median * 1e3, before * 1e3, after * 1e3, FORWARD_TOLERANCE, "ms"))
    return checks


def check_onnxruntime(setup: Setup) -> list[Check]:
    """The forward on ``--tbench-backend onnxruntime`` against ONNX Runtime's own ``run()`` over a graph the
    self-check exports from its own copy of the model, bracketing the plugin's item."""
    name = "forward float32 median, onnxruntime vs its own run() loop"
    # The plugin's own reasons for skipping the same item (missing extra, no CUDA provider): no copy of them.
    case = Case("forward", setup.model, "base", setup.batch_size, setup.seq_len, setup.device, "float32")
    missing = unavailable_reason(replace(case, backend=ONNXRUNTIME))
    if missing is not None:
        return [Check.skipped(name, missing)]
    model, inputs = hand_built(setup, "base", "float32")
    with onnxruntime_call(model, forward_kwargs(model, inputs), setup.device) as call:
        (before,), (after,), run = _bracketed(
            lambda: (session_median_s(call, setup.device, setup.rounds, setup.warmup),),
            lambda: run_plugin(FORWARD, [*setup.args("float32"), "--tbench-backend", "onnxruntime"]),
        )
    median = run.only_item()["stats"]["median"]
    return [bracketed(name, median * 1e3, before * 1e3, after * 1e3, ONNXRUNTIME_TOLERANCE, "ms")]


def check_energy(setup: Setup) -> list[Check]:
    """The forward item's average power (NVML's energy counter over its window) against the mean of NVML's
    power readings taken while the hand loop runs the same forward on the same GPU for as long."""
    name = "forward float32 average power vs NVML power samples"
    if not is_cuda(setup.device):
        return [Check.skipped(name, "CUDA only (NVML power)")]
    read_w = nvml_power_reader(cuda_uuid(cuda_index(setup.device)))
    if isinstance(read_w, str):
        return [Check.skipped(name, read_w)]
    model, inputs = hand_built(setup, "base", "float32")
    _, host_s = forward_medians_s(model, inputs, setup.device, setup.rounds, setup.warmup)
    # Enough rounds that the item's window passes the tracker's minimum (the gaps between calls only add).
    rounds = math.ceil(ENERGY_WINDOW_MARGIN * NVML_MIN_WINDOW_S / host_s)
    info = run_plugin(FORWARD, replace(setup, rounds=rounds).args("float32")).only_item()["extra_info"]
    if AVERAGE_POWER_W not in info:
        reason = info.get(ENERGY_UNAVAILABLE)
        return [holds(name, f"no energy figure: {reason}", f"{AVERAGE_POWER_W} recorded", False)]
    call = forward_call(model, inputs)
    # A second and a half of load before the samples start: on Ampere and newer, NVML's power reading is an
    # average over the last second, which would otherwise still hold the idle GPU before the loop.
    calls_for(call, setup.device, POWER_SETTLE_S)
    window_s = ENERGY_WINDOW_MARGIN * NVML_MIN_WINDOW_S
    samples = sample_power(read_w, lambda: calls_for(call, setup.device, window_s))
    return [agreement(name, float(info[AVERAGE_POWER_W]), mean_power_w(samples), POWER_TOLERANCE, "W")]


def check_roofline(setup: Setup) -> list[Check]:
    """The peak table against a measured matmul: a large bfloat16 GEMM's achieved TFLOP/s must be at most the
    table's dense peak for this GPU (a peak below what runs makes MFU exceed 100%) and at least half of it (a
    peak far above it makes every MFU look poor)."""
    name = f"bf16 GEMM {ROOFLINE_SIZE}^3 within [50%, 100%] of the table's peak"
    if not is_cuda(setup.device):
        return [Check.skipped(name, "a CUDA GPU (the table holds no CPU peaks)")]
    gpu = device_name(setup.device)
    peak = peak_tflops(setup.device, gpu, "bfloat16", None)
    if peak.value is None:
        return [Check.skipped(name, peak.source)]
    achieved = matmul_tflops(setup.device, "bfloat16", ROOFLINE_SIZE, ROOFLINE_ROUNDS)
    return [
        holds(
            name,
            f"{achieved:.1f} TFLOP/s on {gpu}",
            f"{0.5 * peak.value:.0f}-{peak.value:.0f} TFLOP/s ({peak.source})",
            0.5 * peak.value <= achieved <= peak.value,
        )
    ]


def check_memory(setup: Setup) -> list[Check]:
    large, small = setup.allocation_mib
    run = run_plugin(ALLOCATION.format(sizes=[large, small]), setup.args("float32", model="tiny-gpt2"))
    by_size = {item["params"]["mib"]: item["extra_info"] for item in run.items}
    if set(by_size) != {large, small}:
        raise SelfCheckError(
            f"the allocation run measured {sorted(by_size)} MiB items, not {large} and {small}"
        )
    checks = []
    for mib in (large, small):
        info = by_size[mib]
        checks.append(
            agreement(
                f"known allocation of {mib} MiB: item +mem ({info['peak_memory_kind']})",
                info["peak_memory_increase_bytes"] / 2**20,
                float(mib),
                MEMORY_TOLERANCE,
                "MiB",
            )
        )
    if is_cuda(setup.device):
        reserved = by_size[small]["cuda_max_reserved_bytes"] / 2**20
        checks.append(
            at_most(
                f"reserved peak of the {small} MiB item after the {large} MiB one", reserved, large / 2, "MiB"
            )
        )
    else:
        checks.append(Check.skipped("reserved peak after a larger item", "CUDA only (caching allocator)"))
    return checks


CONTEXT_ROW = "forkserver holds no CUDA context"


def forkserver_pid() -> int | None:
    return getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)


def maps_libcuda(pid: int) -> bool:
    """Whether process ``pid`` has the CUDA driver library mapped, which it does once CUDA was initialised."""
    return "libcuda.so" in Path(f"/proc/{pid}/maps").read_text()


def check_forkserver(setup: Setup) -> list[Check]:
    """Every worker forks from the forkserver, so the forkserver must never have initialised the CUDA driver
    (a preloaded module that asks ``torch.cuda.is_available()`` at import may): torch then counts each
    worker a bad fork and refuses it CUDA, context or none. So a worker forked from it is asked; on CUDA,
    NVML's list of processes with a context on the item's GPU is read as well."""
    name = "a worker forked from the forkserver can use CUDA (no driver initialised in the forkserver)"
    pid = forkserver_pid()
    if pid is None:
        return [Check.skipped(row, "no forkserver in this process") for row in (name, CONTEXT_ROW)]
    bad_fork, error = probe_forkserver(setup.device)
    cuda = is_cuda(setup.device)
    measured = f"worker of pid {pid}: bad fork {bad_fork}" + (
        f", torch.zeros(1) on {setup.device}: {error or 'ok'}" if cuda else ""
    )
    expected = "not a bad fork" + (", the allocation works" if cuda else "")
    return [holds(name, measured, expected, not bad_fork and error is None), forkserver_context(setup, pid)]


def forkserver_context(setup: Setup, pid: int) -> Check:
    """On CUDA: NVML does not list the forkserver among the processes with a context on the item's GPU (it
    may map ``libcuda`` without one: it did, under torch 2.11+cu130 on an H100, 2026-11-27, and its workers
    ran)."""
    name = CONTEXT_ROW
    if not is_cuda(setup.device):
        return Check.skipped(name, "CUDA only (NVML's list of processes with a context)")
    mapped = maps_libcuda(pid)
    # A context of this process' own (the forkserver is running already) shows whether NVML lists the pids
    # of this pid namespace at all.
    torch.zeros(1, device=setup.device)
    contexts = nvml.context_pids(cuda_uuid(cuda_index(setup.device)))
    if isinstance(contexts, str):
        return Check.skipped(name, contexts)
    if os.getpid() not in contexts:  # this process has a context: NVML shows another pid namespace
        return Check.skipped(name, f"NVML does not list this process (pid {os.getpid()}): other pids")
    return holds(
        name,
        f"pid {pid} listed: {pid in contexts} (libcuda mapped: {mapped})",
        f"not among NVML's {len(contexts)} processes with a context",
        pid not in contexts,
    )


def check_isolation(setup: Setup) -> list[Check]:
    run = run_plugin(FORWARD, [*setup.args("auto"), "--tbench-isolate"])
    item = run.only_item()
    isolated = item["extra_info"].get("isolated")
    median_ms = item["stats"]["median"] * 1e3
    checks = [
        holds(
            "--tbench-isolate item runs",
            f"exit {run.exit_code}, isolated: {isolated}, median {median_ms:.4g} ms",
            "exit 0, isolated: True",
            run.exit_code == 0 and isolated is True,
        )
    ]
    return [*checks, *check_forkserver(setup)]


# NVML's total is the board's; torch's is what a context can allocate, the board's less what the driver keeps
# (480 MiB of an H100 80GB HBM3, driver 580.159.04, 2026-11-27).
DRIVER_RESERVED_MAX = 0.02


def board_memory_matches(nvml_total: Any, torch_total: int) -> bool:
    return isinstance(nvml_total, int) and 0 <= nvml_total - torch_total <= DRIVER_RESERVED_MAX * nvml_total


def _gpu_entry(run: PluginRun, index: int) -> dict[str, Any] | None:
    gpus = run.json.get("machine_info", {}).get("tbench", {}).get("gpus", [])
    return next((gpu for gpu in gpus if gpu.get("torch_index") == index), None)


def check_nvml(setup: Setup) -> list[Check]:
    """The item's NVML figures exist and come from its own GPU: NVML's record for the item's UUID has the
    total memory torch reports for that index; with two GPUs or more, ``cuda:1`` here is the GPU that
    ``cuda:0`` is under ``CUDA_VISIBLE_DEVICES=1``."""
    if not is_cuda(setup.device):
        return [Check.skipped("NVML fields mapped to the item's GPU", "CUDA only")]
    index = cuda_index(setup.device)
    run = run_plugin(FORWARD, setup.args("auto"))
    info = run.only_item()["extra_info"]
    torch_uuid = cuda_uuid(index)
    entry = _gpu_entry(run, index) or {}
    torch_total = torch.cuda.get_device_properties(index).total_memory
    process = info.get("nvml_process_used_at_end_bytes")
    reason = info.get("nvml_unavailable_reason") or ""
    present = holds(
        "NVML fields present",
        f"device used {info.get('nvml_device_used_bytes')} B, this process {process} B"
        + (f" ({reason})" if reason else ""),
        "both known; process >= allocator peak",
        info.get("nvml_device_used_bytes") is not None
        and process is not None
        and process >= info["cuda_max_allocated_bytes"],
    )
    if process is None and reason.startswith((nvml.NOT_LISTED, nvml.NO_PROCESS_MEMORY)):
        # NVML works but cannot give this process's figure (a container shows host pids): nothing to check.
        present = Check.skipped("NVML fields present", reason)
    checks = [
        present,
        holds(
            f"NVML record of cuda:{index}",
            f"uuid {entry.get('uuid')}, {entry.get('memory_total_bytes')} B total",
            f"uuid {torch_uuid}, {torch_total} B total (torch)",
            info.get("cuda_device_uuid") == torch_uuid
            and torch_uuid is not None
            and nvml.bare_uuid(str(entry.get("uuid"))) == nvml.bare_uuid(torch_uuid)
            and board_memory_matches(entry.get("memory_total_bytes"), torch_total),
        ),
    ]
    if torch.cuda.device_count() < 2:
        checks.append(Check.skipped("cuda:1 vs CUDA_VISIBLE_DEVICES=1", "needs 2 GPUs"))
        return checks
    here = run_plugin(FORWARD, replace(setup, device="cuda:1").args("auto"))
    there = _plugin_in_subprocess(FORWARD, replace(setup, device="cuda:0").args("auto"), "1")
    uuids = [r.only_item()["extra_info"].get("cuda_device_uuid") for r in (here, there)]
    checks.append(
        holds(
            "cuda:1 vs CUDA_VISIBLE_DEVICES=1 cuda:0",
            f"{uuids[0]} vs {uuids[1]}",
            f"both {cuda_uuid(1)}",
            uuids[0] == uuids[1] == cuda_uuid(1),
        )
    )
    return checks


def _plugin_in_subprocess(source: str, args: list[str], visible_devices: str) -> PluginRun:
    """``run_plugin`` in a fresh interpreter that sees only ``visible_devices``."""
    code = (
        "import json, sys; from pytest_tbench.selfcheck.checks import run_plugin; "
        "run = run_plugin(sys.argv[1], sys.argv[2:]); print(json.dumps([run.exit_code, run.json]))"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible_devices}
    done = subprocess.run(
        [sys.executable, "-c", code, source, *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SelfCheckError(f"the subprocess exited {done.returncode}: {done.stderr.strip()[-300:]}")
    exit_code, data = json.loads(done.stdout.strip().splitlines()[-1])
    return PluginRun(exit_code, data)


def run_all(setup: Setup, report: Callable[[list[Check]], None] = lambda checks: None) -> list[Check]:
    """Every check, in an order where none leaves state for the next; ``report`` sees each batch of rows
    as it is ready, so a long run shows progress. A check that raises becomes a failed row; the rest go on."""
    cuda = is_cuda(setup.device)
    half = ["float16", "bfloat16"] if cuda else ["bfloat16"]
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        ("isolation", lambda: check_isolation(setup)),  # first: the forkserver starts before anything else
        *[
            (f"forward {d}", lambda d=d: check_forward(setup, d))
            for d in ("float32", "float16" if cuda else "bfloat16")
        ],
        (f"generate {half[0]}", lambda: check_generate(setup, half[0])),
        *[(f"train {d}", lambda d=d: check_train(setup, d)) for d in half],
        ("launchers", lambda: check_launchers(setup)),
        ("onnxruntime", lambda: check_onnxruntime(setup)),
        ("energy", lambda: check_energy(setup)),
        ("cuda:1", lambda: check_second_gpu(setup)),
        ("memory", lambda: check_memory(setup)),
        ("roofline", lambda: check_roofline(setup)),
        ("nvml", lambda: check_nvml(setup)),
    ]
    checks: list[Check] = []
    for name, step in steps:
        try:
            found = step()
        except Exception as exc:  # one broken check is a row, not the end of the self-check
            found = [Check(name, f"{type(exc).__name__}: {exc}"[:200], "no error", "fail")]
        checks.extend(found)
        report(found)
        if cuda:
            torch.cuda.empty_cache()
    return checks
