"""OpenCV 4's Caffe importer as an independent oracle for DeepLab v2's layers.

Small nets with random weights written to a caffemodel here, run through
``cv2.dnn.readNetFromCaffe`` and through CaffeNet; outputs agree to 1e-5 of the
largest reference value:

* BatchNorm (``use_global_stats: true``, and the TEST default) + Scale with and
  without bias, after dilated convolutions;
* Eltwise SUM (with coefficients), PROD, and MAX of three bottoms;
* a ResNet bottleneck block as DeepLab v2 writes it (branch1 projection,
  branch2a/2b/2c, dilated 3x3, in-place BatchNorm/Scale/ReLU, Eltwise SUM);
* a BatchNorm whose moving-average factor (blob 2) is 0: Caffe then uses 0 for
  both statistics (``scale_factor = blob2 == 0 ? 0 : 1 / blob2``), and so does
  OpenCV (``varMeanScale`` stays 0): checked against numpy too;
* a single-scale DeepLab-v2 ResNet test net of tests/deeplab_v2_nets.py (all
  stages, the ASPP sum and Interp zoom 8; OpenCV's Interp cannot shrink, so the
  multi-scale inputs stay out).

The blobs of the small nets are written from shapes worked out here, so the
OpenCV side needs nothing from CaffeNet.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attn2scale.caffe import CaffeNet
from attn2scale.caffe.reader import parse_net_text
from deeplab_v2_nets import _Tower, layer, random_blobs, resnet101_msc, write_caffemodel

TOL = 1e-5


def _opencv_forward(prototxt, caffemodel, inputs, outputs):
    """OpenCV's outputs of the layers ``outputs`` (a layer's output is its top after any in-place layers)."""
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless<5 (its Caffe importer) is the oracle")
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip("this OpenCV has no Caffe importer (OpenCV 5 dropped it)")
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    if hasattr(net, "enableFusion"):
        net.enableFusion(False)  # layer by layer, as Caffe runs them
    for name, value in inputs.items():
        net.setInput(np.ascontiguousarray(value, np.float32), name)
    return dict(zip(outputs, net.forward(list(outputs))))


def _input(shape):
    return layer("data", "Input", [], ["data"], input_param={"shape": {"dim": list(shape)}})


def _conv(name, bottom, top, n, k=3, pad=None, dilation=1, stride=1, bias=True):
    cp = {"num_output": n, "kernel_size": k, "pad": (k // 2) * dilation if pad is None else pad}
    if dilation != 1:
        cp["dilation"] = dilation
    if stride != 1:
        cp["stride"] = stride
    if not bias:
        cp["bias_term"] = False
    return layer(name, "Convolution", [bottom], [top], convolution_param=cp)


def _bn(name, blob, **p):
    return layer(name, "BatchNorm", [blob], [blob], **({"batch_norm_param": p} if p else {}))


def _scale(name, blob, bias):
    return layer(name, "Scale", [blob], [blob], scale_param={"bias_term": bias})


class Blobs:
    """Random blobs ``{layer: (type, [arrays])}`` by hand-given shapes."""

    def __init__(self, seed):
        self.g = np.random.default_rng(seed)
        self.layers = {}

    def conv(self, name, c_out, c_in, k, bias=True):
        w = self.g.normal(0.0, np.sqrt(2.0 / (c_in * k * k)), (c_out, c_in, k, k))
        self.layers[name] = ("Convolution", [w] + ([self.g.normal(0.0, 0.2, c_out)] if bias else []))

    def bn(self, name, c, factor=999.98):
        mean = self.g.normal(0.0, 0.5, c) * factor
        var = self.g.uniform(0.3, 2.0, c) * factor
        self.layers[name] = ("BatchNorm", [mean, var, np.array([factor])])

    def scale(self, name, c, bias):
        arrays = [self.g.uniform(0.5, 1.5, c)] + ([self.g.normal(0.0, 0.3, c)] if bias else [])
        self.layers[name] = ("Scale", arrays)


def case_bn_scale():
    """Dilated conv -> BatchNorm(global stats) -> Scale(bias) -> ReLU, and a second branch with the
    TEST-phase default (no use_global_stats), a non-default eps and a Scale without bias."""
    text = "\n".join([
        _input((2, 4, 13, 13)),
        _conv("conv_a", "data", "a", 6, dilation=2),
        _bn("bn_a", "a", use_global_stats=True),
        _scale("scale_a", "a", True),
        layer("relu_a", "ReLU", ["a"], ["a"]),
        _conv("conv_b", "data", "b", 5, k=3, dilation=3, bias=False),
        _bn("bn_b", "b", eps=1e-3),
        _scale("scale_b", "b", False),
    ])
    b = Blobs(1)
    b.conv("conv_a", 6, 4, 3)
    b.bn("bn_a", 6)
    b.scale("scale_a", 6, True)
    b.conv("conv_b", 5, 4, 3, bias=False)
    b.bn("bn_b", 5, factor=1.0)
    b.scale("scale_b", 5, False)
    return text, b.layers, {"relu_a": "a", "scale_b": "b"}


def case_eltwise():
    """Eltwise SUM with coefficients, PROD, and MAX of three bottoms, on dilated convolutions."""
    text = "\n".join([
        _input((1, 3, 11, 11)),
        _conv("c1", "data", "c1", 4),
        _conv("c2", "data", "c2", 4, dilation=2),
        _conv("c3", "data", "c3", 4, dilation=4),
        layer("sum", "Eltwise", ["c1", "c2"], ["sum"], eltwise_param={"operation": "SUM", "coeff": [0.5, -2.0]}),
        layer("prod", "Eltwise", ["c1", "c2", "c3"], ["prod"], eltwise_param={"operation": "PROD"}),
        layer("max", "Eltwise", ["c1", "c2", "c3"], ["max"], eltwise_param={"operation": "MAX"}),
        layer("all", "Eltwise", ["sum", "prod", "max"], ["all"]),
    ])
    b = Blobs(2)
    for name in ("c1", "c2", "c3"):
        b.conv(name, 4, 3, 3)
    return text, b.layers, {n: n for n in ("sum", "prod", "max", "all")}


def case_bottleneck():
    """res4a of DeepLab v2's ResNet at a small width: branch1 projection, dilation 2, global stats."""
    out = [_input((1, 8, 9, 9))]
    tower = _Tower(out, "", None)
    top = tower.bottleneck(4, "a", "data", inner=4, out_ch=16, stride=1, dilation=2, project=True)
    tower.bottleneck(4, "b1", top, inner=4, out_ch=16, stride=1, dilation=2, project=False)
    b = Blobs(3)
    for blk, c_in in (("4a", 8), ("4b1", 16)):
        convs = [("branch2a", 4, c_in, 1), ("branch2b", 4, 4, 3), ("branch2c", 16, 4, 1)]
        if blk == "4a":
            convs.insert(0, ("branch1", 16, c_in, 1))
        for br, co, ci, k in convs:
            b.conv(f"res{blk}_{br}", co, ci, k, bias=False)
            b.bn(f"bn{blk}_{br}", co)
            b.scale(f"scale{blk}_{br}", co, True)
    return "\n".join(out), b.layers, {"res4a_relu": "res4a", "res4b1_relu": "res4b1"}


