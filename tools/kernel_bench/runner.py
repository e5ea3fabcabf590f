"""The run: arguments, one case and pass at a time, the report, the exit status."""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from attn2scale import ops

from . import machine as mach
from .cases import Case, build_cases, make_callable, prepare_args, traffic_bytes
from .checks import compare
from .memory import measure_memory
from .report import TABLE_HEADER, format_row, to_markdown, write_outputs
from .targets import evaluate_targets
from .timing import compile_session, copy_bandwidth, sync, time_interleaved

IMPLS = ("eager", "compiled", "fused")


def parse_args(argv: Optional[Sequence[str]] = None, description: str = "") -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
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


def _check_once(calls: Dict[str, Callable], case: Case, args, pass_name: str, device) -> tuple:
    """Run each implementation once (compiling the compiled one, timed) and compare with eager."""
    results, compile_s = {}, None
    for k in ("eager", "fused", "compiled"):
        if k not in calls:
            continue
        t0 = time.perf_counter()
        results[k] = calls[k]()
        sync(device)
        if k == "compiled":
            compile_s = time.perf_counter() - t0
    correct = {k: compare(case, args, results["eager"], results[k], pass_name) for k in results if k != "eager"}
    return correct, compile_s


def _ratios(row: dict, peak_gbps: Optional[float]) -> None:
    fused = row["fused"]["median_s"]
    base = {k: row[k]["median_s"] for k in ("eager", "compiled") if row.get(k)}
    row["best_baseline"] = min(base, key=base.get)
    row["fused_over_eager"] = fused / base["eager"]
    row["fused_over_compiled"] = fused / base["compiled"] if "compiled" in base else None
    row["fused_over_best"] = fused / base[row["best_baseline"]]
    if peak_gbps:
        row["fused_frac_peak_bw"] = row["fused"]["gbps"] / peak_gbps


def run_case_pass(case: Case, pass_name: str, device: torch.device, cfg: argparse.Namespace, log) -> dict:
    args, grad_out = prepare_args(case, device, pass_name)
    impls: Dict[str, Callable] = {"eager": case.eager, "fused": case.fused}
    if cfg.compile:
        torch._dynamo.reset()
        impls["compiled"] = torch.compile(case.eager, dynamic=False)
    calls = {k: make_callable(case, f, args, pass_name, grad_out) for k, f in impls.items()}
    row = {"case": case.name, "op": case.op, "pass": pass_name, "shape": case.shape_text, "shapes": case.shapes,
           "traffic_bytes": traffic_bytes(case, args, pass_name)}
    if case.full_map_bytes is not None:
        row["full_map_bytes"] = case.full_map_bytes
    row["correct"], compile_s = _check_once(calls, case, args, pass_name, device)
    failed = [k for k, v in row["correct"].items() if not v.get("ok")]
    row["valid"] = not failed
    row["invalid_reason"] = ", ".join(f"{k} differs from eager" for k in failed) or None

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
    if compile_s is not None:
        row["compile_s"] = max(0.0, compile_s - row["compiled"]["median_s"])
    _ratios(row, cfg.peak_gbps)
    log(format_row(row))
    return row


def _floors(rows: List[dict], copy_gbps: float) -> None:
    """Each row's minimal-traffic floor: its traffic moved at the copy bandwidth."""
    for row in rows:
        row["floor_s"] = row["traffic_bytes"] / (copy_gbps * 1e9)
        row["fused_over_floor"] = row["fused"]["median_s"] / row["floor_s"]


def select_cases(cfg) -> List[Case]:
    """The cases cfg.cases names (comma-separated; all by default), tiny shapes with cfg.tiny;
    an unknown name stops the run. Shared with bench_threads.py."""
    cases = build_cases(tiny=cfg.tiny)
    if cfg.cases:
        wanted = set(cfg.cases.split(","))
        unknown = wanted - {c.name for c in cases}
        if unknown:
            raise SystemExit(f"unknown case(s): {sorted(unknown)}")
        cases = [c for c in cases if c.name in wanted]
    return cases


def _noise_note(rows: List[dict]) -> Optional[str]:
    spread = [1 for r in rows for k in IMPLS if r.get(k) and r[k]["iqr_s"] > 0.3 * r[k]["median_s"]]
    n_timed = sum(1 for r in rows for k in IMPLS if r.get(k))
    if n_timed and len(spread) > 0.2 * n_timed:
        return (f"Timings are noisy: {len(spread)} of {n_timed} measurements have an inter-quartile range "
                f"above 30% of their median; re-run on a quiet machine before drawing conclusions.")
    return None


