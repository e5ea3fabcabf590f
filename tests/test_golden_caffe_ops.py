"""The fused score-map ops against real Caffe outputs (../shared/caffe/golden).

Fixtures used (all float32, produced by real Caffe; see the READMEs beside them):

* ``authors_fork/interp/<case>/``: the authors' fork's Interp layer alone,
  forward and backward, for every size rule (shrink, zoom, both, explicit
  height/width, cropping pads, copy).
* ``authors_fork/spatial_product/<case>/``: the fork's SpatialProduct layer
  (top = feat * att, att broadcast over channels), forward and backward.
* ``attention_merge/attention_merge.h5``: upstream BVLC layers chained into the
  Attention-to-Scale merge for two scales (Softmax, Slice, Tile, Eltwise).
* ``authors_fork/{attention47,max30,avg28_2}/``: the authors' three-scale
  train nets (97x97 input, 13x13 score maps, 4 SoftmaxWithLoss losses) and
  their test nets (129x129 input, 17x17 fusion, Interp zoom 8).

Every test compares with a Caffe array, never with our own output.  Tolerances
(stated in each call): values ``rtol=1e-5`` plus ``atol=1e-5 * max|ref|``
(the average fusion ``rtol=1e-6``, ``atol=1e-7 * max|ref|``, so that Caffe's
Power scale 0.33333 is told apart from 1/3);
parameter gradients ``rtol=1e-4`` plus ``atol=1e-5 * max|ref|``; label maps and
argmax labels exactly.  Each check runs on the compiled kernels (``fused``,
through the public :mod:`attn2scale.ops` functions) and on the pure-PyTorch
twins (``reference``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attn2scale import ops
from attn2scale.ops import reference

from conftest import require_shared, shared_dir

GOLDEN = ("caffe", "golden")
FORK = GOLDEN + ("authors_fork",)
IGNORE = 255
TRAIN_CASES = ("attention47", "max30", "avg28_2")
MODE = {"attention47": "attention", "max30": "max", "avg28_2": "avg"}


# ---- loaders ---------------------------------------------------------------------


def load_npy(path) -> torch.Tensor:
    """A .npy file as a tensor (dtype as stored)."""
    return torch.from_numpy(np.load(Path(path)))


def load_h5(path, *keys: str) -> Dict[str, torch.Tensor]:
    """Datasets of an HDF5 file, keyed by their path inside it."""
    h5py = pytest.importorskip("h5py", reason="h5py is needed to read the BVLC golden .h5 fixtures")
    with h5py.File(Path(path), "r") as f:
        return {k: torch.from_numpy(np.asarray(f[k])) for k in keys}


def load_json(path):
    with open(Path(path)) as f:
        return json.load(f)


def blob(case: str, name: str, phase: str = "train") -> torch.Tensor:
    """A Caffe blob of the authors' nets; max30/avg28_2 do not repeat the tower
    blobs that are bit-identical to attention47's, so fall back to those."""
    own = require_shared(*FORK, case) / phase / "blobs" / f"{name}.npy"
    if own.exists():
        return load_npy(own)
    skipped = load_json(require_shared(*FORK, case, "summary.json"))[f"{phase}_skipped_identical_to_attention47"]
    assert name in skipped, f"{case}/{phase}/blobs/{name}.npy is neither stored nor listed as identical to attention47"
    return load_npy(require_shared(*FORK, "attention47", phase, "blobs", f"{name}.npy"))


def _subdirs(*parts: str):
    """Case directories, collected at import time; ["<absent>"] when ../shared is
    missing, so that the test runs once and skips with require_shared's reason."""
    d = shared_dir().joinpath(*parts)
    names = sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
    return names or ["<absent>"]


INTERP_CASES = _subdirs(*FORK, "interp")
SPATIAL_PRODUCT_CASES = _subdirs(*FORK, "spatial_product")


# ---- the two implementations under test -------------------------------------------


@pytest.fixture(params=["fused", "reference"])
def impl(request):
    if request.param == "fused" and not ops.extension_available():
        pytest.skip("the compiled extension attn2scale._C is not built")
    return request.param


def run_interp(impl: str, x, size, pad_beg: int = 0, pad_end: int = 0):
    if impl == "fused":
        return ops.interp(x, size, pad_beg=pad_beg, pad_end=pad_end)
    return reference.interp(x, size, pad_beg, pad_end)


