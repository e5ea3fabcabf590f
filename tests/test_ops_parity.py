"""Fused ops (torch.ops.attn2scale.* through attn2scale.ops) against the
pure-PyTorch reference (attn2scale.ops.reference) and against real Caffe.

Tolerances:
* float64: within 1e-12 (scaled by max(1, |reference|)).
* float32: within 1e-5, and additionally bit for bit (torch.equal) wherever
  the design promises it. It holds for interp, scale_merge avg/max (values,
  the uint8 arg-max aux, gate), upsample_argmax (labels and score), forward.
  It does NOT hold for scale_merge 'attention': the kernel's softmax uses
  csrc/exp_math.h's exp, the correctly rounded expf (the Caffe goldens below,
  made with glibc's expf, match bit for bit), while the reference uses
  torch.exp, whose vectorised implementation differs by 1 ulp on a small
  fraction of elements. The attention tests
  therefore check the weights to 2 ulp and then check bit for bit that the
  output is the reference combination of those very weights.
  Backward passes sum in a different order than PyTorch autograd (gather vs
  scatter), so float32 gradients are compared to 1e-5 only.
* float16 / bfloat16: the kernels load every value to float32, compute
  exactly as in float32 and round once when storing. Compared with the
  float32 kernel on the same (upcast) values:
    - interp, scale_merge avg/max (+gate), upsample_argmax: bit for bit equal
      to the float32 result rounded to the low-precision dtype;
    - scale_merge attention: the softmax weights are stored (and reused) in
      the input dtype, so |out - out32| <= eps * max_s |R_s| + eps * |out32|
      with eps = 2**-10 (half) / 2**-7 (bfloat16), the unit roundoff times 2.
    - gradients: within rtol = 2 * eps, atol = 2 * eps * max|grad32|.
"""

from __future__ import annotations

import json

import pytest
import torch

from attn2scale import ops
from conftest import require_shared

R = ops.reference

