"""Bad inputs raise a clear error that names the problem, through the raw
torch.ops.attn2scale.* and through the friendly attn2scale.ops API; nothing
crashes the process. Table-driven: one row per bad input."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Tuple, Type, Union

import pytest
import torch

from attn2scale import ops

pytestmark = pytest.mark.skipif(
    not ops.extension_available(), reason="attn2scale._C (the compiled kernels) is not built/loadable"
)

BIG = 1 << 24  # first rejected size per side (float32 coordinates)
Exc = Union[Type[BaseException], Tuple[Type[BaseException], ...]]


def F():
    return torch.ops.attn2scale


def z(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(*shape, dtype=dtype, device=device)


def wide(h, w):
    """A (1, 1, h, w) float tensor without the memory (a stride-0 view)."""
    return torch.zeros(1, 1, 1, 1).expand(1, 1, h, w)


class Case(NamedTuple):
    id: str
    call: Callable[[], object]
    exc: Exc
    match: str


def both(id, op: Optional[Callable], api: Optional[Callable], match: str, exc: Exc = RuntimeError,
         api_exc: Optional[Exc] = None, api_match: Optional[str] = None):
    """The same bad input through the raw op and through the API."""
    out = []
    if op is not None:
        out.append(Case(f"op:{id}", op, exc, match))
    if api is not None:
        out.append(Case(f"api:{id}", api, api_exc or exc, api_match or match))
    return out


S3 = lambda: [z(2, 3, 5, 5), z(2, 3, 4, 4), z(2, 3, 3, 3)]  # three scales, N=2, C=3
L3 = lambda: z(2, 3, 5, 5)  # their logits at size 5x5
M = lambda scores, size, mode, logits=None, gate=None, w=None: F().scale_merge(scores, list(size), mode, logits, gate, w)
A = lambda scores, size, mode, logits=None, gate=None, w=None: ops.scale_merge(scores, size, mode, logits=logits, gate=gate, avg_weight=w)

CASES = []

# ---- interp ---------------------------------------------------------------
for dt, name in [(torch.int32, "Int"), (torch.int64, "Long"), (torch.bool, "Bool"), (torch.uint8, "Byte"),
                 (torch.complex64, "ComplexFloat")]:
    CASES += both(f"interp-dtype-{name}", lambda dt=dt: F().interp(z(1, 1, 3, 3, dtype=dt), [5, 5], 0, 0),
                  lambda dt=dt: ops.interp(z(1, 1, 3, 3, dtype=dt), (5, 5)),
                  rf"interp: x must be a floating tensor \(float32, float64, float16 or bfloat16\), got \[1, 1, 3, 3\] {name}")
CASES += both("interp-dtype-float8", lambda: F().interp(z(1, 1, 3, 3).to(torch.float8_e4m3fn), [5, 5], 0, 0),
              lambda: ops.interp(z(1, 1, 3, 3).to(torch.float8_e4m3fn), (5, 5)),
              r"interp: x must be a floating tensor \(float32, float64, float16 or bfloat16\), got .*Float8_e4m3fn")
CASES += both("interp-rank3", lambda: F().interp(z(2, 5, 5), [3, 3], 0, 0), lambda: ops.interp(z(2, 5, 5), (3, 3)),
              r"interp: x must be 4-D, got \[2, 5, 5\]")
CASES += both("interp-rank5", lambda: F().interp(z(1, 2, 3, 4, 5), [3, 3], 0, 0),
              lambda: ops.interp(z(1, 2, 3, 4, 5), (3, 3)), r"x must be 4-D, got \[1, 2, 3, 4, 5\]")
for size in ([0, 5], [5, -3], [-1, -1]):
    CASES += both(f"interp-size{size}", lambda size=size: F().interp(z(1, 1, 3, 3), size, 0, 0),
                  lambda size=size: ops.interp(z(1, 1, 3, 3), size),
                  rf"interp: target size \[{size[0]}, {size[1]}\] must be positive")
for size in ([BIG, 5], [5, BIG], [5, 1 << 40]):
    CASES += both(f"interp-size{size}", lambda size=size: F().interp(z(1, 1, 3, 3), size, 0, 0),
                  lambda size=size: ops.interp(z(1, 1, 3, 3), size),
                  r"interp: target size \[.*\] must be positive and below 2\^24 per side")
CASES += both("interp-size-len3", lambda: F().interp(z(1, 1, 3, 3), [3, 3, 3], 0, 0),
              lambda: ops.interp(z(1, 1, 3, 3), (3, 3, 3)), r"interp: size must have 2 entries \(H, W\)",
              api_exc=ValueError, api_match=r"interp: size must be \(H, W\)")
CASES += both("interp-size-len1", lambda: F().interp(z(1, 1, 3, 3), [3], 0, 0), lambda: ops.interp(z(1, 1, 3, 3), (3,)),
              r"size", api_exc=ValueError, api_match=r"interp: size must be \(H, W\)")
CASES += both("interp-pad-positive", lambda: F().interp(z(1, 1, 5, 5), [3, 3], 1, 0),
              lambda: ops.interp(z(1, 1, 5, 5), (3, 3), pad_beg=1),
              r"interp: pad_beg \(1\) and pad_end \(0\) must be <= 0")
CASES += both("interp-pad-end-positive", lambda: F().interp(z(1, 1, 5, 5), [3, 3], -1, 2),
              lambda: ops.interp(z(1, 1, 5, 5), zoom_factor=2, pad_beg=-1, pad_end=2),
              r"pad_beg \(-1\) and pad_end \(2\) must be <= 0", api_exc=ValueError)
CASES += both("interp-crop-nothing", lambda: F().interp(z(1, 1, 5, 5), [3, 3], -3, -2),
              lambda: ops.interp(z(1, 1, 5, 5), (3, 3), pad_beg=-3, pad_end=-2),
              r"interp: cropping pad_beg=-3 pad_end=-2 leaves nothing of a 5x5 input")
CASES += both("interp-crop-nothing-width", lambda: F().interp(z(1, 1, 9, 4), [3, 3], -2, -2),
              lambda: ops.interp(z(1, 1, 9, 4), shrink_factor=2, pad_beg=-2, pad_end=-2),
              r"cropping pad_beg=-2 pad_end=-2 leaves nothing of a? ?9x4", api_exc=ValueError)
CASES += both("interp-empty-spatial", lambda: F().interp(z(2, 3, 0, 4), [3, 3], 0, 0),
              lambda: ops.interp(z(2, 3, 0, 4), (3, 3)), r"interp: x has an empty spatial size: \[2, 3, 0, 4\]")
CASES += both("interp-input-too-large", lambda: F().interp(wide(BIG, 2), [3, 3], 0, 0),
              lambda: ops.interp(wide(2, BIG), (3, 3)), r"interp: x is too large per side \(limit 2\^24\)")
# Caffe size rules (API only)
CASES += [
    Case("api:interp-shrink0", lambda: ops.interp(z(1, 1, 5, 5), shrink_factor=0), ValueError, r"shrink_factor must be >= 1, got 0"),
    Case("api:interp-zoom-negative", lambda: ops.interp(z(1, 1, 5, 5), zoom_factor=-2), ValueError, r"zoom_factor must be >= 1, got -2"),
    Case("api:interp-no-size", lambda: ops.interp(z(1, 1, 5, 5)), ValueError, r"give shrink_factor and/or zoom_factor, or both out_height and out_width"),
    Case("api:interp-height-only", lambda: ops.interp(z(1, 1, 5, 5), height=7), ValueError, r"both out_height and out_width"),
    Case("api:interp-height-zero", lambda: ops.interp(z(1, 1, 5, 5), height=0, width=4), ValueError, r"output size 0x4 is not positive"),
    Case("api:caffe_interp_size-crop", lambda: ops.caffe_interp_size(4, 4, zoom_factor=2, pad_beg=-2, pad_end=-2), ValueError, r"leaves nothing of 4x4"),
]

# ---- interp_backward (raw op only: autograd calls it) ----------------------
IB = lambda g, shape, pb=0, pe=0: F().interp_backward(g, shape, pb, pe)
CASES += [
    Case("op:interp_backward-rank3", lambda: IB(z(2, 5, 5), [2, 5, 3, 3]), RuntimeError, r"interp_backward: grad must be 4-D"),
    Case("op:interp_backward-int", lambda: IB(z(1, 1, 5, 5, dtype=torch.int32), [1, 1, 3, 3]), RuntimeError, r"interp_backward: grad must be a floating tensor"),
    Case("op:interp_backward-shape-len3", lambda: IB(z(1, 2, 5, 5), [1, 2, 3]), RuntimeError, r"input_shape must have 4 entries, got \[1, 2, 3\]"),
    Case("op:interp_backward-C-mismatch", lambda: IB(z(1, 2, 5, 5), [1, 3, 4, 4]), RuntimeError, r"grad \[1, 2, 5, 5\].*does not match input_shape \[1, 3, 4, 4\] in N or C"),
    Case("op:interp_backward-N-mismatch", lambda: IB(z(2, 2, 5, 5), [1, 2, 4, 4]), RuntimeError, r"does not match input_shape \[1, 2, 4, 4\] in N or C"),
    Case("op:interp_backward-negative", lambda: IB(z(1, 1, 5, 5), [1, 1, -1, 3]), RuntimeError, r"interp_backward: bad input_shape \[1, 1, -1, 3\]"),
    Case("op:interp_backward-too-large", lambda: IB(z(1, 1, 5, 5), [1, 1, BIG, 3]), RuntimeError, r"interp_backward: bad input_shape"),
    Case("op:interp_backward-empty-spatial", lambda: IB(z(1, 1, 5, 5), [1, 1, 0, 3]), RuntimeError, r"interp_backward: empty spatial input_shape \[1, 1, 0, 3\]"),
    Case("op:interp_backward-pad-positive", lambda: IB(z(1, 1, 5, 5), [1, 1, 3, 3], 0, 1), RuntimeError, r"interp_backward: pad_beg \(0\) and pad_end \(1\) must be <= 0"),
    Case("op:interp_backward-crop-nothing", lambda: IB(z(1, 1, 5, 5), [1, 1, 3, 3], -2, -1), RuntimeError, r"interp_backward: cropping pad_beg=-2 pad_end=-1 leaves nothing of a 3x3 input"),
]

# ---- scale_merge -------------------------------------------------------------
CASES += both("merge-score-rank3", lambda: M([z(2, 3, 5, 5), z(2, 3, 4)], (5, 5), "avg"),
              lambda: A([z(2, 3, 5, 5), z(2, 3, 4)], (5, 5), "avg"), r"scale_merge: scores\[1\] must be 4-D, got \[2, 3, 4\]")
CASES += both("merge-score0-rank5", lambda: M([z(1, 2, 3, 5, 5), z(2, 3, 4, 4)], (5, 5), "avg"),
              lambda: A([z(1, 2, 3, 5, 5), z(2, 3, 4, 4)], (5, 5), "avg"), r"scores\[0\] must be 4-D")
CASES += both("merge-N-mismatch", lambda: M([z(2, 3, 5, 5), z(1, 3, 4, 4)], (5, 5), "max"),
              lambda: A([z(2, 3, 5, 5), z(1, 3, 4, 4)], (5, 5), "max"),
              r"scores\[1\] is \[1, 3, 4, 4\] .* but scores\[0\] is \[2, 3, 5, 5\] .*N and C must agree across scales")
CASES += both("merge-C-mismatch", lambda: M([z(2, 3, 5, 5), z(2, 3, 4, 4), z(2, 4, 3, 3)], (5, 5), "attention", L3()),
              lambda: A([z(2, 3, 5, 5), z(2, 3, 4, 4), z(2, 4, 3, 3)], (5, 5), "attention", L3()),
              r"scores\[2\] is \[2, 4, 3, 3\] .*N and C must agree")
CASES += both("merge-mixed-dtype", lambda: M([z(2, 3, 5, 5), z(2, 3, 4, 4, dtype=torch.float64)], (5, 5), "avg"),
              lambda: A([z(2, 3, 5, 5), z(2, 3, 4, 4, dtype=torch.float64)], (5, 5), "avg"),
              r"scale_merge: scores\[1\] has dtype Double but scores\[0\] has Float")
CASES += both("merge-mixed-dtype-half", lambda: M([z(2, 3, 5, 5, dtype=torch.half), z(2, 3, 4, 4)], (5, 5), "max"),
              lambda: A([z(2, 3, 5, 5, dtype=torch.half), z(2, 3, 4, 4)], (5, 5), "max"),
              r"scores\[1\] has dtype Float but scores\[0\] has Half")
CASES += both("merge-int-score0", lambda: M([z(2, 3, 5, 5, dtype=torch.int64)], (5, 5), "avg"),
              lambda: A([z(2, 3, 5, 5, dtype=torch.int64)], (5, 5), "avg"), r"scale_merge: scores\[0\] must be a floating tensor .*Long")
CASES += both("merge-int-score1", lambda: M([z(2, 3, 5, 5), z(2, 3, 5, 5, dtype=torch.int32)], (5, 5), "avg"),
              lambda: A([z(2, 3, 5, 5), z(2, 3, 5, 5, dtype=torch.int32)], (5, 5), "avg"), r"scores\[1\] must be a floating tensor")
CASES += both("merge-score-empty-spatial", lambda: M([z(2, 3, 5, 5), z(2, 3, 0, 4)], (5, 5), "avg"),
              lambda: A([z(2, 3, 5, 5), z(2, 3, 0, 4)], (5, 5), "avg"), r"scores\[1\] has an empty spatial size: \[2, 3, 0, 4\]")
CASES += both("merge-score-too-large", lambda: M([z(1, 1, 5, 5), wide(3, BIG)], (5, 5), "avg"),
              lambda: A([z(1, 1, 5, 5), wide(3, BIG)], (5, 5), "avg"), r"scores\[1\] is too large per side \(limit 2\^24\)")
for lshape, desc in [((2, 2, 5, 5), "S"), ((2, 4, 5, 5), "S+1"), ((2, 3, 4, 5), "H"), ((2, 3, 5, 6), "W"), ((1, 3, 5, 5), "N")]:
    got = ", ".join(map(str, lshape))
    CASES += both(f"merge-logits-bad-{desc}", lambda lshape=lshape: M(S3(), (5, 5), "attention", z(*lshape)),
                  lambda lshape=lshape: A(S3(), (5, 5), "attention", z(*lshape)),
                  rf"scale_merge: logits must be \(N, S, H, W\) = \(2, 3, 5, 5\), got \[{got}\]")
CASES += both("merge-logits-rank3", lambda: M(S3(), (5, 5), "attention", z(2, 3, 5)),
              lambda: A(S3(), (5, 5), "attention", z(2, 3, 5)), r"scale_merge: logits must be 4-D")
CASES += both("merge-logits-dtype", lambda: M(S3(), (5, 5), "attention", z(2, 3, 5, 5, dtype=torch.float64)),
              lambda: A(S3(), (5, 5), "attention", z(2, 3, 5, 5, dtype=torch.float64)), r"scale_merge: logits has dtype Double but scores\[0\] has Float")
CASES += both("merge-logits-int", lambda: M(S3(), (5, 5), "attention", z(2, 3, 5, 5, dtype=torch.int64)),
              lambda: A(S3(), (5, 5), "attention", z(2, 3, 5, 5, dtype=torch.int64)), r"scale_merge: logits must be a floating tensor")
CASES += both("merge-logits-missing", lambda: M(S3(), (5, 5), "attention"), lambda: ops.scale_merge(S3()),
              r"scale_merge: mode='attention' needs logits \(N, S, H, W\)")
for mode in ("avg", "max"):
    CASES += both(f"merge-logits-given-{mode}", lambda mode=mode: M(S3(), (5, 5), mode, L3()),
                  lambda mode=mode: A(S3(), (5, 5), mode, L3()),
                  rf"scale_merge: logits are only used with mode='attention', got mode='{mode}'")
for gshape, desc in [((2, 3, 4, 5), "H"), ((2, 1, 5, 5), "C-broadcast"), ((1, 3, 5, 5), "N"), ((2, 3, 5, 1), "W")]:
    got = ", ".join(map(str, gshape))
    CASES += both(f"merge-gate-bad-{desc}", lambda gshape=gshape: M(S3(), (5, 5), "max", None, z(*gshape)),
                  lambda gshape=gshape: A(S3(), (5, 5), "max", None, z(*gshape)),
                  rf"scale_merge: gate must be \(N, C, H, W\) = \(2, 3, 5, 5\), got \[{got}\]")
CASES += both("merge-gate-rank3", lambda: M(S3(), (5, 5), "avg", None, z(3, 5, 5)),
              lambda: A(S3(), (5, 5), "avg", None, z(3, 5, 5)), r"scale_merge: gate must be 4-D")
CASES += both("merge-gate-dtype", lambda: M(S3(), (5, 5), "avg", None, z(2, 3, 5, 5, dtype=torch.bfloat16)),
              lambda: A(S3(), (5, 5), "avg", None, z(2, 3, 5, 5, dtype=torch.bfloat16)), r"scale_merge: gate has dtype BFloat16 but scores\[0\] has Float")
CASES += both("merge-gate-int", lambda: M(S3(), (5, 5), "avg", None, z(2, 3, 5, 5, dtype=torch.uint8)),
              lambda: A(S3(), (5, 5), "avg", None, z(2, 3, 5, 5, dtype=torch.uint8)), r"scale_merge: gate must be a floating tensor")
for size in ([0, 5], [5, -1], [BIG, 5], [5, BIG]):
    CASES += both(f"merge-size{size}", lambda size=size: M(S3(), size, "avg"), lambda size=size: A(S3(), size, "avg"),
                  r"scale_merge: target size \[.*\] must be positive and below 2\^24 per side")
CASES += both("merge-size-len3", lambda: M(S3(), (5, 5, 5), "avg"), lambda: A(S3(), (5, 5, 5), "avg"),
              r"scale_merge: size must have 2 entries", api_exc=ValueError, api_match=r"scale_merge: size must be \(H, W\)")
CASES += both("merge-17-scales", lambda: M([z(1, 2, 4, 4)] * 17, (4, 4), "avg"), lambda: A([z(1, 2, 4, 4)] * 17, (4, 4), "avg"),
              r"scale_merge: at most 16 scales are supported, got 17")
CASES += both("merge-empty-scores", lambda: M([], (5, 5), "avg"), lambda: A([], (5, 5), "avg"),
              # the dispatcher refuses an op call without any tensor before our check runs
              r"empty list of Tensors", api_exc=ValueError, api_match=r"scale_merge: scores is empty; give one score map per scale")
CASES += [Case("op:merge-empty-scores-with-logits", lambda: M([], (5, 5), "attention", L3()), RuntimeError,
               r"scale_merge: scores is empty; give one score map per scale")]
for mode in ("mean", "Attention", "", "sum"):
    CASES += both(f"merge-mode-{mode or 'empty'}", lambda mode=mode: M(S3(), (5, 5), mode), lambda mode=mode: A(S3(), (5, 5), mode),
                  rf"scale_merge: mode must be 'avg', 'max' or 'attention', got '{mode}'")
for mode in ("max", "attention"):
    CASES += both(f"merge-avg_weight-{mode}", lambda mode=mode: M(S3(), (5, 5), mode, L3() if mode == "attention" else None, None, 0.5),
                  lambda mode=mode: A(S3(), (5, 5), mode, L3() if mode == "attention" else None, None, 0.5),
                  r"scale_merge: avg_weight is only used with mode='avg'")

# ---- scale_merge_backward (raw op only: autograd calls it) -----------------
SB = lambda grad, scores, mode, aux, gate=None, w=None: F().scale_merge_backward(grad, scores, mode, aux, gate, w)
CASES += [
    Case("op:merge_bwd-grad-rank3", lambda: SB(z(2, 3, 5), S3(), "avg", z(0)), RuntimeError, r"scale_merge_backward: grad must be 4-D"),
    Case("op:merge_bwd-grad-N", lambda: SB(z(1, 3, 5, 5), S3(), "avg", z(0)), RuntimeError, r"scale_merge_backward: grad \[1, 3, 5, 5\] .*does not match scores\[0\] \[2, 3, 5, 5\]"),
    Case("op:merge_bwd-grad-C", lambda: SB(z(2, 4, 5, 5), S3(), "max", z(2, 4, 5, 5, dtype=torch.uint8)), RuntimeError, r"grad \[2, 4, 5, 5\] .*does not match scores\[0\]"),
    Case("op:merge_bwd-grad-dtype", lambda: SB(z(2, 3, 5, 5, dtype=torch.float64), S3(), "avg", z(0)), RuntimeError, r"scale_merge_backward: grad has dtype Double but scores\[0\] has Float"),
    Case("op:merge_bwd-att-aux-shape", lambda: SB(z(2, 3, 5, 5), S3(), "attention", z(2, 2, 5, 5)), RuntimeError, r"aux must hold the attention weights \(N, S, H, W\), got \[2, 2, 5, 5\]"),
    Case("op:merge_bwd-att-aux-empty", lambda: SB(z(2, 3, 5, 5), S3(), "attention", z(0)), RuntimeError, r"aux must hold the attention weights"),
    Case("op:merge_bwd-att-aux-dtype", lambda: SB(z(2, 3, 5, 5), S3(), "attention", z(2, 3, 5, 5, dtype=torch.float64)), RuntimeError, r"aux \(attention weights\) has dtype Double"),
    Case("op:merge_bwd-max-aux-dtype", lambda: SB(z(2, 3, 5, 5), S3(), "max", z(2, 3, 5, 5)), RuntimeError, r"aux must hold the winning scale \(N, C, H, W\) uint8, got \[2, 3, 5, 5\] Float"),
    Case("op:merge_bwd-max-aux-shape", lambda: SB(z(2, 3, 5, 5), S3(), "max", z(2, 3, 4, 5, dtype=torch.uint8)), RuntimeError, r"aux must hold the winning scale"),
    Case("op:merge_bwd-gate-shape", lambda: SB(z(2, 3, 5, 5), S3(), "avg", z(0), z(2, 3, 4, 4)), RuntimeError, r"scale_merge_backward: gate must be \(N, C, H, W\) = \(2, 3, 5, 5\)"),
    Case("op:merge_bwd-mode", lambda: SB(z(2, 3, 5, 5), S3(), "median", z(0)), RuntimeError, r"mode must be 'avg', 'max' or 'attention', got 'median'"),
    Case("op:merge_bwd-17-scales", lambda: SB(z(1, 2, 4, 4), [z(1, 2, 4, 4)] * 17, "avg", z(0)), RuntimeError, r"at most 16 scales are supported, got 17"),
    Case("op:merge_bwd-avg_weight-max", lambda: SB(z(2, 3, 5, 5), S3(), "max", z(2, 3, 5, 5, dtype=torch.uint8), None, 0.5), RuntimeError, r"avg_weight is only used with mode='avg'"),
    Case("op:merge_bwd-score-mismatch", lambda: SB(z(2, 3, 5, 5), [z(2, 3, 5, 5), z(2, 2, 4, 4)], "avg", z(0)), RuntimeError, r"scores\[1\] is \[2, 2, 4, 4\] .*N and C must agree"),
]

# ---- upsample_argmax -------------------------------------------------------
U = lambda x, size, ws=False: F().upsample_argmax(x, list(size), ws)
UA = lambda x, size, ws=False: ops.upsample_argmax(x, size, return_score=ws)
CASES += both("argmax-zero-classes", lambda: U(z(1, 0, 3, 3), (5, 5)), lambda: UA(z(1, 0, 3, 3), (5, 5)),
              r"upsample_argmax: scores has no classes: \[1, 0, 3, 3\]")
CASES += both("argmax-zero-classes-score", lambda: U(z(2, 0, 3, 3), (5, 5), True), lambda: UA(z(2, 0, 3, 3), (5, 5), True),
              r"upsample_argmax: scores has no classes")
CASES += both("argmax-rank3", lambda: U(z(3, 3, 3), (5, 5)), lambda: UA(z(3, 3, 3), (5, 5)), r"upsample_argmax: scores must be 4-D")
CASES += both("argmax-int", lambda: U(z(1, 3, 3, 3, dtype=torch.int64), (5, 5)), lambda: UA(z(1, 3, 3, 3, dtype=torch.int64), (5, 5)),
              r"upsample_argmax: scores must be a floating tensor .*Long")
CASES += both("argmax-empty-spatial", lambda: U(z(1, 3, 3, 0), (5, 5)), lambda: UA(z(1, 3, 3, 0), (5, 5)),
              r"upsample_argmax: scores has an empty spatial size: \[1, 3, 3, 0\]")
CASES += both("argmax-input-too-large", lambda: U(wide(BIG, 1), (5, 5)), lambda: UA(wide(BIG, 1), (5, 5)),
              r"upsample_argmax: scores is too large per side")
for size in ([0, 5], [7, -2], [BIG, 3], [3, 1 << 33]):
    CASES += both(f"argmax-size{size}", lambda size=size: U(z(1, 3, 3, 3), size), lambda size=size: UA(z(1, 3, 3, 3), size),
                  r"upsample_argmax: target size \[.*\] must be positive and below 2\^24 per side")
CASES += both("argmax-size-len3", lambda: U(z(1, 3, 3, 3), (5, 5, 5)), lambda: UA(z(1, 3, 3, 3), (5, 5, 5)),
              r"upsample_argmax: size must have 2 entries", api_exc=ValueError, api_match=r"upsample_argmax: size must be \(H, W\)")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_raises_clear_error(case: Case):
    assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"
    with pytest.raises(case.exc, match=case.match):
        case.call()


def test_every_op_has_bad_input_rows():
    ids = " ".join(c.id for c in CASES)
    for op in ("interp", "interp_backward", "merge", "merge_bwd", "argmax"):
        assert f"op:{op}-" in ids
    for api in ("interp", "merge", "argmax"):
        assert f"api:{api}-" in ids


# ---- positive controls: the edges of the legal range work ----------------


def test_legal_edges_work():
    x = torch.randn(1, 2, 3, 3)
    assert F().interp(x, [BIG - 1, 1], 0, 0).shape == (1, 2, BIG - 1, 1)  # 2^24 - 1 rows: accepted
    assert F().interp(x, [1, 1], -1, -1).shape == (1, 2, 1, 1)  # crop to 1x1
    out, aux = M([torch.randn(1, 2, 4, 4)] * 16, (4, 4), "max")  # 16 scales
    assert out.shape == (1, 2, 4, 4) and int(aux.max()) == 0
    assert F().interp(z(0, 3, 3, 3), [BIG - 1, BIG - 1], 0, 0).shape == (0, 3, BIG - 1, BIG - 1)  # empty batch allocates nothing
    lab, _ = U(torch.randn(1, 1, 2, 2), (3, 3))  # a single class is fine
    assert int(lab.abs().max()) == 0


# ---- mixed devices (the 'meta' device stands in for a second device) -------

GPU = torch.cuda.is_available() and ops.cuda_kernels_available()
OTHERS = ["meta"] + (["cuda"] if GPU else [])  # 'meta' stands in for a second device


def _mixed_cases(other):
    o = lambda *s: torch.zeros(*s, device=other)
    return [
        ("op:scores1-other", lambda: M([z(2, 3, 5, 5), o(2, 3, 4, 4)], (5, 5), "avg")),
        ("op:logits-other", lambda: M(S3(), (5, 5), "attention", o(2, 3, 5, 5))),
        ("op:gate-other", lambda: M(S3(), (5, 5), "max", None, o(2, 3, 5, 5))),
        ("op:scores0-other", lambda: M([o(2, 3, 5, 5), z(2, 3, 4, 4)], (5, 5), "avg")),
        ("op:merge_bwd-grad-other", lambda: SB(o(2, 3, 5, 5), S3(), "avg", z(0))),
        ("api:scores1-other", lambda: A([z(2, 3, 5, 5), o(2, 3, 4, 4)], (5, 5), "avg")),
        ("api:gate-other", lambda: A(S3(), (5, 5), "avg", None, o(2, 3, 5, 5))),
    ]


MIXED = [
    pytest.param(other, name, call, id=f"{other}-{name}")
    for other in OTHERS
    for name, call in _mixed_cases(other)
]


@pytest.mark.parametrize("other,name,call", MIXED)
def test_mixed_devices_raise(other, name, call):
    with pytest.raises(RuntimeError, match=r"(?i)device|meta|cpu|cuda"):
        call()


def test_mixed_devices_api_scores0_meta():
    """scores[0] on meta: the API routes meta tensors to the op's fake kernel
    (shape propagation), whose device check refuses the mix by name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(RuntimeError, match=r"device|scores\[1\] is on cpu but scores\[0\] is on meta"):
            A([torch.zeros(2, 3, 5, 5, device="meta"), z(2, 3, 4, 4)], (5, 5), "avg")


