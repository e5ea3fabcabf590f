"""Peak extra memory of one call, from the allocator events the profiler records.

Shared API: ``measure_memory(call, device) -> dict`` with ``peak_extra_bytes``
and ``largest_alloc_bytes``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from typing import Callable, List, Tuple

import torch

from .timing import sync


@contextlib.contextmanager
def quiet_stderr():
    """Kineto prints start/stop chatter on fd 2; silence it around one profiled call."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # pytest capture etc.
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _events_from_trace(prof) -> List[Tuple[float, int, str]]:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as fh:
            trace = json.load(fh)
    events = []
    for e in trace.get("traceEvents", []):
        if e.get("name") == "[memory]":
            a = e.get("args", {})
            dev = "DeviceType.CPU" if a.get("Device Type", 0) == 0 else "DeviceType.CUDA"
            events.append((float(e["ts"]), int(a.get("Bytes", 0)), dev))
    return events


def memory_events(prof) -> List[Tuple[float, int, str]]:
    """(time, bytes, device type) of every allocator event the profiler saw (frees are negative)."""
    try:
        return [(e.start_ns(), e.nbytes(), str(e.device_type()))
                for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:  # an older profiler: read the exported trace instead
        return _events_from_trace(prof)


def measure_memory(call: Callable, device: torch.device) -> dict:
    """Peak bytes allocated above the start of one call, and the largest single allocation.

    The allocator events are replayed in time order; memory that outlives the
    call (outputs, gradients) counts. Allocations that bypass PyTorch's
    allocator are not seen. On CUDA the peak is
    ``torch.cuda.max_memory_allocated()`` minus the bytes allocated before.
    """
    from torch.profiler import ProfilerActivity, profile

    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    with quiet_stderr():
        with profile(activities=activities, profile_memory=True) as prof:
            res = call()
            sync(device)
    want = "DeviceType.CUDA" if device.type == "cuda" else "DeviceType.CPU"
    events = sorted(e for e in memory_events(prof) if e[2] == want)
    cur = peak = largest = 0
    for _, nbytes, _ in events:
        cur += nbytes
        peak = max(peak, cur)
        largest = max(largest, nbytes)
    result = {"peak_extra_bytes": peak, "largest_alloc_bytes": largest, "n_alloc_events": len(events),
              "method": "profiler allocator events"}
    if device.type == "cuda":
        result["peak_extra_bytes"] = torch.cuda.max_memory_allocated(device) - base
        result["method"] = "torch.cuda.max_memory_allocated delta (largest alloc from profiler)"
    del res
    return result
