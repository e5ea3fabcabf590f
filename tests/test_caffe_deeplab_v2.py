"""DeepLab v2's released nets (ResNet-101 MSC, VGG-16 ASPP), generated in the test.

* The text parses and has the releases' structure (layer counts, names, dilations,
  strides, shared params, frozen BatchNorm/Scale) -- checked on the NetParameter.
* Each net builds on ``device="meta"`` with CaffeNet at full depth, TRAIN and TEST,
  and its blob shapes equal sizes worked out here by hand (Caffe rounds a
  convolution down and a pooling up; DeepLab's Interp shrinks by (n-1)/s+1 and
  zooms by n+(n-1)(z-1)).
* A ResNet-101-shaped caffemodel of random blobs (small depth, and full depth at
  a reduced width) loads into the nets: the parameters equal the written arrays,
  tower copies share them, and the first BatchNorm + Scale equals numpy's
  ``(x - mean/f) / sqrt(var/f + eps) * gamma + beta``.
* The conversion API (target ``builder``) converts that caffemodel and its output
  loads back into the net.

The BatchNorm / Scale layers and DeepLab v2's schema fields (scale_factors,
update_global_stats) are CaffeNet features; see tests/data/README.md for the
releases these nets stand for.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attn2scale.caffe import CaffeNet
from attn2scale.caffe.convert import convert_caffe, load_converted
from attn2scale.caffe.reader import parse_net_text
from deeplab_v2_nets import (FACTOR, NETS, RESNET101_BLOCKS, random_blobs, resnet101_msc, vgg16_aspp,
                             write_caffemodel)

EPS = 1e-5          # BatchNorm's default eps
TOWERS = ("", "_res075", "_res05")


# --------------------------------------------------------------------------
# Caffe's size arithmetic, by hand
# --------------------------------------------------------------------------

def conv_out(n, k, s=1, p=0, d=1):
    """Caffe's ConvolutionLayer: floor."""
    return (n + 2 * p - (d * (k - 1) + 1)) // s + 1


