"""The correctness check run once per case and pass before timing: an
implementation's results against eager's. A failed check makes the row
INVALID (its timings say nothing about a correct kernel)."""

from __future__ import annotations

import torch

from .cases import Case, resize

RTOL = 1e-4
ATOL_OUT = 1e-5
ATOL_GRAD = 1e-4  # gradients sum more terms than outputs
# A label differing from eager's is a tie, not an error, only where eager's
# resized scores of the two labels differ by at most TIE_TOL * (1 + |score|).
TIE_TOL = 1e-5


def describe_tolerances() -> str:
    """The rule above in words, for the report (generated from the constants, so it cannot drift)."""
    e = lambda x: f"{x:.0e}".replace("e-0", "e-")  # noqa: E731  1e-4, not 0.0001
    return (f"outputs and gradients `allclose` with rtol {e(RTOL)} and atol {e(ATOL_OUT)} (outputs) or "
            f"{e(ATOL_GRAD)} (gradients), in float32; labels equal, except that a label differing from eager's is "
            f"counted as a tie (and allowed) where eager's resized scores of the two labels differ by at most "
            f"{e(TIE_TOL)}·(1 + |eager's score|)")


def _compare_labels(args, ref: tuple, got: tuple) -> dict:
    (lab_ref,), (lab_got,) = ref, got
    if lab_ref.shape != lab_got.shape:
        return {"ok": False, "error": f"labels: shape {tuple(lab_got.shape)} != {tuple(lab_ref.shape)}",
                "max_abs_diff": None}
    mism = lab_ref != lab_got
    n_mism = int(mism.sum())
    near_tie = True
    if n_mism:
        with torch.no_grad():
            up = resize(args[0], tuple(lab_ref.shape[-2:]))
            c = up.shape[1]
            got_idx = lab_got.clamp(0, c - 1)  # an out-of-range label is caught below, not by gather
            v_ref = up.gather(1, lab_ref[:, None])[:, 0]
            v_got = up.gather(1, got_idx[:, None])[:, 0]
            gap = (v_ref - v_got).abs()[mism]
            near_tie = bool((gap <= TIE_TOL * (1 + v_ref.abs()[mism])).all()) and bool((got_idx == lab_got).all())
    return {"ok": n_mism == 0 or near_tie, "labels_equal": n_mism == 0, "n_label_mismatch": n_mism,
            "mismatches_are_near_ties": near_tie, "tie_tol": TIE_TOL, "max_abs_diff": None}


def compare(case: Case, args, ref: tuple, got: tuple, pass_name: str) -> dict:
    """Compare one implementation's results (``got``) with eager's (``ref``)."""
    if case.labels:
        return _compare_labels(args, ref, got)
    names = ["out"] if pass_name == "fwd" else ["out"] + [f"grad{i}" for i in range(len(ref) - 1)]
    if len(got) != len(ref):
        return {"ok": False, "error": f"{len(got)} results, eager gives {len(ref)}", "max_abs_diff": None}
    worst, ok = 0.0, True
    for nm, a, b in zip(names, ref, got):
        a, b = a.detach().float(), b.detach().float()
        if a.shape != b.shape:
            return {"ok": False, "error": f"{nm}: shape {tuple(b.shape)} != {tuple(a.shape)}", "max_abs_diff": None}
        d = float((a - b).abs().max()) if a.numel() else 0.0
        worst = max(worst, d)
        ok &= bool(torch.allclose(b, a, rtol=RTOL, atol=ATOL_OUT if nm == "out" else ATOL_GRAD))
    return {"ok": ok, "max_abs_diff": worst, "compared": names, "rtol": RTOL, "atol_out": ATOL_OUT,
            "atol_grad": ATOL_GRAD}
