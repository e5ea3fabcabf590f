"""Verdicts on the issue's two claims, and the markdown report (docs/bench_model.md).

Claims, per workload and mode (eager, compiled), fused vs reference in the same run:
* **never slower**: fused median time per step <= reference median;
* **less peak memory**: fused peak extra bytes < reference's.
A pair whose correctness check failed, or whose path check failed (the
reference configuration ran a fused kernel, or the fused one none), reads
INVALID and makes the run exit with status 1.
"""

from __future__ import annotations

from typing import Dict, List

from kernel_bench.report import machine_lines, md_table

from . import checks, profiling


def _row(rows: List[dict], workload: str, path: str, mode: str):
    return next((r for r in rows if (r["workload"], r["path"], r["mode"]) == (workload, path, mode)), None)


def _time_verdict(f: dict, r: dict) -> dict:
    tf, tr = f["time"]["median_s"], r["time"]["median_s"]
    noise = (f["time"]["iqr_s"] + r["time"]["iqr_s"]) / 2
    measured = (f"fused {tf:.3f} s vs reference {tr:.3f} s per step ({tf / tr:.3f}x); "
                f"difference {abs(tf - tr):.3f} s {'within' if abs(tf - tr) <= noise else 'beyond'} the "
                f"timing noise (mean IQR {noise:.3f} s)")
    return {"claim": "fused never slower", "measured": measured, "verdict": "PASS" if tf <= tr else "MISS"}


def _mib(b: int) -> str:
    return f"{b / 2**20:.2f}"


def _saved(b: int) -> str:
    return f"{b / 2**20:+.2f} MiB" if abs(b) >= 2**20 else f"{b / 2**10:+.1f} KiB"


def _memory_verdict(f: dict, r: dict) -> dict:
    mf, mr = f["memory"]["peak_extra_bytes"], r["memory"]["peak_extra_bytes"]
    measured = (f"fused {_mib(mf)} MiB vs reference {_mib(mr)} MiB peak extra "
                f"({_saved(mr - mf)} saved by fused)")
    if mf == mr:
        measured += "; equal: the step's peak falls where none of the ops' memory is live"
    return {"claim": "fused uses less peak memory", "measured": measured, "verdict": "PASS" if mf < mr else "MISS"}


def path_problems(row: dict, extension: bool) -> List[str]:
    """The path check: the reference configuration calls no ``attn2scale::`` op; the fused one does
    (when the extension is loaded)."""
    calls = row["memory"]["attn2scale_op_calls"]
    if row["path"] == "reference" and calls:
        return [f"{row['path']} {row['mode']} ran {calls} fused op calls"]
    if row["path"] == "fused" and extension and not calls:
        return [f"{row['path']} {row['mode']} ran no fused op"]
    return []


def evaluate(rows: List[dict], check_results: Dict[str, dict], extension: bool) -> tuple:
    """(verdicts, invalid reasons)."""
    verdicts, invalid = [], []
    for key, chk in check_results.items():
        workload, mode = key.split()
        f, r = _row(rows, workload, "fused", mode), _row(rows, workload, "reference", mode)
        problems = ([] if chk["ok"] else [f"{key}: fused differs from reference ({chk['detail']})"])
        problems += [f"{workload}: {p}" for row in (f, r) for p in path_problems(row, extension)]
        invalid += problems
        for v in (_time_verdict(f, r), _memory_verdict(f, r)):
            if problems:
                v["verdict"], v["measured"] = "INVALID", "; ".join(problems) + "; " + v["measured"]
            elif not extension:
                v["verdict"] = "UNTESTED"  # both paths ran the reference
            verdicts.append({"workload": workload, "mode": mode, **v})
    return verdicts, invalid


# --------------------------------------------------------------------------
# Markdown.


def _measured_lines(report: dict) -> List[str]:
    s, cfg = report["sizes"], report["config"]
    dev = report["machine"]["device"]
    return [
        f"- **train**: one solver iteration of `attention_to_scale` (VGG-16 DeepLab-LargeFOV share-net, scales "
        f"1/0.75/0.5, attention merge, extra supervision E-Supv, {s['classes']} classes, width / {s['width_div']}, "
        f"dropout as in the paper) on a batch of {s['batch']} at {s['train_size']}×{s['train_size']}, as "
        "`Trainer.step` runs it: zero_grad, forward, the four SoftmaxWithLoss losses (fused map + one per scale, "
        "`engine.losses.segmentation_loss`), backward (`engine.step.accumulate_gradients`), `CaffeSGD` step.",
        f"- **infer**: the test protocol (`engine.inference`: `multiscale_scores` at test scale 1, then "
        f"`labels_from_scores`: Caffe zoom ×8 back to the input grid and argmax by `ops.upsample_argmax`, crop) on "
        f"{s['infer_batch']} padded crop(s) of {s['infer_size']}×{s['infer_size']}, eval mode, `torch.no_grad()`.",
        "- **fused**: the compiled kernels (`attn2scale._C`); **reference**: the same code inside "
        "`with attn2scale.ops.use_reference():`, i.e. the pure-PyTorch `attn2scale.ops.reference` ops.",
        "- **eager**, and **compiled**: `torch.compile` of the model (training, as `train.compile` does) or of the "
        "whole protocol function (inference, so inductor may fuse the reference's resize + argmax); compile time "
        "(first call minus a steady call) is listed apart. "
        + ("Inductor compiled into a fresh empty cache (cold compile times)." if cfg.get("fresh_inductor_cache")
           else "Inductor used its default cache (compile times may be warm)."),
        f"- Time: the checked first step, one calibration step and {cfg['warmup']} more warm-up step(s) untimed, "
        f"then {cfg['repeats']} timed steps per configuration, the "
        "configurations taking turns step by step (rotating which goes first) so that load from other processes "
        "falls on all alike; median ± half the inter-quartile range.",
        "- **peak extra MiB**: " + ("`torch.cuda.max_memory_allocated()` minus the bytes allocated before one step."
                                    if dev.startswith("cuda") else
                                    "one step under `torch.profiler.profile(profile_memory=True)`, its allocator "
                                    "events replayed in order: the highest total above the start of the step "
                                    "(activations, gradients, outputs; weights and momentum buffers exist before "
                                    "and are not counted; memory outside PyTorch's allocator is not seen)."),
        "- **fused op calls**: `attn2scale::*` operator calls in that profiled step; the path check requires 0 on "
        "the reference path and > 0 on the fused path.",
        "- **Correctness** (each configuration's first step, fused vs reference in the same mode, same weights, "
        "inputs and dropout masks): " + checks.describe() + ".",
        "- **Breakdown** (eager only: compiled, the ops dissolve into inductor kernels): one more profiled step "
        "with `attn2scale.ops.interp` / `scale_merge` / `upsample_argmax` wrapped in `record_function` ranges. "
        "Forward: the ranges' inclusive CPU time; backward: the inclusive time of the autograd nodes recorded "
        "inside the ranges (linked by the profiler's `sequence_nr`); share: their sum over the profiled step's "
        "wall time (the profiler's overhead is in both, so the share is a guide, not a measurement to 1%); "
        f"of {cfg.get('breakdown_runs', 1)} profiled steps the fastest (least disturbed) is shown.",
    ]


