"""BatchNorm, Scale and Bias against separate numpy computations of BVLC Caffe's formulas.

The formulas (from BVLC's batch_norm_layer.cpp / scale_layer.cpp, as facts):
statistics = blob / blob2 (0 when blob2 is 0); y = (x - mean) / sqrt(var + eps);
batch statistics use the biased variance and update the blobs as
blob2 = maf*blob2 + 1, blob0 = mean + maf*blob0, blob1 = m/(m-1)*var + maf*blob1.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attn2scale.caffe import CaffeFormatError, CaffeNet
from attn2scale.caffe.reader import parse_net_text

INPUT = 'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'


def net_of(body: str, shape=(2, 3, 5, 4), phase="TEST") -> CaffeNet:
    dims = " ".join(f"dim: {d}" for d in shape)
    return CaffeNet(parse_net_text(INPUT.format(dims=dims) + body, source="t.prototxt"), phase)


def set_blobs(net, layer, arrays):
    net.load_blobs({layer: [np.asarray(a, np.float32) for a in arrays]}, strict=False)


def stats(rng, c):
    return rng.normal(size=c) * 5, rng.uniform(0.5, 3, size=c) * 7, np.array([7.0])


@pytest.mark.parametrize("factor", [7.0, 0.0])
def test_batchnorm_global_stats_equals_numpy(factor):
    rng = np.random.default_rng(0)
    net = net_of('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" batch_norm_param { eps: 0.001 } }')
    mean, var, _ = stats(rng, 3)
    set_blobs(net, "bn", [mean, var, [factor]])
    x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    got = net(torch.from_numpy(x))["bn"].detach().numpy()
    s = 0.0 if factor == 0 else 1.0 / factor
    m, v = (mean * s).astype(np.float32), (var * s).astype(np.float32)
    want = (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + np.float32(0.001))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_batchnorm_batch_stats_forward_backward_and_moving_averages():
    rng = np.random.default_rng(1)
    net = net_of('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" '
                 'batch_norm_param { moving_average_fraction: 0.9 } }', phase="TRAIN")
    mean0, var0, f0 = stats(rng, 3)
    set_blobs(net, "bn", [mean0, var0, f0])
    x64 = rng.normal(size=(2, 3, 5, 4)) * 3 + 1
    x = torch.tensor(x64, dtype=torch.float32, requires_grad=True)
    y = net({"data": x})["bn"]
    bm, bv = x64.mean((0, 2, 3)), x64.var((0, 2, 3))  # biased, as Caffe
    want = (x64 - bm[None, :, None, None]) / np.sqrt(bv[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-4, atol=1e-5)
    m = 2 * 5 * 4
    lay = net.layer("bn")
    np.testing.assert_allclose(lay.moving_average_factor.detach().numpy(), 0.9 * f0 + 1, rtol=1e-6)
    np.testing.assert_allclose(lay.mean.detach().numpy(), bm + 0.9 * mean0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lay.variance.detach().numpy(), m / (m - 1) * bv + 0.9 * var0, rtol=1e-5)
    # Backward: BVLC's batch-statistics gradient, written out in numpy.
    g = rng.normal(size=x64.shape)
    y.backward(torch.tensor(g, dtype=torch.float32))
    xn = want
    axes = (0, 2, 3)
    dx = (g - g.mean(axes, keepdims=True) - xn * (g * xn).mean(axes, keepdims=True)) / np.sqrt(
        bv[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-3, atol=1e-4)
    assert lay.mean.grad is None and lay.variance.grad is None  # Caffe never writes their diffs


def test_batchnorm_update_global_stats_keeps_the_mean_and_accumulates_the_variance():
    """DeepLab v2's update_global_stats in TRAIN: centre = stored mean, batch variance around it."""
    rng = np.random.default_rng(2)
    net = net_of('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" batch_norm_param { '
                 'use_global_stats: true update_global_stats: true moving_average_fraction: 0.5 } }', phase="TRAIN")
    mean0, var0, f0 = stats(rng, 3)
    set_blobs(net, "bn", [mean0, var0, f0])
    x64 = rng.normal(size=(2, 3, 5, 4))
    y = net(torch.tensor(x64, dtype=torch.float32))["bn"].detach().numpy()
    centre = mean0 / f0
    v = ((x64 - centre[None, :, None, None]) ** 2).mean((0, 2, 3))
    np.testing.assert_allclose(y, (x64 - centre[None, :, None, None]) / np.sqrt(v[None, :, None, None] + 1e-5),
                               rtol=1e-4, atol=1e-5)
    lay = net.layer("bn")
    f1 = 0.5 * f0 + 1
    np.testing.assert_allclose(lay.mean.detach().numpy() / f1, centre, rtol=1e-5)  # the stored mean stays
    np.testing.assert_allclose(lay.variance.detach().numpy(), 40 / 39 * v + 0.5 * var0, rtol=1e-5)


