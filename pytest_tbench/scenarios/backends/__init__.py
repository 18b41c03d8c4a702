"""Runtimes a forward item can run on besides PyTorch itself (``--tbench-backend``): the model exported to
ONNX and run by ONNX Runtime (``ort.py``), the same ONNX graph built into a TensorRT engine by ONNX Runtime's
TensorRT provider (``ort.py``), or the classic TorchScript trace (``torchscript.py``).

Here: which case can run on which backend, decided before anything is loaded, so that a variant that cannot
run is a skip with the reason, affecting that item only. Torch-free: the plugin asks it for every item.
"""

from __future__ import annotations

import importlib.util

from pytest_tbench.core.axes import BACKEND_PYTORCH, COMPILE_OFF, QUANT_NONE
from pytest_tbench.core.record import Case

ONNXRUNTIME = "onnxruntime"
TORCHSCRIPT = "torchscript"
TENSORRT = "tensorrt"
# What the onnx extra installs: the exporter (torch.onnx's dynamo exporter writes through onnxscript and onnx)
# and the runtime.
ONNX_MODULES = ("onnxruntime", "onnx", "onnxscript")
ONNX_EXTRA = "pip install 'pytest-tbench[onnx]'"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
TENSORRT_EXTRA = "pip install 'pytest-tbench[tensorrt]'"
CPU_PROVIDER = "CPUExecutionProvider"


def unavailable_reason(case: Case) -> str | None:
    """Why ``case`` cannot run on its backend here (None: it can, or it runs on PyTorch)."""
    backend = case.backend
    if backend == BACKEND_PYTORCH:
        return None
    if case.mode != "forward":
        return f"backend {backend} runs the forward only; {case.mode} items run on pytorch"
    if case.compile != COMPILE_OFF:
        return (
            f"backend {backend} runs its own export of the model, not torch.compile's: "
            f"compile:{case.compile} items run on pytorch"
        )
    if case.quantization != QUANT_NONE:
        return (
            f"backend {backend} exports the float model: quantized weights (torchao's tensors, bitsandbytes' "
            f"layers) do not export, so quant:{case.quantization} items run on pytorch"
        )
    if backend == ONNXRUNTIME:
        return _onnxruntime_reason(case)
    if backend == TENSORRT:
        return _tensorrt_reason(case)
    return None


def _missing_modules(backend: str, extra: str) -> str | None:
    """Why ``backend`` cannot export or run here for want of the ONNX packages, naming the extra."""
    missing = [name for name in ONNX_MODULES if importlib.util.find_spec(name) is None]
    return f"backend {backend} needs {', '.join(missing)}: {extra}" if missing else None


def _onnxruntime_reason(case: Case) -> str | None:
    missing = _missing_modules(ONNXRUNTIME, ONNX_EXTRA)
    if missing:
        return missing
    if case.dtype == "bfloat16":
        # The Python API hands outputs back as numpy arrays, which have no bfloat16, and most of ONNX
        # Runtime's kernels have no bfloat16 version.
        return (
            "backend onnxruntime: no bfloat16 (ONNX Runtime's kernels and numpy outputs lack it); use float16"
        )
    if case.device.split(":")[0] != "cuda":
        if case.dtype == "float16":
            return (
                "backend onnxruntime on cpu: the CPU provider casts float16 to float32 around every op it "
                "has no float16 kernel for (most, on x86), which would not time a float16 forward; use "
                "float32"
            )
        return None
    import onnxruntime

    if CUDA_PROVIDER not in onnxruntime.get_available_providers():
        return (
            f"backend onnxruntime on {case.device}: this onnxruntime build has no {CUDA_PROVIDER} "
            f"(providers: {', '.join(onnxruntime.get_available_providers())}); pip install onnxruntime-gpu"
        )
    return None


def _tensorrt_reason(case: Case) -> str | None:
    missing = _missing_modules(TENSORRT, TENSORRT_EXTRA)
    if missing:
        return missing
    if case.device.split(":")[0] != "cuda":
        return (
            f"backend tensorrt runs on a CUDA GPU (TensorRT has no CPU path); this item is on {case.device}"
        )
    if case.dtype == "bfloat16":
        return "backend tensorrt: no bfloat16 (numpy outputs lack it); use float16"
    if case.dtype == "float32":
        from pytest_tbench.scenarios.backends.ort import torch_uses_tf32  # torch and numpy: this branch only

        if not torch_uses_tf32():
            # ONNX Runtime's TensorRT provider has no switch for it: the item would be timed in TF32 against
            # PyTorch's float32 and a float32 peak.
            return (
                "backend tensorrt: TensorRT builds float32 layers with TF32 allowed, and ONNX Runtime's "
                "provider cannot forbid it, while PyTorch's float32 matmuls here do not use TF32; use "
                "float16, or allow TF32 in PyTorch too (torch.backends.cuda.matmul.allow_tf32 = True)"
            )
    import onnxruntime

    if TENSORRT_PROVIDER not in onnxruntime.get_available_providers():
        return (
            f"backend tensorrt: this onnxruntime build has no {TENSORRT_PROVIDER} (providers: "
            f"{', '.join(onnxruntime.get_available_providers())}); {TENSORRT_EXTRA} "
            "(onnxruntime-gpu and tensorrt)"
        )
    return None