def case_bn_factor_zero():
    """Blob 2 = 0: Caffe uses 0 for mean and variance (not the stored sums)."""
    text = "\n".join([
        _input((1, 3, 7, 7)),
        _conv("conv", "data", "x", 4),
        _bn("bn", "x", use_global_stats=True),
        _scale("scale", "x", True),
    ])
    b = Blobs(4)
    b.conv("conv", 4, 3, 3)
    b.bn("bn", 4, factor=0.0)
    b.layers["bn"][1][0][:] = b.g.normal(5.0, 1.0, 4)   # stored sums that must be ignored
    b.layers["bn"][1][1][:] = b.g.uniform(1.0, 3.0, 4)
    b.scale("scale", 4, True)
    return text, b.layers, {"scale": "x"}


CASES = {"bn_scale": case_bn_scale, "eltwise": case_eltwise, "bottleneck": case_bottleneck,
         "bn_factor_zero": case_bn_factor_zero}


def _write(tmp_path, text, blobs):
    proto = tmp_path / "net.prototxt"
    proto.write_text(text)
    return proto, write_caffemodel(tmp_path / "net.caffemodel", blobs)


def _rel_err(ours, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(ours, np.float64).reshape(ref.shape) - ref).max() / max(np.abs(ref).max(), 1e-30))


