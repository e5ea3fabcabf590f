"""The real CUDA path, on machines that have a GPU (skipped elsewhere).

The CUDA kernels are built with nvcc --fmad=false (the CPU ones with
-ffp-contract=off) and share the CPU kernels' per-element math and summation
order; the softmax's exp is csrc/exp_math.h's, not expf (whose last bit
differs between glibc and CUDA). So CUDA results must equal the CPU's bit for
bit in float32 and float64; half/bfloat16 must equal the CPU's half/bfloat16
results too (same float32 arithmetic, same rounding). The same tests run the
runtime-compiled NVRTC kernels (attn2scale/ops/nvrtc.py) when the extension
has no CUDA kernels and cupy is installed.
"""

import pytest
import torch

from attn2scale import ops

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    pytest.mark.skipif(not (ops.cuda_kernels_available() or ops.nvrtc_kernels_active()),
                       reason="no CUDA kernels: extension built without them and no cupy for NVRTC"),
]

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def rand(*shape, dtype, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", [(2, 3, 9, 9, 17, 17, 0, 0), (1, 21, 65, 65, 513, 513, 0, 0),
                                  (1, 3, 321, 321, 41, 41, 0, 0), (1, 3, 8, 8, 9, 9, -1, -2)])
def test_interp_cuda_equals_cpu(case, dtype):
    n, c, h, w, ho, wo, pb, pe = case
    x = rand(n, c, h, w, dtype=dtype, seed=1).requires_grad_()
    xc = x.detach().cuda().requires_grad_()
    y, yc = ops.interp(x, (ho, wo), pad_beg=pb, pad_end=pe), ops.interp(xc, (ho, wo), pad_beg=pb, pad_end=pe)
    assert torch.equal(yc.cpu(), y)
    g = rand(n, c, ho, wo, dtype=dtype, seed=2)
    y.backward(g)
    yc.backward(g.cuda())
    assert torch.equal(xc.grad.cpu(), x.grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("mode", ["avg", "max", "attention"])
def test_scale_merge_cuda_equals_cpu(mode, gate, dtype):
    n, c, sizes, size = 2, 21, [(41, 41), (31, 31), (21, 21)], (41, 41)
    cpu = [rand(n, c, h, w, dtype=dtype, seed=10 + i).requires_grad_() for i, (h, w) in enumerate(sizes)]
    logits = rand(n, 3, *size, dtype=dtype, seed=3).requires_grad_() if mode == "attention" else None
    gt = torch.rand(n, c, *size).to(dtype).requires_grad_() if gate else None
    leaves = [t for t in cpu + [logits, gt] if t is not None]
    cuda = [t.detach().cuda().requires_grad_() for t in leaves]
    out = ops.scale_merge(cpu, size, mode, logits, gt)
    it = iter(cuda)
    sc = [next(it) for _ in cpu]
    lc = next(it) if logits is not None else None
    gc = next(it) if gt is not None else None
    outc = ops.scale_merge(sc, size, mode, lc, gc)
    assert torch.equal(outc.cpu(), out)
    g = rand(*out.shape, dtype=dtype, seed=5)
    out.backward(g)
    outc.backward(g.cuda())
    for a, b in zip(cuda, leaves):
        assert torch.equal(a.grad.cpu(), b.grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_upsample_argmax_cuda_equals_cpu(dtype):
    x = rand(1, 21, 65, 65, dtype=dtype, seed=4)
    lab, sc = ops.upsample_argmax(x, (513, 513), return_score=True)
    labc, scc = ops.upsample_argmax(x.cuda(), (513, 513), return_score=True)
    assert torch.equal(labc.cpu(), lab) and torch.equal(scc.cpu(), sc)


def test_cuda_gradcheck_and_determinism():
    s = [torch.randn(1, 3, 9, 9, dtype=torch.float64, device="cuda", requires_grad=True),
         torch.randn(1, 3, 5, 5, dtype=torch.float64, device="cuda", requires_grad=True)]
    lg = torch.randn(1, 2, 9, 9, dtype=torch.float64, device="cuda", requires_grad=True)
    fn = lambda a, b, l: ops.scale_merge([a, b], mode="attention", logits=l)
    assert torch.autograd.gradcheck(fn, (*s, lg))
    grads = []
    for _ in range(2):
        out = fn(*s, lg)
        grads.append(torch.autograd.grad(out.square().sum(), [*s, lg]))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_cuda_mixed_devices_refused():
    with pytest.raises(RuntimeError, match="is on"):
        ops.scale_merge([torch.randn(1, 2, 5, 5, device="cuda"), torch.randn(1, 2, 3, 3)], mode="avg")


@pytest.mark.skipif(not ops.cuda_kernels_available(), reason="compares the NVRTC kernels with the nvcc-built ones")
@pytest.mark.parametrize("mode", ["avg", "max", "attention"])
def test_nvrtc_kernels_equal_nvcc_kernels(mode):
    """Both builds of kernels.cuh on the same GPU: equal bit for bit."""
    pytest.importorskip("cupy")
    from attn2scale.ops import _nvrtc_ops

    sc = [rand(2, 21, h, h, dtype=torch.float32, seed=20 + h).cuda() for h in (41, 31, 21)]
    lg = rand(2, 3, 41, 41, dtype=torch.float32, seed=6).cuda() if mode == "attention" else None
    want = torch.ops.attn2scale.scale_merge(sc, [41, 41], mode, lg, None, None)
    got = _nvrtc_ops.scale_merge(sc, [41, 41], mode, lg, None, None)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    g = rand(2, 21, 41, 41, dtype=torch.float32, seed=7).cuda()
    gw = torch.ops.attn2scale.scale_merge_backward(g, sc, mode, want[1], None, None)
    gg = _nvrtc_ops.scale_merge_backward(g, sc, mode, want[1], None, None)
    assert all(torch.equal(a, b) for a, b in zip(gg[0], gw[0])) and torch.equal(gg[1], gw[1])
    x = rand(1, 21, 65, 65, dtype=torch.float32, seed=8).cuda()
    assert torch.equal(_nvrtc_ops.upsample_argmax(x, [513, 513], True)[0], torch.ops.attn2scale.upsample_argmax(x, [513, 513], True)[0])