def run_merge(impl: str, scores, size, mode, logits=None, gate=None, avg_weight=None):
    """(merge, aux) of the chosen implementation."""
    if impl == "fused":
        out, aux = ops.scale_merge(scores, size, mode, logits=logits, gate=gate, avg_weight=avg_weight, return_aux=True)
        return out, aux
    return reference.scale_merge(scores, size, mode, logits, gate, avg_weight)


def run_argmax(impl: str, scores, size):
    if impl == "fused":
        return ops.upsample_argmax(scores, size, return_score=True)
    return reference.upsample_argmax(scores, size, True)


# ---- comparison --------------------------------------------------------------------


def assert_caffe_close(what: str, got: torch.Tensor, ref: torch.Tensor, *, rtol: float = 1e-5,
                       atol_rel: float = 1e-5) -> float:
    """|got - ref| <= atol_rel * max|ref| + rtol * |ref| elementwise.

    Prints and returns the achieved max |got - ref| / max|ref|; on failure the
    message names the worst element.
    """
    assert tuple(got.shape) == tuple(ref.shape), f"{what}: shape {tuple(got.shape)} != Caffe {tuple(ref.shape)}"
    g, r = got.detach().double(), ref.double()
    scale = r.abs().max().item()
    err = (g - r).abs()
    bound = atol_rel * scale + rtol * r.abs()
    excess = err - bound
    worst = int(excess.argmax())
    idx = tuple(int(i) for i in np.unravel_index(worst, tuple(r.shape)))
    rel = err.max().item() / scale if scale > 0 else err.max().item()
    print(f"{what}: max|err| {err.max().item():.3g}, max|ref| {scale:.3g}, max|err|/max|ref| {rel:.3g}")
    assert excess.max().item() <= 0, (
        f"{what}: {int((excess > 0).sum())} of {r.numel()} elements off (rtol {rtol}, atol {atol_rel}*max|ref| "
        f"= {atol_rel * scale:.3g}); worst at {idx}: ours {g.flatten()[worst].item():.9g}, "
        f"Caffe {r.flatten()[worst].item():.9g}; max|err| {err.max().item():.3g} ({rel:.3g} of max|ref|)"
    )
    return rel


def conv1x1_grads(d_out: torch.Tensor, inp: torch.Tensor):
    """Weight and bias gradients of a 1x1 convolution from its output gradient:
    dW[k, i] = sum_px dOut[k, px] * In[i, px], db[k] = sum_px dOut[k, px] (float64)."""
    d, x = d_out.detach().double(), inp.double()
    return torch.einsum("nkhw,nihw->ki", d, x)[:, :, None, None], d.sum(dim=(0, 2, 3))


def power_scale(case: str) -> float:
    """The Power layer's scale in the case's train prototxt (avg28_2's averaging)."""
    text = require_shared(*FORK, case, "train_golden.prototxt").read_text()
    found = re.findall(r'type:\s*"Power".*?power_param\s*\{[^}]*?scale:\s*([-+0-9.eE]+)', text, flags=re.S)
    assert len(found) == 1, f"{case}: expected one Power layer with a scale, found {found}"
    return float(found[0])


# ---- 1. Interp alone (authors' fork) ----------------------------------------------


@pytest.mark.parametrize("case", INTERP_CASES)
def test_interp_layer(case, impl):
    d = require_shared(*FORK, "interp", case)
    p = load_json(d.parent / "cases.json")[case]["interp_param"]
    x, ref_out = load_npy(d / "input.npy"), load_npy(d / "output.npy")
    top_diff, ref_grad = load_npy(d / "top_diff.npy"), load_npy(d / "input_grad.npy")
    pad_beg, pad_end = p.get("pad_beg", 0), p.get("pad_end", 0)

    size = ops.caffe_interp_size(
        x.shape[2], x.shape[3], shrink_factor=p.get("shrink_factor"), zoom_factor=p.get("zoom_factor"),
        out_height=p.get("height"), out_width=p.get("width"), pad_beg=pad_beg, pad_end=pad_end,
    )
    assert size == tuple(ref_out.shape[2:]), f"{case}: size {size} but Caffe's output is {tuple(ref_out.shape[2:])}"

    xl = x.clone().requires_grad_(True)
    out = run_interp(impl, xl, size, pad_beg, pad_end)
    assert_caffe_close(f"{case} forward", out, ref_out, rtol=1e-5, atol_rel=1e-5)
    out.backward(top_diff)
    assert_caffe_close(f"{case} backward (autograd)", xl.grad, ref_grad, rtol=1e-5, atol_rel=1e-5)
    if impl == "fused":
        g = torch.ops.attn2scale.interp_backward(top_diff, list(x.shape), pad_beg, pad_end)
        assert_caffe_close(f"{case} interp_backward op", g, ref_grad, rtol=1e-5, atol_rel=1e-5)


