#!/usr/bin/env python
"""End-to-end benchmark: the full-size Attention-to-Scale model with the fused ops vs the
pure-PyTorch reference ops, eager and torch.compile, in the same run.

Two workloads (``tools/model_bench/workloads.py``): a training step at 321×321
(the paper's model: 3 scales, attention, extra supervision; forward, the E-Supv
losses, backward, Caffe SGD step) and the test protocol's inference at 513×513
down to labels. Per configuration: time per step (interleaved), peak memory,
and the custom-op calls; fused vs reference checked for equal losses, outputs,
gradients and labels first (a failure is INVALID: exit status 1); the share of
the eager step spent in the resize / merge / label ops. Verdicts: the fused path
is never slower and uses less peak memory (PASS / MISS).

Usage::

    python tools/bench_model.py [--device cpu|cuda] [--batch 3] [--quick] [--no-compile]
                                [--json out.json] [--markdown docs/bench_model.md]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, ContextManager, Dict, Optional, Sequence

_TOOLS = Path(__file__).resolve().parent
if str(_TOOLS) not in sys.path:  # loaded by path (the tests) rather than run as a script
    sys.path.insert(0, str(_TOOLS))
try:
    import attn2scale  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(_TOOLS.parent))

import torch  # noqa: E402

from attn2scale import ops  # noqa: E402
from kernel_bench import machine as mach  # noqa: E402
from kernel_bench.report import write_outputs  # noqa: E402
from kernel_bench.timing import compile_session, sync, time_interleaved  # noqa: E402
from model_bench import checks, profiling, report as rep, workloads as wl  # noqa: E402

WORKLOADS = ("train", "infer")
# --quick: a smoke run (widths / 16, small inputs): seconds per step, minutes in all with torch.compile.
QUICK = dict(width_div=16, train_size=97, infer_size=129, batch=2)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}, 2 repeats")
    p.add_argument("--batch", type=int, help="training images per step (default 3: the paper's batch_size "
                                             "per solver micro-batch, iter_size 10 for 30; --quick 2)")
    p.add_argument("--infer-batch", type=int, default=1, help="test crops per inference step (default 1)")
    p.add_argument("--classes", type=int, default=21, help="classes (21 VOC; 81 COCO, 150 ADE20K)")
    p.add_argument("--train-size", type=int, help="training crop (default 321)")
    p.add_argument("--infer-size", type=int, help="test crop (default 513)")
    p.add_argument("--repeats", type=int, help="timed steps per configuration (default 5, --quick 2)")
    p.add_argument("--warmup", type=int, default=0,
                   help="more untimed steps (default 0: the checked first step and the timer's calibration "
                        "step already warm up)")
    p.add_argument("--breakdown-runs", type=int, default=2,
                   help="profiled eager steps for the breakdown; the fastest is kept (default 2)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: train,infer")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    p.add_argument("--inductor-cache", choices=("fresh", "default"), default="fresh",
                   help="fresh: compile into an empty temporary cache (cold compile times, the default)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads(N)")
    p.add_argument("--json", type=Path, help="write the full results here")
    p.add_argument("--markdown", type=Path, help="write the markdown report here (docs/bench_model.md)")
    cfg = p.parse_args(argv)
    for flag in ("batch", "infer_batch", "classes", "train_size", "infer_size", "repeats", "breakdown_runs", "threads"):
        v = getattr(cfg, flag)
        if v is not None and v < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {v}")
    unknown = set(cfg.workloads.split(",")) - set(WORKLOADS)
    if unknown:
        p.error(f"--workloads: unknown {sorted(unknown)}; choose from {WORKLOADS}")
    q = QUICK if cfg.quick else {}
    cfg.sizes = wl.Sizes(classes=cfg.classes, width_div=q.get("width_div", 1),
                         train_size=cfg.train_size or q.get("train_size", 321),
                         infer_size=cfg.infer_size or q.get("infer_size", 513),
                         batch=cfg.batch or q.get("batch", 3), infer_batch=cfg.infer_batch)
    cfg.repeats = cfg.repeats or (2 if cfg.quick else 5)
    return cfg


def _first_steps(configs, inputs, device) -> tuple:
    """Each configuration's first step (compiling the compiled ones), captured for the check."""
    captured, first_s = {}, {}
    for c in configs:
        t0 = time.perf_counter()
        captured[c.name] = wl.step_callable(c, inputs, capture=True)()
        sync(device)
        first_s[c.name] = time.perf_counter() - t0
    return captured, first_s


