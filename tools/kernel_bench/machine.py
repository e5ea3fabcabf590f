"""What the run ran on, and how busy the machine was.

Shared API: ``machine_info(device) -> dict``, ``loadavg() -> list | None``,
``busy_note(machine, load_end) -> str | None``.
"""

from __future__ import annotations

import os
import platform
from typing import List, Optional

import torch

from attn2scale import ops


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> Optional[List[float]]:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _peak_dram_gbps(props) -> Optional[float]:
    # DDR: two transfers per clock; the properties give kHz and bits
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9 if clock_khz and bus_bits else None


def machine_info(device: torch.device) -> dict:
    """CPU, cores, torch, platform, the extension's state, load average at the call; the GPU on CUDA."""
    info = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "extension_loaded": ops.extension_available(),
        "loadavg_at_start": loadavg(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info["gpu"] = p.name
        info["cuda_kernels"] = ops.cuda_kernels_available()
        info["peak_dram_gbps"] = _peak_dram_gbps(p)
    return info


def busy_note(machine: dict, load_end: Optional[List[float]]) -> Optional[str]:
    """A note when other processes kept more than half the cores busy as the run started."""
    start, cores = machine.get("loadavg_at_start"), machine.get("logical_cores")
    if not (start and cores and start[0] > 0.5 * cores):
        return None
    end = f"{load_end[0]:.2f}" if load_end else "n/a"
    return (f"Other processes were busy: 1-minute load average {start[0]:.2f} when the run started "
            f"({end} at the end, this run included) on {cores} cores.")


def setup_device(name: str, threads: int):
    """``(device, machine info)`` for a run: intra-op threads set when given, CUDA required when asked."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    return device, machine_info(device)