def pool_out(n, k, s, p):
    """Caffe's PoolingLayer: ceil, then drop a last window that would start in the padding."""
    out = -(-(n + 2 * p - k) // s) + 1
    if p and (out - 1) * s >= n + p:
        out -= 1
    return out


def shrink(n, f):
    return (n - 1) // f + 1


def zoom(n, f):
    return n + (n - 1) * (f - 1)


def resnet_sizes(n):
    """Spatial sizes of one DeepLab ResNet tower on an n x n input."""
    conv1 = conv_out(n, 7, 2, 3)
    pool1 = pool_out(conv1, 3, 2, 1)
    res3 = conv_out(pool1, 1, 2, 0)          # res3a's strided 1x1 (branch1 and branch2a)
    res4 = conv_out(res3, 3, 1, 2, 2)        # dilation 2, pad 2: the size stays
    res5 = conv_out(res4, 3, 1, 4, 4)        # dilation 4, pad 4
    fc1 = conv_out(res5, 3, 1, 24, 24)       # the widest ASPP branch; 6, 12, 18 give the same
    return {"conv1": conv1, "pool1": pool1, "res2": pool1, "res3": res3, "res4": res4, "res5": res5, "fc1": fc1}


def msc_sizes(n):
    """Per tower: its input size and fc1 size, and fc1 brought to the largest tower's size."""
    inputs = {"": n, "_res075": zoom(shrink(n, 4), 3), "_res05": shrink(n, 2)}
    out = {}
    for t, m in inputs.items():
        s = resnet_sizes(m)
        up = {"": s["fc1"], "_res075": zoom(shrink(s["fc1"], 3), 4), "_res05": zoom(s["fc1"], 2)}[t]
        out[t] = dict(s, input=m, fc1_up=up)
    return out


def test_hand_arithmetic_gives_deeplabs_sizes():
    s = msc_sizes(321)
    assert [s[""][k] for k in ("conv1", "pool1", "res3", "res4", "res5", "fc1")] == [161, 81, 41, 41, 41, 41]
    assert (s["_res075"]["input"], s["_res075"]["fc1"]) == (241, 31)
    assert (s["_res05"]["input"], s["_res05"]["fc1"]) == (161, 21)
    assert all(s[t]["fc1_up"] == 41 for t in TOWERS)
    t = msc_sizes(513)
    assert (t[""]["fc1"], t["_res075"]["fc1"], t["_res05"]["fc1"]) == (65, 49, 33)
    assert all(t[k]["fc1_up"] == 65 for k in TOWERS) and zoom(65, 8) == 513
    assert shrink(321, 8) == 41 and zoom(41, 8) == 321


# --------------------------------------------------------------------------
# Structure of the text (no BatchNorm layer needed)
# --------------------------------------------------------------------------

def _layers(text):
    return {lp.name: lp for lp in parse_net_text(text).layer}


def _resnet_layer_count(blocks):
    """Per tower: convolutions (conv1, 3 per block, one projection per stage) and Eltwise (one per block)."""
    n = sum(blocks)
    return {"Convolution": 1 + 3 * n + 4, "Eltwise": n}


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_resnet101_msc_text_structure(phase):
    net = parse_net_text(resnet101_msc(phase))
    layers = {lp.name: lp for lp in net.layer}
    assert len(layers) == len(net.layer), "layer names are unique"
    types = collections.Counter(lp.type for lp in net.layer)
    per = _resnet_layer_count(RESNET101_BLOCKS)
    assert types["Convolution"] == 3 * (per["Convolution"] + 4)     # + four fc1 branches per tower
    assert types["BatchNorm"] == types["Scale"] == 3 * 104           # the release's 312
    assert types["Eltwise"] == 3 * (per["Eltwise"] + 1) + 1          # + the ASPP sum per tower, + fusion
    assert per["Convolution"] == 104 and sum(RESNET101_BLOCKS) == 33
    # Block names of the releases.
    for name in ("res2c_branch2c", "res3b3_branch2c", "res4b22_branch2c", "res5c_branch2c", "res4b22_res05",
                 "bn4b22_branch2b_res075", "scale5c_branch2c_res05", "fc1_voc12_res075_c3", "fc_fusion"):
        assert name in layers, name
    assert "res3c" not in layers and "res4b23" not in layers and "res5d" not in layers
    # Strides and dilations: stride 8, res4 dilation 2, res5 dilation 4, ASPP 6/12/18/24.
    cp = {n: layers[n].convolution_param for n in layers if layers[n].type == "Convolution"}
    assert list(cp["conv1"].stride) == [2] and list(cp["conv1"].pad) == [3] and list(cp["conv1"].kernel_size) == [7]
    assert list(cp["res3a_branch1"].stride) == [2] and list(cp["res3a_branch2a"].stride) == [2]
    assert list(cp["res4a_branch1"].stride) == [1] and list(cp["res5a_branch2a"].stride) == [1]
    for n, c in cp.items():
        if "_branch" in n:
            assert not c.bias_term, n
        if n.startswith("res4") and "_branch2b" in n:
            assert list(c.dilation) == list(c.pad) == [2], n
        if n.startswith("res5") and "_branch2b" in n:
            assert list(c.dilation) == list(c.pad) == [4], n
        if n.startswith(("res2", "res3")) and "_branch2b" in n:
            assert not list(c.dilation) and list(c.pad) == [1], n
    for t in TOWERS:
        assert [list(cp[f"fc1_voc12{t}_c{k}"].dilation) for k in range(4)] == [[6], [12], [18], [24]]
        assert [list(cp[f"fc1_voc12{t}_c{k}"].pad) for k in range(4)] == [[6], [12], [18], [24]]
        assert all(cp[f"fc1_voc12{t}_c{k}"].num_output == 21 for k in range(4))
    pool1 = layers["pool1"].pooling_param
    assert (pool1.kernel_size, pool1.stride, pool1.pad) == (3, 2, 1)
    # Frozen BatchNorm (global stats, three lr_mult 0 blobs) and Scale with bias.
    for lp in net.layer:
        if lp.type == "BatchNorm":
            assert lp.batch_norm_param.use_global_stats and list(lp.bottom) == list(lp.top)
            assert [(p.lr_mult, p.HasField("lr_mult")) for p in lp.param] == [(0.0, True)] * 3
        if lp.type == "Scale":
            assert lp.scale_param.bias_term and [p.lr_mult for p in lp.param] == [0.0, 0.0]
    # Towers share every parameter by name with the full-resolution layer.
    for lp in net.layer:
        for t in TOWERS[1:]:
            if lp.name.endswith(t) and lp.param and not lp.name.startswith("fc1_"):
                base = layers[lp.name[: -len(t)]]
                assert [p.name for p in lp.param] == [p.name for p in base.param], lp.name
    assert [p.name for p in layers["fc1_voc12_res05_c2"].param] == ["fc1_voc12_c2_w", "fc1_voc12_c2_b"]
    # Multi-scale inputs and fusion.
    ip = layers["data_res075"].interp_param
    assert (ip.shrink_factor, ip.zoom_factor) == (4, 3) and list(layers["data_res075"].bottom) == ["data"]
    assert layers["data_res05"].interp_param.shrink_factor == 2
    assert not layers["data_res05"].interp_param.HasField("zoom_factor")
    assert layers["fc_fusion"].eltwise_param.operation == 2  # MAX
    assert list(layers["fc_fusion"].bottom) == ["fc1_voc12", "fc1_voc12_res075_interp", "fc1_voc12_res05_interp"]
    data = layers["data"]
    assert data.type == "ImageSegData" and list(data.top) == ["data", "label", "data_dim"]
    assert data.transform_param.crop_size == (321 if phase == "TRAIN" else 513)
    assert data.image_data_param.label_type == 2  # PIXEL
    if phase == "TRAIN":
        losses = [lp for lp in net.layer if lp.type == "SoftmaxWithLoss"]
        assert [lp.name for lp in losses] == ["loss_res1", "loss_res075", "loss_res05", "loss"]
        assert all(lp.loss_param.ignore_label == 255 for lp in losses)
        assert layers["label_shrink"].interp_param.shrink_factor == 8
        assert data.transform_param.mirror
    else:
        assert layers["fc1_interp"].interp_param.zoom_factor == 8 and list(layers["fc1_interp"].bottom) == ["fc_fusion"]
        assert not any(lp.type == "SoftmaxWithLoss" for lp in net.layer)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_vgg16_aspp_text_structure(phase):
    layers = _layers(vgg16_aspp(phase))
    convs = [n for n, lp in layers.items() if lp.type == "Convolution"]
    assert convs[:13] == [f"conv{s}_{i}" for s, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)]
    assert [layers[f"conv5_{i}"].convolution_param.dilation[0] for i in (1, 2, 3)] == [2, 2, 2]
    assert [layers[f"pool{s}"].pooling_param.stride for s in range(1, 6)] == [2, 2, 2, 1, 1]
    assert all(layers[f"pool{s}"].pooling_param.kernel_size == 3 and layers[f"pool{s}"].pooling_param.pad == 1
               for s in range(1, 6))
    for k, d in enumerate((6, 12, 18, 24), 1):
        c6 = layers[f"fc6_{k}"].convolution_param
        assert (c6.num_output, list(c6.dilation), list(c6.pad), list(c6.kernel_size)) == (1024, [d], [d], [3])
        assert list(layers[f"fc6_{k}"].bottom) == ["pool5"]
        assert layers[f"fc7_{k}"].convolution_param.num_output == 1024
        assert layers[f"fc8_voc12_{k}"].convolution_param.num_output == 21
    assert list(layers["fc8_voc12"].bottom) == [f"fc8_voc12_{k}" for k in range(1, 5)]
    assert layers["fc8_voc12"].eltwise_param.operation == 1  # SUM
    assert ("loss" in layers) == (phase == "TRAIN") and ("fc8_interp" in layers) == (phase == "TEST")