def run_workload(name: str, cfg, device, contexts, log) -> tuple:
    """(rows, checks per mode, breakdowns) of one workload's four configurations."""
    inputs = (wl.train_inputs if name == "train" else wl.infer_inputs)(cfg.sizes, device)
    configs = wl.make_configs(name, cfg.sizes, device, cfg.compile, contexts)
    captured, first_s = _first_steps(configs, inputs, device)
    check_results = {f"{name} {m}": checks.compare(name, captured[f"reference {m}"], captured[f"fused {m}"])
                     for m in sorted({c.mode for c in configs})}
    del captured
    for k, v in check_results.items():
        log(f"check {k}: {'ok' if v['ok'] else 'INVALID'}: {v['detail']}")
    timed = time_interleaved({c.name: wl.step_callable(c, inputs) for c in configs}, device, cfg.warmup,
                             cfg.repeats, 0.0)
    rows, breakdowns = [], []
    for c in configs:
        t = dict(timed[c.name])
        row = {"workload": name, "path": c.path, "mode": c.mode, "time": t,
               "memory": profiling.profile_step(wl.step_callable(c, inputs), device)}
        if c.mode == "compiled":
            row["compile_s"] = max(0.0, first_s[c.name] - t["median_s"])
        rows.append(row)
        log(f"{name:<6} {c.path:<10} {c.mode:<9} {t['median_s']:9.3f} s ±{t['iqr_s'] / 2:.3f}  "
            f"peak {row['memory']['peak_extra_bytes'] / 2**20:9.1f} MiB  "
            f"fused op calls {row['memory']['attn2scale_op_calls']}")
        if c.mode == "eager":
            # the least disturbed of a few profiled steps: a stall from another process would
            # inflate the step and shrink the ops' share
            runs = [profiling.breakdown(wl.step_callable(c, inputs), device) for _ in range(cfg.breakdown_runs)]
            breakdowns.append({"workload": name, "path": c.path, "runs": cfg.breakdown_runs,
                               **min(runs, key=lambda b: b["step_ms"])})
    return rows, check_results, breakdowns


def _notes(device, machine, report_rows) -> list:
    notes = []
    if not ops.extension_available():
        notes.append("The compiled extension did not load: both paths ran the reference ops (verdicts UNTESTED).")
    if device.type == "cuda" and not machine.get("cuda_kernels"):
        notes.append("The extension has no CUDA kernels: 'fused' on CUDA is the reference fallback.")
    if device.type == "cuda":
        notes.append("The breakdown times CPU-side events: on CUDA they are the ops' launches, not their kernels.")
    noisy = [r for r in report_rows if r["time"]["iqr_s"] > 0.3 * r["time"]["median_s"]]
    if noisy:
        notes.append(f"Timings are noisy: {len(noisy)} of {len(report_rows)} configurations have an "
                     "inter-quartile range above 30% of their median; re-run on a quiet machine.")
    return notes


def _run_all(cfg, device, contexts, log) -> tuple:
    rows, check_results, breakdowns = [], {}, []
    with compile_session(cfg.compile, cfg.inductor_cache, "bench_model_inductor_"):
        for name in cfg.workloads.split(","):
            r, c, b = run_workload(name, cfg, device, contexts, log)
            rows += r
            check_results.update(c)
            breakdowns += b
            torch._dynamo.reset()  # drop the compiled graphs (and their models) before the next workload
            gc.collect()
    return rows, check_results, breakdowns


def main(argv: Optional[Sequence[str]] = None, log: Callable = print,
         contexts: Optional[Dict[str, Callable[[], ContextManager]]] = None) -> dict:
    """Run the benchmark and return the report; ``contexts`` replaces the context a path's calls run
    in (``workloads.default_contexts``; the tests inject a wrong op through it)."""
    cfg = parse_args(argv)
    start = time.perf_counter()
    device, machine = mach.setup_device(cfg.device, cfg.threads)
    log(f"{machine['cpu_model']} | {machine['logical_cores']} cores | torch {machine['torch_version']} | "
        f"{machine['torch_threads']} threads | device {device} | sizes {cfg.sizes.describe()}")
    rows, check_results, breakdowns = _run_all(cfg, device, {**wl.default_contexts(), **(contexts or {})}, log)
    verdicts, invalid = rep.evaluate(rows, check_results, ops.extension_available())
    load_end = mach.loadavg()
    machine["loadavg_at_end"] = load_end
    notes = _notes(device, machine, rows) + [n for n in (mach.busy_note(machine, load_end),) if n]
    if invalid:
        notes.append("INVALID (a check failed; those timings are not evidence): " + "; ".join(invalid))
    argv_list = list(sys.argv[1:] if argv is None else argv)
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python tools/bench_model.py " + " ".join(shlex.quote(a) for a in argv_list),
        "machine": machine, "sizes": cfg.sizes.describe(),
        "config": {"quick": cfg.quick, "repeats": cfg.repeats, "warmup": cfg.warmup, "compile": cfg.compile,
                   "fresh_inductor_cache": cfg.compile and cfg.inductor_cache == "fresh",
                   "workloads": cfg.workloads.split(","), "breakdown_runs": cfg.breakdown_runs},
        "rows": rows, "checks": check_results, "verdicts": verdicts, "breakdown": breakdowns,
        "invalid": invalid, "notes": notes, "total_s": time.perf_counter() - start,
    }
    for v in verdicts:
        log(f"{v['verdict']:<8} {v['workload']} {v['mode']}: {v['claim']} -- {v['measured']}")
    for b in breakdowns:
        log(f"breakdown {b['workload']} {b['path']}: ops {b['ops_ms']:.1f} ms of {b['step_ms']:.0f} ms "
            f"({100 * b['share']:.1f}%)")
    for n in notes:
        log(f"NOTE: {n}")
    write_outputs(report, cfg.json, cfg.markdown, rep.to_markdown)
    return report


def exit_status(report: dict) -> int:
    """1 when a check failed (INVALID), else 0."""
    return 1 if report["invalid"] else 0


def cli(argv=None, log=print, contexts=None) -> int:
    return exit_status(main(argv, log=log, contexts=contexts))


if __name__ == "__main__":
    sys.exit(cli())
