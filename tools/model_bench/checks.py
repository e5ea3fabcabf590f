"""Fused vs reference, in the same mode, on the first (untimed) call of each
configuration. Both start from the same weights, inputs and dropout masks, so
they differ only by the ops' rounding (the fused kernels and the reference
agree to about 1 ulp per op; a 16-layer net and its backward grow that).

A failed check makes the pair INVALID: its verdicts read INVALID and the run
exits with status 1.
"""

from __future__ import annotations

import torch

from attn2scale.ops import reference

RTOL_LOSS = 1e-4  # relative, per loss (the fused map's, then each scale's)
TOL_OUT = 1e-4  # max |difference| / max |reference| of the fused scores
TOL_GRAD = 1e-3  # the same, per parameter gradient (backward through 16 layers)


def describe() -> str:
    return (f"losses `allclose(rtol={RTOL_LOSS:g})`; fused scores max|fused - reference| <= {TOL_OUT:g} · "
            f"max|reference|; every parameter gradient (taken before the solver step) the same with "
            f"{TOL_GRAD:g}; labels equal except where the reference's zoomed scores of the two labels differ by "
            f"at most twice the largest score difference (a tie the rounding may break either way)")


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |a|, or the absolute difference where a is all zero."""
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        return float("inf")
    scale = float(a.abs().max()) if a.numel() else 0.0
    d = float((a - b).abs().max()) if a.numel() else 0.0
    return d / scale if scale > 0 else d


def compare_train(ref: dict, got: dict) -> dict:
    losses_ok = bool(torch.allclose(got["losses"], ref["losses"], rtol=RTOL_LOSS, atol=0.0))
    out_diff = _rel_diff(ref["fusion"], got["fusion"])
    missing = sorted(set(ref["grads"]) ^ set(got["grads"]))
    grad_diffs = {n: _rel_diff(g, got["grads"][n]) for n, g in ref["grads"].items() if n in got["grads"]}
    worst = max(grad_diffs, key=grad_diffs.get) if grad_diffs else None
    grad_ok = not missing and all(d <= TOL_GRAD for d in grad_diffs.values())
    ok = losses_ok and out_diff <= TOL_OUT and grad_ok
    detail = (f"losses {'ok' if losses_ok else 'DIFFER'} (reference {_fmt(ref['losses'])}, fused "
              f"{_fmt(got['losses'])}); fused scores rel. diff {out_diff:.1e}; worst gradient rel. diff "
              + (f"{grad_diffs[worst]:.1e} ({worst})" if worst else "n/a")
              + (f"; gradients missing on one side: {missing[:3]}" if missing else ""))
    return {"ok": ok, "detail": detail, "loss_reference": ref["losses"].tolist(), "loss_fused": got["losses"].tolist(),
            "fusion_rel_diff": out_diff, "worst_grad_rel_diff": grad_diffs.get(worst), "worst_grad": worst}


def _fmt(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.6f}" for v in t.tolist()) + "]"


def _label_mismatches(ref: dict, got: dict, score_diff: float) -> tuple:
    """(mismatches, of which not ties): a tie is a mismatch where the reference's zoomed scores of
    both labels are within twice the largest score difference of each other."""
    lab_r, lab_g = ref["labels"], got["labels"]
    mism = lab_r != lab_g
    n = int(mism.sum())
    if not n:
        return 0, 0
    up = reference.interp(ref["scores"].double(), tuple(lab_r.shape[-2:]))  # check only: the full map is fine
    c = up.shape[1]
    inside = (lab_g >= 0) & (lab_g < c)
    v_r = up.gather(1, lab_r[:, None])[:, 0]
    v_g = up.gather(1, lab_g.clamp(0, c - 1)[:, None])[:, 0]
    tie = inside & ((v_r - v_g).abs() <= 2 * score_diff + 1e-12)
    return n, int((mism & ~tie).sum())


def compare_infer(ref: dict, got: dict) -> dict:
    if ref["labels"].shape != got["labels"].shape:
        return {"ok": False, "detail": f"labels {tuple(got['labels'].shape)} vs {tuple(ref['labels'].shape)}"}
    rel = _rel_diff(ref["scores"], got["scores"])
    abs_diff = float((ref["scores"].double() - got["scores"].double()).abs().max())
    n_mism, n_bad = _label_mismatches(ref, got, abs_diff)
    ok = rel <= TOL_OUT and n_bad == 0
    detail = (f"fused scores rel. diff {rel:.1e}; labels: {n_mism} of {ref['labels'].numel()} differ"
              + (f", {n_bad} of them not ties" if n_mism else ""))
    return {"ok": ok, "detail": detail, "scores_rel_diff": rel, "label_mismatches": n_mism,
            "label_mismatches_not_ties": n_bad}


def compare(workload: str, ref: dict, got: dict) -> dict:
    return compare_train(ref, got) if workload == "train" else compare_infer(ref, got)
