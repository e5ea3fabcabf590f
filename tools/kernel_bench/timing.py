"""Wall-clock timing that other processes' load falls on evenly, and the
machine's copy bandwidth (the yardstick of the minimal-traffic floor).

Shared API: ``sync(device)``, ``stats(samples)``,
``time_interleaved(calls, device, warmup, repeats, min_sample_s)``,
``copy_bandwidth(device, nbytes, repeats)``.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import tempfile
import time
import warnings
from typing import Callable, Dict, Iterator, List

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stats(samples: List[float]) -> dict:
    """Median, quartiles, IQR and minimum of per-call times in seconds."""
    samples = sorted(samples)
    if len(samples) >= 2:
        q = statistics.quantiles(samples, n=4, method="inclusive")
        q1, q3 = q[0], q[2]
    else:
        q1 = q3 = samples[0]
    return {"median_s": statistics.median(samples), "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1,
            "min_s": samples[0], "repeats": len(samples), "samples_s": samples}


def _calls_per_sample(call: Callable, device, warmup: int, min_sample_s: float) -> int:
    for _ in range(warmup):
        call()
    sync(device)
    t0 = time.perf_counter()
    call()
    sync(device)
    once = time.perf_counter() - t0
    return max(1, int(math.ceil(min_sample_s / max(once, 1e-7)))) if min_sample_s > 0 else 1


def time_interleaved(calls: Dict[str, Callable], device, warmup: int, repeats: int, min_sample_s: float) -> dict:
    """Median and IQR (seconds per call) of each callable over ``repeats`` samples.

    Each sample is ``number`` back-to-back calls (``number`` chosen so a sample
    lasts at least ``min_sample_s``). The implementations take turns, sample by
    sample (rotating which goes first), so that load from other processes
    falls on all of them alike instead of on whichever ran at a bad moment.
    """
    names = list(calls)
    number = {k: _calls_per_sample(calls[k], device, warmup, min_sample_s) for k in names}
    samples = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            call, n = calls[k], number[k]
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            sync(device)
            samples[k].append((time.perf_counter() - t0) / n)
    return {k: dict(stats(samples[k]), number=number[k]) for k in names}


def copy_bandwidth(device: torch.device, nbytes: int = 64 << 20, repeats: int = 15) -> dict:
    """``dst.copy_(src)`` of two float32 buffers of ``nbytes``: GB/s counting the read and the write.

    The buffers are far larger than the caches (64 MiB by default), so this is
    what this process gets from memory right now, with its intra-op threads.
    The best of ``repeats`` copies is the bandwidth (the least disturbed by
    other processes); the median is reported too.
    """
    n = max(1, nbytes // 4)
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the pages in
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - t0)
    moved = 2 * n * 4
    return {"bytes": n * 4, "repeats": repeats, "gbps": moved / min(times) / 1e9,
            "median_gbps": moved / statistics.median(times) / 1e9}


@contextlib.contextmanager
def compile_session(compile_: bool, cache: str, prefix: str) -> Iterator[None]:
    """The block a benchmark compiles in: with ``cache == "fresh"`` an empty temporary inductor cache
    (cold compile times, as a new user sees them), and inductor's UserWarnings silenced."""
    tmp = tempfile.TemporaryDirectory(prefix=prefix) if compile_ and cache == "fresh" else None
    saved = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if tmp is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tmp.name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # inductor chatter, not ours
            yield
    finally:
        if tmp is not None:
            tmp.cleanup()
            if saved is None:  # later compiles in this process must not write into the deleted folder
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = saved