def test_generator_options_in_text():
    text = resnet101_msc("TEST", blocks=(1, 2, 2, 1), num_labels=5, crop=97, input_layer=True, argmax=True, msc=False)
    layers = _layers(text)
    assert layers["data"].type == "Input" and list(layers["data"].input_param.shape[0].dim) == [1, 3, 97, 97]
    assert "data_res075" not in layers and "fc_fusion" not in layers and "silence" not in layers
    assert list(layers["fc1_interp"].bottom) == ["fc1_voc12"] and layers["fc1_interp_argmax"].argmax_param.axis == 1
    assert {"res3a", "res3b1", "res4a", "res4b1", "res5a"} <= set(layers) and "res3b2" not in layers
    assert layers["fc1_voc12_c0"].convolution_param.num_output == 5
    with pytest.raises(ValueError, match="blocks"):
        resnet101_msc("TRAIN", blocks=(3, 4, 23))
    with pytest.raises(ValueError, match="phase"):
        vgg16_aspp("VAL")
    assert set(NETS) == {("resnet101_msc", "TRAIN"), ("resnet101_msc", "TEST"), ("vgg16_aspp", "TRAIN"),
                         ("vgg16_aspp", "TEST")}


def test_deeplab_v2_schema_fields_in_text():
    """DeepLab v2's transform_param.scale_factors and batch_norm_param.update_global_stats (fork fields 8, 4)."""
    text = resnet101_msc("TRAIN", blocks=(1, 1, 1, 1), scale_factors=(0.5, 0.75, 1.0, 1.25, 1.5),
                         update_global_stats=False)
    layers = _layers(text)
    assert list(layers["data"].transform_param.scale_factors) == [0.5, 0.75, 1.0, 1.25, 1.5]
    bn = layers["bn_conv1"].batch_norm_param
    assert bn.HasField("update_global_stats") and not bn.update_global_stats and bn.use_global_stats
    net = CaffeNet(parse_net_text(text), "TRAIN", device="meta")
    assert net.blob_shapes["data_dim"] == (10, 1, 1, 2) and net.blob_shapes["label"] == (10, 1, 321, 321)


