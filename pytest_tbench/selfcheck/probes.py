"""References outside PyTorch's own loops, written here and sharing no code with the plugin's backends,
trackers or launchers: ONNX Runtime's ``run()`` over a graph exported here, NVML's power samples taken while a
loop runs, and a worker forked from the forkserver asked whether it can use CUDA.

Light at import (torch only): the forkserver's worker imports this module to find its target.
"""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import pairwise
from multiprocessing.connection import Connection
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import torch

from pytest_tbench.machine import nvml
from pytest_tbench.machine.devices import cuda_index
from pytest_tbench.selfcheck.loops import host_timed_calls

# Every ~20 ms: five samples in each of the ~100 ms periods an H100's sensor reports on.
POWER_INTERVAL_S = 0.02
PROBE_TIMEOUT_S = 120.0  # a forked worker imports this module and touches CUDA: seconds, not minutes

PowerSample = tuple[float, float]  # (seconds by the host clock, watts)


def mean_power_w(samples: Sequence[PowerSample]) -> float:
    """The samples' power averaged over their time span, each interval weighted by its length (trapezoids):
    a late sample, the thread held up by the GIL, does not count as much as the interval it missed."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        raise ValueError(f"power needs two samples at least, apart in time; got {len(samples)}")
    joules = sum((p0 + p1) / 2 * (t1 - t0) for (t0, p0), (t1, p1) in pairwise(samples))
    return joules / (samples[-1][0] - samples[0][0])


def sample_power(
    read_w: Callable[[], float],
    run: Callable[[], object],
    interval_s: float = POWER_INTERVAL_S,
) -> list[PowerSample]:
    """``read_w`` just before ``run`` starts, every ``interval_s`` while it runs (by a thread of its own), and
    just after it ends."""
    samples = [(time.perf_counter(), read_w())]
    done = threading.Event()

    def sampler() -> None:
        while not done.wait(interval_s):
            samples.append((time.perf_counter(), read_w()))

    thread = threading.Thread(target=sampler, name="tbench-selfcheck-power", daemon=True)
    thread.start()
    try:
        run()
    finally:
        done.set()
        thread.join()
    samples.append((time.perf_counter(), read_w()))
    return samples


def nvml_power_reader(uuid: str | None) -> Callable[[], float] | str:
    """A reader of the power draw of the GPU with this UUID in watts (NVML reports milliwatts), or why there
    is none."""
    if uuid is None:
        return "torch reports no UUID for the GPU, so NVML cannot find it"
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = nvml.handle_for_uuid(pynvml, uuid)
        if handle is None:
            return f"NVML knows no GPU with UUID {uuid}"
        pynvml.nvmlDeviceGetPowerUsage(handle)
    except Exception as exc:  # no library, no driver, no power sensor: NVML cannot say
        return f"NVML power unavailable: {type(exc).__name__}: {exc}"
    return lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000


def fork_probe(conn: Connection, device: str) -> None:
    """In a worker forked from the forkserver: whether torch counts this process a bad fork (the CUDA driver
    was initialised in the process it forked from), and on CUDA why an allocation on ``device`` failed (None:
    it worked)."""
    error = None
    bad_fork = torch.cuda._is_in_bad_fork()
    if torch.device(device).type == "cuda":
        try:
            torch.zeros(1, device=device)
        except Exception as exc:  # "Cannot re-initialize CUDA in forked subprocess", or any other refusal
            error = f"{type(exc).__name__}: {exc}"
    conn.send((bad_fork, error))
    conn.close()


def probe_forkserver(device: str, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str | None]:
    """``fork_probe``'s answer from a worker of this process's forkserver (the one the plugin's workers fork
    from: started already, it is reused, not started anew)."""
    context = multiprocessing.get_context("forkserver")
    ours, theirs = context.Pipe()
    process = context.Process(target=fork_probe, args=(theirs, device), name="tbench-selfcheck-probe")  # type: ignore[attr-defined]
    process.start()
    theirs.close()  # the worker holds the only other end: its death ends the wait below
    try:
        if not ours.poll(timeout_s):
            raise TimeoutError(f"the forkserver's worker did not answer within {timeout_s:g} s")
        found: tuple[bool, str | None] = ours.recv()
        return found
    finally:
        ours.close()
        process.join(timeout_s)
        if process.exitcode is None:
            process.kill()
            process.join()


def export_onnx(model: torch.nn.Module, kwargs: Mapping[str, Any], folder: Path) -> Path:
    """The model's forward on ``kwargs`` exported by torch.onnx's dynamo exporter (the plugin's exporter:
    another would time another graph), saved under ``folder`` with its weights in files beside it (a graph
    past protobuf's 2 GB would not load otherwise)."""
    program = torch.onnx.export(model, (), kwargs=dict(kwargs), dynamo=True, verbose=False)
    assert program is not None  # returned when no file is given
    path = folder / "model.onnx"
    program.save(str(path), external_data=True)
    return path


def onnx_session(path: Path, device: str) -> Any:
    """A session on the provider the plugin opens for ``device``, with its thread count (torch's, so both
    runtimes use the same cores) and, on CUDA, TF32 as PyTorch's float32 matmuls have it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    if torch.device(device).type == "cuda":
        tf32 = "0" if torch.get_float32_matmul_precision() == "highest" else "1"
        provider = "CUDAExecutionProvider"
        providers: list[Any] = [(provider, {"device_id": cuda_index(device), "use_tf32": tf32})]
    else:
        provider = "CPUExecutionProvider"
        providers = [provider]
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    if session.get_providers()[0] != provider:  # ONNX Runtime falls back to the CPU without raising
        raise RuntimeError(f"onnxruntime opened the session on {session.get_providers()}, not {provider}")
    return session


def session_call(session: Any, inputs: Mapping[str, torch.Tensor], device: str) -> Callable[[], object]:
    """One run of ``session`` on the inputs its graph takes. On the CPU ``run()`` on numpy arrays made once.
    On CUDA the inputs are copied once into ONNX Runtime's own buffers on the GPU and bound there, outputs
    bound to the GPU: ``run()`` on host arrays would copy the inputs up and the outputs down every call,
    which the plugin's rounds (inputs bound where torch holds them) do not."""
    import onnxruntime

    arrays = {node.name: inputs[node.name].cpu().numpy() for node in session.get_inputs()}
    if torch.device(device).type != "cuda":
        return lambda: session.run(None, arrays)
    index = cuda_index(device)
    binding = session.io_binding()
    values = {name: onnxruntime.OrtValue.ortvalue_from_numpy(a, "cuda", index) for name, a in arrays.items()}
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    for node in session.get_outputs():
        binding.bind_output(node.name, "cuda", index)

    def call(held: dict[str, Any] = values) -> None:  # ``held``: the buffers the binding reads, kept alive
        session.run_with_iobinding(binding)

    return call


@contextmanager
def onnxruntime_call(
    model: torch.nn.Module, kwargs: Mapping[str, Any], device: str
) -> Iterator[Callable[[], object]]:
    """One run of ``model``'s forward on ``kwargs`` in ONNX Runtime, exported and opened before it is
    yielded (the export is never timed); the files go when the block ends."""
    with TemporaryDirectory(prefix="tbench-selfcheck-onnx-") as folder:
        session = onnx_session(export_onnx(model, kwargs, Path(folder)), device)
        tensors = {name: value for name, value in kwargs.items() if isinstance(value, torch.Tensor)}
        yield session_call(session, tensors, device)


def session_median_s(call: Callable[[], object], device: str, rounds: int, warmup: int) -> float:
    """The median call by the host clock with the device synchronised around it: events on torch's stream
    would not see ONNX Runtime's, which runs on a stream of its own."""
    for _ in range(warmup):
        call()
    return statistics.median(host_timed_calls(call, device, rounds))