pytestmark = pytest.mark.skipif(
    not ops.extension_available(), reason="attn2scale._C (the compiled kernels) is not built/loadable"
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and ops.cuda_kernels_available() else [])
MODES = tuple(ops.MERGE_MODES)  # every merge mode, from the one Python table
LOW_EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def randn(*shape, seed, dtype=torch.float32, device="cpu"):
    """Deterministic N(0,1) drawn in float64 on the CPU, then cast: float32 and
    float64 tests see the same values."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def tol_for(dtype):
    return 1e-12 if dtype == torch.float64 else 1e-5


def assert_near(got, want, tol, what=""):
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if want.numel() == 0:
        return
    g, w = got.double().cpu(), want.double().cpu()
    scale = max(1.0, w.abs().max().item())
    err = (g - w).abs().max().item()
    assert err <= tol * scale, f"{what}: max |diff| {err:.3e} > {tol:.1e} * {scale:.3g}"


def assert_parity(got, want, dtype, what="", bitwise=None):
    """float64 to 1e-12, float32 to 1e-5; bit for bit when bitwise is set."""
    assert_near(got, want, tol_for(dtype), what)
    if bitwise is None:
        bitwise = dtype == torch.float32
    if bitwise:
        diff = (got != want).sum().item()
        assert torch.equal(got, want), f"{what}: not bitwise equal ({diff} of {want.numel()} elements differ)"


def leaves(ts):
    return [t.detach().clone().requires_grad_(True) for t in ts]


def grads(out, inputs, grad_out, retain_graph=None):
    gs = torch.autograd.grad(out, inputs, grad_out, allow_unused=True, retain_graph=retain_graph)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(gs, inputs)]


# ---------------------------------------------------------------------------
# interp
# ---------------------------------------------------------------------------

# (N, C, h, w) -> (H, W), pad_beg, pad_end: odd/even, non-square, up/down,
# size-1 inputs and outputs, equal size, crops.
INTERP_CASES = [
    ((2, 3, 5, 7), (9, 4), 0, 0),
    ((1, 2, 6, 6), (11, 11), 0, 0),
    ((2, 2, 7, 7), (4, 4), 0, 0),
    ((1, 3, 8, 5), (3, 13), 0, 0),
    ((2, 2, 1, 1), (6, 3), 0, 0),
    ((2, 2, 7, 5), (1, 1), 0, 0),
    ((1, 2, 4, 9), (1, 5), 0, 0),
    ((1, 2, 9, 9), (9, 9), 0, 0),
    ((1, 2, 2, 2), (17, 33), 0, 0),
    ((2, 2, 12, 10), (7, 9), -2, -3),
    ((1, 2, 12, 10), (23, 5), -1, 0),
    ((1, 2, 12, 10), (4, 4), 0, -4),
    ((1, 1, 9, 9), (1, 1), -4, -4),  # crop to 1x1
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape,size,pad_beg,pad_end", INTERP_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_interp_matches_reference(shape, size, pad_beg, pad_end, dtype, device):
    x = randn(*shape, seed=1, dtype=dtype, device=device)
    got = ops.interp(x, size, pad_beg=pad_beg, pad_end=pad_end)
    want = R.interp(x, size, pad_beg, pad_end)
    assert_parity(got, want, dtype, "interp forward")
    # the friendly API and the raw op are the same computation
    assert torch.equal(torch.ops.attn2scale.interp(x, list(size), pad_beg, pad_end), got)

    # backward: gather adjoint vs autograd through the reference
    go = randn(*got.shape, seed=2, dtype=dtype, device=device)
    (xf,), (xr,) = leaves([x]), leaves([x])
    gf = grads(ops.interp(xf, size, pad_beg=pad_beg, pad_end=pad_end), [xf], go)[0]
    gr = grads(R.interp(xr, size, pad_beg, pad_end), [xr], go)[0]
    assert_parity(gf, gr, dtype, "interp backward", bitwise=False)
    if pad_beg or pad_end:  # cropped-away input gets exactly zero gradient
        off, he, we = -pad_beg, shape[2] + pad_beg + pad_end, shape[3] + pad_beg + pad_end
        mask = torch.ones_like(gf, dtype=torch.bool)
        mask[..., off : off + he, off : off + we] = False
        assert gf[mask].abs().max().item() == 0.0


# The resizes of the real nets, on small-C maps: label/image shrink by 8 at
# the training and test sizes, and the score-map upsampling.
REAL_CHAINS = [
    (321, dict(shrink_factor=8), (41, 41)),
    (241, dict(shrink_factor=8), (31, 31)),
    (161, dict(shrink_factor=8), (21, 21)),
    (513, dict(shrink_factor=8), (65, 65)),
    (513, dict(shrink_factor=16), (33, 33)),
    (513, dict(height=49, width=49), (49, 49)),
    (41, dict(zoom_factor=8), (321, 321)),
    (65, dict(zoom_factor=8), (513, 513)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("n_in,params,expect", REAL_CHAINS, ids=lambda v: str(v).replace(" ", ""))
def test_interp_real_chains(n_in, params, expect, dtype, device):
    assert ops.caffe_interp_size(
        n_in, n_in, shrink_factor=params.get("shrink_factor"), zoom_factor=params.get("zoom_factor"),
        out_height=params.get("height"), out_width=params.get("width"),
    ) == expect
    x = randn(1, 2, n_in, n_in, seed=3, dtype=dtype, device=device)
    got = ops.interp(x, **params)
    assert tuple(got.shape) == (1, 2) + expect
    assert_parity(got, R.interp(x, expect), dtype, f"interp {n_in}->{expect}")


def test_interp_shrink3_zoom4_on_31(device):
    """Caffe's Interp with zoom_factor 4 and shrink_factor 3 on 31: the size
    is computed by shrinking first ((31-1)//3+1 = 11) then zooming
    (11 + 10*3 = 41), and the layer does ONE resize 31 -> 41."""
    h = ops.caffe_interp_size(31, 31, shrink_factor=3, zoom_factor=4)
    assert h == (41, 41)
    mid = ops.caffe_interp_size(31, 31, shrink_factor=3)
    assert mid == (11, 11)
    assert ops.caffe_interp_size(*mid, zoom_factor=4) == h
    for dtype in (torch.float32, torch.float64):
        x = randn(2, 3, 31, 31, seed=4, dtype=dtype, device=device)
        one_step = ops.interp(x, shrink_factor=3, zoom_factor=4)
        assert_parity(one_step, R.interp(x, h), dtype, "31 -(shrink3,zoom4)-> 41")
        # the explicit two-step chain 31 -> 11 -> 41 is a different map
        two_step = ops.interp(ops.interp(x, mid), h)
        assert_parity(two_step, R.interp(R.interp(x, mid), h), dtype, "31 -> 11 -> 41")
        assert (one_step - two_step).abs().max().item() > 1e-3
        # 41 is the grid of 31 scaled by 4/3: every 4th output sample sits on
        # an input sample (y = 4k <-> j = 3k), exactly.
        assert_parity(one_step[..., ::4, ::4], x[..., ::3, ::3], dtype, "aligned samples")


# ---------------------------------------------------------------------------
# scale_merge
# ---------------------------------------------------------------------------

SCALE_SIZES = [(13, 11), (10, 8), (7, 6), (5, 5)]
TARGETS = [(13, 11), (17, 19), (6, 5)]  # first scale's size, upsample all, downsample all


def merge_inputs(S, size, mode, with_gate, dtype, device, seed=10, N=2, C=3):
    scores = [randn(N, C, *SCALE_SIZES[s], seed=seed + s, dtype=dtype, device=device) for s in range(S)]
    logits = randn(N, S, *size, seed=seed + 20, dtype=dtype, device=device) * 2 if mode == "attention" else None
    gate = randn(N, C, *size, seed=seed + 30, dtype=dtype, device=device).sigmoid() if with_gate else None
    return scores, logits, gate


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("size", TARGETS, ids=lambda v: f"{v[0]}x{v[1]}")
@pytest.mark.parametrize("with_gate", [False, True], ids=["nogate", "gate"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("S", [1, 2, 3, 4])
def test_scale_merge_matches_reference(S, mode, with_gate, size, dtype, device):
    scores, logits, gate = merge_inputs(S, size, mode, with_gate, dtype, device)
    out, aux = torch.ops.attn2scale.scale_merge(scores, list(size), mode, logits, gate, None)
    r_out, r_aux = R.scale_merge(scores, size, mode, logits, gate, None)
    if mode == "attention" and dtype == torch.float32:
        # weights: expf vs torch.exp, at most ~1 ulp apart (see module docstring)
        assert aux.dtype == r_aux.dtype and aux.shape == r_aux.shape
        assert (aux - r_aux).abs().max().item() <= 3e-7
        assert_near(out, r_out, 1e-5, "attention out")
        # bit for bit: the output is the reference combination of the kernel's weights
        acc = None
        for s in range(S):
            term = aux[:, s : s + 1] * R.interp(scores[s], size)
            acc = term if acc is None else acc + term
        if gate is not None:
            acc = gate * acc
        assert torch.equal(out, acc), f"{(out != acc).sum().item()} elements differ"
    else:
        assert_parity(out, r_out, dtype, f"{mode} out")
        if mode == "avg":
            assert aux.numel() == 0
        else:
            assert aux.dtype == r_aux.dtype
            assert_parity(aux, r_aux, dtype, f"{mode} aux", bitwise=(mode == "max" or dtype == torch.float32))

    # backward w.r.t. every score (own resolution), the logits and the gate
    go = randn(*out.shape, seed=99, dtype=dtype, device=device)
    ins = scores + [t for t in (logits, gate) if t is not None]
    fi, ri = leaves(ins), leaves(ins)

    def split(ts):
        sc, rest = ts[:S], ts[S:]
        lg = rest.pop(0) if logits is not None else None
        gt = rest.pop(0) if gate is not None else None
        return sc, lg, gt

    sc, lg, gt = split(fi)
    gf = grads(ops.scale_merge(sc, size, mode, logits=lg, gate=gt), fi, go)
    sc, lg, gt = split(ri)
    gr = grads(R.scale_merge(sc, size, mode, lg, gt, None)[0], ri, go)
    for i, (a, b) in enumerate(zip(gf, gr)):
        assert_parity(a, b, dtype, f"grad of input {i}", bitwise=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_scale_merge_avg_weight(dtype, device):
    size = (13, 11)
    scores, _, gate = merge_inputs(3, size, "avg", True, dtype, device)
    for w in (0.33333, 0.5, 2.0):
        out = ops.scale_merge(scores, size, "avg", gate=gate, avg_weight=w)
        assert_parity(out, R.scale_merge(scores, size, "avg", None, gate, w)[0], dtype, f"avg_weight={w}")
    # the default weight is 1/S exactly
    dflt = ops.scale_merge(scores, size, "avg")
    assert torch.equal(dflt, ops.scale_merge(scores, size, "avg", avg_weight=1.0 / 3))
    # and avg_weight differs from 1/S where it should (Caffe's Power 0.33333)
    assert not torch.equal(dflt, ops.scale_merge(scores, size, "avg", avg_weight=0.33333))
    # backward with a weight
    xs = leaves(scores)
    go = randn(2, 3, *size, seed=5, dtype=dtype, device=device)
    g = grads(ops.scale_merge(xs, size, "avg", avg_weight=0.25), xs, go)
    xr = leaves(scores)
    gr = grads(R.scale_merge(xr, size, "avg", None, None, 0.25)[0], xr, go)
    for a, b in zip(g, gr):
        assert_parity(a, b, dtype, "avg_weight backward", bitwise=False)


def test_scale_merge_api_defaults_and_aux(device):
    scores, logits, _ = merge_inputs(3, (13, 11), "attention", False, torch.float32, device)
    # size defaults to the first scale's size
    assert torch.equal(ops.scale_merge(scores, logits=logits), ops.scale_merge(scores, (13, 11), logits=logits))
    out, w = ops.scale_merge(scores, logits=logits, return_aux=True)
    assert w.shape == (2, 3, 13, 11) and not w.requires_grad
    torch.testing.assert_close(w.sum(1), torch.ones(2, 13, 11, device=device), rtol=0, atol=1e-6)
    _, arg = ops.scale_merge(scores, mode="max", return_aux=True)
    assert arg.dtype == torch.uint8 and arg.shape == (2, 3, 13, 11) and int(arg.max()) <= 2
    _, none = ops.scale_merge(scores, mode="avg", return_aux=True)
    assert none is None


def test_scale_merge_16_scales(device):
    """The largest accepted number of scales works and matches the reference."""
    sizes = [(5 + s % 4, 4 + s % 3) for s in range(16)]
    scores = [randn(1, 2, *hw, seed=40 + s, device=device) for s, hw in enumerate(sizes)]
    logits = randn(1, 16, 8, 6, seed=60, device=device)
    for mode in MODES:
        lg = logits if mode == "attention" else None
        out, aux = torch.ops.attn2scale.scale_merge(scores, [8, 6], mode, lg, None, None)
        r_out, r_aux = R.scale_merge(scores, (8, 6), mode, lg, None, None)
        assert_near(out, r_out, 1e-5, mode)
        if mode == "max":
            assert torch.equal(aux, r_aux) and int(aux.max()) > 8


def test_scale_merge_max_ties_go_to_lowest_scale(device):
    base = randn(1, 3, 6, 6, seed=7, device=device)
    # three identical scales: every element ties; all goes to scale 0
    _, arg = ops.scale_merge([base, base.clone(), base.clone()], mode="max", return_aux=True)
    assert int(arg.max()) == 0
    xs = leaves([base, base, base])
    g = grads(ops.scale_merge(xs, mode="max"), xs, torch.ones(1, 3, 6, 6, device=device))
    assert torch.equal(g[0], torch.ones_like(base)) and g[1].abs().max() == 0 and g[2].abs().max() == 0


# ---------------------------------------------------------------------------
# upsample_argmax
# ---------------------------------------------------------------------------

ARGMAX_CASES = [
    ((2, 21, 41, 41), (321, 321)),
    ((1, 5, 9, 7), (4, 13)),
    ((2, 3, 1, 1), (5, 5)),
    ((1, 4, 6, 6), (1, 1)),
    ((1, 7, 33, 33), (9, 9)),
    ((1, 1, 5, 5), (7, 7)),  # one class: all zeros
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape,size", ARGMAX_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_upsample_argmax_matches_reference(shape, size, dtype, device):
    x = randn(*shape, seed=11, dtype=dtype, device=device)
    labels, score = ops.upsample_argmax(x, size, return_score=True)
    r_labels, r_score = R.upsample_argmax(x, size, True)
    assert labels.dtype == torch.int64 and labels.shape == (shape[0],) + size
    assert torch.equal(labels, r_labels)
    assert_parity(score, r_score, dtype, "upsample_argmax score")
    assert torch.equal(ops.upsample_argmax(x, size), labels)
    lab2, empty = torch.ops.attn2scale.upsample_argmax(x, list(size), False)
    assert torch.equal(lab2, labels) and empty.numel() == 0
    # consistent with the fused interp + torch.argmax
    up = ops.interp(x, size)
    assert torch.equal(up.argmax(1), labels)
    assert torch.equal(up.gather(1, labels[:, None])[:, 0], score)


def test_upsample_argmax_ties_and_nan(device):
    a = randn(2, 4, 7, 6, seed=12, device=device)
    dup = torch.cat([a, a], 1)  # classes 4..7 tie with 0..3: the lower class wins
    lab = ops.upsample_argmax(dup, (13, 11))
    assert int(lab.max()) < 4
    assert torch.equal(lab, R.upsample_argmax(dup, (13, 11))[0])
    nan = a.clone()
    nan[0, 2, 3, 3] = float("nan")
    nan[1, 1, 0, 0] = float("nan")
    nan[1, 3, 0, 0] = float("nan")
    lab, sc = ops.upsample_argmax(nan, (13, 11), return_score=True)
    r_lab, r_sc = R.upsample_argmax(nan, (13, 11), True)
    assert torch.equal(lab, r_lab)
    assert torch.equal(sc.isnan(), r_sc.isnan())
    assert torch.equal(sc.nan_to_num(0.0), r_sc.nan_to_num(0.0))
    assert int(lab[1, 0, 0]) == 1  # the first NaN class wins, as torch.argmax
    assert bool(sc.isnan().any())


# ---------------------------------------------------------------------------
# float16 / bfloat16 (tolerances in the module docstring)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_low_precision_interp_and_argmax(low, device):
    eps = LOW_EPS[low]
    x = randn(2, 5, 9, 7, seed=13, device=device).to(low)
    x32 = x.float()
    for size, pads in [((17, 13), (0, 0)), ((4, 5), (0, 0)), ((11, 11), (-1, -2))]:
        out = ops.interp(x, size, pad_beg=pads[0], pad_end=pads[1])
        out32 = ops.interp(x32, size, pad_beg=pads[0], pad_end=pads[1])
        assert out.dtype == low
        assert torch.equal(out, out32.to(low))  # one rounding of the float32 result
        torch.testing.assert_close(out.float(), out32, rtol=eps, atol=eps * 1e-3)
        # backward
        xl, xf = leaves([x]), leaves([x32])
        go = randn(*out.shape, seed=14, device=device).to(low)
        g = grads(ops.interp(xl[0], size, pad_beg=pads[0], pad_end=pads[1]), xl, go)[0]
        g32 = grads(ops.interp(xf[0], size, pad_beg=pads[0], pad_end=pads[1]), xf, go.float())[0]
        assert g.dtype == low
        torch.testing.assert_close(g.float(), g32, rtol=2 * eps, atol=2 * eps * g32.abs().max().item())
    lab, sc = ops.upsample_argmax(x, (21, 17), return_score=True)
    lab32, sc32 = ops.upsample_argmax(x32, (21, 17), return_score=True)
    assert torch.equal(lab, lab32) and sc.dtype == low and torch.equal(sc, sc32.to(low))


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("with_gate", [False, True], ids=["nogate", "gate"])
@pytest.mark.parametrize("mode", MODES)
def test_low_precision_scale_merge(mode, with_gate, low, device):
    eps = LOW_EPS[low]
    size = (13, 11)
    scores, logits, gate = merge_inputs(3, size, mode, with_gate, torch.float32, device)
    cast = lambda t: None if t is None else t.to(low)
    up = lambda t: None if t is None else t.float()
    s_lo, l_lo, g_lo = [cast(t) for t in scores], cast(logits), cast(gate)
    s32, l32, g32 = [up(t) for t in s_lo], up(l_lo), up(g_lo)
    out, aux = torch.ops.attn2scale.scale_merge(s_lo, list(size), mode, l_lo, g_lo, None)
    out32, aux32 = torch.ops.attn2scale.scale_merge(s32, list(size), mode, l32, g32, None)
    assert out.dtype == low
    if mode == "attention":
        assert aux.dtype == low and torch.equal(aux, aux32.to(low))
        rmax = max(R.interp(t, size).abs().max().item() for t in s32)
        gmax = 1.0 if g32 is None else g32.abs().max().item()
        err = (out.float() - out32).abs()
        bound = eps * rmax * gmax + eps * out32.abs()
        assert bool((err <= bound).all()), f"max err {err.max().item():.3e}"
    else:
        assert torch.equal(out, out32.to(low))
        if mode == "max":
            assert torch.equal(aux, aux32)
    # gradients
    go = randn(*out.shape, seed=15, device=device).to(low)
    ins_lo = [t for t in s_lo + [l_lo, g_lo] if t is not None]
    ins32 = [t for t in s32 + [l32, g32] if t is not None]
    a, b = leaves(ins_lo), leaves(ins32)

    def call(ts):
        sc, rest = ts[:3], ts[3:]
        lg = rest.pop(0) if logits is not None else None
        gt = rest.pop(0) if gate is not None else None
        return ops.scale_merge(sc, size, mode, logits=lg, gate=gt)

    ga = grads(call(a), a, go)
    gb = grads(call(b), b, go.float())
    for i, (u, v) in enumerate(zip(ga, gb)):
        assert u.dtype == low
        torch.testing.assert_close(
            u.float(), v, rtol=2 * eps, atol=2 * eps * max(1e-3, v.abs().max().item()), msg=f"grad {i}"
        )


# ---------------------------------------------------------------------------
# non-contiguous inputs
# ---------------------------------------------------------------------------

VIEWS = ["transposed", "sliced", "expanded", "channels_last"]


def make_view(kind, shape, seed, device, requires_grad=False):
    """A non-contiguous tensor of `shape` and, for gradients, the leaf it views."""
    N, C, H, W = shape
    if kind == "transposed":
        base = randn(N, C, W, H, seed=seed, device=device)
        f = lambda b: b.transpose(2, 3)
    elif kind == "sliced":
        base = randn(N, 2 * C, H + 1, 2 * W, seed=seed, device=device)
        f = lambda b: b[:, ::2, 1:, ::2]
    elif kind == "expanded":
        base = randn(1, C, H, W, seed=seed, device=device)
        f = lambda b: b.expand(N, C, H, W)
    else:
        base = randn(N, C, H, W, seed=seed, device=device).contiguous(memory_format=torch.channels_last)
        f = lambda b: b
    base.requires_grad_(requires_grad)
    v = f(base)
    assert v.shape == shape and not v.is_contiguous(), (kind, v.stride())
    return v


@pytest.mark.parametrize("kind", VIEWS)
def test_noncontiguous_interp_and_argmax(kind, device):
    v = make_view(kind, (2, 3, 9, 7), 21, device, requires_grad=True)
    c = v.detach().contiguous().requires_grad_(True)
    for size, pb, pe in [((13, 11), 0, 0), ((5, 4), -1, -1)]:
        out_v = ops.interp(v, size, pad_beg=pb, pad_end=pe)
        out_c = ops.interp(c, size, pad_beg=pb, pad_end=pe)
        assert torch.equal(out_v, out_c)
        # non-contiguous incoming gradient too
        go = make_view("transposed", tuple(out_c.shape), 22, device)
        assert torch.equal(grads(out_v, [v], go)[0], grads(out_c, [c], go.contiguous())[0])
    assert torch.equal(ops.upsample_argmax(v.detach(), (17, 15)), ops.upsample_argmax(c.detach(), (17, 15)))
    a, b = ops.upsample_argmax(v.detach(), (17, 15), True), ops.upsample_argmax(c.detach(), (17, 15), True)
    assert torch.equal(a[1], b[1])


@pytest.mark.parametrize("mode", MODES)
def test_noncontiguous_scale_merge(mode, device):
    size = (9, 7)
    shapes = [(2, 3, 9, 7), (2, 3, 6, 5), (2, 3, 5, 4), (2, 3, 4, 4)]
    views = [make_view(k, s, 30 + i, device, True) for i, (k, s) in enumerate(zip(VIEWS, shapes))]
    logits = make_view("sliced", (2, 4, 9, 7), 40, device, True) if mode == "attention" else None
    gate = make_view("expanded", (2, 3, 9, 7), 41, device, True)
    ins_v = views + [t for t in (logits, gate) if t is not None]
    ins_c = [t.detach().contiguous().requires_grad_(True) for t in ins_v]

    def call(ts):
        lg = ts[4] if logits is not None else None
        return torch.ops.attn2scale.scale_merge(ts[:4], list(size), mode, lg, ts[-1], None)

    (out_v, aux_v), (out_c, aux_c) = call(ins_v), call(ins_c)
    assert torch.equal(out_v, out_c) and torch.equal(aux_v, aux_c)
    go = make_view("channels_last", (2, 3, 9, 7), 42, device)
    for a, b in zip(grads(out_v, ins_v, go, True), grads(out_c, ins_c, go.contiguous(), True)):
        assert torch.equal(a, b)
    # the expanded incoming gradient of out.sum()
    for a, b in zip(grads(out_v.sum(), ins_v, None), grads(out_c.sum(), ins_c, None)):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------
# empty batch
# ---------------------------------------------------------------------------


def test_empty_batch_interp(device):
    for shape in [(0, 3, 5, 7), (0, 3, 0, 0)]:
        x = torch.zeros(shape, device=device, requires_grad=True)
        out = ops.interp(x, (9, 4))
        assert out.shape == (0, 3, 9, 4)
        (g,) = torch.autograd.grad(out.sum(), x)
        assert g.shape == shape
    x = torch.zeros(0, 3, 12, 10, device=device, requires_grad=True)
    out = ops.interp(x, (4, 4), pad_beg=-2, pad_end=-2)
    assert out.shape == (0, 3, 4, 4)
    assert torch.autograd.grad(out.sum(), x)[0].shape == x.shape


@pytest.mark.parametrize("with_gate", [False, True], ids=["nogate", "gate"])
@pytest.mark.parametrize("mode", MODES)
def test_empty_batch_scale_merge(mode, with_gate, device):
    size = (9, 7)
    scores = [torch.zeros(0, 3, *hw, device=device, requires_grad=True) for hw in [(9, 7), (5, 4), (3, 3)]]
    logits = torch.zeros(0, 3, *size, device=device, requires_grad=True) if mode == "attention" else None
    gate = torch.zeros(0, 3, *size, device=device, requires_grad=True) if with_gate else None
    out, aux = torch.ops.attn2scale.scale_merge(scores, list(size), mode, logits, gate, None)
    assert out.shape == (0, 3, 9, 7)
    want_aux = {"attention": ((0, 3, 9, 7), torch.float32), "max": ((0, 3, 9, 7), torch.uint8), "avg": ((0,), torch.float32)}
    assert (tuple(aux.shape), aux.dtype) == want_aux[mode]
    ins = scores + [t for t in (logits, gate) if t is not None]
    gs = torch.autograd.grad(out.sum(), ins)
    for g, x in zip(gs, ins):
        assert g.shape == x.shape and g.dtype == x.dtype
    api = ops.scale_merge(scores, size, mode, logits=logits, gate=gate)
    assert api.shape == (0, 3, 9, 7)


def test_empty_batch_upsample_argmax(device):
    x = torch.zeros(0, 5, 4, 4, device=device)
    lab, sc = ops.upsample_argmax(x, (9, 11), return_score=True)
    assert lab.shape == (0, 9, 11) and lab.dtype == torch.int64
    assert sc.shape == (0, 9, 11) and sc.dtype == torch.float32
    assert ops.upsample_argmax(x, (9, 11)).shape == (0, 9, 11)


def test_zero_classes_interp(device):
    x = torch.zeros(2, 0, 5, 5, device=device, requires_grad=True)
    out = ops.interp(x, (7, 3))
    assert out.shape == (2, 0, 7, 3)
    assert torch.autograd.grad(out.sum(), x)[0].shape == x.shape


def test_zero_classes_scale_merge_attention_weights():  # the CPU kernel's early return
    device = "cpu"
    logits = randn(2, 2, 5, 5, seed=50, device=device)
    scores = [torch.zeros(2, 0, 5, 5, device=device), torch.zeros(2, 0, 3, 3, device=device)]
    junk = torch.full((1 << 16,), 1e30, device=device)  # make stale memory visible
    del junk
    _, aux = torch.ops.attn2scale.scale_merge(scores, [5, 5], "attention", logits, None, None)
    _, r_aux = R.scale_merge(scores, (5, 5), "attention", logits, None, None)
    torch.testing.assert_close(aux, r_aux, rtol=0, atol=1e-6)


def test_interp_equal_size_is_a_copy_even_for_nonfinite():
    device = "cpu"
    x = randn(1, 2, 5, 6, seed=51, device=device)
    x[0, 0, 2, 3] = float("inf")
    x[0, 1, 1, 1] = float("nan")
    out = ops.interp(x, (5, 6))
    assert torch.equal(out.isnan(), x.isnan())
    assert torch.equal(out.nan_to_num(0.0), x.nan_to_num(0.0))


def test_interp_equal_size_is_a_copy_for_finite(device):
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = randn(2, 3, 7, 4, seed=52, device=device).to(dtype)
        assert torch.equal(ops.interp(x, (7, 4)), x)


# ---------------------------------------------------------------------------
# real Caffe (../shared)
# ---------------------------------------------------------------------------


def _npy(path):
    np = pytest.importorskip("numpy")
    return torch.from_numpy(np.load(path))


def test_caffe_interp_layer_goldens():
    """The authors' Caffe fork, one Interp layer per case: forward bit for bit,
    backward (Caffe scatters, we gather) to float32 rounding."""
    root = require_shared("caffe", "golden", "authors_fork", "interp")
    cases = json.loads((root / "cases.json").read_text())
    assert len(cases) >= 20
    for name, c in cases.items():
        d = root / name
        x, y = _npy(d / "input.npy"), _npy(d / "output.npy")
        top, want_g = _npy(d / "top_diff.npy"), _npy(d / "input_grad.npy")
        p = c["interp_param"]
        kw = dict(shrink_factor=p.get("shrink_factor"), zoom_factor=p.get("zoom_factor"),
                  height=p.get("height"), width=p.get("width"),
                  pad_beg=p.get("pad_beg", 0), pad_end=p.get("pad_end", 0))
        xr = x.clone().requires_grad_(True)
        out = ops.interp(xr, **kw)
        assert out.shape == y.shape, name
        assert torch.equal(out.detach(), y), f"{name}: forward differs from Caffe"
        (g,) = torch.autograd.grad(out, xr, top)
        scale = max(1.0, want_g.abs().max().item())
        assert (g - want_g).abs().max().item() <= 2e-6 * scale, name


def test_caffe_fork_scale_merges():
    """Train-phase score maps of the authors' nets (13x13, 10x10, 7x7 -> 13x13):
    attention47 (Softmax, Slice, SpatialProduct, Eltwise SUM), max30 (Eltwise
    MAX) and avg28_2 (Eltwise SUM + Power 0.33333), bit for bit."""
    root = require_shared("caffe", "golden", "authors_fork")
    blobs = root / "attention47" / "train" / "blobs"
    scores = [_npy(blobs / f"{b}.npy") for b in ("fc8_voc10_part", "fc8_voc10_part_res075", "fc8_voc10_part_res05")]
    size = tuple(scores[0].shape[-2:])
    # the two Interp layers (zoom4+shrink3 on 10, zoom2 on 7)
    assert ops.caffe_interp_size(10, 10, shrink_factor=3, zoom_factor=4) == size
    assert torch.equal(ops.interp(scores[1], shrink_factor=3, zoom_factor=4), _npy(blobs / "fc8_voc10_part_res075_interp.npy"))
    assert torch.equal(ops.interp(scores[2], zoom_factor=2), _npy(blobs / "fc8_voc10_part_res05_interp.npy"))
    out, w = ops.scale_merge(scores, size, "attention", logits=_npy(blobs / "att_fc.npy"), return_aux=True)
    assert torch.equal(w, _npy(blobs / "attention.npy"))
    assert torch.equal(out, _npy(blobs / "fc8_fusion.npy"))
    out = ops.scale_merge(scores, size, "max")
    assert torch.equal(out, _npy(root / "max30" / "train" / "blobs" / "fc8_fusion.npy"))
    out = ops.scale_merge(scores, size, "avg", avg_weight=0.33333)
    assert torch.equal(out, _npy(root / "avg28_2" / "train" / "blobs" / "fc8_fusion.npy"))


def test_caffe_fork_final_interp_and_labels():
    """Test phase: fc8_interp = Interp zoom 8 of the 17x17 fusion; the labels
    of upsample_argmax are the arg-max of Caffe's upsampled scores."""
    root = require_shared("caffe", "golden", "authors_fork")
    for case in ("max30", "avg28_2"):
        d = root / case / "test" / "blobs"
        fusion, up = _npy(d / "fc8_fusion.npy"), _npy(d / "fc8_interp.npy")
        assert torch.equal(ops.interp(fusion, zoom_factor=8), up)
        lab, sc = ops.upsample_argmax(fusion, tuple(up.shape[-2:]), return_score=True)
        assert torch.equal(lab, up.argmax(1))
        assert torch.equal(sc, up.max(1).values)


def test_caffe_bvlc_attention_merge():
    """BVLC Caffe Softmax/Slice/Tile/Eltwise attention merge of two 9x9 maps:
    forward bit for bit, gradients to float32 rounding."""
    path = require_shared("caffe", "golden", "attention_merge", "attention_merge.h5")
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "r") as h:
        t = {k: torch.from_numpy(h[k][()]) for k in (
            "input/score_s1", "input/score_s2", "input/att_logits", "output/fusion", "output/att_weight",
            "top_diff/fusion", "grad/score_s1", "grad/score_s2", "grad/att_logits")}
    ins = leaves([t["input/score_s1"], t["input/score_s2"], t["input/att_logits"]])
    out, w = ops.scale_merge(ins[:2], (9, 9), "attention", logits=ins[2], return_aux=True)
    assert torch.equal(out.detach(), t["output/fusion"])
    assert torch.equal(w, t["output/att_weight"])
    gs = torch.autograd.grad(out, ins, t["top_diff/fusion"])
    for g, k in zip(gs, ("grad/score_s1", "grad/score_s2", "grad/att_logits")):
        want = t[k]
        assert (g - want).abs().max().item() <= 1e-6 * max(1.0, want.abs().max().item()), k
