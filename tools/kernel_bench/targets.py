"""The issue's targets, one verdict per relevant row: PASS, MISS, UNTESTED
(the baseline it needs was not run) or INVALID (the row's correctness check
failed, so its timings are not evidence of anything)."""

from __future__ import annotations

from typing import List, Optional

# Fused time as a fraction of the baseline's.
TARGET_MERGE = 0.25  # attention / max / avg scale_merge fwd+bwd vs eager and vs the faster of eager and compiled
TARGET_ARGMAX = 0.10  # upsample_argmax vs compiled, and no N x C x H x W allocation
TARGET_FLOOR = 3.0  # every fused row: time <= 3x the minimal traffic moved at the measured copy bandwidth

MERGE_OPS = ("scale_merge[attention]", "scale_merge[max]", "scale_merge[avg]")


def _verdict(passed: bool, untested: bool) -> str:
    if not passed:
        return "MISS"
    return "UNTESTED" if untested else "PASS"


def _merge_target(r) -> dict:
    fe, fc, fb = r["fused_over_eager"], r["fused_over_compiled"], r["fused_over_best"]
    target = (f"{r['op']} fwd+bwd <= {TARGET_MERGE}x eager and <= {TARGET_MERGE}x the faster of eager and "
              f"compiled")
    measured = (f"{fe:.3f}x eager, " + ("no compiled run" if fc is None else f"{fc:.3f}x compiled") +
                f", {fb:.3f}x the faster ({r['best_baseline']})")
    # without a compiled run only the eager half is tested
    return {"target": target, "measured": measured,
            "verdict": _verdict(fe <= TARGET_MERGE and fb <= TARGET_MERGE, fc is None)}


def _argmax_target(r) -> dict:
    fc = r["fused_over_compiled"]
    largest = r["fused"]["memory"]["largest_alloc_bytes"]
    no_full = largest < r["full_map_bytes"]
    target = f"upsample_argmax <= {TARGET_ARGMAX}x compiled, no N*C*H*W allocation"
    measured = (("no compiled run" if fc is None else f"{fc:.3f}x compiled") +
                f"; largest fused allocation {largest / 2**20:.2f} MiB vs N*C*H*W*4 = "
                f"{r['full_map_bytes'] / 2**20:.2f} MiB")
    return {"target": target, "measured": measured,
            "verdict": _verdict(no_full and (fc is None or fc <= TARGET_ARGMAX), fc is None)}


def _floor_target(r) -> Optional[dict]:
    ff = r.get("fused_over_floor")
    target = f"fused <= {TARGET_FLOOR:g}x its minimal-traffic floor (traffic / measured copy bandwidth)"
    if ff is None:
        return {"target": target, "measured": "no copy bandwidth measured", "verdict": "UNTESTED"}
    measured = (f"{ff:.2f}x floor ({r['fused']['median_s'] * 1e3:.3f} ms vs {r['floor_s'] * 1e3:.3f} ms; "
                f"{r['fused']['gbps']:.2f} GB/s)")
    return {"target": target, "measured": measured, "verdict": _verdict(ff <= TARGET_FLOOR, False)}


def evaluate_targets(rows: List[dict]) -> List[dict]:
    out = []
    for r in rows:
        found = []
        if r["op"] in MERGE_OPS and r["pass"] == "fwd+bwd":
            found.append(_merge_target(r))
        if r["op"] == "upsample_argmax":
            found.append(_argmax_target(r))
        found.append(_floor_target(r))
        for t in found:
            if not r["valid"]:
                t["verdict"] = "INVALID"
                t["measured"] = f"correctness check failed ({r['invalid_reason']}); " + t["measured"]
            out.append({"case": r["case"], "pass": r["pass"], **t})
    return out