# ---- 2. SpatialProduct (authors' fork) as a one-scale gated merge -----------------


@pytest.mark.parametrize("case", SPATIAL_PRODUCT_CASES)
def test_spatial_product(case, impl):
    d = require_shared(*FORK, "spatial_product", case)
    feat = load_npy(d / "feat.npy").requires_grad_(True)
    att = load_npy(d / "att.npy").requires_grad_(True)
    assert att.shape[1] == 1
    out, _ = run_merge(impl, [feat], feat.shape[-2:], "avg", gate=att.expand_as(feat), avg_weight=1.0)
    assert_caffe_close(f"{case} forward", out, load_npy(d / "output.npy"), rtol=1e-5, atol_rel=1e-5)
    out.backward(load_npy(d / "top_diff.npy"))
    assert_caffe_close(f"{case} d feat", feat.grad, load_npy(d / "feat_grad.npy"), rtol=1e-5, atol_rel=1e-5)
    assert_caffe_close(f"{case} d att", att.grad, load_npy(d / "att_grad.npy"), rtol=1e-5, atol_rel=1e-5)


# ---- 3. BVLC two-scale attention merge --------------------------------------------


def test_attention_merge_bvlc(impl):
    path = require_shared(*GOLDEN, "attention_merge", "attention_merge.h5")
    h = load_h5(path, "input/score_s1", "input/score_s2", "input/att_logits", "output/fusion",
                "output/att_weight", "top_diff/fusion", "grad/score_s1", "grad/score_s2", "grad/att_logits")
    s1 = h["input/score_s1"].requires_grad_(True)
    s2 = h["input/score_s2"].requires_grad_(True)
    logits = h["input/att_logits"].requires_grad_(True)
    out, weights = run_merge(impl, [s1, s2], s1.shape[-2:], "attention", logits=logits)
    assert_caffe_close("fusion", out, h["output/fusion"], rtol=1e-5, atol_rel=1e-5)
    assert_caffe_close("attention weights (aux)", weights, h["output/att_weight"], rtol=1e-5, atol_rel=1e-5)
    out.backward(h["top_diff/fusion"])
    for name, leaf in (("score_s1", s1), ("score_s2", s2), ("att_logits", logits)):
        assert_caffe_close(f"d {name}", leaf.grad, h[f"grad/{name}"], rtol=1e-5, atol_rel=1e-5)


# ---- 4. The authors' train nets: forward of every resize and of the fusion -------


def test_train_image_pyramid_and_labels(impl):
    """The Caffe-Interp image pyramid and the label maps of the train nets."""
    a = "attention47"
    data = load_npy(require_shared(*FORK, a, "train", "data.npy"))
    label = load_npy(require_shared(*FORK, a, "train", "label.npy"))
    for name, kw in (("shrink_data05", dict(shrink_factor=2)), ("shrink_data075", dict(shrink_factor=4, zoom_factor=3))):
        ref = blob(a, name)
        size = ops.caffe_interp_size(*data.shape[2:], **kw)
        assert size == tuple(ref.shape[2:]), f"{name}: size {size} != Caffe {tuple(ref.shape[2:])}"
        assert_caffe_close(name, run_interp(impl, data, size), ref, rtol=1e-5, atol_rel=1e-5)
    for name, s in (("label_shrink8", 8), ("label_shrink16", 16)):
        ref = blob(a, name)
        size = ops.caffe_interp_size(*label.shape[2:], shrink_factor=s)
        assert size == tuple(ref.shape[2:]), f"{name}: size {size} != Caffe {tuple(ref.shape[2:])}"
        got = run_interp(impl, label, size)
        # every sample lands on a pixel (97 = 32k - 31), so the labels must be copied exactly
        assert torch.equal(got, ref), f"{name}: {int((got != ref).sum())} labels differ from Caffe's"
        assert set(torch.unique(ref).tolist()) <= set(range(7)) | {IGNORE}