def test_batchnorm_refuses_a_moving_average_fraction_outside_0_1():
    with pytest.raises(CaffeFormatError, match=r"layer 'bn' \(BatchNorm\): moving_average_fraction must be in"):
        net_of('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" '
               'batch_norm_param { moving_average_fraction: 1.5 } }')


@pytest.mark.parametrize("params, span", [("", (3,)), ("axis: 1 num_axes: 2", (3, 5)), ("axis: 0 num_axes: -1",
                                                                                         (2, 3, 5, 4)),
                                          ("num_axes: 0", ())])
@pytest.mark.parametrize("bias", [False, True])
def test_scale_equals_numpy(params, span, bias):
    rng = np.random.default_rng(3)
    extra = " bias_term: true" if bias else ""
    net = net_of(f'layer {{ name: "sc" type: "Scale" bottom: "data" top: "sc" scale_param {{ {params}{extra} }} }}')
    lay = net.layer("sc")
    assert [tuple(b.shape) for b in lay.blobs()] == [span] * (2 if bias else 1)
    gamma, beta = rng.normal(size=span), rng.normal(size=span)
    set_blobs(net, "sc", [gamma, beta] if bias else [gamma])
    x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    axis = {(3,): 1, (3, 5): 1, (2, 3, 5, 4): 0, (): 1}[span]
    shape = (1,) * axis + span + (1,) * (4 - axis - len(span))
    want = x * gamma.astype(np.float32).reshape(shape) + (beta.astype(np.float32).reshape(shape) if bias else 0)
    np.testing.assert_allclose(net(torch.from_numpy(x))["sc"].detach().numpy(), want, rtol=1e-6, atol=1e-6)


def test_scale_defaults_to_ones_and_zero_bias_and_takes_a_second_bottom():
    net = net_of('layer { name: "sc" type: "Scale" bottom: "data" top: "sc" scale_param { bias_term: true } }')
    x = torch.randn(2, 3, 5, 4)
    assert torch.equal(net(x)["sc"], x)  # filler 1, bias filler 0 (Caffe's defaults)
    body = ('layer { name: "w" type: "Input" top: "w" input_param { shape { dim: 2 dim: 3 } } }\n'
            'layer { name: "sc" type: "Scale" bottom: "data" bottom: "w" top: "sc" scale_param { axis: 0 } }\n'
            'layer { name: "b" type: "Bias" bottom: "sc" bottom: "w" top: "b" bias_param { axis: 0 } }')
    net = net_of(body)
    w = torch.randn(2, 3)
    got = net({"data": x, "w": w})
    np.testing.assert_allclose(got["sc"].detach().numpy(), x.numpy() * w.numpy()[:, :, None, None], rtol=1e-6)
    np.testing.assert_allclose(got["b"].detach().numpy(), got["sc"].detach().numpy() + w.numpy()[:, :, None, None], rtol=1e-6)
    with pytest.raises(CaffeFormatError, match=r"layer 'sc' \(Scale\): bottom 1 of shape \(2, 3\) must equal axes 1"):
        net_of(body.replace("scale_param { axis: 0 }", "scale_param { axis: 1 }"))


