"""The one place that turns ``--device`` / ``--dtype`` options into torch objects.

Devices: ``"auto"`` (or None) is the GPU of this process (``cuda:<local_rank>``) when CUDA is
available, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` as given (``"cuda"`` without an index
means this process' GPU under torchrun).

Precision has a default per *purpose*, because the stages differ in how much rounding they take:

============  ==============================  ===========================================
purpose       CUDA ``auto``                   CPU ``auto``
============  ==============================  ===========================================
heatmaps      fp16 (overflow-guarded)         bf16 autocast with bf16 hardware, else fp32
models        bf16 autocast                   bf16 autocast with bf16 hardware, else fp32
training      bf16 autocast                   fp32
============  ==============================  ===========================================

Heatmaps default to fp16 on CUDA, not bf16: with a trained DenseNet-121 on an H100 the heatmaps
differ from fp32 by 7e-4 in fp16 and 1.35e-2 in bf16 (over the documented 0.01 bound;
benchmarks/README.md). On the CPU reduced precision is only worth it with bf16 hardware (AMX or
AVX512-BF16, detected at run time by :func:`cpu_has_fast_bf16`); without it (e.g. an AVX2-only
AMD Zen 3) bf16 has no hardware path and is several times slower than fp32
(benchmarks/README.md, "CPU precision"), so ``auto`` is fp32 there.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

from mammokit.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DTYPE_NAMES",
    "PURPOSES",
    "resolve_device",
    "resolve_dtype",
    "dtype_name",
    "autocast",
    "cpu_has_fast_bf16",
    "cpuinfo_has_bf16",
    "device_description",
]

DTYPE_NAMES: tuple[str, ...] = ("fp32", "bf16", "fp16")
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
PURPOSES: tuple[str, ...] = ("heatmaps", "models", "training")
_CUDA_AUTO = {"heatmaps": "fp16", "models": "bf16", "training": "bf16"}
# Inference only: training on a CPU is for small checks, where fp32 is the reference.
_CPU_BF16_PURPOSES = ("heatmaps", "models")


def resolve_device(device: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto``/None -> ``cuda:<local_rank>`` when CUDA is available, else the CPU.

    Raises :class:`~mammokit.errors.UsageError` when CUDA is asked for and not available, or the
    name is not a device.
    """
    import torch

    if device is None or device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {str(device)!r} requested but CUDA is not available (use --device cpu)")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    elif dev.type != "cpu":
        raise UsageError(f"device {str(device)!r} is not supported; use auto, cpu or cuda[:N]")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, purpose: str) -> torch.dtype:
    """The compute dtype for ``purpose`` (``heatmaps``, ``models``, ``training``) on ``device``.

    ``dtype``: ``auto``/None (the table in the module docstring), ``fp32``, ``bf16``, ``fp16``
    (also ``float32``, ``bfloat16``, ``float16``) or a torch dtype.
    """
    import torch

    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}; expected one of {PURPOSES}")
    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if isinstance(dtype, torch.dtype):
        if dtype not in table.values():
            raise UsageError(f"dtype must be fp32, bf16 or fp16, got {dtype}")
        return dtype
    if dtype is None or dtype == "auto":
        if torch.device(device).type == "cuda":
            return table[_CUDA_AUTO[purpose]]
        if purpose in _CPU_BF16_PURPOSES and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    name = _ALIASES.get(str(dtype), str(dtype))
    if name not in table:
        raise UsageError(f"unknown dtype {dtype!r}; choose auto, {', '.join(DTYPE_NAMES)}")
    return table[name]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"`` (the names the options and the metadata use)."""
    return str(dtype).replace("torch.", "").replace("float32", "fp32").replace("bfloat16", "bf16").replace(
        "float16", "fp16")


def autocast(device: torch.device, dtype: torch.dtype):
    """``torch.autocast`` to ``dtype`` on ``device``; a no-op context for fp32. On CUDA, fp32 also
    switches TF32 off for convolutions, so fp32 means the fp32 function (cuDNN would otherwise
    use TF32 by default)."""
    import torch

    if dtype == torch.float32:
        if torch.device(device).type == "cuda":
            return torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16), read from the CPU
    flags (Linux ``/proc/cpuinfo``) or, elsewhere, torch's reported CPU capability."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            found = cpuinfo_has_bf16(f.read())
        if found is not None:
            return found
    except OSError:
        pass
    try:
        import torch

        return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # noqa: BLE001 - capability probing must never fail a job
        return False


def cpuinfo_has_bf16(cpuinfo: str) -> bool | None:
    """Whether the first ``flags`` line of a ``/proc/cpuinfo`` text lists ``amx_bf16`` or
    ``avx512_bf16``; None when it has no flags line."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool({"amx_bf16", "avx512_bf16"} & set(line.split(":", 1)[1].split()))
    return None


def device_description(device: torch.device) -> str:
    """``"cpu (2 threads)"`` or ``"cuda:0 (NVIDIA H100 80GB HBM3)"``, for logs and metadata."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