def _compare(tmp_path, text, blobs, outputs, seed=0):
    proto, model = _write(tmp_path, text, blobs)
    shape = tuple(int(d) for d in parse_net_text(text).layer[0].input_param.shape[0].dim)
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    # OpenCV first: it needs nothing from CaffeNet. Only the last layer of an in-place chain is asked for.
    theirs = _opencv_forward(proto, model, {"data": x}, list(outputs))
    net = CaffeNet.from_prototxt(proto, "TEST")
    report = net.load_caffemodel(model)
    assert not report.missing and not report.unexpected
    with torch.no_grad():
        ours = net({"data": torch.from_numpy(x)})
    for cv_layer, blob in outputs.items():
        err = _rel_err(ours[blob].numpy(), theirs[cv_layer])
        assert err <= TOL, f"{cv_layer} ({blob}): relative error {err:.3g} vs OpenCV"
    return x, net, ours, theirs


@pytest.mark.parametrize("case", list(CASES))
def test_builder_equals_opencv(case, tmp_path):
    text, blobs, outputs = CASES[case]()
    _compare(tmp_path, text, blobs, outputs)


def _bn_scale_numpy(x, bn, scale, eps=1e-5):
    mean, var, factor = (np.asarray(a, np.float64) for a in bn)
    f = 0.0 if factor[0] == 0 else 1.0 / factor[0]
    gamma = np.asarray(scale[0], np.float64)
    beta = np.asarray(scale[1], np.float64) if len(scale) > 1 else np.zeros_like(gamma)
    r = (1, -1, 1, 1)
    return (x - (mean * f).reshape(r)) / np.sqrt((var * f).reshape(r) + eps) * gamma.reshape(r) + beta.reshape(r)


@pytest.mark.parametrize("factor", [0.0, 999.98])
def test_opencv_batchnorm_is_caffes(factor, tmp_path):
    """The oracle itself: OpenCV's BatchNorm + Scale equal numpy's Caffe formula, blob 2 = 0 included."""
    text = "\n".join([_input((1, 3, 5, 5)), _bn("bn", "data", use_global_stats=True), _scale("scale", "data", True)])
    b = Blobs(5)
    b.bn("bn", 3, factor=factor)
    if factor == 0.0:
        b.layers["bn"][1][0][:] = [1.0, -2.0, 3.0]
        b.layers["bn"][1][1][:] = [4.0, 5.0, 6.0]
    b.scale("scale", 3, True)
    proto, model = _write(tmp_path, text, b.layers)
    x = np.random.default_rng(6).normal(size=(1, 3, 5, 5)).astype(np.float32)
    theirs = _opencv_forward(proto, model, {"data": x}, ["scale"])["scale"]
    ref = _bn_scale_numpy(x.astype(np.float64), b.layers["bn"][1], b.layers["scale"][1])
    assert _rel_err(theirs, ref) <= TOL
    if factor == 0.0:  # the statistics are 0: x / sqrt(eps) * gamma + beta
        plain = _bn_scale_numpy(x.astype(np.float64), [np.zeros(3), np.zeros(3), np.ones(1)], b.layers["scale"][1])
        assert _rel_err(theirs, plain) <= TOL


def test_bn_factor_zero_equals_numpy(tmp_path):
    text, blobs, outputs = case_bn_factor_zero()
    x, net, ours, theirs = _compare(tmp_path, text, blobs, outputs)
    with torch.no_grad():
        conv = net({"data": torch.from_numpy(x)}, end="conv")["x"].double().numpy()
    ref = _bn_scale_numpy(conv, blobs["bn"][1], blobs["scale"][1])
    assert _rel_err(ours["x"].numpy(), ref) <= TOL
    assert _rel_err(theirs["scale"], ref) <= TOL


def test_single_scale_deeplab_resnet_equals_opencv(tmp_path):
    """DeepLab-v2 ResNet test net (one scale, every stage, ASPP, Interp zoom 8) at a small depth and width."""
    text = resnet101_msc("TEST", blocks=(1, 2, 2, 1), width=8, num_labels=4, crop=33, msc=False, input_layer=True)
    meta = CaffeNet(parse_net_text(text), "TEST", device="meta")
    blobs = random_blobs(meta, seed=7)
    outputs = {"fc1_voc12": "fc1_voc12", "fc1_interp": "fc1_interp", "res5a_relu": "res5a"}
    _, _, ours, theirs = _compare(tmp_path, text, blobs, outputs)
    assert set(theirs) == set(outputs)
    assert ours["fc1_interp"].shape == (1, 4, 33, 33) and ours["fc1_voc12"].shape == (1, 4, 5, 5)
