"""Gradients of the fused ops: gradcheck / gradgradcheck in float64, bitwise
determinism of the backward passes, torch.library.opcheck of every op, and
torch.compile(fullgraph=True) of a small model-like chain."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from attn2scale import ops

R = ops.reference

pytestmark = pytest.mark.skipif(
    not ops.extension_available(), reason="attn2scale._C (the compiled kernels) is not built/loadable"
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and ops.cuda_kernels_available() else [])
MODES = tuple(ops.MERGE_MODES)  # every merge mode, from the one Python table
SEEDS = (0, 1, 2)


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def randn(*shape, seed, dtype=torch.float64, device="cpu", requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    return t.requires_grad_(requires_grad)


def rand01(*shape, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype=torch.float32, device=device)


# ---------------------------------------------------------------------------
# gradcheck: interp
# ---------------------------------------------------------------------------

INTERP_GC = [
    ((2, 2, 5, 4), (7, 3), 0, 0),
    ((1, 2, 4, 6), (9, 11), 0, 0),  # upsample, non-square
    ((1, 2, 9, 7), (4, 3), 0, 0),  # downsample
    ((2, 1, 5, 4), (1, 1), 0, 0),  # size-1 output (ratio 0)
    ((1, 2, 5, 4), (1, 6), 0, 0),
    ((1, 2, 1, 1), (4, 3), 0, 0),  # size-1 input
    ((1, 2, 8, 7), (5, 6), -1, -2),  # crop
    ((1, 2, 8, 7), (9, 3), -2, 0),
    ((1, 1, 6, 6), (1, 1), -2, -3),  # crop to 1x1, output 1x1
    ((1, 2, 6, 5), (6, 5), 0, 0),  # equal size
]


@pytest.mark.parametrize("shape,size,pad_beg,pad_end", INTERP_GC, ids=lambda v: str(v).replace(" ", ""))
def test_gradcheck_interp(shape, size, pad_beg, pad_end, device):
    x = randn(*shape, seed=sum(shape), device=device, requires_grad=True)
    fn = lambda t: ops.interp(t, size, pad_beg=pad_beg, pad_end=pad_end)
    assert gradcheck(fn, (x,), eps=1e-6, atol=1e-8, rtol=1e-7)
    # interp_backward's own backward is interp: the double backward of interp
    assert gradgradcheck(fn, (x,), eps=1e-6, atol=1e-8, rtol=1e-7)


@pytest.mark.parametrize("shape,size,pad_beg,pad_end", INTERP_GC[:4] + INTERP_GC[6:8], ids=lambda v: str(v).replace(" ", ""))
def test_gradcheck_interp_backward(shape, size, pad_beg, pad_end, device):
    """interp_backward as a function of the incoming gradient (it is linear in it)."""
    grad = randn(shape[0], shape[1], *size, seed=3, device=device, requires_grad=True)
    fn = lambda g: torch.ops.attn2scale.interp_backward(g, list(shape), pad_beg, pad_end)
    assert gradcheck(fn, (grad,), eps=1e-6, atol=1e-8, rtol=1e-7)
    assert gradgradcheck(fn, (grad,), eps=1e-6, atol=1e-8, rtol=1e-7)


def test_interp_adjoint_identity(device):
    """<interp(x), g> == <x, interp_backward(g)> to float64 rounding."""
    for shape, size, pb, pe in INTERP_GC:
        x = randn(*shape, seed=5, device=device)
        g = randn(shape[0], shape[1], *size, seed=6, device=device)
        lhs = (ops.interp(x, size, pad_beg=pb, pad_end=pe) * g).sum()
        rhs = (x * torch.ops.attn2scale.interp_backward(g, list(shape), pb, pe)).sum()
        assert abs((lhs - rhs).item()) <= 1e-12 * max(1.0, abs(lhs.item()))


# ---------------------------------------------------------------------------
# gradcheck: scale_merge
# ---------------------------------------------------------------------------

MERGE_SIZES = [(5, 4), (4, 3), (3, 3)]


def merge_gc_inputs(mode, with_gate, seed, size, device):
    N, C, S = 2, 2, len(MERGE_SIZES)
    for attempt in range(20):
        s = seed * 100 + attempt
        scores = [randn(N, C, *hw, seed=s + i, device=device) for i, hw in enumerate(MERGE_SIZES)]
        if mode != "max":
            break
        # gradcheck of max is valid only away from ties: every output element's
        # best and second-best resized scales must be well separated
        resized = torch.stack([R.interp(p, size) for p in scores])
        top2 = resized.topk(2, dim=0).values
        if (top2[0] - top2[1]).min().item() > 1e-3:
            break
    else:  # pragma: no cover - the seeds above are fine
        pytest.fail("could not draw tie-free max inputs")
    logits = randn(N, S, *size, seed=seed + 7, device=device) if mode == "attention" else None
    gate = randn(N, C, *size, seed=seed + 8, device=device) if with_gate else None
    return scores, logits, gate


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("size", [(5, 4), (6, 7)], ids=["5x4", "6x7"])
@pytest.mark.parametrize("with_gate", [False, True], ids=["nogate", "gate"])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_scale_merge(mode, with_gate, size, seed, device):
    scores, logits, gate = merge_gc_inputs(mode, with_gate, seed, size, device)
    ins = [t.requires_grad_(True) for t in scores + [logits, gate] if t is not None]
    S = len(scores)

    def fn(*ts):
        rest = list(ts[S:])
        lg = rest.pop(0) if logits is not None else None
        gt = rest.pop(0) if gate is not None else None
        return ops.scale_merge(list(ts[:S]), size, mode, logits=lg, gate=gt)

    assert gradcheck(fn, tuple(ins), eps=1e-6, atol=1e-8, rtol=1e-7)


def test_gradcheck_scale_merge_avg_weight(device):
    scores, _, gate = merge_gc_inputs("avg", True, 3, (5, 4), device)
    ins = [t.requires_grad_(True) for t in scores + [gate]]
    fn = lambda a, b, c, g: ops.scale_merge([a, b, c], (5, 4), "avg", gate=g, avg_weight=0.33333)
    assert gradcheck(fn, tuple(ins), eps=1e-6, atol=1e-8, rtol=1e-7)


DOUBLE_BACKWARD_REFUSAL = (
    r"attn2scale::scale_merge_backward is not differentiable \(double backward through scale_merge is not "
    r"implemented\); use attn2scale.ops.reference.scale_merge if you need higher-order gradients")


@pytest.mark.parametrize("mode", MODES)
def test_scale_merge_double_backward_is_refused(mode, device):
    """Double backward through scale_merge is not implemented: the first backward
    works (also with create_graph=True), differentiating it again raises the
    refusal naming the reference op, in every mode and under gradgradcheck."""
    scores, logits, gate = merge_gc_inputs(mode, True, 0, (5, 4), device)
    ins = [t.requires_grad_(True) for t in scores + [logits, gate] if t is not None]
    out = ops.scale_merge(scores, (5, 4), mode, logits=logits, gate=gate)
    first = torch.autograd.grad(out.square().sum(), ins, create_graph=True)
    assert all(g.requires_grad for g in first[: len(scores)])
    with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD_REFUSAL):
        torch.autograd.grad(sum(g.sum() for g in first), ins, allow_unused=True)

    if mode == "attention":  # gradgradcheck meets the same refusal (one mode: it is slow)
        fn = lambda a, b, c, lg, gt: ops.scale_merge([a, b, c], (5, 4), mode, logits=lg, gate=gt)
        with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD_REFUSAL):
            gradgradcheck(fn, tuple(ins), eps=1e-6, atol=1e-8, rtol=1e-7)


def test_scale_merge_second_derivative_through_the_logits_is_refused(device):
    """Only the logits need a gradient (the score maps are constants): the
    first gradient depends on the logits through the attention weights, so a
    second derivative must be refused, not come back silently missing that
    path (the gradient penalty below would otherwise differ from the
    reference's)."""
    scores, logits, _ = merge_gc_inputs("attention", False, 0, (5, 4), device)
    logits.requires_grad_(True)
    out = ops.scale_merge(scores, (5, 4), "attention", logits=logits)
    (g_logits,) = torch.autograd.grad(out.square().sum(), logits, create_graph=True)
    assert g_logits.requires_grad
    with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD_REFUSAL):
        torch.autograd.grad(g_logits.square().sum(), logits)
    # without create_graph nothing is recorded and the first gradient is the reference's
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref = R.scale_merge(scores, (5, 4), "attention", ref_logits, None, None)[0]
    (want,) = torch.autograd.grad(ref.square().sum(), ref_logits)
    (got,) = torch.autograd.grad(ops.scale_merge(scores, (5, 4), "attention", logits=logits).square().sum(), logits)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_upsample_argmax_raw_op_is_not_silently_differentiable(device):
    # The raw op marks its outputs non-differentiable: using the score in a
    # loss is refused instead of silently giving no gradient.
    x = randn(1, 3, 4, 4, seed=9, device=device, requires_grad=True)
    labels, score = torch.ops.attn2scale.upsample_argmax(x, [7, 7], True)
    assert not score.requires_grad and not labels.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        score.sum().backward()