def test_meta_tensors_alone_give_shapes():
    """All-meta inputs are legitimate (shape inference): correct output metadata."""
    m = lambda *s, dtype=torch.float32: torch.zeros(*s, device="meta", dtype=dtype)
    assert F().interp(m(2, 3, 5, 5), [9, 7], 0, 0).shape == (2, 3, 9, 7)
    out, aux = M([m(2, 3, 5, 5), m(2, 3, 4, 4)], (5, 5), "attention", m(2, 2, 5, 5))
    assert out.shape == (2, 3, 5, 5) and aux.shape == (2, 2, 5, 5) and out.device.type == "meta"
    lab, sc = U(m(2, 4, 3, 3), (7, 7), True)
    assert lab.shape == (2, 7, 7) and lab.dtype == torch.int64 and sc.shape == (2, 7, 7)


# ---- huge-but-legal requests fail to allocate, quickly and cleanly --------


def _overcommit_mode():
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip()
    except OSError:
        return None


def _huge_guard():
    # 2^48 bytes exceeds the 47-bit user address space of x86-64, so no
    # allocator can hand it out; still, where the kernel always overcommits
    # (mode 1) or the platform is unknown, do not risk touching such memory.
    if _overcommit_mode() not in ("0", "2"):
        pytest.skip("vm.overcommit_memory is not heuristic/strict: a huge allocation might succeed lazily")


HUGE = 1 << 23


@pytest.mark.parametrize("which", ["interp", "api-interp", "merge", "argmax", "interp_backward"])
def test_huge_legal_size_fails_to_allocate(which):
    _huge_guard()
    x = torch.randn(1, 1, 3, 3)
    calls = {
        "interp": lambda: F().interp(x, [HUGE, HUGE], 0, 0),  # 2^46 floats = 256 TiB
        "api-interp": lambda: ops.interp(x, (HUGE, HUGE)),
        "merge": lambda: M([x, x], (HUGE, HUGE), "avg"),
        "argmax": lambda: U(x, (HUGE, HUGE)),  # int64 labels: 512 TiB
        "interp_backward": lambda: IB(torch.randn(1, 1, 2, 2), [1, 1, HUGE, HUGE]),
    }
    with pytest.raises(RuntimeError, match=r"(?i)can't allocate memory|not enough memory|allocate"):
        calls[which]()
