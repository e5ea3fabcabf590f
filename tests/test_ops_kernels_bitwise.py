"""CPU kernels bit for bit against an independent float32 computation that
performs the same per-element operations in the same order.

The kernels precompute tap and footprint tables, split the work over
threads, vectorise rows and pad column footprints; none of that may change a
bit. The references here are plain PyTorch float32 elementwise ops (each one
rounds once, as the kernels' scalar expressions do), written from the op
order the design fixes (csrc/interp_math.h, csrc/scale_merge_math.h):

* taps: r = (in - 1) / (out - 1), src = r * o, i0 = (int) src, i1 = i0 + 1
  (clamped), l1 = src - i0, l0 = 1 - l1 (all float32);
* resize: columns first, l0 * P[:, i0] + l1 * P[:, i1], then rows;
* scale_merge backward, gather form: the weight of output o on input j is
  0 + (l0 if i0 == j) + (l1 if i1 == j); each input row sums, starting from
  +0, its footprint's upstream shares in output order, then each input
  column sums its footprint of those row sums in output order;
* upsample_argmax: torch.argmax of the resized map (first maximum, NaN
  largest).

Attention weights come from the kernels' own exp (csrc/exp_math.h, see
test_ops_parity.py), which torch.exp does not reproduce bit for bit; the attention tests take the
kernel's weights (aux) as an input and check the arithmetic around them.
"""

from __future__ import annotations

import pytest
import torch

from attn2scale import ops

pytestmark = pytest.mark.skipif(
    not ops.extension_available(), reason="attn2scale._C (the compiled kernels) is not built/loadable"
)

F32 = torch.float32


def taps(n_in: int, n_out: int):
    r = torch.zeros((), dtype=F32)
    if n_out > 1:  # the ratio itself is a float32 division
        r = torch.tensor(n_in - 1, dtype=F32) / torch.tensor(n_out - 1, dtype=F32)
    src = r * torch.arange(n_out, dtype=F32)
    i0 = src.to(torch.int64)
    i1 = i0 + (i0 < n_in - 1).to(torch.int64)
    l1 = src - i0.to(F32)
    return i0, i1, torch.tensor(1.0, dtype=F32) - l1, l1


def resize(p: torch.Tensor, size) -> torch.Tensor:
    """Caffe's bilinear resize, columns first, then rows (bilinear_combine's order)."""
    if tuple(p.shape[-2:]) == tuple(size):
        return p.clone()
    hi0, hi1, hl0, hl1 = taps(p.shape[-2], size[0])
    wi0, wi1, wl0, wl1 = taps(p.shape[-1], size[1])
    cols = wl0 * p[..., wi0] + wl1 * p[..., wi1]
    return hl0[:, None] * cols[..., hi0, :] + hl1[:, None] * cols[..., hi1, :]


def adjoint_1d(x: torch.Tensor, n_in: int, dim: int) -> torch.Tensor:
    """Gather-form adjoint along dim: input j sums w(o, j) * x[o] over o ascending, from +0."""
    n_out = x.shape[dim]
    i0, i1, l0, l1 = taps(n_in, n_out)
    x = x.movedim(dim, 0)
    out = []
    for j in range(n_in):
        acc = torch.zeros_like(x[0])
        for o in range(n_out):
            if int(i0[o]) != j and int(i1[o]) != j:
                continue
            w = torch.zeros((), dtype=F32)
            if int(i0[o]) == j:
                w = w + l0[o]
            if int(i1[o]) == j:
                w = w + l1[o]
            acc = acc + w * x[o]
        out.append(acc)
    return torch.stack(out).movedim(0, dim)


def resize_adjoint(share: torch.Tensor, in_hw) -> torch.Tensor:
    if tuple(share.shape[-2:]) == tuple(in_hw):
        return share.clone()
    return adjoint_1d(adjoint_1d(share, in_hw[0], 2), in_hw[1], 3)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == F32 else t


def assert_bitwise(got: torch.Tensor, want: torch.Tensor, what: str):
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    diff = (bits(got) != bits(want)).sum().item()
    assert diff == 0, f"{what}: {diff} of {want.numel()} elements differ in their bits"