# --------------------------------------------------------------------------
# Full-depth nets on the meta device: blob shapes
# --------------------------------------------------------------------------

def _stage_blobs(net, tower=""):
    """``{stage: [res blobs]}`` of one tower (the Eltwise tops)."""
    out = collections.defaultdict(list)
    for n in net.order:
        if net.types[n] == "Eltwise" and n.startswith("res") and (n.endswith(tower) if tower else "_res0" not in n):
            out[int(n[3])].append(net.tops[n][0])
    return out


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_resnet101_msc_full_depth_shapes_on_meta(phase):
    net = CaffeNet(parse_net_text(NETS["resnet101_msc", phase]()), phase, device="meta")
    n, batch = (321, 10) if phase == "TRAIN" else (513, 1)
    sizes = msc_sizes(n)
    shapes = net.blob_shapes
    assert shapes["data"] == (batch, 3, n, n)
    for t in TOWERS:
        s = sizes[t]
        assert shapes["data" + t] == (batch, 3, s["input"], s["input"]), t
        assert shapes["conv1" + t] == (batch, 64, s["conv1"], s["conv1"]), t
        assert shapes["pool1" + t] == (batch, 64, s["pool1"], s["pool1"]), t
        stages = _stage_blobs(net, t)
        assert [len(stages[k]) for k in (2, 3, 4, 5)] == list(RESNET101_BLOCKS), t
        for stage, ch in ((2, 256), (3, 512), (4, 1024), (5, 2048)):
            hw = s[f"res{stage}"]
            assert all(shapes[b] == (batch, ch, hw, hw) for b in stages[stage]), (t, stage)
        assert shapes[f"res4b22_branch2b{t}"] == (batch, 256, s["res4"], s["res4"])
        for k in range(4):
            assert shapes[f"fc1_voc12{t}_c{k}"] == (batch, 21, s["fc1"], s["fc1"]), (t, k)
        assert shapes[f"fc1_voc12{t}"] == (batch, 21, s["fc1"], s["fc1"])
        if t:
            assert shapes[f"fc1_voc12{t}_interp"] == (batch, 21, s["fc1_up"], s["fc1_up"])
    big = sizes[""]["fc1"]
    assert shapes["fc_fusion"] == (batch, 21, big, big)
    if phase == "TRAIN":
        assert (n, big, sizes["_res075"]["fc1"], sizes["_res05"]["fc1"]) == (321, 41, 31, 21)
        assert shapes["label"] == (batch, 1, n, n) and shapes["data_dim"] == (batch, 1, 1, 2)
        assert shapes["label_shrink"] == (batch, 1, shrink(n, 8), shrink(n, 8)) == (batch, 1, big, big)
        assert set(net.loss_weights) == {"loss_res1", "loss_res075", "loss_res05", "loss"}
        assert all(shapes[k] == () for k in net.loss_weights)
    else:
        assert (n, big) == (513, 65)
        assert shapes["fc1_interp"] == (batch, 21, zoom(big, 8), zoom(big, 8)) == (1, 21, 513, 513)
        assert not net.loss_weights
    # Parameters: owned by the full-resolution tower, shared (one tensor) by the others.
    owners = net.param_layers()
    assert len(owners) == 104 * 3 + 4 and not any(o.endswith(TOWERS[1:]) for o in owners)
    for name in ("conv1", "bn_conv1", "scale_conv1", "res4b22_branch2b", "bn5c_branch2c", "fc1_voc12_c3"):
        copy075 = name.replace("fc1_voc12", "fc1_voc12_res075") if name.startswith("fc1") else name + "_res075"
        copy05 = name.replace("fc1_voc12", "fc1_voc12_res05") if name.startswith("fc1") else name + "_res05"
        for c in (copy075, copy05):
            assert all(a is b for a, b in zip(net.layer(c).blobs(), net.layer(name).blobs())), c
    assert [len(net.layer(x).blob_names) for x in ("conv1", "bn_conv1", "scale_conv1", "fc1_voc12_c0")] == [1, 3, 2, 2]
    assert tuple(net.layer("conv1").blobs()[0].shape) == (64, 3, 7, 7)
    assert [tuple(b.shape) for b in net.layer("bn_conv1").blobs()] == [(64,), (64,), (1,)]
    assert [tuple(b.shape) for b in net.layer("scale5c_branch2c").blobs()] == [(2048,), (2048,)]
    assert tuple(net.layer("fc1_voc12_c2").blobs()[0].shape) == (21, 2048, 3, 3)
    # Learning rates: BatchNorm and Scale frozen; the backbone 1; the classifier 10 / 20 when training.
    lr = {g["name"].rsplit(".", 1)[0]: g["lr_mult"] for g in net.caffe_param_groups()}
    assert all(v == 0.0 for k, v in lr.items() if k.startswith(("bn", "scale")))
    assert all(v == 1.0 for k, v in lr.items() if k.startswith(("conv1", "res")))
    groups = {g["name"]: g["lr_mult"] for g in net.caffe_param_groups()}
    fc1 = [groups[f"fc1_voc12_c0.{b}"] for b in net.layer("fc1_voc12_c0").blob_names]
    assert fc1 == ([10.0, 20.0] if phase == "TRAIN" else [1.0, 1.0])
    assert len(groups) == 104 + 104 * 3 + 104 * 2 + 8


