"""ONNX Runtime as a forward's runtime: the loaded model's forward exported to ONNX with torch.onnx's dynamo
exporter (``torch.onnx.export(..., dynamo=True)``, through onnxscript), then run by an ``InferenceSession``.

Why torch.onnx and not optimum: optimum's ONNX exporter (``optimum-onnx`` 0.1.0, the current release) requires
transformers < 5 (pip resolves it to transformers 4.57), so it cannot export a transformers 5.x model at all;
``torch.onnx.export`` with the dynamo exporter is torch's maintained path (its default since torch 2.9), and
exports any model that ``torch.export`` can capture, which transformers 5.x tests for its models.

The export is static: one graph per model and input shape (batch x length), which is what one item runs.

- CPU: ``CPUExecutionProvider`` with as many intra-op threads as torch uses (``torch.get_num_threads()``), so
  the two runtimes are compared on the same cores; ONNX Runtime's own default is every physical core. The
  inputs are converted to numpy once; a round is ``session.run``.
- CUDA: ``CUDAExecutionProvider`` on the item's GPU with IOBinding: the inputs are bound where torch holds
  them (no host copy per round), the outputs are allocated by ONNX Runtime on the device, and each round ends
  with the outputs synchronised; the launcher then synchronises the device as for any CUDA round.

- TensorRT (``--tbench-backend tensorrt``): the same export and IO binding, the session opened with
  ``TensorrtExecutionProvider`` first (``CUDAExecutionProvider`` behind it for any node TensorRT does not
  take), float16 layers enabled for a float16 item. TensorRT builds its engine at the session's first run:
  that run happens here, when the work is built (timed as ``tensorrt_engine_build_s`` and within
  ``export_time_s``), never in a round. Through ONNX Runtime rather than torch-tensorrt: the export, the
  session checks and the IO binding are the ``onnxruntime`` backend's, and the comparison of the seeds'
  optimum wrapper (PyTorch, ONNX Runtime, TensorRT) is then one exported graph on three runtimes.

ONNX Runtime falls back to the CPU without a word when a provider cannot load: the session's providers are
checked, and a session that is not on the asked provider is an error.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pytest_tbench.core.metric_table import (
    ONNX_OPSET,
    ONNXRUNTIME_PROVIDER,
    ONNXRUNTIME_USE_TF32,
    ONNXRUNTIME_VERSION,
    TENSORRT_ENGINE_BUILD_S,
    TENSORRT_FP16,
    TENSORRT_VERSION,
)
from pytest_tbench.scenarios.backends import CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER
from pytest_tbench.scenarios.backends.runner import BackendError, Runner

_NUMPY_TYPES: dict[torch.dtype, Any] = {
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.bool: np.bool_,
    torch.float32: np.float32,
    torch.float16: np.float16,
}


def export_onnx(model: torch.nn.Module, kwargs: dict[str, Any], path: Path) -> int:
    """Export ``model``'s forward on ``kwargs`` to ``path`` (weights beside it); the graph's ONNX opset."""
    import onnx

    torch.onnx.export(model, (), str(path), kwargs=kwargs, dynamo=True, external_data=True, verbose=False)
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise BackendError(f"the exported {path.name} imports no opset of the default ONNX domain")


def open_session(path: Path, device: str, threads: int, tensorrt: bool = False, fp16: bool = False) -> Any:
    """An InferenceSession of ``path`` on ``device``'s provider (TensorRT's first where ``tensorrt``, with
    float16 layers where ``fp16``), checked to be on it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    if device.split(":")[0] == "cuda":
        # ONNX Runtime's CUDA provider runs float32 matmuls in TF32 unless told: as PyTorch does here, or the
        # item fails the output check, or is timed in TF32 against a float32 peak (MFU past 100%).
        options_cuda = {"device_id": cuda_device_id(device), "use_tf32": "1" if torch_uses_tf32() else "0"}
        providers: list[Any] = [(CUDA_PROVIDER, options_cuda)]
        if tensorrt:  # no engine cache: every item builds its own engine, as it exports its own graph
            options_trt = {
                "device_id": cuda_device_id(device),
                "trt_fp16_enable": "1" if fp16 else "0",
                "trt_engine_cache_enable": "0",
            }
            providers.insert(0, (TENSORRT_PROVIDER, options_trt))
    else:
        providers = [CPU_PROVIDER]
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if session.get_providers()[0] != wanted:
        raise BackendError(
            f"onnxruntime opened the session on {session.get_providers()} instead of {wanted} (it falls back "
            "without raising when a provider cannot load: check its CUDA and cuDNN libraries)"
        )
    return session


def torch_uses_tf32() -> bool:
    """Whether PyTorch's float32 matmuls may run in TF32 (``torch.backends.cuda.matmul.allow_tf32``)."""
    return bool(torch.backends.cuda.matmul.allow_tf32)


