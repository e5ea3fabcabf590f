"""DeepLab v2 layers and Caffe's net rules, each against a separate computation:
BiasChannel (numpy loops over the fork's rule), DenseCRF (pydensecrf2 fed features built here),
ImageSegData's crop fields and data_dim top, the not-implemented fork types, repeated layer names."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from attn2scale.caffe import CaffeFormatError, CaffeNet
from attn2scale.caffe.reader import parse_net_text


def build(text: str, phase="TEST", **kw) -> CaffeNet:
    return CaffeNet(parse_net_text(text, source="v2.prototxt"), phase, source="v2.prototxt", **kw)


SCORES = 'layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 2 dim: 4 dim: 3 dim: 5 } } }\n'


def bias_channel_numpy(scores, labels, pixel, bg=1.5, fg=4.0, background=0, ignore=(255, -1)):
    out = scores.copy()
    for n in range(scores.shape[0]):
        if pixel:
            for i in range(scores.shape[2]):
                for j in range(scores.shape[3]):
                    lab = int(labels[n, 0, i, j])
                    if lab not in ignore:
                        out[n, lab, i, j] += bg if lab == background else fg
        else:
            for lab in labels[n, :, 0, 0].astype(int):
                if lab not in ignore:
                    out[n, lab] += bg if lab == background else fg
    return out


@pytest.mark.parametrize("pixel", [False, True])
def test_bias_channel_equals_the_forks_rule(pixel):
    rng = np.random.default_rng(0)
    lab_shape = "dim: 2 dim: 1 dim: 3 dim: 5" if pixel else "dim: 2 dim: 5 dim: 1 dim: 1"
    net = build(SCORES + f'layer {{ name: "l" type: "Input" top: "l" input_param {{ shape {{ {lab_shape} }} }} }}\n'
                'layer { name: "b" type: "BiasChannel" bottom: "s" bottom: "l" top: "b" bias_channel_param { '
                f'bg_bias: 1.5 fg_bias: 4 ignore_label: 255 background_label: 0 '
                f'label_type: {"PIXEL" if pixel else "IMAGE"} }} }}')
    s = rng.normal(size=(2, 4, 3, 5)).astype(np.float32)
    if pixel:
        lab = rng.choice([0, 1, 2, 3, 255, -1], size=(2, 1, 3, 5)).astype(np.float32)
    else:
        lab = np.array([[0, 2, 2, -1, 255], [3, 1, -1, -1, -1]], np.float32)[:, :, None, None]  # 2 listed twice
    got = net({"s": torch.from_numpy(s), "l": torch.from_numpy(lab)})["b"].numpy()
    np.testing.assert_allclose(got, bias_channel_numpy(s, lab, pixel), rtol=1e-6)
    with pytest.raises(ValueError, match=r"layer 'b' \(BiasChannel\): unexpected label 7"):
        net({"s": torch.from_numpy(s), "l": torch.full(lab.shape, 7.0)})


CRF_NET = SCORES + (
    'layer { name: "dim" type: "Input" top: "dim" input_param { shape { dim: 2 dim: 1 dim: 1 dim: 2 } } }\n'
    'layer { name: "img" type: "Input" top: "img" input_param { shape { dim: 2 dim: 3 dim: 3 dim: 5 } } }\n'
    'layer { name: "crf" type: "DenseCRF" bottom: "s" bottom: "dim" bottom: "img" top: "q" dense_crf_param { '
    'max_iter: 5 pos_w: 3 pos_xy_std: 2 bi_w: 4 bi_xy_std: 6 bi_rgb_std: 9 %s } }\n')


def crf_numpy(dcrf, unary, image, iters):
    """pydensecrf2 fed the DeepLab layer's features, built here: (x/2, y/2) and (x/6, y/6, image/9)."""
    m, h, w = unary.shape
    crf = dcrf.DenseCRF(h * w, m)
    crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(m, -1)))
    pos = np.array([[x / 2, y / 2] for y in range(h) for x in range(w)], np.float32).T
    bil = np.array([[x / 6, y / 6] + list(image[:, y, x] / 9) for y in range(h) for x in range(w)], np.float32).T
    crf.addPairwiseEnergy(np.ascontiguousarray(pos), compat=3.0, kernel=dcrf.CONST_KERNEL,
                          normalization=dcrf.NORMALIZE_AFTER)
    crf.addPairwiseEnergy(np.ascontiguousarray(bil), compat=4.0, kernel=dcrf.CONST_KERNEL,
                          normalization=dcrf.NORMALIZE_AFTER)
    return np.asarray(crf.inference(iters)).reshape(m, h, w)