def test_resnet101_msc_losses_per_scale_at_own_size_on_meta():
    net = CaffeNet(parse_net_text(resnet101_msc("TRAIN", label_per_scale=True)), "TRAIN", device="meta")
    s = msc_sizes(321)
    for t, lab in (("", "label_shrink"), ("_res075", "label_shrink075"), ("_res05", "label_shrink05")):
        hw = s[t]["fc1"]
        assert net.blob_shapes[lab] == (10, 1, hw, hw), t
        loss = f"loss{t or '_res1'}"
        assert net.bottoms[loss] == [f"fc1_voc12{t}", lab]
    assert (s["_res075"]["fc1"], s["_res05"]["fc1"]) == (zoom(shrink(41, 4), 3), shrink(41, 2)) == (31, 21)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_vgg16_aspp_shapes_on_meta(phase):
    net = CaffeNet(parse_net_text(NETS["vgg16_aspp", phase]()), phase, device="meta")
    n, batch = (321, 10) if phase == "TRAIN" else (513, 1)
    shapes = net.blob_shapes
    size, expect = n, {}
    for stage, ch, convs, stride in ((1, 64, 2, 2), (2, 128, 2, 2), (3, 256, 3, 2), (4, 512, 3, 1), (5, 512, 3, 1)):
        for i in range(1, convs + 1):
            size = conv_out(size, 3, 1, 2 if stage == 5 else 1, 2 if stage == 5 else 1)
            expect[f"conv{stage}_{i}"] = (batch, ch, size, size)
        size = pool_out(size, 3, stride, 1)
        expect[f"pool{stage}"] = (batch, ch, size, size)
    for k, d in enumerate((6, 12, 18, 24), 1):
        fc6 = conv_out(size, 3, 1, d, d)
        expect[f"fc6_{k}"] = expect[f"fc7_{k}"] = (batch, 1024, fc6, fc6)
        expect[f"fc8_voc12_{k}"] = (batch, 21, fc6, fc6)
    for name, shape in expect.items():
        assert shapes[name] == shape, name
    assert shapes["fc8_voc12"] == (batch, 21, size, size)
    assert [shapes[f"pool{k}"][2] for k in range(1, 6)] == (
        [161, 81, 41, 41, 41] if phase == "TRAIN" else [257, 129, 65, 65, 65])
    if phase == "TRAIN":
        assert shapes["label_shrink"] == (batch, 1, 41, 41) and set(net.loss_weights) == {"loss"}
        assert tuple(net.layer("fc6_3").weight.shape) == (1024, 512, 3, 3)
    else:
        assert shapes["fc8_interp"] == (1, 21, 513, 513)


