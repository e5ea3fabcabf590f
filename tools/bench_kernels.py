#!/usr/bin/env python
"""Microbenchmark of the fused score-map ops against stock PyTorch.

For each case three implementations are timed:

* **eager**    - what a user would write with stock PyTorch:
  ``F.interpolate(mode="bilinear", align_corners=True)`` per scale, then
  ``torch.softmax(logits, 1)`` and a weighted sum (attention),
  ``torch.stack(...).max(0)`` (max) or ``torch.stack(...).mean(0)`` (avg);
  ``F.interpolate(...).argmax(1)`` for the labels.
* **compiled** - ``torch.compile(eager_function, dynamic=False)`` (default
  inductor backend). The first call (compilation, forward and backward) is
  timed separately as "compile s" and excluded from the timings.
* **fused**    - the ``attn2scale.ops`` API (``ops.scale_merge``,
  ``ops.upsample_argmax``, ``ops.interp``).

Before timing, every case is run once per implementation and the results are
compared against eager (outputs and gradients ``allclose``, labels equal up to
exact near-ties) and the verdict is recorded.

Timing: ``time.perf_counter`` around blocks of calls (device synchronised on
CUDA) after warm-up, the three implementations taking turns sample by sample;
the median and the inter-quartile range over the repeats are reported (the
minimum too, in the JSON). "fwd" runs under ``torch.no_grad()``; "fwd+bwd" runs the forward
with autograd and ``torch.autograd.grad`` of the output (with a fixed random
upstream gradient) w.r.t. the score maps and the logits.

Peak extra memory: on CPU, one call runs under
``torch.profiler.profile(profile_memory=True)``; the allocator events
recorded by the profiler (every tensor allocation and free made by ATen, the
extension and inductor-generated code) are replayed in time order and the
highest running total above the level at the start of the call is reported,
together with the largest single allocation. Memory that outlives the call
(the outputs, the gradients) counts. Allocations that bypass the PyTorch
allocator (e.g. stack or ``malloc`` scratch inside a kernel) are not seen. On
CUDA ``torch.cuda.max_memory_allocated()`` minus the allocated bytes before
the call is reported instead (the profiler still gives the largest single
allocation).

Bandwidth: a minimal-traffic model (forward: read the inputs once, write the
output once; backward: read the upstream gradient and the inputs, write the
input gradients; labels as int64) divided by the median time; on CUDA also as a
fraction of the device's peak DRAM bandwidth.

Usage::

    python tools/bench_kernels.py [--quick] [--device cpu|cuda] [--json out.json]
                                  [--markdown docs/benchmarks.md] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
try:
    import attn2scale  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(REPO))
    import attn2scale  # noqa: F401

import torch
import torch.nn.functional as F

from attn2scale import ops

IMPLS = ("eager", "compiled", "fused")

# The issue's targets (fused time as a fraction of the baseline's).
TARGET_ATTENTION = 0.10  # attention scale_merge fwd+bwd vs eager and vs compiled
TARGET_ARGMAX = 0.10  # upsample_argmax vs compiled, and no N x C x H x W allocation
TARGET_MAXAVG = 0.25  # max / avg scale_merge fwd+bwd vs eager


# --------------------------------------------------------------------------
# Baselines: stock PyTorch, as a user would write them.


def _resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def eager_attention(scores: List[torch.Tensor], logits: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    w = torch.softmax(logits, 1)
    out = None
    for s, p in enumerate(scores):
        term = w[:, s : s + 1] * _resize(p, size)
        out = term if out is None else out + term
    return out


def eager_max(scores: List[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
    return torch.stack([_resize(p, size) for p in scores]).max(0).values


def eager_avg(scores: List[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
    return torch.stack([_resize(p, size) for p in scores]).mean(0)


def eager_upsample_argmax(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return _resize(x, size).argmax(1)


def eager_interp(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return _resize(x, size)


# --------------------------------------------------------------------------
# Cases.


@dataclass
class Case:
    """One benchmark case: inputs, the three implementations, the passes."""

    name: str
    op: str  # "scale_merge[attention]", "upsample_argmax", "interp", ...
    passes: Tuple[str, ...]  # subset of ("fwd", "fwd+bwd")
    shapes: Dict[str, object]  # printable description
    make_args: Callable[[torch.device, torch.Generator], tuple]
    eager: Callable
    fused: Callable
    grad_args: Callable[[tuple], List[torch.Tensor]] = None  # leaves for fwd+bwd
    labels: bool = False
    full_map_bytes: Optional[int] = None  # N*C*H*W*elem (upsample_argmax)
    shape_text: str = ""


def _randn(gen, device, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float32).to(device)


def _merge_case(name, mode, n, c, sides, out_side) -> Case:
    size = (out_side, out_side)
    s = len(sides)

    def make_args(device, gen):
        scores = [_randn(gen, device, n, c, h, h) for h in sides]
        if mode == "attention":
            return (scores, _randn(gen, device, n, s, out_side, out_side))
        return (scores,)

    if mode == "attention":
        eager = lambda scores, logits: eager_attention(scores, logits, size)  # noqa: E731
        fused = lambda scores, logits: ops.scale_merge(scores, size, "attention", logits=logits)  # noqa: E731
        grad_args = lambda args: list(args[0]) + [args[1]]  # noqa: E731
    else:
        eager_fn = eager_max if mode == "max" else eager_avg
        eager = lambda scores, f=eager_fn: f(scores, size)  # noqa: E731
        fused = lambda scores, m=mode: ops.scale_merge(scores, size, m)  # noqa: E731
        grad_args = lambda args: list(args[0])  # noqa: E731
    text = f"N={n} C={c} {'/'.join(map(str, sides))}->{out_side}" + (f" logits N={n} S={s}" if mode == "attention" else "")
    return Case(
        name=name, op=f"scale_merge[{mode}]", passes=("fwd", "fwd+bwd"),
        shapes={"N": n, "C": c, "scales": list(sides), "out": list(size)},
        make_args=make_args, eager=eager, fused=fused, grad_args=grad_args, shape_text=text,
    )


def _argmax_case(name, n, c, side, out_side) -> Case:
    size = (out_side, out_side)
    return Case(
        name=name, op="upsample_argmax", passes=("fwd",),
        shapes={"N": n, "C": c, "in": [side, side], "out": list(size)},
        make_args=lambda device, gen: (_randn(gen, device, n, c, side, side),),
        eager=lambda x: eager_upsample_argmax(x, size),
        fused=lambda x: ops.upsample_argmax(x, size),
        labels=True, full_map_bytes=n * c * out_side * out_side * 4,
        shape_text=f"N={n} C={c} {side}->{out_side}",
    )


def _interp_case(name, n, c, side, out_side, passes) -> Case:
    size = (out_side, out_side)
    return Case(
        name=name, op="interp", passes=passes,
        shapes={"N": n, "C": c, "in": [side, side], "out": list(size)},
        make_args=lambda device, gen: (_randn(gen, device, n, c, side, side),),
        eager=lambda x: eager_interp(x, size),
        fused=lambda x: ops.interp(x, size),
        grad_args=lambda args: [args[0]],
        shape_text=f"N={n} C={c} {side}->{out_side}",
    )


def build_cases(tiny: bool = False) -> List[Case]:
    """The benchmark cases; ``tiny`` keeps the names and shrinks every shape (tests)."""
    if tiny:
        tr, co = dict(n=2, c=3), dict(n=2, c=5)
        sides, out = (9, 7, 5), 9
        am = [("upsample_argmax_c21", 1, 4, 5, 17), ("upsample_argmax_c81", 1, 6, 6, 21), ("upsample_argmax_c150", 1, 7, 4, 13)]
        it_train, it_inf = (2, 3, 5, 9), (1, 3, 6, 21)
    else:
        tr, co = dict(n=10, c=21), dict(n=3, c=81)
        sides, out = (41, 31, 21), 41
        am = [("upsample_argmax_c21", 1, 21, 65, 513), ("upsample_argmax_c81", 1, 81, 81, 641), ("upsample_argmax_c150", 1, 150, 64, 512)]
        it_train, it_inf = (10, 21, 21, 41), (1, 21, 65, 513)
    cases = [
        _merge_case("merge_attention_c21", "attention", tr["n"], tr["c"], sides, out),
        _merge_case("merge_max_c21", "max", tr["n"], tr["c"], sides, out),
        _merge_case("merge_avg_c21", "avg", tr["n"], tr["c"], sides, out),
        _merge_case("merge_attention_c81", "attention", co["n"], co["c"], sides, out),
    ]
    cases += [_argmax_case(*a) for a in am]
    cases.append(_interp_case("interp_train", *it_train, passes=("fwd", "fwd+bwd")))
    cases.append(_interp_case("interp_infer", *it_inf, passes=("fwd",)))
    return cases


# --------------------------------------------------------------------------
# Running one implementation of one case.


def _nbytes(ts) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


def _flat_inputs(args) -> List[torch.Tensor]:
    out = []
    for a in args:
        out.extend(a if isinstance(a, (list, tuple)) else [a])
    return out


def traffic_bytes(case: Case, args, pass_name: str) -> int:
    """Minimal-traffic model: read inputs + write output (+ backward: read grad_out and inputs, write grads)."""
    with torch.no_grad():
        out = case.eager(*args)
    ins = _flat_inputs(args)
    fwd = _nbytes(ins) + _nbytes([out])
    if pass_name == "fwd":
        return fwd
    leaves = case.grad_args(args)
    return fwd + _nbytes([out]) + _nbytes(ins) + _nbytes(leaves)


def make_callable(case: Case, fn: Callable, args, pass_name: str, grad_out: Optional[torch.Tensor]):
    """A zero-argument callable doing one forward (or forward+backward) pass; returns its results."""
    if pass_name == "fwd":

        def call():
            with torch.no_grad():
                return (fn(*args),)

        return call
    leaves = case.grad_args(args)

    def call():
        out = fn(*args)
        grads = torch.autograd.grad(out, leaves, grad_out)
        return (out,) + tuple(grads)

    return call


def prepare_args(case: Case, device: torch.device, pass_name: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    args = case.make_args(device, gen)
    grad_out = None
    if pass_name == "fwd+bwd":
        for t in case.grad_args(args):
            t.requires_grad_(True)
        with torch.no_grad():
            out_shape = case.eager(*args).shape
        grad_out = _randn(gen, device, *out_shape)
    return args, grad_out


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(samples: List[float]) -> dict:
    samples = sorted(samples)
    if len(samples) >= 2:
        q = statistics.quantiles(samples, n=4, method="inclusive")
        q1, q3 = q[0], q[2]
    else:
        q1 = q3 = samples[0]
    return {"median_s": statistics.median(samples), "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1,
            "min_s": samples[0], "repeats": len(samples), "samples_s": samples}


def time_interleaved(calls: Dict[str, Callable], device, warmup: int, repeats: int, min_sample_s: float) -> dict:
    """Median and IQR (seconds per call) of each callable over ``repeats`` samples.

    Each sample is ``number`` back-to-back calls (``number`` chosen so a sample
    lasts at least ``min_sample_s``). The implementations take turns, sample by
    sample (rotating which goes first), so that load from other processes
    falls on all of them alike instead of on whichever ran at a bad moment.
    """
    names = list(calls)
    number = {}
    for k in names:
        for _ in range(warmup):
            calls[k]()
        _sync(device)
        t0 = time.perf_counter()
        calls[k]()
        _sync(device)
        once = time.perf_counter() - t0
        number[k] = max(1, int(math.ceil(min_sample_s / max(once, 1e-7)))) if min_sample_s > 0 else 1
    samples = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            call, n = calls[k], number[k]
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            _sync(device)
            samples[k].append((time.perf_counter() - t0) / n)
    return {k: dict(_stats(samples[k]), number=number[k]) for k in names}


@contextlib.contextmanager
def _quiet_stderr():
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


def _memory_events(prof) -> List[Tuple[int, int, str]]:
    """(time_ns, bytes, device type) of every allocator event the profiler saw."""
    events = []
    try:
        for e in prof.profiler.kineto_results.events():
            if e.name() == "[memory]":
                events.append((e.start_ns(), e.nbytes(), str(e.device_type())))
        return events
    except AttributeError:  # fall back to the exported trace
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            prof.export_chrome_trace(path)
            with open(path) as fh:
                trace = json.load(fh)
        for e in trace.get("traceEvents", []):
            if e.get("name") == "[memory]":
                a = e.get("args", {})
                dev = "DeviceType.CPU" if a.get("Device Type", 0) == 0 else "DeviceType.CUDA"
                events.append((float(e["ts"]), int(a.get("Bytes", 0)), dev))
        return events


def measure_memory(call, device: torch.device) -> dict:
    """Peak bytes allocated above the start of one call, and the largest single allocation."""
    from torch.profiler import ProfilerActivity, profile

    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    with _quiet_stderr():
        with profile(activities=activities, profile_memory=True) as prof:
            res = call()
            _sync(device)
    want = "DeviceType.CUDA" if device.type == "cuda" else "DeviceType.CPU"
    events = sorted(e for e in _memory_events(prof) if e[2] == want)
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


def compare(case: Case, args, ref: tuple, got: tuple, pass_name: str) -> dict:
    """Compare one implementation's results with eager's."""
    if case.labels:
        (lab_ref,), (lab_got,) = ref, got
        mism = lab_ref != lab_got
        n_mism = int(mism.sum())
        near_tie = True
        if n_mism:
            # a mismatch is acceptable only where eager's top-2 scores tie to rounding
            with torch.no_grad():
                up = _resize(args[0], tuple(lab_ref.shape[-2:]))
                v_ref = up.gather(1, lab_ref[:, None])[:, 0]
                v_got = up.gather(1, lab_got[:, None])[:, 0]
                gap = (v_ref - v_got).abs()[mism]
                near_tie = bool((gap <= 1e-5 * (1 + v_ref.abs()[mism])).all())
        return {"ok": n_mism == 0 or near_tie, "labels_equal": n_mism == 0, "n_label_mismatch": n_mism,
                "mismatches_are_near_ties": near_tie, "max_abs_diff": None}
    names = ["out"] if pass_name == "fwd" else ["out"] + [f"grad{i}" for i in range(len(ref) - 1)]
    worst, ok = 0.0, True
    for nm, a, b in zip(names, ref, got):
        a, b = a.detach().float(), b.detach().float()
        if a.shape != b.shape:
            return {"ok": False, "error": f"{nm}: shape {tuple(b.shape)} != {tuple(a.shape)}"}
        d = float((a - b).abs().max()) if a.numel() else 0.0
        worst = max(worst, d)
        ok &= bool(torch.allclose(b, a, rtol=1e-4, atol=1e-5 if nm == "out" else 1e-4))
    return {"ok": ok, "max_abs_diff": worst, "compared": names, "rtol": 1e-4, "atol_out": 1e-5, "atol_grad": 1e-4}


def run_case_pass(case: Case, pass_name: str, device: torch.device, cfg: argparse.Namespace, log) -> dict:
    args, grad_out = prepare_args(case, device, pass_name)
    impls: Dict[str, Callable] = {"eager": case.eager, "fused": case.fused}
    compile_s = None
    if cfg.compile:
        torch._dynamo.reset()
        impls["compiled"] = torch.compile(case.eager, dynamic=False)

    calls = {k: make_callable(case, f, args, pass_name, grad_out) for k, f in impls.items()}
    row = {"case": case.name, "op": case.op, "pass": pass_name, "shape": case.shape_text, "shapes": case.shapes,
           "traffic_bytes": traffic_bytes(case, args, pass_name)}
    if case.full_map_bytes is not None:
        row["full_map_bytes"] = case.full_map_bytes

    # correctness once (and compilation for the compiled one, timed)
    results = {}
    for k in ("eager", "fused", "compiled"):
        if k not in calls:
            continue
        t0 = time.perf_counter()
        results[k] = calls[k]()
        _sync(device)
        if k == "compiled":
            compile_s = time.perf_counter() - t0
    row["correct"] = {k: compare(case, args, results["eager"], results[k], pass_name) for k in results if k != "eager"}
    del results

    timed = time_interleaved({k: calls[k] for k in IMPLS if k in calls}, device, cfg.warmup, cfg.repeats,
                             cfg.min_sample_s)
    for k in IMPLS:
        if k not in calls:
            row[k] = None
            continue
        t = timed[k]
        t["memory"] = measure_memory(calls[k], device)
        t["gbps"] = row["traffic_bytes"] / t["median_s"] / 1e9
        row[k] = t
    if compile_s is not None and row["compiled"] is not None:
        row["compile_s"] = max(0.0, compile_s - row["compiled"]["median_s"])
    fused = row["fused"]["median_s"]
    row["fused_over_eager"] = fused / row["eager"]["median_s"]
    row["fused_over_compiled"] = fused / row["compiled"]["median_s"] if row.get("compiled") else None
    if device.type == "cuda" and cfg.peak_gbps:
        row["fused_frac_peak_bw"] = row["fused"]["gbps"] / cfg.peak_gbps
    log(format_row(row))
    return row


# --------------------------------------------------------------------------
# Reporting.


def _ms(t) -> str:
    return "-" if t is None else f"{t['median_s'] * 1e3:.3f}"


def _ms_iqr(t) -> str:
    return "-" if t is None else f"{t['median_s'] * 1e3:.3f} ±{t['iqr_s'] * 1e3 / 2:.3f}"


def _ratio(x) -> str:
    return "-" if x is None else f"{x:.3f}x"


def _mib(t) -> str:
    if t is None:
        return "-"
    b = t["memory"]["peak_extra_bytes"] / 2**20
    return f"{b:.2f}" if b >= 1 else f"{b:.3g}"


def _ok(row) -> str:
    c = row["correct"].get("fused", {})
    return "ok" if c.get("ok") else "MISMATCH"


TABLE_HEADER = (f"{'case':<22} {'op':<23} {'pass':<8} {'eager ms':>10} {'compiled ms':>12} {'fused ms':>10} "
                f"{'f/eager':>8} {'f/comp':>8} {'mem MiB e/c/f':>22} {'fused GB/s':>10} {'check':>8}")


def format_row(row) -> str:
    mem = f"{_mib(row['eager'])}/{_mib(row['compiled'])}/{_mib(row['fused'])}"
    return (f"{row['case']:<22} {row['op']:<23} {row['pass']:<8} {_ms(row['eager']):>10} {_ms(row['compiled']):>12} "
            f"{_ms(row['fused']):>10} {_ratio(row['fused_over_eager']):>8} {_ratio(row['fused_over_compiled']):>8} "
            f"{mem:>22} {row['fused']['gbps']:>10.2f} {_ok(row):>8}")


def evaluate_targets(rows: List[dict]) -> List[dict]:
    """The issue's targets, one verdict per relevant row: PASS, MISS or UNTESTED (no compiled run)."""
    out = []
    for r in rows:
        fe, fc = r["fused_over_eager"], r["fused_over_compiled"]
        if r["op"] == "scale_merge[attention]" and r["pass"] == "fwd+bwd":
            target = f"attention scale_merge fwd+bwd <= {TARGET_ATTENTION}x eager and <= {TARGET_ATTENTION}x compiled"
            if fc is None:
                verdict = "UNTESTED" if fe <= TARGET_ATTENTION else "MISS"
            else:
                verdict = "PASS" if fe <= TARGET_ATTENTION and fc <= TARGET_ATTENTION else "MISS"
            measured = f"{fe:.3f}x eager, " + ("no compiled run" if fc is None else f"{fc:.3f}x compiled")
        elif r["op"] == "upsample_argmax":
            target = f"upsample_argmax <= {TARGET_ARGMAX}x compiled, no N*C*H*W allocation"
            largest = r["fused"]["memory"]["largest_alloc_bytes"]
            no_full = largest < r["full_map_bytes"]
            if fc is None:
                verdict = "UNTESTED" if no_full else "MISS"
            else:
                verdict = "PASS" if fc <= TARGET_ARGMAX and no_full else "MISS"
            measured = (("no compiled run" if fc is None else f"{fc:.3f}x compiled") +
                        f"; largest fused allocation {largest / 2**20:.2f} MiB vs N*C*H*W*4 = "
                        f"{r['full_map_bytes'] / 2**20:.2f} MiB")
        elif r["op"] in ("scale_merge[max]", "scale_merge[avg]") and r["pass"] == "fwd+bwd":
            target = f"{r['op']} fwd+bwd <= {TARGET_MAXAVG}x eager"
            verdict = "PASS" if fe <= TARGET_MAXAVG else "MISS"
            measured = f"{fe:.3f}x eager"
        else:
            continue
        out.append({"case": r["case"], "pass": r["pass"], "target": target, "measured": measured, "verdict": verdict})
    return out


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu_model": cpu,
        "logical_cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "extension_loaded": ops.extension_available(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info["gpu"] = p.name
        info["cuda_kernels"] = ops.cuda_kernels_available()
        clock_khz, bus_bits = getattr(p, "memory_clock_rate", 0), getattr(p, "memory_bus_width", 0)
        info["peak_dram_gbps"] = 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9 if clock_khz and bus_bits else None
    return info