def test_bias_layer_blob_equals_numpy():
    net = net_of('layer { name: "b" type: "Bias" bottom: "data" top: "b" }')
    beta = np.arange(3, dtype=np.float32)
    set_blobs(net, "b", [beta])
    x = torch.randn(2, 3, 5, 4)
    np.testing.assert_allclose(net(x)["b"].detach().numpy(), x.numpy() + beta[None, :, None, None], rtol=1e-6)


def test_a_scalar_blob_written_without_a_shape_loads_as_caffe_reads_it(tmp_path):
    """Caffe writes no shape for a 0-axis blob (Scale with num_axes 0) and reads it back as shape ()."""
    from attn2scale.caffe import schema

    net = net_of('layer { name: "sc" type: "Scale" bottom: "data" top: "sc" scale_param { num_axes: 0 } }')
    netp = schema.NetParameter()
    netp.layer.add(name="sc", type="Scale").blobs.add(data=[2.5])
    path = tmp_path / "scalar.caffemodel"
    path.write_bytes(netp.SerializeToString())
    net.load_caffemodel(path)
    x = torch.randn(2, 3, 5, 4)
    np.testing.assert_allclose(net(x)["sc"].detach().numpy(), 2.5 * x.numpy(), rtol=1e-6)


@pytest.mark.parametrize("kind, param", [("Scale", "scale_param"), ("Bias", "bias_param")])
@pytest.mark.parametrize("axis", [5, -5])
def test_a_second_bottom_axis_out_of_range_is_refused(kind, param, axis):
    body = ('layer { name: "w" type: "Input" top: "w" input_param { shape { dim: 3 } } }\n'
            f'layer {{ name: "l" type: "{kind}" bottom: "data" bottom: "w" top: "l" {param} {{ axis: {axis} }} }}')
    with pytest.raises(CaffeFormatError, match=rf"layer 'l' \({kind}\): axis {axis} is out of range for a bottom of "
                                               r"shape \(2, 3, 5, 4\)"):
        net_of(body)


def test_batchnorm_default_follows_the_nets_phase_not_train_or_eval():
    """Caffe fixes use_global_stats by the net's phase: a TEST net in .train() mode still uses (and
    keeps) its stored statistics."""
    net = net_of('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }', shape=(4, 3))
    set_blobs(net, "bn", [[1.0, 2.0, 3.0], [4.0, 4.0, 4.0], [1.0]])
    net.train()
    x = torch.randn(4, 3)
    np.testing.assert_allclose(net(x)["bn"].detach().numpy(), (x.numpy() - [1, 2, 3]) / np.sqrt(4 + 1e-5),
                               rtol=1e-5, atol=1e-6)  # 2-D N x C bottoms, as BVLC
    assert net.layer("bn").mean.detach().tolist() == [1.0, 2.0, 3.0]


def test_convert_verify_does_not_write_statistics_a_forward_changed(tmp_path):
    """A builder conversion with --verify of a TRAIN net (batch statistics update the BatchNorm blobs
    in the forward) writes the caffemodel's statistics, not the updated ones."""
    import h5py
    from safetensors.numpy import load_file

    from attn2scale.caffe.convert import convert_caffe
    from test_caffe_convert import write_caffemodel

    proto = tmp_path / "bn.prototxt"
    proto.write_text(INPUT.format(dims="dim: 2 dim: 3 dim: 5 dim: 4")
                     + 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }\n')
    stored = [np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]), np.array([2.0])]
    model = write_caffemodel(tmp_path / "bn.caffemodel", {"bn": stored})
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    m, v = x.mean((0, 2, 3)), x.var((0, 2, 3))
    ref = tmp_path / "ref.h5"
    with h5py.File(ref, "w") as f:
        f["input/data"] = x
        f["blobs/bn"] = (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + 1e-5)
    res = convert_caffe(model, prototxt=proto, phase="TRAIN", verify=str(ref), out=tmp_path / "bn.safetensors")
    assert res.verify.ok
    written = load_file(tmp_path / "bn.safetensors")
    for name, want in zip(("bn.mean", "bn.variance", "bn.moving_average_factor"), stored):
        np.testing.assert_array_equal(written[name], want.astype(np.float32))