@pytest.mark.parametrize("log", [False, True])
def test_dense_crf_runs_the_evaluation_crf_over_the_valid_region(log):
    dcrf = pytest.importorskip("pydensecrf.densecrf", reason="the optional extra .[crf] (pydensecrf2)")
    from attn2scale.engine.crf import caffe_dense_crf

    net = build(CRF_NET % ("output_probability: false" if log else ""), crf_solver=caffe_dense_crf)
    rng = np.random.default_rng(1)
    s = rng.normal(size=(2, 4, 3, 5)).astype(np.float32) * 3
    img = rng.uniform(-100, 100, size=(2, 3, 3, 5)).astype(np.float32)
    dims = np.array([[3, 5], [2, 4]], np.float32).reshape(2, 1, 1, 2)  # image 1 is padded: valid 2 x 4
    q = net({"s": torch.from_numpy(s), "dim": torch.from_numpy(dims), "img": torch.from_numpy(img)})["q"].numpy()
    for n, (h, w) in enumerate([(3, 5), (2, 4)]):
        want = crf_numpy(dcrf, -s[n, :, :h, :w], img[n, :, :h, :w], 5)
        np.testing.assert_allclose(q[n, :, :h, :w], np.log(np.maximum(want, 1.1754944e-38)) if log else want,
                                   rtol=1e-5, atol=1e-6)
    assert (q[1, :, 2:, :] == 0).all() and (q[1, :, :, 4:] == 0).all()  # outside data_dim: 0, as the fork


def test_dense_crf_without_a_solver_names_the_evaluation_crf():
    net = build(CRF_NET % "")
    with pytest.raises(ValueError, match=r"layer 'crf' \(DenseCRF\): needs the evaluation code's CRF: .*"
                                         r"crf_solver=attn2scale.engine.crf.caffe_dense_crf"):
        net({"s": torch.zeros(2, 4, 3, 5), "dim": torch.full((2, 1, 1, 2), 3.0), "img": torch.zeros(2, 3, 3, 5)})


@pytest.mark.parametrize("kind", ["MatRead", "UniqueLabel", "AdaptiveBiasChannel", "DomainTransform"])
def test_unimplemented_fork_types_are_named_and_skippable(kind):
    text = SCORES + (f'layer {{ name: "x" type: "{kind}" bottom: "s" top: "x" }}\n'
                     'layer { name: "after" type: "ReLU" bottom: "x" top: "y" }\n'
                     'layer { name: "keep" type: "ReLU" bottom: "s" top: "z" }\n')
    with pytest.raises(CaffeFormatError, match=rf"layer 'x': the DeepLab type '{kind}' \(.+\) is not implemented; "
                                               rf"build with skip_types=\('{kind}',\)"):
        build(text)
    net = build(text, skip_types=(kind,))
    assert net.skipped == ["x", "after"] and net.order == ["s", "keep"]


@pytest.mark.parametrize("crop, want", [("crop_size: 321", (321, 321)), ("crop_height: 353 crop_width: 481",
                                                                          (353, 481))])
def test_image_seg_data_crops_and_data_dim_top(crop, want):
    net = build('layer { name: "data" type: "ImageSegData" top: "data" top: "label" top: "data_dim" '
                f'image_data_param {{ source: "l.txt" batch_size: 2 label_type: PIXEL }} '
                f'transform_param {{ {crop} scale_factors: 0.5 scale_factors: 1.5 mean_value: 104 }} }}', "TRAIN")
    h, w = want
    assert [net.blob_shapes[b] for b in ("data", "label", "data_dim")] == [(2, 3, h, w), (2, 1, h, w), (2, 1, 1, 2)]
    with pytest.raises(CaffeFormatError, match=r"layer 'data' \(ImageSegData\): crop_height and crop_width go "
                                               r"together"):
        build('layer { name: "data" type: "ImageSegData" top: "data" image_data_param { source: "l.txt" } '
              'transform_param { crop_height: 300 } }')


REPEATED = SCORES + (
    'layer { name: "conv" type: "Convolution" bottom: "s" top: "c1" convolution_param { num_output: 2 kernel_size: 1 '
    'weight_filler { type: "constant" value: 0.5 } } }\n'
    'layer { name: "conv" type: "Convolution" bottom: "c1" top: "c2" convolution_param { num_output: 2 '
    'kernel_size: 1 weight_filler { type: "constant" value: 0.25 } } }\n')