def to_markdown(report: dict) -> str:
    m, cfg = report["machine"], report["config"]
    lines = [
        "# Fused score-map ops: microbenchmark",
        "",
        f"Generated by `tools/bench_kernels.py` on {report['date']}.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['logical_cores']} logical cores ({m['cores_available']} available to the process)",
        f"- torch {m['torch_version']}, Python {m['python']}, {m['torch_threads']} intra-op threads, device `{m['device']}`",
        f"- platform: {m['platform']}",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in m['loadavg_at_start']) if m.get('loadavg_at_start') else 'n/a'}",
    ]
    if "gpu" in m:
        lines.append(f"- GPU: {m['gpu']} (peak DRAM bandwidth {m['peak_dram_gbps'] or 'unknown'} GB/s), "
                     f"CUDA kernels built: {m['cuda_kernels']}")
    lines += [
        "",
        "## Command",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"Warm-up {cfg['warmup']} calls, {cfg['repeats']} timed samples per implementation (each sample at least "
        f"{cfg['min_sample_s'] * 1e3:.0f} ms of back-to-back calls; eager, compiled and fused take turns sample by "
        f"sample), median ± half the inter-quartile range. "
        f"Whole run: {report['total_s']:.0f} s.",
        "",
        "## What is measured",
        "",
        "- **eager**: stock PyTorch (`F.interpolate(mode='bilinear', align_corners=True)` per scale; "
        "`torch.softmax(logits, 1)` and a weighted sum for attention, `torch.stack(...).max(0)` for max, "
        "`torch.stack(...).mean(0)` for avg; `F.interpolate(...).argmax(1)` for labels).",
        "- **compiled**: `torch.compile(eager, dynamic=False)` (inductor); compile time (first call minus a "
        "steady call) is listed separately and not in the timings (the first compile of the run also pays for "
        "dynamo/inductor start-up). The inductor cache directory was "
        + ("a fresh empty one, so compile times are cold." if cfg["fresh_inductor_cache"] else
           "the default one, so compile times may be warm (cached)."),
        "- **fused**: `attn2scale.ops.scale_merge` / `ops.upsample_argmax` / `ops.interp`.",
        "- **fwd** runs under `torch.no_grad()`; **fwd+bwd** runs the forward with autograd and "
        "`torch.autograd.grad` w.r.t. the score maps and the logits with a fixed upstream gradient.",
        "- **peak extra MiB**: "
        + ("`torch.cuda.max_memory_allocated()` minus the bytes allocated before one call." if m["device"].startswith("cuda")
           else "the allocator events recorded by `torch.profiler.profile(profile_memory=True)` for one call, "
                "replayed in order: the highest running total above the start of the call, outputs and "
                "gradients included (allocations outside PyTorch's allocator are not seen)."),
        "- **GB/s**: minimal-traffic model (read inputs + write output; backward adds read upstream gradient and "
        "inputs, write input gradients) / median time.",
        "- Every case is checked once before timing: fused and compiled vs eager, outputs and gradients "
        "`allclose(rtol=1e-4, atol=1e-5/1e-4)`, labels equal (mismatches allowed only at exact near-ties, counted).",
        "",
        "## Results",
        "",
        "| case | shape | op | pass | eager ms | compiled ms | fused ms | fused/eager | fused/compiled | "
        "compile s | peak extra MiB eager | compiled | fused | fused GB/s | check |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        check = "; ".join(
            f"{k}: {'ok' if v.get('ok') else 'MISMATCH'}"
            + (f" (max diff {v['max_abs_diff']:.1e})" if v.get("max_abs_diff") is not None else "")
            + (f" ({v['n_label_mismatch']} label mismatches)" if v.get("n_label_mismatch") else "")
            for k, v in r["correct"].items())
        cs = r.get("compile_s")
        lines.append(
            f"| {r['case']} | {r['shape']} | {r['op']} | {r['pass']} | {_ms_iqr(r['eager'])} | {_ms_iqr(r['compiled'])} | "
            f"{_ms_iqr(r['fused'])} | {_ratio(r['fused_over_eager'])} | {_ratio(r['fused_over_compiled'])} | "
            f"{'-' if cs is None else f'{cs:.1f}'} | {_mib(r['eager'])} | {_mib(r['compiled'])} | {_mib(r['fused'])} | "
            f"{r['fused']['gbps']:.2f}" + (f" ({r['fused_frac_peak_bw'] * 100:.1f}% of peak)" if "fused_frac_peak_bw" in r else "")
            + f" | {check} |")
    lines += ["", "## Targets", "", "| case | pass | target | measured | verdict |", "|---|---|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['case']} | {t['pass']} | {t['target']} | {t['measured']} | **{t['verdict']}** |")
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Entry point.


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--json", type=Path, help="write the full results here")
    p.add_argument("--markdown", type=Path, help="write a markdown report here")
    p.add_argument("--threads", type=int, help="torch.set_num_threads(N)")
    p.add_argument("--repeats", type=int, help="timed samples per implementation (default 15, --quick 3)")
    p.add_argument("--warmup", type=int, help="untimed calls first (default 3, --quick 1)")
    p.add_argument("--min-sample-ms", type=float, help="each sample repeats the call up to this long (default 20, --quick 0)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--inductor-cache", choices=("fresh", "default"), default="fresh",
                   help="fresh: compile into an empty temporary cache (cold compile times, the default)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny shapes, for the tests
    cfg = p.parse_args(argv)
    cfg.repeats = cfg.repeats or (3 if cfg.quick else 15)
    cfg.warmup = cfg.warmup if cfg.warmup is not None else (1 if cfg.quick else 3)
    ms = cfg.min_sample_ms if cfg.min_sample_ms is not None else (0.0 if cfg.quick else 20.0)
    cfg.min_sample_s = ms / 1e3
    return cfg


def main(argv: Optional[Sequence[str]] = None, log=print) -> dict:
    cfg = parse_args(argv)
    start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    notes = []
    tmp_cache = None
    if cfg.compile and cfg.inductor_cache == "fresh":
        import tempfile

        tmp_cache = tempfile.TemporaryDirectory(prefix="bench_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tmp_cache.name
    machine = machine_info(device)
    cfg.peak_gbps = machine.get("peak_dram_gbps")
    if not ops.extension_available():
        notes.append("The compiled extension did not load: 'fused' is the pure-PyTorch reference.")
    if device.type == "cuda" and not machine.get("cuda_kernels"):
        notes.append("The extension has no CUDA kernels: 'fused' on CUDA is the pure-PyTorch reference fallback.")
    for n in notes:
        log(f"WARNING: {n}")

    cases = build_cases(tiny=cfg.tiny)
    if cfg.cases:
        wanted = set(cfg.cases.split(","))
        unknown = wanted - {c.name for c in cases}
        if unknown:
            raise SystemExit(f"unknown case(s): {sorted(unknown)}")
        cases = [c for c in cases if c.name in wanted]

    log(f"{machine['cpu_model']} | {machine['logical_cores']} cores | torch {machine['torch_version']} | "
        f"{machine['torch_threads']} threads | device {device}")
    log(TABLE_HEADER)
    rows = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # inductor chatter, not ours
            for case in cases:
                for pass_name in case.passes:
                    rows.append(run_case_pass(case, pass_name, device, cfg, log))
    finally:
        if tmp_cache is not None:
            tmp_cache.cleanup()
    total = time.perf_counter() - start
    bad = [f"{r['case']} {r['pass']} {k}" for r in rows for k, v in r["correct"].items() if not v.get("ok")]
    if bad:
        notes.append("Results differing from eager: " + ", ".join(bad))
    load_end = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    load_start = machine["loadavg_at_start"]
    if load_start and machine["logical_cores"] and load_start[0] > 0.5 * machine["logical_cores"]:
        notes.append(f"Other processes were busy: 1-minute load average {load_start[0]:.2f} when the run started "
                     f"({load_end[0]:.2f} at the end, this run included) on {machine['logical_cores']} cores.")
    spread = [f"{r['case']} {r['pass']} {k}" for r in rows for k in IMPLS
              if r.get(k) and r[k]["iqr_s"] > 0.3 * r[k]["median_s"]]
    n_timed = sum(1 for r in rows for k in IMPLS if r.get(k))
    if n_timed and len(spread) > 0.2 * n_timed:
        notes.append(f"Timings are noisy: {len(spread)} of {n_timed} measurements have an inter-quartile range "
                     f"above 30% of their median; re-run on a quiet machine before drawing conclusions.")
    argv_list = list(sys.argv[1:] if argv is None else argv)
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python tools/bench_kernels.py " + " ".join(shlex.quote(a) for a in argv_list),
        "machine": machine,
        "config": {"quick": cfg.quick, "tiny": cfg.tiny, "repeats": cfg.repeats, "warmup": cfg.warmup,
                   "min_sample_s": cfg.min_sample_s, "compile": cfg.compile,
                   "fresh_inductor_cache": cfg.compile and cfg.inductor_cache == "fresh"},
        "rows": rows,
        "targets": evaluate_targets(rows),
        "notes": notes,
        "total_s": total,
    }
    report["machine"]["loadavg_at_end"] = load_end
    log("")
    for t in report["targets"]:
        log(f"{t['verdict']:<8} {t['case']} {t['pass']}: {t['target']} -- {t['measured']}")
    for n in notes:
        log(f"NOTE: {n}")
    log(f"total {total:.1f} s")
    if cfg.json:
        cfg.json.parent.mkdir(parents=True, exist_ok=True)
        cfg.json.write_text(json.dumps(report, indent=1))
    if cfg.markdown:
        cfg.markdown.parent.mkdir(parents=True, exist_ok=True)
        cfg.markdown.write_text(to_markdown(report))
    return report


if __name__ == "__main__":
    main()
