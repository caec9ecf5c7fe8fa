"""What every benchmark script shares: the environment record, timing, result files, tables.

Benchmarks only *time* the library: the work itself is always a public mammokit function (the
one the CLI calls). Every result file records the machine (CPU / GPU model, core count, load
average before and after), the software versions and the git commit, so a figure can be traced
to the code and the machine that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def git_commit() -> str | None:
    """``<sha>`` of HEAD, with ``+dirty`` when the working tree has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def device_name(device) -> str:
    """``cpu-2core`` / ``nvidia-h100-80gb-hbm3``: a file-name-safe name of the machine."""
    import torch

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{os.cpu_count()}core"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def environment(device) -> dict[str, Any]:
    """The machine and the software: recorded in every result file."""
    import cv2
    import numpy as np
    import torch
    import torchvision

    import mammokit
    from mammokit.utils.device import cpu_has_fast_bf16

    device = torch.device(device)
    info: dict[str, Any] = {
        "device_type": device.type, "device_name": device_name(device), "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(), "cpu_fast_bf16": cpu_has_fast_bf16(),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "loadavg_start": list(os.getloadavg()),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count())
    software = {
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": np.__version__, "opencv": cv2.__version__, "mammokit": mammokit.__version__,
    }
    return {"device": info, "software": software, "git_commit": git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], device, warmup: int = 1, repeats: int = 3,
               before: Callable[[], Any] | None = None) -> dict[str, Any]:
    """``warmup`` untimed calls, then ``repeats`` timed ones (the device synchronised before each
    clock read; ``before`` runs untimed before every call, e.g. to delete the last outputs).
    Returns ``{"times", "median", "min", "first", "last"}`` (seconds; ``first`` is the first call's
    time, compilation included; ``last`` is ``fn``'s last return value)."""
    first, out, times = None, None, []
    for i in range(warmup + max(1, repeats)):
        if before is not None:
            before()
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        dt = time.perf_counter() - t0
        if first is None:
            first = dt
        if i >= warmup:
            times.append(dt)
    return {"times": times, "median": statistics.median(times), "min": min(times), "first": first, "last": out}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process and its finished children (``ru_maxrss``)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, kids)) * (1 if sys.platform == "darwin" else 1024)


def write_result(doc: dict, path: str | Path) -> Path:
    """Write ``doc`` (with ``loadavg_end`` added) as JSON, atomically."""
    from mammokit.utils.io import write_json_atomic

    doc.setdefault("environment", {}).setdefault("device", {})["loadavg_end"] = list(os.getloadavg())
    path = Path(path)
    write_json_atomic(path, doc)
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=1, default=str)
