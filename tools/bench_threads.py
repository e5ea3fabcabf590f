#!/usr/bin/env python
"""Thread scaling of the fused CPU ops: each benchmark case of
``bench_kernels.py`` (the fused implementation only, forward and
forward+backward) timed with 1 thread and with N threads (default: every
core), in alternating rounds inside one process, so that a burst of load from
other processes hits both thread counts alike. The speedup of a round is its
1-thread time over its N-thread time; the report gives the median speedup
over the rounds and the target of issue 13 (>= 1.8x with 2 threads).

Usage::

    python tools/bench_threads.py [--threads N] [--rounds R] [--cases a,b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import torch

_TOOLS = Path(__file__).resolve().parent
if str(_TOOLS) not in sys.path:  # loaded by path (the tests) rather than run as a script
    sys.path.insert(0, str(_TOOLS))

from kernel_bench.cases import make_callable, prepare_args  # noqa: E402
from kernel_bench.runner import select_cases  # noqa: E402

from attn2scale import ops  # noqa: E402

TARGET_SPEEDUP_2 = 1.8  # issue 13: 2 threads >= 1.8x 1 thread


def _sample(call: Callable, min_s: float) -> float:
    """Seconds per call: repeat the call until min_s has passed."""
    n, start = 0, time.perf_counter()
    while True:
        call()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            return elapsed / n


def scaling_row(case, pass_name: str, threads: int, rounds: int, min_s: float) -> dict:
    args, grad_out = prepare_args(case, torch.device("cpu"), pass_name)
    call = make_callable(case, case.fused, args, pass_name, grad_out)
    one, many = [], []
    for n_threads in (1, threads):  # warm both thread pools up
        torch.set_num_threads(n_threads)
        _sample(call, min_s)
    for i in range(rounds):
        # which thread count goes first alternates, so drift within a round evens out
        for n_threads in ((1, threads) if i % 2 == 0 else (threads, 1)):
            torch.set_num_threads(n_threads)
            (one if n_threads == 1 else many).append(_sample(call, min_s))
    speedups = [a / b for a, b in zip(one, many)]
    row = {"case": case.name, "pass": pass_name, "threads": threads,
           "one_ms": statistics.median(one) * 1e3, "many_ms": statistics.median(many) * 1e3,
           "speedup": statistics.median(speedups), "speedup_min": min(speedups), "speedup_max": max(speedups)}
    if threads == 2:
        row["verdict"] = "PASS" if row["speedup"] >= TARGET_SPEEDUP_2 else "MISS"
    return row


def cpu_steal_s() -> Optional[float]:
    """CPU time the hypervisor took from this VM's CPUs so far (Linux /proc/stat
    'steal', seconds), or None where there is no such counter."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def markdown(rows: List[dict], threads: int, load_start: float, load_end: float, command: str,
             steal: Optional[float]) -> str:
    lines = [f"# Thread scaling of the fused CPU ops (1 vs {threads} threads)", "",
             f"`{command}`; {os.cpu_count()} cores, torch {torch.__version__}, load average {load_start:.2f} "
             f"at the start and {load_end:.2f} at the end (this run included). Speedup: 1-thread time over "
             f"{threads}-thread time per round (rounds alternate the thread counts), median and range over the "
             f"rounds. Target (issue 13): >= {TARGET_SPEEDUP_2}x with 2 threads. "
             + ("" if steal is None else f"CPU time stolen by the hypervisor during the run: {steal:.2f} s "
                "(/proc/stat; a run with steal measures the host's load, not the kernels' scaling)."), "",
             f"| case | pass | 1 thread ms | {threads} threads ms | speedup | range | verdict |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['pass']} | {r['one_ms']:.3f} | {r['many_ms']:.3f} | {r['speedup']:.2f}x | "
                     f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}x | {r.get('verdict', '-')} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="N (default: every core)")
    p.add_argument("--rounds", type=int, default=9, help="alternating 1 / N thread rounds per row")
    p.add_argument("--min-sample-ms", type=float, default=50.0, help="each sample repeats the call this long")
    p.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (tests)")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--markdown", default=None, help="write a markdown table here")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None, log=print) -> List[dict]:
    cfg = parse_args(argv)
    if cfg.threads < 2:
        raise SystemExit(f"--threads must be >= 2 to measure scaling, got {cfg.threads}")
    if cfg.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {cfg.rounds}")
    if not ops.extension_available() or ops.reference_forced():
        raise SystemExit("the compiled kernels are not in use (extension not loaded, or use_reference() active): "
                         "there is nothing fused to time")
    saved_threads = torch.get_num_threads()
    try:
        return _run(cfg, argv, log)
    finally:
        torch.set_num_threads(saved_threads)


def _run(cfg: argparse.Namespace, argv: Optional[Sequence[str]], log) -> List[dict]:
    cases = select_cases(cfg)
    load, steal0 = os.getloadavg()[0], cpu_steal_s()
    log(f"{os.cpu_count()} cores, 1 vs {cfg.threads} threads, {cfg.rounds} rounds, load average {load:.2f}")
    log(f"{'case':22} {'pass':8} {'1 thr ms':>9} {f'{cfg.threads} thr ms':>9} {'speedup':>8} {'range':>12}  verdict")
    rows = []
    for case in cases:
        for pass_name in case.passes:
            r = scaling_row(case, pass_name, cfg.threads, cfg.rounds, cfg.min_sample_ms / 1e3)
            rows.append(r)
            log(f"{r['case']:22} {r['pass']:8} {r['one_ms']:9.3f} {r['many_ms']:9.3f} {r['speedup']:7.2f}x "
                f"{r['speedup_min']:5.2f}-{r['speedup_max']:4.2f}x  {r.get('verdict', '-')}")
    load_end, steal1 = os.getloadavg()[0], cpu_steal_s()
    steal = None if steal0 is None or steal1 is None else steal1 - steal0
    log(f"load average at the end {load_end:.2f} (this run included)"
        + ("" if steal is None else f"; CPU time stolen by the hypervisor during the run {steal:.2f} s"))
    if cfg.json:
        _write_atomic(cfg.json, json.dumps({"load_start": load, "load_end": load_end, "steal_s": steal, "rows": rows},
                                           indent=1))
    if cfg.markdown:
        command = "python tools/bench_threads.py " + " ".join(argv if argv is not None else sys.argv[1:])
        _write_atomic(cfg.markdown, markdown(rows, cfg.threads, load, load_end, command.strip(), steal))
    return rows


if __name__ == "__main__":
    main()