def test_train_score_and_feature_resizes(impl):
    a = "attention47"
    for src, dst, kw in (
        ("fc8_voc10_part_res05", "fc8_voc10_part_res05_interp", dict(zoom_factor=2)),
        ("fc8_voc10_part_res075", "fc8_voc10_part_res075_interp", dict(zoom_factor=4, shrink_factor=3)),
        ("fc7_res05", "fc7_res05_interp", dict(zoom_factor=2)),
        ("fc7_res075", "fc7_res075_interp", dict(zoom_factor=4, shrink_factor=3)),
    ):
        x, ref = blob(a, src), blob(a, dst)
        size = ops.caffe_interp_size(*x.shape[2:], **kw)
        assert size == tuple(ref.shape[2:]) == (13, 13), f"{dst}: size {size} != Caffe {tuple(ref.shape[2:])}"
        assert_caffe_close(dst, run_interp(impl, x, size), ref, rtol=1e-5, atol_rel=1e-5)


def _towers(case: str, requires_grad: bool = False):
    """The three towers' fc8 score maps (13x13, 10x10, 7x7) as leaf tensors."""
    names = ("fc8_voc10_part", "fc8_voc10_part_res075", "fc8_voc10_part_res05")
    return [blob(case, n).clone().requires_grad_(requires_grad) for n in names]


def _fusion(impl: str, case: str, towers, logits: Optional[torch.Tensor]):
    mode = MODE[case]
    weight = power_scale(case) if mode == "avg" else None
    return run_merge(impl, towers, (13, 13), mode, logits=logits, avg_weight=weight)


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_fusion_forward(case, impl):
    towers = _towers(case)
    logits = blob(case, "att_fc") if MODE[case] == "attention" else None
    out, aux = _fusion(impl, case, towers, logits)
    if MODE[case] == "avg":
        # Power scale 0.33333 and 1/3 differ by 1e-5 relative, right at the usual
        # tolerance; the average is a sum and one product, so hold it 10x tighter
        # (with 1/3 the worst element is off by 3.3e-5 against a bound of 3.6e-6).
        assert_caffe_close(f"{case} fc8_fusion", out, blob(case, "fc8_fusion"), rtol=1e-6, atol_rel=1e-7)
    else:
        assert_caffe_close(f"{case} fc8_fusion", out, blob(case, "fc8_fusion"), rtol=1e-5, atol_rel=1e-5)
    resized = [towers[0], blob(case, "fc8_voc10_part_res075_interp"), blob(case, "fc8_voc10_part_res05_interp")]
    if MODE[case] == "attention":
        assert_caffe_close(f"{case} attention (aux)", aux, blob(case, "attention"), rtol=1e-5, atol_rel=1e-5)
        for s in range(3):  # the per-scale products Caffe's SpatialProduct layers computed
            prod = ("fc8_product", "fc8_res075_product", "fc8_res05_product")[s]
            assert_caffe_close(f"{case} {prod}", aux[:, s : s + 1] * resized[s], blob(case, prod),
                               rtol=1e-5, atol_rel=1e-5)
    elif MODE[case] == "max":
        # the winning scale must be one whose Caffe-resized map equals Caffe's fusion
        winner = torch.stack(resized).gather(0, aux.long()[None])[0]
        assert_caffe_close(f"{case} resized map picked by aux", winner, blob(case, "fc8_fusion"),
                           rtol=1e-5, atol_rel=1e-5)
    else:
        assert aux is None or aux.numel() == 0
        plain, _ = run_merge(impl, towers, (13, 13), "avg", avg_weight=1.0)
        assert_caffe_close(f"{case} fc_fusion (sum before Power)", plain, blob(case, "fc_fusion"),
                           rtol=1e-5, atol_rel=1e-5)