# --------------------------------------------------------------------------
# A caffemodel of random blobs: load, forward, BatchNorm + Scale, conversion
# --------------------------------------------------------------------------

SMALL = {"blocks": (2, 2, 2, 2), "width": 16, "num_labels": 5}
SIZE = 65  # MSC sizes agree: fc1 9; 0.75: 49 -> 7 -> 3 -> 9; 0.5: 33 -> 5 -> 9


@pytest.fixture(scope="module")
def small_resnet(tmp_path_factory):
    d = tmp_path_factory.mktemp("deeplab_v2")
    test_proto = d / "test.prototxt"
    test_proto.write_text(resnet101_msc("TEST", crop=SIZE, input_layer=True, **SMALL))
    train_text = resnet101_msc("TRAIN", crop=SIZE, batch_size=2, **SMALL)
    meta = CaffeNet(parse_net_text(test_proto.read_text()), "TEST", device="meta")
    blobs = random_blobs(meta)
    model = write_caffemodel(d / "small.caffemodel", blobs)
    return test_proto, train_text, model, blobs


def _check_loaded(net, blobs):
    for name, (kind, arrays) in blobs.items():
        assert net.types[name] == kind, name
        ours = net.layer(name).blobs()
        assert len(ours) == len(arrays), name
        for i, (p, a) in enumerate(zip(ours, arrays)):
            assert torch.equal(p.detach().reshape(a.shape), torch.from_numpy(a)), f"{name} blob {i}"


def _bn_scale_reference(x, bn, sc):
    mean, var, factor = (a.astype(np.float64) for a in bn)
    f = 0.0 if factor[0] == 0 else 1.0 / factor[0]
    gamma, beta = (a.astype(np.float64) for a in sc)
    shape = (1, -1, 1, 1)
    return ((x - (mean * f).reshape(shape)) / np.sqrt((var * f).reshape(shape) + EPS) * gamma.reshape(shape)
            + beta.reshape(shape))


def test_small_resnet_caffemodel_loads_and_runs(small_resnet):
    test_proto, _, model, blobs = small_resnet
    net = CaffeNet.from_prototxt(test_proto, "TEST")
    report = net.load_caffemodel(model)
    assert not report.missing and not report.unexpected
    assert set(report.loaded) == set(blobs) and len(blobs) == 3 * len(net.param_layers())
    _check_loaded(net, blobs)
    assert float(net.layer("bn_conv1").blobs()[2].detach()) == np.float32(FACTOR)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(x)
        pre = net(x, end="conv1")["conv1"].clone()   # conv1 runs in place with its BatchNorm, Scale and ReLU
        post = net(x, end="scale_conv1")["conv1"]
    s = msc_sizes(SIZE)
    assert out["fc_fusion"].shape == (1, 5, s[""]["fc1"], s[""]["fc1"]) == (1, 5, 9, 9)
    assert out["fc1_interp"].shape == (1, 5, zoom(9, 8), zoom(9, 8)) == (1, 5, SIZE, SIZE)
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    # conv1 from the written weights, then BatchNorm + Scale by numpy.
    w = torch.from_numpy(blobs["conv1"][1][0])
    ref_conv = F.conv2d(x, w, stride=2, padding=3)
    assert (pre - ref_conv).abs().max() <= 1e-5 * ref_conv.abs().max()
    ref = _bn_scale_reference(pre.double().numpy(), blobs["bn_conv1"][1], blobs["scale_conv1"][1])
    err = np.abs(post.double().numpy() - ref).max() / np.abs(ref).max()
    assert err <= 1e-5, f"BatchNorm + Scale: relative error {err:.3g}"
    # The 0.75 tower's copy uses the same (shared) statistics.
    with torch.no_grad():
        pre075 = net(x, end="conv1_res075")["conv1_res075"].clone()
        post075 = net(x, end="scale_conv1_res075")["conv1_res075"]
    ref075 = _bn_scale_reference(pre075.double().numpy(), blobs["bn_conv1"][1], blobs["scale_conv1"][1])
    assert np.abs(post075.double().numpy() - ref075).max() <= 1e-5 * np.abs(ref075).max()
    # The fused scores are the element-wise max of the three towers at the largest size.
    towers = torch.stack([out["fc1_voc12"], out["fc1_voc12_res075_interp"], out["fc1_voc12_res05_interp"]])
    assert torch.equal(out["fc_fusion"], towers.max(0).values)