def test_upsample_argmax_api_is_inference_only(device):
    x = randn(1, 3, 4, 4, seed=9, device=device, requires_grad=True)
    lab, score = ops.upsample_argmax(x, (7, 7), return_score=True)
    assert not lab.requires_grad and not score.requires_grad


# ---------------------------------------------------------------------------
# determinism: two backward runs are bit for bit equal
# ---------------------------------------------------------------------------


def _det_inputs(device):
    sizes = [(41, 41), (31, 31), (21, 21)]
    scores = [randn(2, 21, *hw, seed=20 + i, dtype=torch.float32, device=device) for i, hw in enumerate(sizes)]
    logits = randn(2, 3, 41, 41, seed=30, dtype=torch.float32, device=device)
    # a gate in (0, 1) drawn directly: no torch.sigmoid here, whose vectorised
    # CPU result depends on the thread count and would fake a nondeterminism
    gate = rand01(2, 21, 41, 41, seed=31, device=device)
    go = randn(2, 21, 41, 41, seed=32, dtype=torch.float32, device=device)
    return scores, logits, gate, go


def _backward_all(device, mode, with_gate):
    scores, logits, gate, go = _det_inputs(device)
    ins = [t.clone().requires_grad_(True) for t in scores + [logits, gate]]
    lg = ins[3] if mode == "attention" else None
    gt = ins[4] if with_gate else None
    out = ops.scale_merge(ins[:3], (41, 41), mode, logits=lg, gate=gt)
    used = ins[:3] + [t for t in (lg, gt) if t is not None]
    return [out] + list(torch.autograd.grad(out, used, go))


