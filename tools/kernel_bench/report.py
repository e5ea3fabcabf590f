"""Console rows and the markdown report (docs/benchmarks.md).

Shared API: ``md_table(header, rows, right=())``, ``machine_lines(machine)``,
``write_outputs(report, json_path, markdown_path, to_markdown)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence

from . import checks, targets

# --------------------------------------------------------------------------
# Generic pieces.


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()) -> List[str]:
    """A markdown table; columns whose index is in ``right`` are right-aligned (numbers)."""
    right = set(right)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def machine_lines(m: dict) -> List[str]:
    """The "## Machine" bullet list of a ``machine_info`` dict."""
    load = m.get("loadavg_at_start")
    end = m.get("loadavg_at_end")
    lines = [
        f"- CPU: {m['cpu_model']}, {m['logical_cores']} logical cores ({m['cores_available']} available to the process)",
        f"- torch {m['torch_version']}, Python {m['python']}, {m['torch_threads']} intra-op threads, device `{m['device']}`",
        f"- platform: {m['platform']}",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in load) if load else 'n/a'}"
        + (f"; at the end: {', '.join(f'{x:.2f}' for x in end)}" if end else ""),
    ]
    if "gpu" in m:
        lines.append(f"- GPU: {m['gpu']} (peak DRAM bandwidth {m['peak_dram_gbps'] or 'unknown'} GB/s), "
                     f"CUDA kernels built: {m['cuda_kernels']}")
    return lines


def write_outputs(report: dict, json_path: Optional[Path], markdown_path: Optional[Path],
                  to_markdown: Callable[[dict], str]) -> None:
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1))
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(to_markdown(report))


# --------------------------------------------------------------------------
# Cells.


def ms(t) -> str:
    return "-" if t is None else f"{t['median_s'] * 1e3:.3f}"


def ms_iqr(t) -> str:
    return "-" if t is None else f"{t['median_s'] * 1e3:.3f} ±{t['iqr_s'] * 1e3 / 2:.3f}"


def ratio(x) -> str:
    return "-" if x is None else f"{x:.3f}x"


def mib(t) -> str:
    if t is None:
        return "-"
    b = t["memory"]["peak_extra_bytes"] / 2**20
    return f"{b:.2f}" if b >= 1 else f"{b:.3g}"


def check_cell(row) -> str:
    return "ok" if row["valid"] else "INVALID"


TABLE_HEADER = (f"{'case':<22} {'op':<23} {'pass':<8} {'eager ms':>10} {'compiled ms':>12} {'fused ms':>10} "
                f"{'f/eager':>8} {'f/comp':>8} {'f/best':>8} {'mem MiB e/c/f':>22} {'fused GB/s':>10} "
                f"{'check':>8}")


def format_row(row) -> str:
    mem = f"{mib(row['eager'])}/{mib(row['compiled'])}/{mib(row['fused'])}"
    return (f"{row['case']:<22} {row['op']:<23} {row['pass']:<8} {ms(row['eager']):>10} {ms(row['compiled']):>12} "
            f"{ms(row['fused']):>10} {ratio(row['fused_over_eager']):>8} {ratio(row['fused_over_compiled']):>8} "
            f"{ratio(row['fused_over_best']):>8} {mem:>22} {row['fused']['gbps']:>10.2f} {check_cell(row):>8}")


def _check_detail(row) -> str:
    parts = []
    for k, v in row["correct"].items():
        s = f"{k}: {'ok' if v.get('ok') else 'MISMATCH'}"
        if v.get("max_abs_diff") is not None:
            s += f" (max diff {v['max_abs_diff']:.1e})"
        if v.get("n_label_mismatch"):
            s += f" ({v['n_label_mismatch']} label mismatches, near ties: {v['mismatches_are_near_ties']})"
        if v.get("error"):
            s += f" ({v['error']})"
        parts.append(s)
    return ("ok" if row["valid"] else "**INVALID**") + ": " + "; ".join(parts)


# --------------------------------------------------------------------------
# The markdown report.

# tools/bench_model.py writes its own file, so neither tool overwrites the other's results.
MODEL_LINK = ("The kernels inside the full model (training step and inference, fused vs reference ops): "
              "[bench_model.md](bench_model.md), from `tools/bench_model.py`.")


def _measured_lines(report: dict) -> List[str]:
    m, cfg = report["machine"], report["config"]
    cb = report.get("copy_bandwidth")
    return [
        "- **eager**: stock PyTorch, as a user would write it: `F.interpolate(mode='bilinear', align_corners=True)` "
        "per scale; `torch.softmax(logits, 1)` and a sum of the S weighted maps for attention; "
        "`torch.stack(...).max(0)` for max and `torch.stack(...).mean(0)` for avg, so the eager max/avg baseline "
        "also pays for stacking the S resized maps into one S×N×C×H×W tensor (a copy forward, a split of the "
        "gradient backward) that the attention baseline and the fused op do not make; "
        "`F.interpolate(...).argmax(1)` for labels.",
        "- **compiled**: `torch.compile(eager, dynamic=False)` (inductor); compile time (first call minus a "
        "steady call) is listed separately and not in the timings (the first compile of the run also pays for "
        "dynamo/inductor start-up). The inductor cache directory was "
        + ("a fresh empty one, so compile times are cold." if cfg["fresh_inductor_cache"] else
           "the default one, so compile times may be warm (cached)."),
        "- **fused**: `attn2scale.ops.scale_merge` / `ops.upsample_argmax` / `ops.interp`.",
        "- **fused/best**: fused time over the faster of eager and compiled (eager alone without a compiled run).",
        "- **fwd** runs under `torch.no_grad()`; **fwd+bwd** runs the forward with autograd and "
        "`torch.autograd.grad` w.r.t. the score maps and the logits with a fixed upstream gradient.",
        "- **peak extra MiB**: "
        + ("`torch.cuda.max_memory_allocated()` minus the bytes allocated before one call." if m["device"].startswith("cuda")
           else "the allocator events recorded by `torch.profiler.profile(profile_memory=True)` for one call, "
                "replayed in order: the highest running total above the start of the call, outputs and "
                "gradients included (allocations outside PyTorch's allocator are not seen)."),
        "- **GB/s**: minimal-traffic model (read inputs + write output; backward adds read upstream gradient and "
        "inputs, write input gradients) / median time. **fused/floor**: fused time over that traffic moved at "
        + (f"the copy bandwidth measured in this run ({cb['gbps']:.2f} GB/s: best `dst.copy_(src)` of "
           f"{cb['bytes'] / 2**20:.0f} MiB float32, read + write counted, the faster of the measurements at the start and at the end of the run)."
           if cb else "the copy bandwidth (not measured in this run)."),
        "- Every case is checked once before timing, fused and compiled against eager: " + checks.describe_tolerances()
        + ". A row failing any check is **INVALID**: its target verdicts read INVALID and the run exits with "
        "status 1.",
    ]


def _results_table(report: dict) -> List[str]:
    header = ["case", "shape", "op", "pass", "eager ms", "compiled ms", "fused ms", "fused/eager", "fused/compiled",
              "fused/best", "compile s", "peak extra MiB eager", "compiled", "fused", "fused GB/s", "fused/floor",
              "check"]
    rows = []
    for r in report["rows"]:
        cs, ff = r.get("compile_s"), r.get("fused_over_floor")
        gbps = f"{r['fused']['gbps']:.2f}" + (
            f" ({r['fused_frac_peak_bw'] * 100:.1f}% of peak)" if "fused_frac_peak_bw" in r else "")
        rows.append([r["case"], r["shape"], r["op"], r["pass"], ms_iqr(r["eager"]), ms_iqr(r["compiled"]),
                     ms_iqr(r["fused"]), ratio(r["fused_over_eager"]), ratio(r["fused_over_compiled"]),
                     ratio(r["fused_over_best"]), "-" if cs is None else f"{cs:.1f}", mib(r["eager"]),
                     mib(r["compiled"]), mib(r["fused"]), gbps, "-" if ff is None else f"{ff:.2f}x",
                     _check_detail(r)])
    return md_table(header, rows, right=range(4, 16))


def to_markdown(report: dict) -> str:
    cfg = report["config"]
    lines = ["# Fused score-map ops: microbenchmark", "",
             f"Generated by `tools/bench_kernels.py` on {report['date']}.", "", MODEL_LINK, "", "## Machine", ""]
    lines += machine_lines(report["machine"])
    lines += [
        "", "## Command", "", "```", report["command"], "```", "",
        f"Warm-up {cfg['warmup']} calls, {cfg['repeats']} timed samples per implementation (each sample at least "
        f"{cfg['min_sample_s'] * 1e3:.0f} ms of back-to-back calls; eager, compiled and fused take turns sample by "
        f"sample), median ± half the inter-quartile range. Whole run: {report['total_s']:.0f} s.",
        "", "## What is measured", "",
    ]
    lines += _measured_lines(report)
    lines += ["", "## Results", ""] + _results_table(report)
    lines += ["", "## Targets", ""]
    lines += md_table(["case", "pass", "target", "measured", "verdict"],
                      [[t["case"], t["pass"], t["target"], t["measured"], f"**{t['verdict']}**"]
                       for t in report["targets"]])
    lines += ["", f"Targets: merge fwd+bwd <= {targets.TARGET_MERGE}x eager and the faster baseline; "
                  f"upsample_argmax <= {targets.TARGET_ARGMAX}x compiled; every fused row <= "
                  f"{targets.TARGET_FLOOR:g}x its floor."]
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"