def test_small_resnet_train_net_loads_and_gives_losses(small_resnet):
    _, train_text, model, blobs = small_resnet
    net = CaffeNet(parse_net_text(train_text), "TRAIN")
    net.load_caffemodel(model)
    _check_loaded(net, blobs)
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, 5, (2, 1, SIZE, SIZE), generator=g).float()
    label[:, :, :8] = 255
    with torch.no_grad():
        out = net({"data": torch.randn(2, 3, SIZE, SIZE, generator=g), "label": label,
                   "data_dim": torch.full((2, 1, 1, 2), float(SIZE))})
    assert out["label_shrink"].shape == (2, 1, 9, 9)
    assert torch.equal(out["label_shrink"], label[:, :, ::8, ::8])  # shrink 8 of 65 samples every 8th pixel
    losses = net.losses(out)
    assert set(losses) == {"loss_res1", "loss_res075", "loss_res05", "loss"}
    assert all(bool(torch.isfinite(v)) and float(v) > 0 for v in losses.values())
    assert torch.allclose(net.objective(out), sum(losses.values()))


def test_small_resnet_conversion_loads_back(small_resnet, tmp_path):
    test_proto, _, model, blobs = small_resnet
    out = tmp_path / "deeplab_v2_small.safetensors"
    res = convert_caffe(model, prototxt=test_proto, target="builder", phase="TEST", out=out)
    state, meta = load_converted(out)
    net = CaffeNet.from_prototxt(test_proto, "TEST")
    net.load_caffemodel(model)
    assert set(state) == set(net.caffe_state_dict())
    assert meta["target"] == "builder" and meta["phase"] == "TEST"
    back = collections.defaultdict(dict)
    for key, torch_key in meta["name_map"].items():
        layer, i = key.rsplit("/", 1)
        back[layer][int(i)] = state[torch_key].numpy()
        assert np.array_equal(back[layer][int(i)].reshape(blobs[layer][1][int(i)].shape), blobs[layer][1][int(i)]), key
    assert set(back) == set(net.param_layers())
    assert [k for k in meta["name_map"] if k.startswith("bn_conv1/")] == ["bn_conv1/0", "bn_conv1/1", "bn_conv1/2"]
    fresh = CaffeNet.from_prototxt(test_proto, "TEST")
    fresh.load_blobs({n: [v[i] for i in sorted(v)] for n, v in back.items()})
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = net(x)["fc1_interp"]
        assert torch.equal(fresh(x)["fc1_interp"], ref)
        assert torch.equal(res.model(x)["fc1_interp"], ref)


def test_full_depth_resnet101_caffemodel_loads_and_runs(tmp_path):
    """All 101 layers (x3 towers) at a sixteenth of the width: every blob loads and the net runs."""
    text = resnet101_msc("TEST", crop=33, input_layer=True, width=4, num_labels=3)
    net = CaffeNet(parse_net_text(text), "TEST")
    blobs = random_blobs(net, seed=3)
    owner_layers = set(net.param_layers())
    owners = {k: v for k, v in blobs.items() if k in owner_layers}  # a file with the owners only
    assert len(owners) == 316
    report = net.load_caffemodel(write_caffemodel(tmp_path / "r101.caffemodel", owners))
    assert not report.missing and not report.unexpected
    _check_loaded(net, blobs)  # the tower copies hold the owners' arrays through sharing
    x = torch.randn(1, 3, 33, 33, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = net(x)
        pre = net(x, end="res5c_branch2c")["res5c_branch2c"].clone()
        post = net(x, end="scale5c_branch2c")["res5c_branch2c"]
    s = msc_sizes(33)
    assert (s[""]["fc1"], s["_res075"]["fc1"], s["_res05"]["fc1"]) == (5, 4, 3)
    assert all(s[t]["fc1_up"] == 5 for t in TOWERS)
    assert out["res5c"].shape == (1, 128, 5, 5) and out["fc1_interp"].shape == (1, 3, 33, 33)
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    ref = _bn_scale_reference(pre.double().numpy(), blobs["bn5c_branch2c"][1], blobs["scale5c_branch2c"][1])
    assert np.abs(post.double().numpy() - ref).max() <= 1e-5 * np.abs(ref).max()