def _results_table(report: dict) -> List[str]:
    rows = []
    for r in report["rows"]:
        ref = _row(report["rows"], r["workload"], "reference", r["mode"])
        t = r["time"]
        cs = r.get("compile_s")
        rows.append([r["workload"], r["path"], r["mode"], f"{t['median_s']:.3f} ±{t['iqr_s'] / 2:.3f}",
                     f"{t['median_s'] / ref['time']['median_s']:.3f}x", "-" if cs is None else f"{cs:.1f}",
                     _mib(r["memory"]["peak_extra_bytes"]), r["memory"]["attn2scale_op_calls"]])
    return md_table(["workload", "ops", "mode", "s / step", "vs reference", "compile s", "peak extra MiB",
                     "fused op calls"], rows, right=range(3, 8))


def _breakdown_table(report: dict) -> List[str]:
    rows = []
    for b in report["breakdown"]:
        ops = b["ops"]
        cells = [f"{ops[n]['fwd_ms']:.1f} / {ops[n]['bwd_ms']:.1f} ({ops[n]['calls']})" for n in profiling.WRAPPED]
        rows.append([b["workload"], b["path"], f"{b['step_ms']:.0f}", *cells, f"{b['ops_ms']:.1f}",
                     f"{100 * b['share']:.1f}%"])
    header = ["workload", "ops", "profiled step ms"] + [f"{n} fwd / bwd ms (calls)" for n in profiling.WRAPPED]
    return md_table(header + ["ops ms", "share of step"], rows, right=range(2, 8))


def summary_lines(report: dict) -> List[str]:
    """One line per workload: fused vs reference per mode, and the ops' share of the eager step."""
    lines = []
    for w in report["config"]["workloads"]:
        parts = []
        for mode in ("eager", "compiled"):
            f, r = _row(report["rows"], w, "fused", mode), _row(report["rows"], w, "reference", mode)
            if f and r:
                saved = r["memory"]["peak_extra_bytes"] - f["memory"]["peak_extra_bytes"]
                parts.append(f"{mode}: fused {f['time']['median_s'] / r['time']['median_s']:.3f}x the reference's "
                             f"time, {_saved(saved)} peak memory saved")
        shares = {b["path"]: b["share"] for b in report["breakdown"] if b["workload"] == w}
        if shares:
            parts.append("the resize / merge / label ops take " + " and ".join(
                f"{100 * v:.1f}% ({k})" for k, v in shares.items()) + " of the eager step")
        lines.append(f"- **{w}**: " + "; ".join(parts) + ".")
    return lines


def to_markdown(report: dict) -> str:
    lines = ["# The full model, fused vs reference ops: end-to-end benchmark", "",
             f"Generated by `tools/bench_model.py` on {report['date']}; the kernels alone: "
             "[benchmarks.md](benchmarks.md).", "", "## Machine", ""]
    lines += machine_lines(report["machine"])
    lines += ["", "## Command", "", "```", report["command"], "```", "", f"Whole run: {report['total_s']:.0f} s.",
              "", "## What is measured", ""] + _measured_lines(report)
    lines += ["", "## Summary", ""] + summary_lines(report)
    lines += ["", "## Results", ""] + _results_table(report)
    lines += ["", "## Correctness", ""]
    lines += md_table(["workload, mode", "check", "detail"],
                      [[k, "ok" if v["ok"] else "**INVALID**", v["detail"]] for k, v in report["checks"].items()])
    lines += ["", "## Verdicts", ""]
    lines += md_table(["workload", "mode", "claim", "measured", "verdict"],
                      [[v["workload"], v["mode"], v["claim"], v["measured"], f"**{v['verdict']}**"]
                       for v in report["verdicts"]])
    lines += ["", "## Where the step goes (eager, profiled)", ""] + _breakdown_table(report)
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"
