"""The runtime-compiled CUDA ops (attn2scale/ops/_nvrtc_ops.py) check their
arguments as the C++ ops (csrc/op_common.cpp) do, before anything is
allocated or launched, so a bad torch.ops call raises instead of letting a
kernel read out of bounds on the GPU.

No GPU needed: the NVRTC ops run on CPU tensors with the kernel launch
replaced by a recorder. Every raw-op row of tests/test_ops_bad_input.py goes
through both the C++ CPU op and the NVRTC op, and both must refuse with the
same words; zero-sized inputs the C++ op accepts give the same outputs
without a launch; legal inputs get through to the launch.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

import test_ops_bad_input as bad
from attn2scale import ops
from attn2scale.ops import _registration, nvrtc

pytestmark = pytest.mark.skipif(
    not ops.extension_available(), reason="attn2scale._C (the C++ ops to compare with) is not built/loadable"
)
_nvrtc_ops = pytest.importorskip("attn2scale.ops._nvrtc_ops")  # needs numpy

NVRTC = SimpleNamespace(interp=_nvrtc_ops.interp, interp_backward=_nvrtc_ops.interp_backward,
                        scale_merge=_nvrtc_ops.scale_merge, scale_merge_backward=_nvrtc_ops.scale_merge_backward,
                        upsample_argmax=_nvrtc_ops.upsample_argmax)
# Rows whose error is torch's dispatcher's (an op call without any tensor), raised
# before the implementation for any device runs.
DISPATCHER_ROWS = {"op:merge-empty-scores"}
OP_ROWS = [c for c in bad.CASES if c.id.startswith("op:") and c.id not in DISPATCHER_ROWS]
MODES = list(ops.MERGE_MODES)


def z(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


@pytest.fixture
def launches(monkeypatch):
    """The kernel launches of the NVRTC ops, recorded (name, work items) instead of run."""
    calls = []
    monkeypatch.setattr(_nvrtc_ops, "_launch", lambda t, name, n, *args: calls.append((name, n)))
    return calls


def test_limits_are_the_cpp_ones():
    macros = (nvrtc.CSRC / "macros.h").read_text()
    assert _registration.MAX_SCALES == nvrtc.max_scales()
    m = re.search(r"constexpr int64_t kMaxSpatial = int64_t\(1\) << (\d+);", macros)
    assert m and _registration.MAX_SPATIAL == 1 << int(m.group(1))


def test_every_op_has_rows():
    ids = " ".join(c.id for c in OP_ROWS)
    for op in ("interp", "interp_backward", "merge", "merge_bwd", "argmax"):
        assert f"op:{op}-" in ids


@pytest.mark.parametrize("case", OP_ROWS, ids=[c.id for c in OP_ROWS])
def test_nvrtc_op_refuses_as_the_cpu_op(case, launches, monkeypatch):
    with pytest.raises(case.exc, match=case.match) as cpu:
        case.call()  # the rows call torch.ops.attn2scale through bad.F()
    monkeypatch.setattr(bad, "F", lambda: NVRTC)
    with pytest.raises(case.exc, match=case.match) as rtc:
        case.call()
    assert str(rtc.value) == str(cpu.value)
    assert not launches


def _aux(mode, n, c, s, h, w):
    """scale_merge's aux for mode: attention weights, the winning scale, or unused (avg)."""
    return {"attention": z(n, s, h, w), "max": z(n, c, h, w, dtype=torch.uint8)}.get(mode, z(0))


def _zero_sized():
    """Calls the C++ op accepts that read nothing (so the NVRTC op launches nothing)."""
    calls = {}
    for mode in MODES:
        att = mode == "attention"
        calls[f"merge-N0-{mode}"] = lambda F, mode=mode, att=att: F.scale_merge(
            [z(0, 3, 5, 5), z(0, 3, 4, 4)], [5, 5], mode, z(0, 2, 5, 5) if att else None, z(0, 3, 5, 5), None)
        if not att:  # attention with C == 0 still computes its weights
            calls[f"merge-C0-{mode}"] = lambda F, mode=mode: F.scale_merge(
                [z(2, 0, 5, 5), z(2, 0, 4, 4)], [5, 5], mode, None, None, None)
        for n, c in ((0, 3), (2, 0)):
            calls[f"merge_bwd-N{n}C{c}-{mode}"] = lambda F, mode=mode, n=n, c=c: F.scale_merge_backward(
                z(n, c, 5, 5), [z(n, c, 5, 5), z(n, c, 4, 4)], mode, _aux(mode, n, c, 2, 5, 5), z(n, c, 5, 5), None)
    calls["interp-N0-crop-all"] = lambda F: F.interp(z(0, 2, 5, 5), [3, 3], -3, -2)
    calls["interp_backward-N0"] = lambda F: F.interp_backward(z(0, 2, 3, 3), [0, 2, 5, 5], 0, 0)
    calls["argmax-N0"] = lambda F: F.upsample_argmax(z(0, 3, 3, 3), [5, 5], True)
    return calls