@pytest.mark.parametrize("with_gate", [False, True], ids=["nogate", "gate"])
@pytest.mark.parametrize("mode", MODES)
def test_scale_merge_backward_deterministic(mode, with_gate, device):
    a = _backward_all(device, mode, with_gate)
    b = _backward_all(device, mode, with_gate)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    if device == "cpu":  # and independent of the number of threads
        n = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            c = _backward_all(device, mode, with_gate)
        finally:
            torch.set_num_threads(n)
        for u, v in zip(a, c):
            assert torch.equal(u, v)


def test_interp_backward_deterministic(device):
    for shape, size, pb, pe in [((2, 21, 31, 31), (41, 41), 0, 0), ((2, 21, 21, 21), (161, 161), 0, 0),
                                ((2, 21, 41, 41), (31, 31), -1, -1)]:
        x = randn(*shape, seed=40, dtype=torch.float32, device=device, requires_grad=True)
        go = randn(shape[0], shape[1], *size, seed=41, dtype=torch.float32, device=device)
        runs = []
        for threads in (None, None, 1):
            n = torch.get_num_threads()
            if threads and device == "cpu":
                torch.set_num_threads(threads)
            try:
                runs.append(torch.autograd.grad(ops.interp(x, size, pad_beg=pb, pad_end=pe), x, go)[0])
            finally:
                torch.set_num_threads(n)
        assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


