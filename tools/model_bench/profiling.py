"""Peak memory and custom-op calls of one step, and the share of the step the
resize / merge / label ops take.

Peak memory (CPU): the allocator events ``torch.profiler`` records with
``profile_memory=True``, replayed in order: the highest running total above the
start of the step (activations, gradients and outputs the step allocates;
weights and momentum buffers, allocated before, are not counted; memory that
bypasses PyTorch's allocator is not seen). CUDA: ``torch.cuda.max_memory_allocated``
minus the bytes allocated before the step.

Breakdown (eager only: under ``torch.compile`` the ops dissolve into inductor
kernels): ``attn2scale.ops.interp`` / ``scale_merge`` / ``upsample_argmax`` are
wrapped in ``record_function`` ranges for one profiled step. Forward time is the
ranges' inclusive CPU time; backward time is the inclusive time of the autograd
nodes created inside the ranges (matched by the profiler's ``sequence_nr``,
which links a backward node to the forward op that recorded it). The share is
that time over the profiled step's wall time (profiler overhead included in both).
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Dict

import torch

import attn2scale.ops as ops_pkg
from kernel_bench.memory import memory_events, quiet_stderr
from kernel_bench.timing import sync

WRAPPED = ("interp", "scale_merge", "upsample_argmax")
RANGE_PREFIX = "a2s_op::"
BACKWARD_PREFIX = "autograd::engine::evaluate_function:"


def _peak_from_events(events) -> int:
    cur = peak = 0
    for _, nbytes, _ in sorted(events):
        cur += nbytes
        peak = max(peak, cur)
    return peak


def profile_step(call: Callable, device: torch.device) -> dict:
    """One profiled call: peak extra bytes, and how many ``attn2scale::`` custom-op calls ran
    (0 on the reference path: the check that the path switch took effect, compiled code too)."""
    from torch.profiler import ProfilerActivity, profile

    sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    with quiet_stderr(), profile(activities=acts, profile_memory=True) as prof:
        call()
        sync(device)
    want = "DeviceType.CUDA" if device.type == "cuda" else "DeviceType.CPU"
    peak = _peak_from_events([e for e in memory_events(prof) if e[2] == want])
    method = "profiler allocator events"
    if device.type == "cuda":
        peak, method = torch.cuda.max_memory_allocated(device) - base, "torch.cuda.max_memory_allocated delta"
    calls = sum(e.count for e in prof.key_averages() if e.key.startswith("attn2scale::"))
    return {"peak_extra_bytes": int(peak), "method": method, "attn2scale_op_calls": int(calls)}


@contextlib.contextmanager
def _op_ranges():
    """Wrap the package-level op functions (the models and the engine call them through
    ``attn2scale.ops``) in named profiler ranges."""
    saved = {name: getattr(ops_pkg, name) for name in WRAPPED}

    def wrap(name, fn):
        def wrapped(*args, **kwargs):
            with torch.profiler.record_function(RANGE_PREFIX + name):
                return fn(*args, **kwargs)
        return wrapped

    try:
        for name, fn in saved.items():
            setattr(ops_pkg, name, wrap(name, fn))
        yield
    finally:
        for name, fn in saved.items():
            setattr(ops_pkg, name, fn)


def _descendant_seq(ev, out: set) -> None:
    for ch in ev.cpu_children:
        if ch.sequence_nr is not None and ch.sequence_nr >= 0:
            out.add(ch.sequence_nr)
        _descendant_seq(ch, out)


def _attribute(events) -> Dict[str, dict]:
    """Per op: calls, forward and backward CPU milliseconds."""
    per: Dict[str, dict] = {n: {"calls": 0, "fwd_ms": 0.0, "bwd_ms": 0.0} for n in WRAPPED}
    seq_owner: Dict[int, str] = {}
    for ev in events:
        if ev.name.startswith(RANGE_PREFIX):
            name = ev.name[len(RANGE_PREFIX):]
            per[name]["calls"] += 1
            per[name]["fwd_ms"] += ev.cpu_time_total / 1e3
            seqs: set = set()
            _descendant_seq(ev, seqs)
            seq_owner.update({s: name for s in seqs})
    for ev in events:
        if ev.name.startswith(BACKWARD_PREFIX) and ev.sequence_nr in seq_owner:
            per[seq_owner[ev.sequence_nr]]["bwd_ms"] += ev.cpu_time_total / 1e3
    return per


def breakdown(call: Callable, device: torch.device) -> dict:
    """The ops' forward and backward time in one profiled eager step, and their share of it."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with _op_ranges(), quiet_stderr(), profile(activities=acts) as prof:
        sync(device)
        t0 = time.perf_counter()
        call()
        sync(device)
        step_ms = (time.perf_counter() - t0) * 1e3
    per = _attribute(prof.events())
    ops_ms = sum(v["fwd_ms"] + v["bwd_ms"] for v in per.values())
    return {"step_ms": step_ms, "ops": per, "ops_ms": ops_ms, "share": ops_ms / step_ms if step_ms else None,
            "device_note": "CPU time of the ops (on CUDA the launches, not the kernels)" if device.type == "cuda"
            else None}
