"""Caffe SGD against real Caffe's solver trace (every parameter after every iteration)."""

import numpy as np
import pytest
import torch

from attn2scale.caffe import CaffeNet, read_solver_prototxt
from attn2scale.engine.solver import CaffeSGD, SolverConfig
from attn2scale.engine.step import accumulate_gradients

from conftest import require_shared

TRACE = ("caffe", "golden", "solver_trace")


def _trace():
    h5py = pytest.importorskip("h5py")
    f = h5py.File(require_shared(*TRACE, "solver_trace.h5"), "r")
    return f


@pytest.mark.parametrize("variant", ["deeplab", "amplified"])
def test_solver_reproduces_real_caffe_trace(variant):
    f = _trace()
    root = require_shared(*TRACE)
    cfg = SolverConfig.from_caffe(read_solver_prototxt(root / f"{variant}_solver.prototxt"))
    assert cfg.iter_size == 2 and cfg.lr_policy == "step" and cfg.stepsize == 3
    net = CaffeNet.from_prototxt(root / "eval.prototxt", "TRAIN")
    with torch.no_grad():
        for layer in ("conv1", "conv2"):
            for kind in ("weight", "bias"):
                getattr(net.layer(layer), kind).copy_(torch.from_numpy(f[f"init/{layer}/{kind}"][()]))
    opt = CaffeSGD(net.caffe_param_groups(), momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                   iter_size=cfg.iter_size)
    worst = 0.0
    for it in range(8):
        assert cfg.learning_rate(it) == pytest.approx(f[f"{variant}/lr"][it], rel=1e-7)
        opt.set_rate(cfg.learning_rate(it))
        batches = [{"data": torch.from_numpy(f["feed/data"][it, s]), "label": torch.from_numpy(f["feed/label"][it, s])}
                   for s in range(2)]
        opt.zero_grad(set_to_none=True)
        losses = accumulate_gradients(lambda b: net.objective(net(b)), batches)
        ref_sub = f[f"{variant}/sub_batch_loss"][it]
        assert np.allclose([l.item() for l in losses], ref_sub, rtol=1e-6, atol=0), (it, losses, ref_sub)
        for layer in ("conv1", "conv2"):
            for kind in ("weight", "bias"):
                g = getattr(net.layer(layer), kind).grad
                ref = f[f"{variant}/grad_sum/{layer}/{kind}"][it]
                assert np.allclose(g.numpy(), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max()), (it, layer, kind)
        opt.step()
        for layer in ("conv1", "conv2"):
            for kind in ("weight", "bias"):
                ours = getattr(net.layer(layer), kind).detach().numpy()
                ref = f[f"{variant}/params/{layer}/{kind}"][it]
                err = np.abs(ours - ref).max() / np.abs(ref).max()
                worst = max(worst, err)
                assert err <= 1e-6, f"{variant} iteration {it} {layer}.{kind}: {err:.3g} of max|ref|"
    # The update must differ from torch.optim.SGD's convention where the lr changes (it 3, 6).
    assert worst <= 1e-6


def test_learning_rate_policies():
    step = SolverConfig(base_lr=0.01, lr_policy="step", gamma=0.1, stepsize=2000)
    assert [step.learning_rate(i) for i in (0, 1999, 2000, 4000)] == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    multi = SolverConfig(base_lr=1.0, lr_policy="multistep", gamma=0.5, stepvalue=[10, 30])
    assert [multi.learning_rate(i) for i in (0, 9, 10, 29, 30)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    poly = SolverConfig(base_lr=0.01, lr_policy="poly", power=0.9, max_iter=100)
    assert poly.learning_rate(50) == pytest.approx(0.01 * 0.5 ** 0.9, rel=1e-6) and poly.learning_rate(100) == 0.0
    assert SolverConfig(base_lr=0.1, lr_policy="fixed").learning_rate(12345) == pytest.approx(0.1)
    assert SolverConfig(base_lr=2.0, lr_policy="exp", gamma=0.5).learning_rate(3) == 0.25
    assert SolverConfig(base_lr=1.0, lr_policy="inv", gamma=1.0, power=1.0).learning_rate(3) == 0.25
    with pytest.raises(ValueError, match="lr_policy must be one of"):
        SolverConfig(lr_policy="cosine")
    # Caffe's float rounding: the rate of poly is computed in float, step's pow(float, int) in double
    f = np.float32
    assert poly.learning_rate(99) == float(f(0.01) * np.power(f(1) - f(99) / f(100), f(0.9), dtype=np.float32))
    assert step.learning_rate(2000) == float(f(float(f(0.01)) * float(f(0.1))))


def test_parameters_without_gradient_still_decay():
    """Caffe updates every learnable blob each iteration; a missing gradient counts as zero."""
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = CaffeSGD([{"params": [w], "name": "w", "lr_mult": 1.0, "decay_mult": 1.0}], momentum=0.9,
                   weight_decay=0.5, rate=0.1)
    opt.step()
    assert w.item() == pytest.approx(2.0 - 0.1 * 0.5 * 2.0)


def test_momentum_buffer_holds_the_rate():
    """v = m v + lr g: after a rate change the history keeps its old scale (torch.optim.SGD would not)."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = CaffeSGD([{"params": [w], "name": "w", "lr_mult": 1.0, "decay_mult": 0.0}], momentum=0.5, weight_decay=0.0)
    for rate, expect_v in ((0.1, 0.1), (0.01, 0.5 * 0.1 + 0.01)):
        opt.set_rate(rate)
        w.grad = torch.tensor([1.0])
        before = w.item()
        opt.step()
        assert before - w.item() == pytest.approx(expect_v, rel=1e-6)
    assert opt.momentum_buffers()["w"].item() == pytest.approx(0.06, rel=1e-6)


def test_groups_need_caffe_multipliers():
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="no 'decay_mult'"):
        CaffeSGD([{"params": [w], "name": "w", "lr_mult": 1.0}], momentum=0.9, weight_decay=0.0)