# ---- 5. The authors' train nets: losses and parameter gradients -------------------


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_losses_and_param_grads(case, impl):
    """The 4 SoftmaxWithLoss losses built from our ops, and the gradients they send
    to the 1x1 convolutions producing the fused inputs (fc8 per tower, att_fc)."""
    base = require_shared(*FORK, case, "train")
    ref_losses = load_json(base / "losses.json")
    lab8 = blob(case, "label_shrink8")[:, 0].long()
    lab16 = blob(case, "label_shrink16")[:, 0].long()

    towers = _towers(case, requires_grad=True)
    f1, f075, f05 = towers
    logits = blob(case, "att_fc").requires_grad_(True) if MODE[case] == "attention" else None
    fusion, _ = _fusion(impl, case, towers, logits)
    f075_up = run_interp(impl, f075, ops.caffe_interp_size(10, 10, zoom_factor=4, shrink_factor=3))

    def ce(score, lab):  # Caffe's default normalisation: mean over the non-ignored pixels
        return F.cross_entropy(score, lab, ignore_index=IGNORE, reduction="mean")

    losses = {"loss": ce(fusion, lab8), "loss_res1": ce(f1, lab8), "loss_res075": ce(f075_up, lab8),
              "loss_res05": ce(f05, lab16)}
    for name, value in losses.items():
        assert value.item() == pytest.approx(ref_losses[name], rel=1e-5), f"{case} {name}"
    total = sum(losses.values())
    assert total.item() == pytest.approx(ref_losses["total"], rel=1e-5)
    total.backward()

    fc7 = {"fc8_voc10_part": "fc7", "fc8_voc10_part_res075": "fc7_res075", "fc8_voc10_part_res05": "fc7_res05"}
    sum_w, sum_b = 0, 0
    errs = {}
    for (layer, inp), leaf in zip(fc7.items(), towers):
        dw, db = conv1x1_grads(leaf.grad, blob(case, inp))
        sum_w, sum_b = sum_w + dw, sum_b + db
        if case == "attention47":
            per = require_shared(*FORK, case, "train", "param_grads_per_layer")
            errs[f"{layer} w"] = assert_caffe_close(f"{case} {layer} dW", dw, load_npy(per / f"{layer}__0.npy"),
                                                    rtol=1e-4, atol_rel=1e-5)
            errs[f"{layer} b"] = assert_caffe_close(f"{case} {layer} db", db, load_npy(per / f"{layer}__1.npy"),
                                                    rtol=1e-4, atol_rel=1e-5)
    errs["fc8_w"] = assert_caffe_close(f"{case} fc8_w (3 towers)", sum_w, load_npy(base / "param_grads" / "fc8_w.npy"),
                                       rtol=1e-4, atol_rel=1e-5)
    errs["fc8_b"] = assert_caffe_close(f"{case} fc8_b (3 towers)", sum_b, load_npy(base / "param_grads" / "fc8_b.npy"),
                                       rtol=1e-4, atol_rel=1e-5)
    if logits is not None:
        dw, db = conv1x1_grads(logits.grad, blob(case, "att_conv1"))
        errs["att_fc_w"] = assert_caffe_close(f"{case} att_fc_w", dw, load_npy(base / "param_grads" / "att_fc_w.npy"),
                                              rtol=1e-4, atol_rel=1e-5)
        errs["att_fc_b"] = assert_caffe_close(f"{case} att_fc_b", db, load_npy(base / "param_grads" / "att_fc_b.npy"),
                                              rtol=1e-4, atol_rel=1e-5)
    print(f"{case} [{impl}] max|err|/max|ref| of the parameter gradients: "
          + ", ".join(f"{k} {v:.2g}" for k, v in errs.items()))


# ---- 6. The authors' test nets: zoom 8 and the fused upsample + argmax -----------


@pytest.mark.parametrize("case", ("max30", "avg28_2"))
def test_test_net_upsample_and_argmax(case, impl):
    fusion = blob(case, "fc8_fusion", phase="test")
    ref = blob(case, "fc8_interp", phase="test")
    size = ops.caffe_interp_size(*fusion.shape[2:], zoom_factor=8)
    assert size == tuple(ref.shape[2:]) == (129, 129)
    assert_caffe_close(f"{case} fc8_interp", run_interp(impl, fusion, size), ref, rtol=1e-5, atol_rel=1e-5)

    labels, score = run_argmax(impl, fusion, size)
    top2 = ref.topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    tie_tol = 1e-5
    near_tie = gap <= tie_tol
    # such near-ties must be rare for the comparison to mean anything (here: none or one pixel)
    assert int(near_tie.sum()) <= 0.001 * near_tie.numel(), f"{case}: {int(near_tie.sum())} near-tied pixels"
    ref_labels = ref.argmax(dim=1)
    bad = (labels != ref_labels) & ~near_tie
    print(f"{case}: {int(near_tie.sum())} pixels with a top-2 gap <= {tie_tol} (min gap {gap.min().item():.3g}); "
          f"{int((labels != ref_labels).sum())} labels differ from Caffe's argmax")
    assert not bad.any(), f"{case}: {int(bad.sum())} labels differ at pixels without a near-tie, e.g. {bad.nonzero()[:5].tolist()}"
    assert_caffe_close(f"{case} winning score", score, top2[:, 0], rtol=1e-5, atol_rel=1e-5)