# up (21 -> 41, 31 -> 41), identity (41), down (41 -> 13) and odd shapes
MERGE_CASES = [((41, 41), [(41, 41), (31, 31), (21, 21)]), ((13, 9), [(41, 30), (13, 9), (5, 4)]),
               ((17, 23), [(9, 12), (6, 5)])]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("with_gate", [False, True], ids=["nogate", "gate"])
@pytest.mark.parametrize("mode", list(ops.MERGE_MODES))
@pytest.mark.parametrize("case", range(len(MERGE_CASES)))
def test_scale_merge_forward_backward_bitwise(case, mode, with_gate, threads):
    size, sides = MERGE_CASES[case]
    g = torch.Generator().manual_seed(100 + case)
    N, C, S = 2, 5, len(sides)
    scores = [torch.randn(N, C, *hw, generator=g) for hw in sides]
    logits = torch.randn(N, S, *size, generator=g) * 2 if mode == "attention" else None
    gate = torch.rand(N, C, *size, generator=g) if with_gate else None
    go = torch.randn(N, C, *size, generator=g)
    go[0, 1, 2, 3] = float("inf")  # padded column slots must not turn it into NaN elsewhere
    go[1, 0, 4, 1] = float("nan")
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out, aux = torch.ops.attn2scale.scale_merge(scores, list(size), mode, logits, gate, None)
        g_sc, g_lg, g_gt = torch.ops.attn2scale.scale_merge_backward(go, scores, mode, aux, gate, None)
    finally:
        torch.set_num_threads(prev)

    R = [resize(p, size) for p in scores]
    if mode == "max":
        acc, arg = R[0].clone(), torch.zeros(R[0].shape, dtype=torch.int64)
        for s in range(1, S):
            take = R[s] > acc  # ties keep the lower scale
            acc, arg = torch.where(take, R[s], acc), torch.where(take, s, arg)
        assert torch.equal(aux.to(torch.int64), arg)
    elif mode == "attention":
        acc = aux[:, 0:1] * R[0]
        for s in range(1, S):
            acc = acc + aux[:, s : s + 1] * R[s]
    else:
        acc = R[0]
        for s in range(1, S):
            acc = acc + R[s]
        acc = acc * torch.tensor(1.0 / S, dtype=F32)
    assert_bitwise(out, acc if gate is None else gate * acc, "forward")

    ghat = go if gate is None else go * gate
    for s in range(S):
        if mode == "attention":
            share = ghat * aux[:, s : s + 1]
        elif mode == "max":
            share = torch.where(arg == s, ghat, torch.zeros((), dtype=F32))
        else:
            share = ghat * torch.tensor(1.0 / S, dtype=F32)
        assert_bitwise(g_sc[s], resize_adjoint(share, sides[s]), f"grad of scale {s}")
    if gate is not None:
        assert_bitwise(g_gt, go * acc, "grad of gate")
    if mode == "attention":
        a = []
        for s in range(S):  # the sum over classes runs in class order, from +0
            t = torch.zeros_like(ghat[:, 0])
            for c in range(C):
                t = t + ghat[:, c] * R[s][:, c]
            a.append(t)
        dot = torch.zeros_like(a[0])
        for s in range(S):
            dot = dot + aux[:, s] * a[s]
        want = torch.stack([aux[:, s] * (a[s] - dot) for s in range(S)], 1)
        assert_bitwise(g_lg, want, "grad of logits")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape,size", [((2, 9, 11, 13), (81, 97)), ((1, 6, 41, 41), (13, 9)),
                                        ((1, 4, 7, 7), (7, 7))])
def test_upsample_argmax_bitwise(shape, size, threads):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(*shape, generator=g)
    x = torch.cat([x, x[:, :2]], 1)  # exact ties with classes 0 and 1: the lower class wins
    x[0, 3, 1, 1] = float("nan")
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        labels, score = torch.ops.attn2scale.upsample_argmax(x, list(size), True)
    finally:
        torch.set_num_threads(prev)
    up = resize(x, size)
    want = up.argmax(1)
    assert torch.equal(labels, want)
    assert_bitwise(score, up.gather(1, want[:, None])[:, 0], "score")