# ---------------------------------------------------------------------------
# torch.library.opcheck
# ---------------------------------------------------------------------------
# opcheck runs test_schema, test_autograd_registration, test_faketensor and
# test_aot_dispatch_dynamic (the default: all of them). Choices per op:
# * interp / interp_backward / scale_merge: all four, with inputs that require
#   grad, so the registered autograd (and, via aot_dispatch, the backward's own
#   fake kernel) is exercised. scale_merge's aux output never requires grad
#   (csrc/autograd.cpp keeps it out of the autograd node's outputs), so
#   aot_dispatch compares gradients of `out` only; no test needs dropping.
# * scale_merge_backward and upsample_argmax have no autograd formula:
#   all four tests on inputs that do not require grad (their use: inside a
#   backward / inference). For upsample_argmax with an input that requires
#   grad, test_aot_dispatch_dynamic is dropped: it would try to backpropagate
#   through the int64 labels, which the op never supports.

ALL_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def _opcheck(op, args, test_utils=ALL_UTILS):
    res = torch.library.opcheck(op, args, test_utils=test_utils, raise_exception=False)
    bad = {k: v for k, v in res.items() if v != "SUCCESS"}
    assert not bad, bad
    assert set(res) == set(test_utils)


@pytest.mark.parametrize("size,pads", [((9, 4), (0, 0)), ((4, 6), (-1, -2)), ((1, 1), (0, 0))], ids=str)
def test_opcheck_interp(size, pads, device):
    x = randn(2, 3, 9, 8, seed=50, dtype=torch.float32, device=device, requires_grad=True)
    _opcheck(torch.ops.attn2scale.interp.default, (x, list(size), *pads))


def test_opcheck_interp_backward(device):
    g = randn(2, 3, 9, 4, seed=51, dtype=torch.float32, device=device, requires_grad=True)
    _opcheck(torch.ops.attn2scale.interp_backward.default, (g, [2, 3, 5, 7], 0, 0))
    _opcheck(torch.ops.attn2scale.interp_backward.default, (g, [2, 3, 12, 7], -2, -1))


@pytest.mark.parametrize(
    "mode,with_gate,avg_weight",
    [(m, g, None) for m in MODES for g in (False, True)] + [("avg", False, 0.33333), ("avg", True, 0.5)],
    ids=str,
)
def test_opcheck_scale_merge(mode, with_gate, avg_weight, device):
    mk = lambda *s, seed: randn(*s, seed=seed, dtype=torch.float32, device=device, requires_grad=True)
    scores = [mk(2, 3, 7, 7, seed=52), mk(2, 3, 5, 4, seed=53), mk(2, 3, 3, 3, seed=54)]
    logits = mk(2, 3, 7, 7, seed=55) if mode == "attention" else None
    gate = mk(2, 3, 7, 7, seed=56) if with_gate else None
    _opcheck(torch.ops.attn2scale.scale_merge.default, (scores, [7, 7], mode, logits, gate, avg_weight))


@pytest.mark.parametrize("with_gate", [False, True], ids=["nogate", "gate"])
@pytest.mark.parametrize("mode", MODES)
def test_opcheck_scale_merge_backward(mode, with_gate, device):
    mk = lambda *s, seed: randn(*s, seed=seed, dtype=torch.float32, device=device)
    scores = [mk(2, 3, 7, 7, seed=57), mk(2, 3, 5, 4, seed=58)]
    logits = mk(2, 2, 7, 7, seed=59) if mode == "attention" else None
    gate = mk(2, 3, 7, 7, seed=60) if with_gate else None
    _, aux = torch.ops.attn2scale.scale_merge(scores, [7, 7], mode, logits, gate, None)
    grad = mk(2, 3, 7, 7, seed=61)
    _opcheck(torch.ops.attn2scale.scale_merge_backward.default, (grad, scores, mode, aux, gate, None))


