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

ONNX Runtime falls back to the CPU without a word when a provider cannot load: the session's providers are
checked, and a session that is not on the asked provider is an error.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pytest_tbench.core.metric_table import (
    ONNX_OPSET,
    ONNXRUNTIME_PROVIDER,
    ONNXRUNTIME_USE_TF32,
    ONNXRUNTIME_VERSION,
)
from pytest_tbench.scenarios.backends import CPU_PROVIDER, CUDA_PROVIDER
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


def open_session(path: Path, device: str, threads: int) -> Any:
    """An InferenceSession of ``path`` on ``device``'s provider, checked to be on it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    if device.split(":")[0] == "cuda":
        # ONNX Runtime's CUDA provider runs float32 matmuls in TF32 unless told: as PyTorch does here, or the
        # item fails the output check, or is timed in TF32 against a float32 peak (MFU past 100%).
        options_cuda = {"device_id": cuda_device_id(device), "use_tf32": "1" if torch_uses_tf32() else "0"}
        providers: list[Any] = [(CUDA_PROVIDER, options_cuda)]
    else:
        providers = [CPU_PROVIDER]
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    wanted = CUDA_PROVIDER if device.split(":")[0] == "cuda" else CPU_PROVIDER
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


def onnxruntime_runner(model: torch.nn.Module, kwargs: dict[str, Any], device: str) -> Runner:
    """Export, open the session on the item's device, and bind the item's inputs."""
    import onnxruntime

    directory = Path(tempfile.mkdtemp(prefix="tbench-onnx-"))
    try:
        opset = export_onnx(model, kwargs, directory / "model.onnx")
        session = open_session(directory / "model.onnx", device, torch.get_num_threads())
        feeds = session_feeds(session, kwargs)
        if device.split(":")[0] == "cuda":
            runner = cuda_runner(session, feeds, cuda_device_id(device))
        else:
            runner = cpu_runner(session, feeds)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise

    # The session (and its copy of the weights) goes with the item's work; the files go now.
    info = {
        ONNX_OPSET: opset,
        ONNXRUNTIME_VERSION: onnxruntime.__version__,
        ONNXRUNTIME_PROVIDER: session.get_providers()[0],
    }
    if device.split(":")[0] == "cuda":
        info[ONNXRUNTIME_USE_TF32] = torch_uses_tf32()
    return Runner(runner.call, runner.main_output, info, lambda: shutil.rmtree(directory, ignore_errors=True))
