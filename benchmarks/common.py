"""What every benchmark script writes beside its figures: the machine it ran on, and JSON
without NaN (``null`` instead, which every JSON reader accepts)."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cpu_model", "json_ready", "machine_info", "usable_cores"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int | None:
    """Cores this process may run on (its affinity), else the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def json_ready(value: Any) -> Any:
    """For ``json.dumps`` without NaN: NaN/inf -> None, tuples -> lists, numpy floats -> float."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if value != value or value in (math.inf, -math.inf) else value
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model, cores, torch and Python versions, the device, load average."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
        "device": device,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        info["torch"] = "not installed"
    if hasattr(os, "getloadavg"):
        info["load"] = [round(x, 2) for x in os.getloadavg()]
    return info
