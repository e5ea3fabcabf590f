"""Verification of converted weights: the model's blobs against reference blobs (HDF5 or npz)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

import torch

from .errors import CaffeFormatError

# --------------------------------------------------------------------------
# Verification against reference blobs
# --------------------------------------------------------------------------

@dataclass
class BlobError:
    blob: str
    shape: Tuple[int, ...]
    max_abs_err: float
    max_abs_ref: float

    @property
    def rel(self) -> float:
        return self.max_abs_err / max(self.max_abs_ref, 1e-30)


@dataclass
class VerifyReport:
    reference: str
    errors: List[BlobError] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # reference blobs the model should have produced
    not_compared: List[str] = field(default_factory=list)  # reference blobs outside a hand-written model
    tolerance: float = 1e-5

    @property
    def ok(self) -> bool:
        return bool(self.errors) and not self.missing and all(e.rel <= self.tolerance for e in self.errors)

    def lines(self) -> List[str]:
        out = [f"{'blob':32s} {'shape':>22s} {'max|err|':>11s} {'max|ref|':>11s} {'rel':>10s}"]
        for e in self.errors:
            flag = "" if e.rel <= self.tolerance else "  FAIL"
            out.append(f"{e.blob:32s} {str(e.shape):>22s} {e.max_abs_err:11.3e} {e.max_abs_ref:11.3e} {e.rel:10.2e}{flag}")
        for m in self.missing:
            out.append(f"{m:32s} not produced by the converted model  FAIL")
        if self.not_compared:
            out.append(f"not compared (the hand-written model has no such blob): {', '.join(self.not_compared)}")
        out.append(f"{'PASS' if self.ok else 'FAIL'}: {len(self.errors)} blobs, worst relative error "
                   f"{max((e.rel for e in self.errors), default=0.0):.3g} (tolerance {self.tolerance:g})")
        return out

    def to_json(self) -> dict:
        return {"reference": self.reference, "ok": self.ok, "tolerance": self.tolerance, "missing": self.missing,
                "not_compared": self.not_compared,
                "blobs": [{"blob": e.blob, "shape": list(e.shape), "max_abs_err": e.max_abs_err,
                           "max_abs_ref": e.max_abs_ref, "rel": e.rel} for e in self.errors]}


def read_reference(spec: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """``(inputs, blobs)`` from ``FILE.h5[:GROUP]``: ``GROUP/input`` (a dataset for ``data``, or a group
    ``<blob>`` datasets; also ``GROUP/inputs/<blob>``) and ``GROUP/blobs/<blob>``."""
    import h5py

    path, _, group = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CaffeFormatError(f"{path}: cannot open the reference HDF5 file: {exc}") from None
    with f:
        g = f[group] if group else f
        if "blobs" not in g:
            raise CaffeFormatError(f"{spec}: no 'blobs' group (expected GROUP/blobs/<name> datasets)")
        blobs = {k: torch.from_numpy(v[()]) for k, v in g["blobs"].items()}
        if "inputs" in g or ("input" in g and isinstance(g["input"], h5py.Group)):
            inputs = {k: torch.from_numpy(v[()]) for k, v in g["inputs" if "inputs" in g else "input"].items()}
        elif "input" in g:
            inputs = {"data": torch.from_numpy(g["input"][()])}
        else:
            raise CaffeFormatError(f"{spec}: no 'input' dataset or 'inputs' group")
    return inputs, blobs


def compare_blobs(ours: Mapping[str, torch.Tensor], refs: Mapping[str, torch.Tensor], *, reference: str,
                  skip: Sequence[str] = (), tolerance: float = 1e-5, partial: bool = False) -> VerifyReport:
    """Per-blob errors; with ``partial`` (a hand-written model) blobs it lacks are listed, not failed."""
    rep = VerifyReport(reference=reference, tolerance=tolerance)
    for name, ref in refs.items():
        if name in skip:
            continue
        if name not in ours:
            (rep.not_compared if partial else rep.missing).append(name)
            continue
        o = ours[name].detach().to("cpu", torch.float64)
        r = ref.to(torch.float64)
        if tuple(o.shape) != tuple(r.shape):
            rep.errors.append(BlobError(name, tuple(r.shape), float("inf"), float(r.abs().max())))
            continue
        rep.errors.append(BlobError(name, tuple(r.shape), float((o - r).abs().max()), float(r.abs().max())))
    return rep