def test_repeated_layer_names_are_accepted_and_weights_go_to_the_first():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = build(REPEATED)
    assert any("repeated layer names ['conv']" in str(w.message) and "conv#2" in str(w.message) for w in caught)
    assert net.order == ["s", "conv", "conv#2"]
    w = np.arange(8, dtype=np.float32).reshape(2, 4, 1, 1)
    report = net.load_blobs({"conv": [w, np.ones(2, np.float32)]}, strict=False)
    assert report.missing == ["conv#2"]
    assert torch.equal(net.layer("conv").weight, torch.from_numpy(w))
    assert (net.layer("conv#2").weight == 0.25).all()  # the later one keeps its filler, as in Caffe
    x = torch.randn(2, 4, 3, 5)
    c1 = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x.numpy()) + 1
    c2 = np.einsum("oc,nchw->nohw", np.full((2, 2), 0.25, np.float32), c1)
    np.testing.assert_allclose(net(x)["c2"].detach().numpy(), c2, rtol=1e-5)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand (wire format)."""
    key, out = (number << 3) | 2, b""
    for v in (key, len(payload)):
        while v >= 0x80:
            out += bytes([(v & 0x7F) | 0x80])
            v >>= 7
        out += bytes([v])
    return out + payload


def test_deeplab_v2_binary_numbers_are_read_into_the_right_fields(tmp_path):
    """A caffemodel written by DeepLab v2 stores seg_accuracy_param at 144 and bias_channel_param at
    149 (BVLC's crop_param and the authors' fork's bin_write_param here): build such bytes field by
    field with the wire format, and read them back into the DeepLab fields."""
    from attn2scale.caffe import read_caffemodel, schema

    seg = schema.SegAccuracyParameter(ignore_label=[255, 254], reset=False).SerializeToString()
    bias = schema.BiasChannelParameter(bg_bias=0.5, fg_bias=3.0, background_label=2).SerializeToString()
    layers = [_field(1, b"acc") + _field(2, b"SegAccuracy") + _field(144, seg),
              _field(1, b"bias") + _field(2, b"BiasChannel") + _field(149, bias)]
    path = tmp_path / "v2.caffemodel"
    path.write_bytes(b"".join(_field(100, lp) for lp in layers))
    net = read_caffemodel(path)
    acc, bc = net.layer
    assert list(acc.seg_accuracy_param.ignore_label) == [255, 254] and acc.seg_accuracy_param.reset is False
    assert not acc.HasField("crop_param")
    assert (bc.bias_channel_param.bg_bias, bc.bias_channel_param.fg_bias) == (0.5, 3.0)
    assert bc.bias_channel_param.background_label == 2 and not bc.HasField("bin_write_param")


def test_a_file_with_two_same_named_weight_layers_keeps_the_later_as_caffe_does(tmp_path):
    from attn2scale.caffe import load_caffemodel_blobs, schema

    net = schema.NetParameter()
    for value in (1.0, 2.0):
        lp = net.layer.add(name="conv", type="Convolution")
        b = lp.blobs.add()
        b.shape.dim.extend([2])
        b.data.extend([value, value])
    path = tmp_path / "dup.caffemodel"
    path.write_bytes(net.SerializeToString())
    with pytest.warns(UserWarning, match=r"two layers named 'conv' store weights; the later one's are kept"):
        blobs = load_caffemodel_blobs(path)
    np.testing.assert_array_equal(blobs["conv"][0], [2.0, 2.0])


def conv_layer(name, bottom, top, param="", value=None):
    filler = f' weight_filler {{ type: "constant" value: {value} }}' if value is not None else ""
    share = f' param {{ name: "{param}" }}' if param else ""
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}"{share} '
            f'convolution_param {{ num_output: 4 kernel_size: 1 bias_term: false{filler} }} }}\n')


def test_a_repeated_name_owning_a_shared_param_ties_by_layer_not_by_name():
    """The second 'a' is the first to declare param 'w': it owns it (filled from its filler), and
    'b' shares the second 'a''s weight, not the first one's."""
    text = SCORES + conv_layer("a", "s", "x", value=0.5) + conv_layer("a", "x", "y", "w", value=0.25) \
        + conv_layer("b", "y", "z", "w", value=9.0)
    with pytest.warns(UserWarning, match="repeated layer names"):
        net = build(text)
    assert net.layer("b").weight is net.layer("a#2").weight
    assert net.layer("a").weight is not net.layer("a#2").weight
    assert (net.layer("a").weight == 0.5).all() and (net.layer("a#2").weight == 0.25).all()
    assert net.param_layers() == ["a", "a#2"] and set(net.caffe_state_dict()) == {"a.weight", "a#2.weight"}


def test_file_names_map_to_caffe_names_not_to_keys():
    """A real layer named 'conv#2' next to a repeated 'conv' gets the file's 'conv#2' weights; the
    file's 'conv' goes to the first 'conv'; strict loading says why the second 'conv' has none."""
    text = SCORES + conv_layer("conv", "s", "x") + conv_layer("conv", "x", "y") + conv_layer("conv#2", "y", "z")
    with pytest.warns(UserWarning, match=r"repeated layer names \['conv'\]"):
        net = build(text)
    w1, w3 = (np.full((4, 4, 1, 1), v, np.float32) for v in (1.0, 3.0))
    with pytest.raises(CaffeFormatError, match=r"\['conv#2'\] repeat an earlier layer's name, and Caffe leaves such "
                                               r"layers at their fillers"):
        net.load_blobs({"conv": [w1], "conv#2": [w3]})
    report = net.load_blobs({"conv": [w1], "conv#2": [w3]}, strict=False)
    key_of_real = [k for k, n in net.caffe_names.items() if n == "conv#2"][0]
    assert report.missing == ["conv#2"] and key_of_real != "conv#2"
    assert (net.layer("conv").weight == 1).all() and (net.layer(key_of_real).weight == 3).all()


def test_repeated_weight_layers_of_a_file_load_in_file_order(tmp_path):
    """File a(1), b(2), a(3) with a and b sharing one parameter: Caffe copies in file order, so the
    shared value ends as 3."""
    from attn2scale.caffe import schema

    text = SCORES + conv_layer("a", "s", "x", "w") + conv_layer("b", "x", "y", "w")
    net = build(text)
    netp = schema.NetParameter()
    for name, value in (("a", 1.0), ("b", 2.0), ("a", 3.0)):
        blob = netp.layer.add(name=name, type="Convolution").blobs.add()
        blob.shape.dim.extend([4, 4, 1, 1])
        blob.data.extend([value] * 16)
    path = tmp_path / "order.caffemodel"
    path.write_bytes(netp.SerializeToString())
    with pytest.warns(UserWarning):
        net.load_caffemodel(path)
    assert (net.layer("a").weight == 3).all()


def test_deeplab_v2_mat_write_and_mat_read_and_a_bvlc_parameter_layer_decode(tmp_path):
    """DeepLab v2 stores mat_write_param at 145 (BVLC's parameter_param) and mat_read_param at 151;
    a BVLC Parameter layer stores parameter_param at 145. All three read back, and the file's weights load."""
    from attn2scale.caffe import load_caffemodel_blobs, read_caffemodel, schema

    mat_w = schema.MatWriteParameter(prefix=b"out/feat_", period=2).SerializePartialToString()
    mat_r = schema.MatReadParameter(prefix="in/", batch_size=3).SerializePartialToString()
    param = schema.ParameterParameter(shape=schema.BlobShape(dim=[300, 7])).SerializeToString()
    conv = schema.LayerParameter(name="conv", type="Convolution")
    conv.blobs.add(data=[1.0, 2.0]).shape.dim.extend([2])
    layers = [_field(1, b"mw") + _field(2, b"MatWrite") + _field(145, mat_w),
              _field(1, b"mr") + _field(2, b"MatRead") + _field(151, mat_r),
              _field(1, b"p") + _field(2, b"Parameter") + _field(145, param), conv.SerializeToString()]
    path = tmp_path / "v2b.caffemodel"
    path.write_bytes(b"".join(_field(100, lp) for lp in layers))
    mw, mr, p, _ = read_caffemodel(path).layer
    assert (mw.mat_write_param.prefix, mw.mat_write_param.period) == (b"out/feat_", 2)
    assert (mr.mat_read_param.prefix, mr.mat_read_param.batch_size) == ("in/", 3)
    assert list(p.parameter_param.shape.dim) == [300, 7] and not p.HasField("mat_write_param")
    np.testing.assert_array_equal(load_caffemodel_blobs(path)["conv"][0], [1.0, 2.0])