def _copy_bw(device, tiny: bool) -> dict:
    return copy_bandwidth(device, nbytes=(4 << 20) if tiny else (64 << 20), repeats=5 if tiny else 15)


def _run_rows(cases: List[Case], device, cfg, log) -> List[dict]:
    rows = []
    with compile_session(cfg.compile, cfg.inductor_cache, "bench_inductor_"):
        for case in cases:
            for pass_name in case.passes:
                rows.append(run_case_pass(case, pass_name, device, cfg, log))
    return rows


def _fallback_notes(device, machine: dict) -> List[str]:
    notes = []
    if not ops.extension_available():
        notes.append("The compiled extension did not load: 'fused' is the pure-PyTorch reference.")
    if device.type == "cuda" and not machine.get("cuda_kernels"):
        notes.append("The extension has no CUDA kernels: 'fused' on CUDA is the pure-PyTorch reference fallback.")
    return notes


def _log_summary(report: dict, log) -> None:
    log("")
    for t in report["targets"]:
        log(f"{t['verdict']:<8} {t['case']} {t['pass']}: {t['target']} -- {t['measured']}")
    for n in report["notes"]:
        log(f"NOTE: {n}")
    n_bad = len(report["invalid"])
    log(f"total {report['total_s']:.1f} s" + (f"; {n_bad} INVALID row(s): exit status 1" if n_bad else ""))


def main(argv: Optional[Sequence[str]] = None, log=print, description: str = "",
         case_hook: Optional[Callable[[Case], Case]] = None) -> dict:
    """Run the benchmark and return the report; ``case_hook`` may replace a case's pieces (tests)."""
    cfg = parse_args(argv, description)
    start = time.perf_counter()
    device, machine = mach.setup_device(cfg.device, cfg.threads)
    cfg.peak_gbps = machine.get("peak_dram_gbps")
    notes = _fallback_notes(device, machine)
    for n in notes:
        log(f"WARNING: {n}")
    cases = select_cases(cfg)
    if case_hook is not None:
        cases = [case_hook(c) for c in cases]
    copy_start = _copy_bw(device, cfg.tiny)
    log(f"{machine['cpu_model']} | {machine['logical_cores']} cores | torch {machine['torch_version']} | "
        f"{machine['torch_threads']} threads | device {device} | copy {copy_start['gbps']:.2f} GB/s")
    log(TABLE_HEADER)
    rows = _run_rows(cases, device, cfg, log)
    copy_end = _copy_bw(device, cfg.tiny)
    # the faster copy sets the floor: a copy slowed by load would flatter the kernels
    copy = max(copy_start, copy_end, key=lambda c: c["gbps"])
    _floors(rows, copy["gbps"])
    total = time.perf_counter() - start
    invalid = [f"{r['case']} {r['pass']} ({r['invalid_reason']})" for r in rows if not r["valid"]]
    if invalid:
        notes.append("INVALID rows (a correctness check failed; their timings are not evidence): " + ", ".join(invalid))
    load_end = mach.loadavg()
    notes += [n for n in (mach.busy_note(machine, load_end), _noise_note(rows)) if n]
    machine["loadavg_at_end"] = load_end
    argv_list = list(sys.argv[1:] if argv is None else argv)
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python tools/bench_kernels.py " + " ".join(shlex.quote(a) for a in argv_list),
        "machine": machine,
        "config": {"quick": cfg.quick, "tiny": cfg.tiny, "repeats": cfg.repeats, "warmup": cfg.warmup,
                   "min_sample_s": cfg.min_sample_s, "compile": cfg.compile,
                   "fresh_inductor_cache": cfg.compile and cfg.inductor_cache == "fresh"},
        "copy_bandwidth": dict(copy, at_start=copy_start, at_end=copy_end),
        "rows": rows, "targets": evaluate_targets(rows), "invalid": invalid, "notes": notes, "total_s": total,
    }
    _log_summary(report, log)
    write_outputs(report, cfg.json, cfg.markdown, to_markdown)
    return report


def exit_status(report: dict) -> int:
    """1 when any row is INVALID (a correctness check failed), else 0."""
    return 1 if report["invalid"] else 0