ZERO_SIZED = _zero_sized()


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


@pytest.mark.parametrize("name", list(ZERO_SIZED))
def test_zero_sized_inputs_as_the_cpu_op(name, launches):
    call = ZERO_SIZED[name]
    want, got = _flat(call(torch.ops.attn2scale)), _flat(call(NVRTC))
    assert [(t.shape, t.dtype) for t in got] == [(t.shape, t.dtype) for t in want]
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert not launches


@pytest.mark.parametrize("mode", MODES)
def test_grad_without_rows_is_accepted_as_by_the_cpu_op(mode, launches):
    """A grad of 0 rows: the C++ op computes (all-zero) score gradients; the
    NVRTC op must not refuse it either (its kernels write zeros there)."""
    scores = [torch.randn(2, 3, 5, 5), torch.randn(2, 3, 4, 4)]
    args = (z(2, 3, 0, 5), scores, mode, _aux(mode, 2, 3, 2, 0, 5), None, None)
    g_scores, _, _ = torch.ops.attn2scale.scale_merge_backward(*args)
    assert all(not g.any() for g in g_scores)
    g_scores, _, _ = NVRTC.scale_merge_backward(*args)
    assert [g.shape for g in g_scores] == [s.shape for s in scores]
    assert [name for name, _ in launches][:2] == [f"a2s::kern::merge_backward_scores<T, {ops.MERGE_MODES[mode]}>"] * 2


@pytest.mark.parametrize("with_gate", [False, True], ids=["nogate", "gate"])
@pytest.mark.parametrize("mode", MODES)
def test_legal_merge_reaches_the_kernels(mode, with_gate, launches):
    """The checks let legal calls through: forward, then backward with the forward's aux."""
    code = ops.MERGE_MODES[mode]
    scores = [torch.randn(2, 3, 7, 7), torch.randn(2, 3, 5, 4), torch.randn(2, 3, 3, 3)]
    logits = torch.randn(2, 3, 7, 7) if mode == "attention" else None
    gate = torch.randn(2, 3, 7, 7) if with_gate else None
    w = 0.5 if mode == "avg" else None
    _, aux = torch.ops.attn2scale.scale_merge(scores, [7, 7], mode, logits, gate, w)
    NVRTC.scale_merge(scores, [7, 7], mode, logits, gate, w)
    NVRTC.scale_merge_backward(torch.randn(2, 3, 7, 7), scores, mode, aux, gate, w)
    want = ([("a2s::kern::softmax_scales_kernel<T>", 2 * 49)] if mode == "attention" else [])
    want += [(f"a2s::kern::merge_forward<T, {code}>", 2 * 3 * 49)]
    want += [(f"a2s::kern::merge_backward_scores<T, {code}>", s.numel()) for s in scores]
    if mode == "attention" or with_gate:
        want += [(f"a2s::kern::merge_backward_pixels<T, {code}>", 2 * 49)]
    assert launches == want


def test_legal_interp_and_argmax_reach_the_kernels(launches):
    x = torch.randn(2, 3, 9, 8)
    NVRTC.interp(x, [5, 4], -1, -2)
    NVRTC.interp_backward(torch.randn(2, 3, 5, 4), [2, 3, 9, 8], -1, -2)
    NVRTC.upsample_argmax(x, [17, 15], False)
    assert launches == [("a2s::kern::interp_forward<T>", 2 * 3 * 20), ("a2s::kern::interp_backward<T>", 2 * 3 * 72),
                        ("a2s::kern::upsample_argmax_kernel<T>", 2 * 17 * 15)]