@pytest.mark.parametrize("with_score", [False, True], ids=["labels", "score"])
def test_opcheck_upsample_argmax(with_score, device):
    x = randn(2, 5, 4, 6, seed=62, dtype=torch.float32, device=device)
    _opcheck(torch.ops.attn2scale.upsample_argmax.default, (x, [9, 11], with_score))
    xg = x.clone().requires_grad_(True)
    _opcheck(torch.ops.attn2scale.upsample_argmax.default, (xg, [9, 11], with_score), ALL_UTILS[:3])


# ---------------------------------------------------------------------------
# torch.compile(fullgraph=True)
# ---------------------------------------------------------------------------


def _model_inputs(device):
    # one image's worth of score maps at the three training scales, attention
    # logits from a coarse attention map, a recalibration gate
    mk = lambda *s, seed: randn(*s, seed=seed, dtype=torch.float32, device=device).requires_grad_(True)
    return [mk(2, 21, 41, 41, seed=70), mk(2, 21, 31, 31, seed=71), mk(2, 21, 21, 21, seed=72),
            mk(2, 3, 21, 21, seed=73), rand01(2, 21, 41, 41, seed=74, device=device).requires_grad_(True)]


def _model(s1, s075, s05, att, gate):
    # only our ops: with a backend that generates no code (aot_eager) the
    # compiled graph must equal eager bit for bit
    logits = ops.interp(att, (41, 41))
    fused = ops.scale_merge([s1, s075, s05], (41, 41), "attention", logits=logits, gate=gate)
    labels = ops.upsample_argmax(fused, (321, 321))
    return fused, labels


def _check_compiled(fn, device, backend):
    torch._dynamo.reset()
    ins_e, ins_c = _model_inputs(device), _model_inputs(device)
    w = randn(2, 21, 41, 41, seed=75, dtype=torch.float32, device=device)
    fused_e, labels_e = fn(*ins_e)
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    fused_c, labels_c = compiled(*ins_c)
    assert torch.equal(fused_c, fused_e)
    assert torch.equal(labels_c, labels_e)
    ge = torch.autograd.grad((fused_e * w).sum(), ins_e)
    gc = torch.autograd.grad((fused_c * w).sum(), ins_c)
    for a, b in zip(gc, ge):
        assert torch.equal(a, b)


def test_compile_fullgraph_model_chain(device):
    """interp -> scale_merge(attention, gate) -> upsample_argmax through the
    friendly API, forward and backward, compiled (aot_eager) == eager bit for bit."""
    _check_compiled(_model, device, "aot_eager")


FUSED = (ops.interp, lambda scores, logits, gate: ops.scale_merge(scores, (41, 41), "attention", logits=logits, gate=gate))
REFERENCE = (R.interp, lambda scores, logits, gate: R.scale_merge(scores, (41, 41), "attention", logits, gate)[0])


def _stock_and_fused_net(impl, image, conv_w, att_w, gate_w, target):
    """A small attention-to-scale net: stock conv/relu/sigmoid before the merge,
    stock cross-entropy after it; ``impl`` is FUSED or REFERENCE (interp, merge)."""
    interp, merge = impl
    pyramid = [image, interp(image, (31, 31)), interp(image, (21, 21))]
    scores = [torch.relu(F.conv2d(x, conv_w, padding=1)) for x in pyramid]
    logits = F.conv2d(scores[0], att_w)  # attention head on the full scale
    gate = torch.sigmoid(F.conv2d(scores[0], gate_w))
    fused = merge(scores, logits, gate)
    return F.cross_entropy(fused, target), fused


def _stock_net_inputs(device):
    mk = lambda *s, seed: randn(*s, seed=seed, dtype=torch.float32, device=device).requires_grad_(True)
    image = mk(2, 3, 41, 41, seed=90)
    conv_w = mk(21, 3, 3, 3, seed=91)
    att_w, gate_w = mk(3, 21, 1, 1, seed=92), mk(21, 21, 1, 1, seed=93)
    g = torch.Generator().manual_seed(94)
    target = torch.randint(0, 21, (2, 41, 41), generator=g).to(device)
    return image, conv_w, att_w, gate_w, target