def cuda_device_id(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index else torch.cuda.current_device()


def session_feeds(session: Any, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The item's input tensors by the names the exported graph takes, in its order."""
    names = [node.name for node in session.get_inputs()]
    missing = [name for name in names if not isinstance(kwargs.get(name), torch.Tensor)]
    if missing:
        raise BackendError(
            f"the exported graph takes {', '.join(missing)}, which the item's inputs ({', '.join(kwargs)}) "
            "lack"
        )
    # Contiguous, and held by the feeds (so by the call's closure): IOBinding reads their memory by address.
    return {name: kwargs[name].contiguous() for name in names}


def cpu_runner(session: Any, feeds: dict[str, torch.Tensor]) -> Runner:
    arrays = {name: tensor.numpy() for name, tensor in feeds.items()}  # once: the rounds time the run alone

    def call() -> None:
        session.run(None, arrays)  # dropped at once, as the PyTorch forward's output is

    return Runner(call, lambda: session.run(None, arrays)[0])


def cuda_runner(session: Any, feeds: dict[str, torch.Tensor], device_id: int) -> Runner:
    """Inputs bound in place on the GPU, outputs allocated there by ONNX Runtime; a round runs the bound graph
    and waits for its outputs."""
    binding = session.io_binding()
    for name, tensor in feeds.items():
        binding.bind_input(
            name, "cuda", device_id, _NUMPY_TYPES[tensor.dtype], list(tensor.shape), tensor.data_ptr()
        )
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda", device_id)
    binding.synchronize_inputs()  # torch wrote them on its own stream

    def call(inputs: dict[str, torch.Tensor] = feeds) -> None:
        # ``inputs``: the tensors whose addresses the binding holds, alive as long as the call is.
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    def main_output() -> Any:
        call()
        return binding.copy_outputs_to_cpu()[0]

    return Runner(call, main_output)


def _exported(
    model: torch.nn.Module, kwargs: dict[str, Any], device: str, tensorrt: bool = False, fp16: bool = False
) -> tuple[Path, int, Any, dict[str, torch.Tensor]]:
    """Export into a folder of its own, open the session and match the item's inputs to its graph: the
    folder (the caller removes it), the opset, the session and the feeds. The folder goes on any failure."""
    directory = Path(tempfile.mkdtemp(prefix="tbench-onnx-"))
    try:
        opset = export_onnx(model, kwargs, directory / "model.onnx")
        session = open_session(directory / "model.onnx", device, torch.get_num_threads(), tensorrt, fp16)
        return directory, opset, session, session_feeds(session, kwargs)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _runtime_info(opset: int, session: Any) -> dict[str, Any]:
    import onnxruntime

    return {
        ONNX_OPSET: opset,
        ONNXRUNTIME_VERSION: onnxruntime.__version__,
        ONNXRUNTIME_PROVIDER: session.get_providers()[0],
    }


def onnxruntime_runner(model: torch.nn.Module, kwargs: dict[str, Any], device: str) -> Runner:
    """Export, open the session on the item's device, and bind the item's inputs."""
    directory, opset, session, feeds = _exported(model, kwargs, device)
    if device.split(":")[0] == "cuda":
        runner = cuda_runner(session, feeds, cuda_device_id(device))
    else:
        runner = cpu_runner(session, feeds)
    # The session (and its copy of the weights) goes with the item's work; the files go now.
    info = _runtime_info(opset, session)
    if device.split(":")[0] == "cuda":
        info[ONNXRUNTIME_USE_TF32] = torch_uses_tf32()
    return Runner(runner.call, runner.main_output, info, lambda: shutil.rmtree(directory, ignore_errors=True))


def tensorrt_runner(model: torch.nn.Module, kwargs: dict[str, Any], device: str, dtype: str) -> Runner:
    """Export, open the session with TensorRT's provider first, bind the item's inputs on the GPU and run
    once: TensorRT builds its engine at the first run, which is then over before any round."""
    fp16 = dtype == "float16"
    directory, opset, session, feeds = _exported(model, kwargs, device, tensorrt=True, fp16=fp16)
    try:
        runner = cuda_runner(session, feeds, cuda_device_id(device))
        start = time.perf_counter()
        runner.call()  # waits for the outputs
        build_s = time.perf_counter() - start
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    info = {
        **_runtime_info(opset, session),
        TENSORRT_VERSION: tensorrt_version(),
        TENSORRT_FP16: fp16,
        TENSORRT_ENGINE_BUILD_S: build_s,
    }
    return Runner(runner.call, runner.main_output, info, lambda: shutil.rmtree(directory, ignore_errors=True))


def tensorrt_version() -> str | None:
    """The tensorrt package's version (the libraries ONNX Runtime's provider loads), None where the provider
    found TensorRT's libraries without the Python package."""
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(tensorrt.__version__)
