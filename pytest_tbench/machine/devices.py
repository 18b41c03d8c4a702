"""Device names, presence and synchronisation: the only place that knows CPU from CUDA.

Every CUDA call here names its device (or runs under ``torch.cuda.device``): calls that take no device act on
torch's *current* device, which nothing else sets, so with ``cuda:1`` they would act on GPU 0 and open a CUDA
context there.
"""

from __future__ import annotations

import platform
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch


def resolve_device(name: str) -> str:
    """``auto`` becomes ``cuda`` when a CUDA device is visible, else ``cpu``; other names stay as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` is float16 on CUDA and float32 on CPU, as in the seed suite ("fp16 on GPU")."""
    if dtype == "auto":
        return "float16" if is_cuda(device) else "float32"
    return dtype


def is_cuda(device: str) -> bool:
    return device.split(":")[0] == "cuda"


def cuda_index(device: str) -> int:
    """The torch ordinal of a CUDA device name: its index, or for a bare ``cuda`` torch's current device,
    which is where ``tensor.to("cuda")`` puts tensors. Resolve it once per item, so that everything the item
    does acts on the same GPU even if the current device changes meanwhile."""
    if not is_cuda(device):
        raise ValueError(f"device {device!r} is not a CUDA device; expected 'cuda' or 'cuda:N'")
    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index


def on_device(device: str) -> AbstractContextManager[object]:
    """Makes ``device`` torch's current CUDA device for the block (a no-op for CPU), so that calls that take
    no device (``empty_cache``, events, streams, third-party code) act on the item's GPU. Wrap a whole item
    (model load, warm-up, rounds, memory tracking) in it."""
    if not is_cuda(device):
        return nullcontext()
    return torch.cuda.device(cuda_index(device))


def cuda_uuid(index: int) -> str | None:
    """The UUID torch reports for CUDA ordinal ``index`` (as torch writes it, without NVML's ``GPU-``
    prefix), or None where torch cannot say. NVML's own indices ignore CUDA_VISIBLE_DEVICES and follow PCI
    order, so the UUID is the only safe link from a torch device to its NVML record."""
    try:
        return str(torch.cuda.get_device_properties(index).uuid)
    except (AttributeError, AssertionError, RuntimeError):  # old torch, no CUDA build, no such device
        return None


def cuda_uuids() -> list[str | None]:
    """:func:`cuda_uuid` of every visible CUDA device, in torch's order; empty without CUDA."""
    if not torch.cuda.is_available():
        return []
    return [cuda_uuid(index) for index in range(torch.cuda.device_count())]


def absent_reason(device: str) -> str | None:
    """Why ``device`` cannot run here, or None when it can."""
    if not is_cuda(device):
        return None
    if not torch.cuda.is_available():
        return f"device {device} absent: torch {torch.__version__} sees no CUDA device"
    # Not cuda_index: current_device() would initialise CUDA in the pytest process at collection time.
    index = torch.device(device).index or 0
    count = torch.cuda.device_count()
    if index >= count:
        return f"device {device} absent: {count} CUDA device(s) visible"
    return None


def synchronize(device: str) -> None:
    """Wait for all queued work on ``device``; a no-op on CPU, where calls return when done."""
    if is_cuda(device):
        torch.cuda.synchronize(cuda_index(device))


def empty_cache(device: str) -> None:
    """Return the caching allocator's unused blocks of ``device`` to the driver. Run under that device:
    ``torch.cuda.empty_cache`` takes no device argument."""
    if is_cuda(device) and torch.cuda.is_available():
        with on_device(device):
            torch.cuda.empty_cache()


def memory_room(device: str) -> tuple[int, int] | None:
    """(free, total) bytes of the device's memory now: the machine's available RAM for the CPU, the whole
    GPU's free memory for CUDA (every process' use counted); None where neither applies."""
    if device == "cpu":
        import psutil

        memory = psutil.virtual_memory()
        return int(memory.available), int(memory.total)
    if is_cuda(device):
        free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(free), int(total)
    return None


def cpu_name() -> str:
    """The CPU's model name as the kernel reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """What the hardware that runs ``device`` is called: torch's GPU name (what the peak table matches), or
    the CPU's model name."""
    if is_cuda(device):
        return str(torch.cuda.get_device_name(cuda_index(device)))
    return cpu_name()


# torch.get_float32_matmul_precision() -> what a float32 matmul runs in on a CUDA GPU.
_FLOAT32_MATMUL = {"highest": "float32", "high": "tf32", "medium": "bfloat16"}


def matmul_precision(device: str, dtype: str) -> str:
    """What an item's matmuls run in, as the peak table knows it: the item's dtype (a float16/bfloat16 train
    step's autocast dtype too), except float32 on a CUDA GPU, which runs on TF32 tensor cores where torch
    allows it (``set_float32_matmul_precision("high")``, or torch 2.9+'s ``fp32_precision = "tf32"``) and in
    bfloat16 passes at "medium". Read where the item runs: a bench module may change the setting."""
    if dtype != "float32" or not is_cuda(device):
        return dtype
    try:
        setting = torch.backends.cuda.matmul.fp32_precision  # torch 2.9+: "ieee", "tf32" or "none"
    except (AttributeError, RuntimeError):
        setting = "none"
    if setting == "tf32":
        return "tf32"
    if setting == "ieee":
        return "float32"
    return _FLOAT32_MATMUL.get(torch.get_float32_matmul_precision(), "float32")