@pytest.mark.slow
def test_compile_inductor_with_stock_ops_around(device):
    """inductor compiles the fused ops inside a graph of stock ops (conv, relu,
    sigmoid before; cross-entropy after) with fullgraph=True: loss, merged map
    and every gradient agree with eager on the pure-PyTorch reference ops (and
    with eager on the fused ops). Inductor generates its own code for the stock
    pointwise and reduction ops, which round differently from eager, hence a
    tolerance rather than bit equality."""
    from torch._inductor.compile_fx import compile_fx

    graphs = []

    def inductor(gm, example_inputs):  # inductor, keeping the graph dynamo hands it
        graphs.append(gm)
        return compile_fx(gm, example_inputs)

    torch._dynamo.reset()
    results = {}
    for name, impl, compile_it in (("reference", REFERENCE, False), ("fused", FUSED, False), ("inductor", FUSED, True)):
        image, conv_w, att_w, gate_w, target = _stock_net_inputs(device)
        fn = lambda *a, impl=impl: _stock_and_fused_net(impl, *a)
        if compile_it:
            fn = torch.compile(fn, fullgraph=True, backend=inductor)
        loss, fused = fn(image, conv_w, att_w, gate_w, target)
        grads = torch.autograd.grad(loss, (image, conv_w, att_w, gate_w))
        results[name] = (loss, fused) + grads
    # one graph holding the stock ops and ours side by side
    assert len(graphs) == 1
    called = {str(n.target).removesuffix(".default") for n in graphs[0].graph.nodes if n.op == "call_function"}
    assert {"attn2scale.interp", "attn2scale.scale_merge"} <= called, called
    assert any("conv2d" in c for c in called) and any("cross_entropy" in c for c in called), called
    names = ("loss", "merged map", "d image", "d conv_w", "d att_w", "d gate_w")
    for other in ("fused", "inductor"):
        for what, got, ref in zip(names, results[other], results["reference"]):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5, msg=lambda m: f"{other} {what}: {m}")


def test_compile_fullgraph_raw_ops_dynamic(device):
    """The raw ops under dynamic shapes: one graph serves several sizes."""
    F = torch.ops.attn2scale

    def f(p0, p1, lg):
        a = F.interp(p0, [p1.shape[2] * 2 - 1, p1.shape[3] * 2 - 1], 0, 0)
        out, w = F.scale_merge([a, p1], [a.shape[2], a.shape[3]], "attention", lg, None, None)
        lab, sc = F.upsample_argmax(out.detach(), [out.shape[2] * 2, out.shape[3] * 2], True)
        return out, w, lab, sc

    torch._dynamo.reset()
    cf = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    for n in (5, 8, 11):
        p0 = randn(2, 3, n, n + 1, seed=n, dtype=torch.float32, device=device, requires_grad=True)
        p1 = randn(2, 3, n, n + 1, seed=n + 1, dtype=torch.float32, device=device, requires_grad=True)
        lg = randn(2, 2, 2 * n - 1, 2 * n + 1, seed=n + 2, dtype=torch.float32, device=device, requires_grad=True)
        rc, re = cf(p0, p1, lg), f(p0, p1, lg)
        for a, b in zip(rc, re):
            assert torch.equal(a, b)
        for a, b in zip(torch.autograd.grad(rc[0].sum(), [p0, p1, lg]), torch.autograd.grad(re[0].sum(), [p0, p1, lg])):
            assert torch.equal(a, b)


def test_compile_fullgraph_api_cold_cache(device):
    # Kernel availability is decided at import, so the first call may be traced.
    torch._dynamo.reset()
    x = randn(1, 2, 5, 5, seed=80, dtype=torch.float32, device=device)
    f = torch.compile(lambda t: ops.interp(t, (9, 9)), fullgraph=True, backend="eager")
    assert torch.equal(f(x), R.interp(x, (9, 9)))
