"""Caffe layer rules that the golden nets do not reach, against hand-derived values.

Each net is a few lines of prototxt text run by :class:`CaffeNet`; the expected
values are worked out here from Caffe's layer code (cited in the comments).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attn2scale.caffe import CaffeFormatError, CaffeNet, load_caffemodel_blobs, schema
from attn2scale.caffe.reader import filter_phase, parse_net_text
from attn2scale.caffe.upgrade import v1_type_name
from conftest import require_shared


def run(text: str, inputs: dict, phase: str = "TEST", **kw):
    shapes = "".join(
        f'layer {{ name: "in_{k}" type: "Input" top: "{k}" input_param {{ shape {{ '
        f'{" ".join(f"dim: {d}" for d in v.shape)} }} }} }}\n' for k, v in inputs.items())
    net = CaffeNet(parse_net_text(shapes + text), phase, **kw)
    return net, net(inputs)


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_eltwise_sum_with_coefficients_prod_and_max_ties():
    a = t(1, 5, 3, 2).view(1, 1, 2, 2).requires_grad_(True)
    b = t(1, 2, 3, 4).view(1, 1, 2, 2).requires_grad_(True)
    c = t(1, 5, 0, 4).view(1, 1, 2, 2).requires_grad_(True)
    net, blobs = run('''
        layer { name: "s" type: "Eltwise" bottom: "a" bottom: "b" top: "s" eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }
        layer { name: "p" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "p" eltwise_param { operation: PROD } }
        layer { name: "m" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "m" eltwise_param { operation: MAX } }
    ''', {"a": a, "b": b, "c": c})
    assert torch.equal(blobs["s"].flatten(), t(0.5, 4, 1.5, 0))
    assert torch.equal(blobs["p"].flatten(), t(1, 50, 0, 32))
    assert torch.equal(blobs["m"].flatten(), t(1, 5, 3, 4))
    blobs["m"].sum().backward()
    # Caffe's mask: a beats b only if strictly greater (ties -> b); c must beat the running max strictly.
    # pixel 0: a=b=c=1 -> b. pixel 1: a=5 > b=2, c=5 not > 5 -> a. pixel 2: a=b=3 -> b. pixel 3: b=4, c=4 -> b.
    assert a.grad.flatten().tolist() == [0, 1, 0, 0]
    assert b.grad.flatten().tolist() == [1, 0, 1, 1]
    assert c.grad.flatten().tolist() == [0, 0, 0, 0]


def test_split_concat_slice_tile_flatten_power():
    x = torch.arange(24, dtype=torch.float32).view(1, 6, 2, 2)
    net, blobs = run('''
        layer { name: "sp" type: "Split" bottom: "x" top: "x1" top: "x2" }
        layer { name: "sl" type: "Slice" bottom: "x1" top: "u" top: "v" top: "w" slice_param { axis: 1 } }
        layer { name: "sl2" type: "Slice" bottom: "x2" top: "p" top: "q" slice_param { slice_dim: 1 slice_point: 1 } }
        layer { name: "cat" type: "Concat" bottom: "w" bottom: "u" top: "cat" concat_param { concat_dim: 1 } }
        layer { name: "tile" type: "Tile" bottom: "p" top: "tiled" tile_param { axis: 1 tiles: 3 } }
        layer { name: "flat" type: "Flatten" bottom: "q" top: "flat" }
        layer { name: "pow" type: "Power" bottom: "u" top: "pow" power_param { power: 2 scale: 0.5 shift: 1 } }
    ''', {"x": x})
    assert blobs["u"].shape == (1, 2, 2, 2) and torch.equal(blobs["w"], x[:, 4:])
    assert blobs["p"].shape == (1, 1, 2, 2) and blobs["q"].shape == (1, 5, 2, 2)
    assert torch.equal(blobs["cat"], torch.cat([x[:, 4:], x[:, :2]], 1))
    assert torch.equal(blobs["tiled"], x[:, :1].repeat(1, 3, 1, 1))
    assert blobs["flat"].shape == (1, 20)
    assert torch.equal(blobs["pow"], (1 + 0.5 * x[:, :2]) ** 2)
    assert net.blob_shapes["tiled"] == (1, 3, 2, 2)


def test_fork_argmax_is_per_pixel_with_ties_to_the_higher_channel():
    s = t(1, 3, 3, 0, 2, 2).view(1, 3, 1, 2)  # pixel 0: 1, 3, 2 ; pixel 1: 3, 0, 2
    s = torch.cat([s, s], 3)  # 1 x 3 x 1 x 4: H*W > 1, the fork's per-pixel ArgMax
    s[0, :, 0, 2] = t(2, 2, 1)  # a tie between channels 0 and 1
    _, blobs = run('layer { name: "am" type: "ArgMax" bottom: "s" top: "am" argmax_param { top_k: 2 out_max_val: true } }',
                   {"s": s})
    out = blobs["am"]
    assert out.shape == (1, 4, 1, 4)
    assert out[0, 0, 0].tolist() == [1, 0, 1, 0]  # pixel 2: tie 2 = 2 -> channel 1
    assert out[0, 1, 0].tolist() == [2, 2, 0, 2]
    assert out[0, 2, 0].tolist() == [3, 3, 2, 3]


def test_argmax_bvlc_flat_and_axis():
    s = t(0.1, 0.7, 0.2, 0.7).view(1, 4)
    _, blobs = run('layer { name: "am" type: "ArgMax" bottom: "s" top: "am" argmax_param { top_k: 2 } }\n'
                   'layer { name: "ax" type: "ArgMax" bottom: "s" top: "ax" argmax_param { axis: 1 } }', {"s": s})
    assert blobs["am"].shape == (1, 1, 2) and blobs["am"].flatten().tolist() == [3, 1]
    assert blobs["ax"].flatten().tolist() == [3]


def test_accuracy_and_seg_accuracy():
    scores = t(0.9, 0.1, 0.2, 0.8, 0.6, 0.4).view(3, 2)
    label = t(0, 0, 255)
    _, blobs = run('layer { name: "acc" type: "Accuracy" bottom: "s" bottom: "l" top: "acc" '
                   'accuracy_param { ignore_label: 255 } }', {"s": scores, "l": label})
    assert blobs["acc"].item() == pytest.approx(0.5)
    s = torch.zeros(1, 3, 1, 4)
    s[0, [0, 1, 1, 2], 0, [0, 1, 2, 3]] = 1  # predictions 0, 1, 1, 2
    lab = t(0, 1, 2, 255).view(1, 1, 1, 4)
    net, blobs = run('layer { name: "seg" type: "SegAccuracy" bottom: "s" bottom: "l" top: "seg" '
                     'seg_accuracy_param { ignore_label: 255 } }', {"s": s, "l": lab})
    acc, recall, iou = blobs["seg"].flatten().tolist()
    # confusion rows (gt) x cols (pred): [1,0,0], [0,1,0], [0,1,0]
    assert acc == pytest.approx(2 / 3) and recall == pytest.approx((1 + 1 + 0) / 3)
    assert iou == pytest.approx((1 + 0.5 + 0) / 3)
    again = net({"s": s, "l": lab})["seg"].flatten().tolist()
    assert again == pytest.approx([acc, recall, iou]) and float(net.layer("seg").confusion.sum()) == 3
    # With reset: false the fork accumulates the confusion matrix over calls.
    net, _ = run('layer { name: "seg" type: "SegAccuracy" bottom: "s" bottom: "l" top: "seg" '
                 'seg_accuracy_param { ignore_label: 255 reset: false } }', {"s": s, "l": lab})
    net({"s": s, "l": lab})
    assert float(net.layer("seg").confusion.sum()) == 6


def test_dropout_scales_kept_units_in_train_and_is_identity_in_test():
    x = torch.ones(1, 1, 64, 64)
    text = 'layer { name: "d" type: "Dropout" bottom: "x" top: "y" dropout_param { dropout_ratio: 0.25 } }'
    _, test_blobs = run(text, {"x": x}, "TEST")
    assert torch.equal(test_blobs["y"], x)
    torch.manual_seed(0)
    _, train_blobs = run(text, {"x": x}, "TRAIN")
    kept = train_blobs["y"][train_blobs["y"] != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.75))
    assert 0.2 < (train_blobs["y"] == 0).float().mean().item() < 0.3


def test_phase_level_and_stage_rules():
    net = parse_net_text('''
        layer { name: "a" type: "ReLU" include { phase: TRAIN } }
        layer { name: "b" type: "ReLU" exclude { phase: TRAIN } }
        layer { name: "c" type: "ReLU" include { stage: "deploy" } }
        layer { name: "d" type: "ReLU" include { min_level: 2 } }
        layer { name: "e" type: "ReLU" include { phase: TEST not_stage: "deploy" } }
    ''')
    names = lambda *a, **k: [lp.name for lp in filter_phase(net, *a, **k)]  # noqa: E731
    assert names("TRAIN") == ["a"]
    assert names("TEST") == ["b", "e"]
    assert names("TEST", stages=["deploy"]) == ["b", "c"]
    assert names("TEST", level=3) == ["b", "d", "e"]
    with pytest.raises(ValueError, match="phase must be 'TRAIN' or 'TEST'"):
        names("VAL")


def test_shared_params_get_the_sum_of_their_gradients():
    x = torch.randn(1, 2, 5, 5)
    net, blobs = run('''
        layer { name: "c1" type: "Convolution" bottom: "x" top: "y1" param { name: "w" } param { name: "b" }
                convolution_param { num_output: 3 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.1 } } }
        layer { name: "c2" type: "Convolution" bottom: "x" top: "y2" param { name: "w" } param { name: "b" }
                convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
    ''', {"x": x})
    assert net.layer("c1").weight is net.layer("c2").weight
    assert net.param_layers() == ["c1"] and sorted(net.caffe_state_dict()) == ["c1.bias", "c1.weight"]
    (blobs["y1"].sum() + 2 * blobs["y2"].sum()).backward()
    w = net.layer("c1").weight.detach().clone().requires_grad_(True)
    ref = torch.nn.functional.conv2d(x, w, net.layer("c1").bias.detach(), padding=1)
    (3 * ref.sum()).backward()
    assert torch.allclose(net.layer("c1").weight.grad, w.grad)
    # Moving the net keeps the sharing (Module._apply would untie them otherwise).
    net.to(torch.float64)
    assert net.layer("c1").weight is net.layer("c2").weight and net.layer("c2").weight.dtype == torch.float64


def test_shared_param_shape_mismatch_is_refused():
    with pytest.raises(CaffeFormatError, match=r"layer 'c2' \(Convolution\): shares param 'w' with layer 'c1' but its "
                                               r"shape \(4, 2, 3, 3\) differs from \(3, 2, 3, 3\)"):
        run('''
            layer { name: "c1" type: "Convolution" bottom: "x" top: "y1" param { name: "w" }
                    convolution_param { num_output: 3 kernel_size: 3 } }
            layer { name: "c2" type: "Convolution" bottom: "x" top: "y2" param { name: "w" }
                    convolution_param { num_output: 4 kernel_size: 3 } }
        ''', {"x": torch.zeros(1, 2, 5, 5)})


def test_caffe_param_groups_carry_lr_and_decay_multipliers():
    net, _ = run('''
        layer { name: "c" type: "Convolution" bottom: "x" top: "y" param { lr_mult: 10 decay_mult: 1 }
                param { lr_mult: 20 decay_mult: 0 } convolution_param { num_output: 2 kernel_size: 1 } }
    ''', {"x": torch.zeros(1, 2, 3, 3)})
    groups = net.caffe_param_groups()
    assert [(g["name"], g["lr_mult"], g["decay_mult"]) for g in groups] == [("c.weight", 10.0, 1.0), ("c.bias", 20.0, 0.0)]


def test_fillers_follow_caffe_laws():
    net, _ = run('''
        layer { name: "g" type: "Convolution" bottom: "x" top: "g"
                convolution_param { num_output: 64 kernel_size: 3 weight_filler { type: "gaussian" std: 0.01 }
                                    bias_filler { type: "constant" value: 0.5 } } }
        layer { name: "xv" type: "Convolution" bottom: "x" top: "xv"
                convolution_param { num_output: 64 kernel_size: 3 weight_filler { type: "xavier" } } }
        layer { name: "pr" type: "PReLU" bottom: "g" top: "pr" }
    ''', {"x": torch.zeros(1, 16, 5, 5)})
    g = net.layer("g").weight
    assert abs(g.std().item() - 0.01) < 1e-3 and torch.equal(net.layer("g").bias, torch.full((64,), 0.5))
    bound = np.sqrt(3.0 / (16 * 9))  # xavier: U(-sqrt(3/fan_in), +)
    xv = net.layer("xv").weight
    assert xv.abs().max().item() <= bound and xv.abs().max().item() > 0.9 * bound
    assert torch.equal(net.layer("pr").weight, torch.full((64,), 0.25))  # PReLU's default filler


def test_v1_type_names_and_v0_weights(tmp_path):
    assert [v1_type_name(n) for n in ("CONVOLUTION", "RELU", "SOFTMAX_LOSS", "INNER_PRODUCT", "HDF5_DATA", "INTERP")] == [
        "Convolution", "ReLU", "SoftmaxWithLoss", "InnerProduct", "HDF5Data", "Interp"]
    net = schema.NetParameter()
    v0 = net.layers.add().layer
    v0.name, v0.type = "conv1", "conv"
    b = v0.blobs.add(num=2, channels=1, height=1, width=1)
    b.data.extend([1.0, 2.0])
    p = tmp_path / "v0.caffemodel"
    p.write_bytes(net.SerializeToString())
    blobs = load_caffemodel_blobs(p)
    assert list(blobs) == ["conv1"] and blobs["conv1"][0].reshape(-1).tolist() == [1.0, 2.0]
    from attn2scale.caffe import read_caffemodel

    with pytest.raises(CaffeFormatError, match="V0 format"):
        read_caffemodel(p)


def test_lenet_reads_with_its_known_shapes():
    blobs = load_caffemodel_blobs(require_shared("caffe", "models", "lenet", "lenet_iter_10000.caffemodel"))
    shapes = {k: [a.shape for a in v] for k, v in blobs.items()}
    assert shapes == {"conv1": [(20, 1, 5, 5), (20,)], "conv2": [(50, 20, 5, 5), (50,)],
                      "ip1": [(500, 800), (500,)], "ip2": [(10, 500), (10,)]}
    net = CaffeNet.from_prototxt(require_shared("caffe", "models", "lenet", "lenet.prototxt"), "TEST")
    net.load_blobs(blobs)
    out = net(torch.rand(64, 1, 28, 28))
    assert out["prob"].shape == (64, 10) and torch.allclose(out["prob"].sum(1), torch.ones(64))


def test_binary_parameters_stored_at_other_caffes_numbers_are_recovered():
    """A BVLC binary keeps input_param at 143 (interp_param here); the authors' fork keeps
    interp_param at 138 (BVLC's tile_param) and seg_accuracy_param at 142 (scale_param)."""
    from attn2scale.caffe.reader import parse_caffemodel_bytes

    net = schema.NetParameter()
    up = net.layer.add(name="up", type="Interp")
    up.tile_param.ParseFromString(schema.InterpParameter(zoom_factor=2, pad_beg=-1).SerializeToString())
    acc = net.layer.add(name="acc", type="SegAccuracy")
    acc.scale_param.ParseFromString(schema.message_class("SegAccuracyParameter")(ignore_label=[255]).SerializeToString())
    inp = net.layer.add(name="input", type="Input")
    inp.interp_param.ParseFromString(schema.InputParameter(shape=[schema.BlobShape(dim=[1, 3, 5, 5])]).SerializeToString())
    tile = net.layer.add(name="t", type="Tile")
    tile.tile_param.axis, tile.tile_param.tiles = 1, 3
    out = parse_caffemodel_bytes(net.SerializeToString())
    assert (out.layer[0].interp_param.zoom_factor, out.layer[0].interp_param.pad_beg) == (2, -1)
    assert not out.layer[0].HasField("tile_param")
    assert list(out.layer[1].seg_accuracy_param.ignore_label) == [255]
    assert list(out.layer[2].input_param.shape[0].dim) == [1, 3, 5, 5] and not out.layer[2].HasField("interp_param")
    assert out.layer[3].tile_param.tiles == 3  # a real Tile layer is left alone


# --------------------------------------------------------------------------
# Corners found in review
# --------------------------------------------------------------------------

def test_softmax_loss_stays_finite_when_a_probability_underflows():
    """Caffe: loss -log(max(p, FLT_MIN)) and gradient p - onehot, finite for any logits."""
    scores = torch.tensor([[0.0, 300.0], [5.0, 1.0]]).view(2, 2, 1, 1).requires_grad_(True)
    label = torch.tensor([0.0, 255.0]).view(2, 1, 1, 1)  # p(label) underflows to 0; the second is ignored
    net, blobs = run('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" top: "loss" '
                     'loss_param { ignore_label: 255 } }', {"s": scores, "l": label}, "TRAIN")
    flt_min = float(np.finfo(np.float32).tiny)
    assert blobs["loss"].item() == pytest.approx(-np.log(flt_min))  # 87.34, one valid position
    net.objective(blobs).backward()
    assert torch.isfinite(scores.grad).all()
    assert scores.grad.flatten().tolist() == pytest.approx([-1.0, 1.0, 0.0, 0.0])


def test_pooling_refuses_the_window_caffe_leaves_empty():
    # k 1, s 2, no pad on 6: Caffe makes 4 outputs, the last pooling nothing; PyTorch makes 3.
    with pytest.raises(CaffeFormatError, match=r"layer 'p' \(Pooling\): on a height of 6, Caffe's last window "
                                               r"\(kernel 1, stride 2, pad 0\) starts past the input"):
        run('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: MAX kernel_size: 1 stride: 2 } }',
            {"x": torch.zeros(1, 1, 6, 6)})
    # k 1, s 2 on 7 is fine in both (4 windows, the last at 6).
    _, blobs = run('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: MAX kernel_size: 1 stride: 2 } }',
                   {"x": torch.arange(49.0).view(1, 1, 7, 7)})
    assert blobs["y"].shape == (1, 1, 4, 4) and blobs["y"][0, 0, 3, 3].item() == 48.0


def test_global_pooling_follows_the_input_size():
    text = ('layer { name: "g" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: AVE global_pooling: true } }\n'
            'layer { name: "m" type: "Pooling" bottom: "x" top: "z" pooling_param { pool: MAX global_pooling: true } }')
    net, _ = run(text, {"x": torch.zeros(1, 2, 4, 4)})
    x = torch.arange(72.0).view(1, 2, 6, 6)
    out = net({"x": x})
    assert out["y"].shape == (1, 2, 1, 1) and out["y"].flatten().tolist() == [17.5, 53.5]
    assert out["z"].flatten().tolist() == [35.0, 71.0]


def test_prelu_channel_shared_loads_caffes_0d_blob(tmp_path):
    net = schema.NetParameter()
    lp = net.layer.add(name="pr", type="PReLU")
    b = lp.blobs.add()
    b.shape.SetInParent()  # a 0-D blob: shape {} with one value
    b.data.append(0.5)
    p = tmp_path / "prelu.caffemodel"
    p.write_bytes(net.SerializeToString())
    built, _ = run('layer { name: "pr" type: "PReLU" bottom: "x" top: "y" prelu_param { channel_shared: true } }',
                   {"x": torch.zeros(1, 3, 2, 2)})
    built.load_caffemodel(p)
    out = built({"x": torch.tensor([-2.0, 4.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2).contiguous()})["y"]
    assert out[0, :, 0].tolist() == [[-1.0, 4.0]] * 3


def test_legacy_shapes_fit_padded_but_new_shapes_must_be_exact(tmp_path):
    def model(legacy: bool):
        net = schema.NetParameter()
        lp = net.layer.add(name="c", type="Convolution")
        for shape in ((2, 3, 1, 1), (1, 1, 1, 2)):
            b = lp.blobs.add()
            if legacy:
                b.num, b.channels, b.height, b.width = shape
            else:
                b.shape.dim.extend(shape)
            b.data.extend([0.5] * int(np.prod(shape)))
        p = tmp_path / f"{'legacy' if legacy else 'new'}.caffemodel"
        p.write_bytes(net.SerializeToString())
        return p

    text = 'layer { name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param { num_output: 2 kernel_size: 1 } }'
    net, _ = run(text, {"x": torch.zeros(1, 3, 2, 2)})
    net.load_caffemodel(model(legacy=True))  # a 1x1x1x2 legacy bias fits the (2,) bias, as in Caffe
    assert net.layer("c").bias.tolist() == [0.5, 0.5]
    with pytest.raises(CaffeFormatError, match=r"layer 'c' blob 1 \(bias\) has shape \(1, 1, 1, 2\) in the file, "
                                               r"the net needs \(2,\)"):
        net.load_caffemodel(model(legacy=False))


def test_fusion_is_refused_when_an_in_place_layer_changes_an_input():
    s1, s2 = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    logits = torch.randn(1, 2, 4, 4)
    merge = '''
        layer { name: "att" type: "Softmax" bottom: "lg" top: "att" }
        layer { name: "sl" type: "Slice" bottom: "att" top: "a1" top: "a2" slice_param { axis: 1 } }
        layer { name: "p1" type: "SpatialProduct" bottom: "s1" bottom: "a1" top: "p1" }
        {between}
        layer { name: "p2" type: "SpatialProduct" bottom: "s2" bottom: "a2" top: "p2" }
        layer { name: "sum" type: "Eltwise" bottom: "p1" bottom: "p2" top: "fusion" }
    '''
    inputs = {"s1": s1, "s2": s2, "lg": logits}
    plain, a = run(merge.replace("{between}", ""), inputs)
    assert len(plain.fused_merges()) == 1
    layered, b = run(merge.replace("{between}", ""), inputs, fuse=False)
    assert torch.allclose(a["fusion"], b["fusion"], atol=1e-6)
    # An in-place ReLU on s1 after p1 read it: the fused call would see the new s1.
    relu = 'layer { name: "r" type: "ReLU" bottom: "s1" top: "s1" }'
    risky, c = run(merge.replace("{between}", relu), inputs)
    assert risky.fused_merges() == []
    _, d = run(merge.replace("{between}", relu), inputs, fuse=False)
    assert torch.equal(c["fusion"], d["fusion"]) and torch.allclose(c["fusion"], b["fusion"], atol=1e-6)


def test_sparse_gaussian_and_msra_fillers():
    net, _ = run('''
        layer { name: "sp" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 400
                weight_filler { type: "gaussian" std: 1 sparse: 40 } } }
        layer { name: "ms" type: "Convolution" bottom: "x4" top: "z" convolution_param { num_output: 32 kernel_size: 3
                weight_filler { type: "msra" } } }
    ''', {"x": torch.zeros(2, 500), "x4": torch.zeros(1, 64, 5, 5)})
    w = net.layer("sp").weight
    assert abs((w != 0).float().mean().item() - 40 / 400) < 0.01  # kept with probability sparse / num_outputs
    assert abs(net.layer("ms").weight.std().item() - np.sqrt(2.0 / (64 * 9))) < 0.005  # fan_in = C x k x k


def test_caffe_refusals_we_share():
    with pytest.raises(CaffeFormatError, match=r"needs one loss_weight per top"):
        run('layer { name: "l" type: "SoftmaxWithLoss" bottom: "s" bottom: "t" top: "loss" top: "prob" }',
            {"s": torch.zeros(1, 2, 2, 2), "t": torch.zeros(1, 1, 2, 2)}, "TRAIN")
    net, _ = run('layer { name: "l" type: "SoftmaxWithLoss" bottom: "s" bottom: "t" top: "loss" top: "prob" '
                 'loss_weight: 1 loss_weight: 0 }', {"s": torch.zeros(1, 2, 2, 2), "t": torch.zeros(1, 1, 2, 2)}, "TRAIN")
    assert net.loss_weights == {"loss": 1.0}
    with pytest.raises(CaffeFormatError, match=r"either axis or the legacy concat_dim"):
        run('layer { name: "c" type: "Concat" bottom: "a" bottom: "b" top: "c" concat_param { axis: 1 concat_dim: 1 } }',
            {"a": torch.zeros(1, 1, 2, 2), "b": torch.zeros(1, 1, 2, 2)})


def test_hole_h_and_hole_w():
    net, blobs = run('layer { name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param { num_output: 1 '
                     'kernel_size: 3 hole_h: 2 hole_w: 3 } }', {"x": torch.zeros(1, 1, 9, 9)})
    assert net.layer("c").dilation == (2, 3) and blobs["y"].shape == (1, 1, 5, 3)


def test_net_input_names_without_dims_are_dropped_as_caffe_does():
    from attn2scale.caffe.upgrade import upgrade_net

    net = schema.NetParameter()
    net.input.append("data")  # what old caffemodels keep
    net.layer.add(name="relu", type="ReLU")
    out = upgrade_net(net)
    assert [lp.name for lp in out.layer] == ["relu"] and not out.input


def test_shared_blobs_in_the_file_the_last_one_wins(tmp_path):
    text = '''
        layer { name: "c1" type: "Convolution" bottom: "x" top: "y1" param { name: "w" } param { name: "b" }
                convolution_param { num_output: 1 kernel_size: 1 } }
        layer { name: "c2" type: "Convolution" bottom: "x" top: "y2" param { name: "w" } param { name: "b" }
                convolution_param { num_output: 1 kernel_size: 1 } }
    '''
    net, _ = run(text, {"x": torch.zeros(1, 1, 2, 2)})
    with pytest.warns(UserWarning, match=r"layers 'c1' and 'c2' store different values for one shared parameter"):
        net.load_blobs({"c1": [np.full((1, 1, 1, 1), 1.0, np.float32), np.zeros(1, np.float32)],
                        "c2": [np.full((1, 1, 1, 1), 2.0, np.float32), np.zeros(1, np.float32)]})
    assert net.layer("c1").weight.item() == 2.0 and net.layer("c2").weight.item() == 2.0


def test_shared_param_multipliers_follow_append_param():
    text = '''
        layer { name: "c1" type: "Convolution" bottom: "x" top: "y1" param { name: "w" } param { name: "b" }
                convolution_param { num_output: 1 kernel_size: 1 } }
        layer { name: "c2" type: "Convolution" bottom: "x" top: "y2" param { name: "w" lr_mult: 10 }
                param { name: "b" lr_mult: 20 decay_mult: 0 } convolution_param { num_output: 1 kernel_size: 1 } }
    '''
    net, _ = run(text, {"x": torch.zeros(1, 1, 2, 2)})
    groups = {g["name"]: (g["lr_mult"], g["decay_mult"]) for g in net.caffe_param_groups()}
    assert groups == {"c1.weight": (10.0, 1.0), "c1.bias": (20.0, 0.0)}  # the first layer that sets each
    clash = text.replace('param { name: "w" } param { name: "b" }', 'param { name: "w" lr_mult: 1 } param { name: "b" }')
    net, _ = run(clash, {"x": torch.zeros(1, 1, 2, 2)})
    with pytest.raises(CaffeFormatError, match=r"layer 'c2' sets lr_mult 10.0 for a parameter shared with 'c1.weight'"):
        net.caffe_param_groups()
