"""The converter reads the scale merge off the prototxt: attention, max, or average with its weight.

The authors' average nets sum the scales' score maps (Eltwise SUM ``fc_fusion``) and
scale the sum by a Power layer (``fc8_fusion``, scale 0.33333 for three scales, 0.5
for two): the converted model must use that scale, not 1/S. A net written here with
a Power scale of 0.25 over three scales shows the weight comes from the file; the
authors' own prototxts and the real-Caffe outputs of avg28_2 / max30 (../shared)
check the reading on the real files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from attn2scale.caffe import CaffeFormatError, CaffeNet
from attn2scale.caffe.convert import convert_caffe, infer_model_options
from attn2scale.caffe.reader import parse_net_text, placeholders, read_text
from attn2scale.cli.convert import main as cli_main
from conftest import require_shared
from test_caffe_convert import LARGEFOV, largefov_blobs, write_caffemodel

WIDTH_DIV, LABELS, FC8 = 16, 3, "fc8_t"
# Pyramid and resizes as the authors wire them (README of configs/authors): the 0.75 image is
# shrink 4 + zoom 3, the 0.5 one shrink 2; their scores go back to the finest by zoom 4 + shrink 3
# and zoom 2. With a 65 x 65 input: towers 65 / 49 / 33 -> scores 9 / 7 / 5 -> all 9 x 9.
PYRAMID = {1.0: ("", None), 0.75: ("_res075", "shrink_factor: 4 zoom_factor: 3"),
           0.5: ("_res05", "shrink_factor: 2")}
BACK = {0.75: "zoom_factor: 4 shrink_factor: 3", 0.5: "zoom_factor: 2"}
SIZE = 65


def _conv(name, bottom, shared, c_out, k, dil=1):
    pad = dil if k == 3 else 0
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
            f'param {{ name: "{shared}_w" }} param {{ name: "{shared}_b" }} convolution_param {{ '
            f'num_output: {c_out} kernel_size: {k} pad: {pad} dilation: {dil} }} }}')


POOL_AFTER = {"conv1_2": 1, "conv2_2": 2, "conv3_3": 3, "conv4_3": 4, "conv5_3": 5}


def _tower(suffix: str, bottom: str) -> list:
    """One LargeFOV tower (weights shared by name across towers), written from the architecture:
    VGG-16 with 3x3 pad-1 max pools (stride 2 after stages 1-3, 1 after 4-5), conv5 dilated 2,
    fc6 3x3 dilated 12, fc7 1x1, fc8 1x1 (Dropout is the identity in TEST and left out)."""
    out, x = [], bottom
    for name, width, k in LARGEFOV:
        dil = 12 if name == "fc6" else 2 if name.startswith("conv5") else 1
        out.append(_conv(name + suffix, x, name, width // WIDTH_DIV, k, dil))
        x = name + suffix
        out.append(f'layer {{ name: "relu_{x}" type: "ReLU" bottom: "{x}" top: "{x}" }}')
        if name in POOL_AFTER:
            s = POOL_AFTER[name]
            out.append(f'layer {{ name: "pool{s}{suffix}" type: "Pooling" bottom: "{x}" top: "pool{s}{suffix}" '
                       f'pooling_param {{ pool: MAX kernel_size: 3 stride: {2 if s <= 3 else 1} pad: 1 }} }}')
            x = f"pool{s}{suffix}"
    out.append(_conv(FC8 + suffix, x, "fc8", LABELS, 1))
    return out


def share_net(merge: str, scales=(1.0, 0.75, 0.5)) -> str:
    """A share-net prototxt over ``scales`` ending in ``merge``, whose ``{maps}`` stands for the
    bottoms of the scales' score maps, resized to the finest."""
    lines = [(f'name: "share-net" layer {{ name: "data" type: "Input" top: "data" '
              f'input_param {{ shape {{ dim: 1 dim: 3 dim: {SIZE} dim: {SIZE} }} }} }}')]
    maps = []
    for s in scales:
        suffix, shrink = PYRAMID[s]
        bottom = "data"
        if shrink:
            bottom = f"shrink_data{suffix[4:]}"
            lines.append(f'layer {{ name: "{bottom}" type: "Interp" bottom: "data" top: "{bottom}" '
                         f'interp_param {{ {shrink} }} }}')
        lines += _tower(suffix, bottom)
        score = FC8 + suffix
        if s != 1.0:
            lines.append(f'layer {{ name: "{score}_interp" type: "Interp" bottom: "{score}" top: "{score}_interp" '
                         f'interp_param {{ {BACK[s]} }} }}')
            score += "_interp"
        maps.append(score)
    lines.append(merge.replace("{maps}", " ".join(f'bottom: "{m}"' for m in maps)))
    return "\n".join(lines) + "\n"


def avg_merge(scale="0.25", power="", shift="", coeff=""):
    return ('layer { name: "fc_fusion" type: "Eltwise" {maps} top: "fc_fusion" '
            'eltwise_param { operation: SUM ' + coeff + ' } }\n'
            'layer { name: "fc8_fusion" type: "Power" bottom: "fc_fusion" top: "fc8_fusion" '
            'power_param { scale: ' + scale + ' ' + power + ' ' + shift + ' } }')


MAX_MERGE = 'layer { name: "fc8_fusion" type: "Eltwise" {maps} top: "fc8_fusion" eltwise_param { operation: MAX } }'


@pytest.fixture
def weights(tmp_path):
    return write_caffemodel(tmp_path / "sn.caffemodel", largefov_blobs(WIDTH_DIV, LABELS, FC8, seed=5))


def _proto(tmp_path, text, name="net.prototxt") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def resize_align_corners(x: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of N x C x H x W with the corners aligned (Caffe Interp), in float64."""
    def axis_weights(n_in, n_out):
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), i0] += 1 - (src - i0)
        m[np.arange(n_out), i1] += src - i0
        return m

    mh, mw = axis_weights(x.shape[2], size[0]), axis_weights(x.shape[3], size[1])
    return np.einsum("hi,ncij,wj->nchw", mh, x.astype(np.float64), mw)


# --------------------------------------------------------------------------
# The weight comes from the prototxt
# --------------------------------------------------------------------------

def test_average_weight_is_the_power_layers_scale(tmp_path, weights):
    """Power scale 0.25 over three scales: the merged output is 0.25 * sum of the resized maps, not 1/3."""
    text = share_net(avg_merge("0.25"))
    res = convert_caffe(weights, target="attention_to_scale", prototxt=_proto(tmp_path, text),
                        out=tmp_path / "avg.safetensors")
    assert res.meta["model_options"] == {"width_div": WIDTH_DIV, "num_classes": LABELS, "merge": "avg",
                                         "avg_weight": 0.25, "scales": [1.0, 0.75, 0.5]}
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, SIZE, SIZE)).astype(np.float32))
    with torch.no_grad():
        out = res.model(x)
    maps = [resize_align_corners(s.numpy(), (9, 9)) for s in out["scores"]]
    assert [s.shape[-1] for s in out["scores"]] == [9, 7, 5]
    total = sum(maps)
    fusion = out["fusion"].numpy().astype(np.float64)
    scale = np.abs(total).max()
    assert scale > 1.0  # the maps are not vanishing: the weight is measurable
    np.testing.assert_allclose(fusion, 0.25 * total, rtol=0, atol=1e-5 * scale)
    assert np.abs(fusion - total / 3).max() > 0.05 * scale  # 1/S would be far off
    # Caffe's layers run one by one (no fused merge) give the same from the same file.
    net = CaffeNet(parse_net_text(text), "TEST", fuse=False)
    net.load_caffemodel(weights)
    with torch.no_grad():
        caffe_like = net(x)["fc8_fusion"].numpy()
    np.testing.assert_allclose(caffe_like, 0.25 * total, rtol=0, atol=1e-5 * scale)


def test_max_and_plain_sum_and_two_scales(tmp_path, weights):
    res = convert_caffe(weights, target="attention_to_scale", prototxt=_proto(tmp_path, share_net(MAX_MERGE)))
    assert (res.model.merge, res.model.scales, res.model.avg_weight) == ("max", (1.0, 0.75, 0.5), None)
    plain = 'layer { name: "fc8_fusion" type: "Eltwise" {maps} top: "fc8_fusion" }'  # SUM by default, no Power
    res = convert_caffe(weights, target="attention_to_scale",
                        prototxt=_proto(tmp_path, share_net(plain, (1.0, 0.5)), "sum.prototxt"))
    assert (res.model.merge, res.model.scales, res.model.avg_weight) == ("avg", (1.0, 0.5), 1.0)
    coeff = avg_merge("0.5", coeff="coeff: 0.5 coeff: 0.5")
    res = convert_caffe(weights, target="attention_to_scale",
                        prototxt=_proto(tmp_path, share_net(coeff, (1.0, 0.5)), "coeff.prototxt"))
    assert res.model.avg_weight == 0.25


@pytest.mark.parametrize("merge, match", [
    (avg_merge("0.25", power="power: 2"), (r"Power layer 'fc8_fusion' after the average merge 'fc_fusion' has "
                                           r"power 2 and shift 0; an average needs power 1 and shift 0")),
    (avg_merge("0.25", shift="shift: 0.5"), r"Power layer 'fc8_fusion' .* power 1 and shift 0.5"),
    (avg_merge("1", coeff="coeff: 1 coeff: 2 coeff: 1"),
     r"layer 'fc_fusion' sums the score maps with coefficients \[1.0, 2.0, 1.0\]"),
    ('layer { name: "fc8_fusion" type: "Eltwise" {maps} top: "fc8_fusion" eltwise_param { operation: PROD } }',
     r"layer 'fc8_fusion' merges the score maps by Eltwise PROD"),
    # What the model's one average weight cannot hold: a layer between the sum and its Power,
    # the sum read twice (through a Split), a second scaling after the Power.
    (avg_merge("0.25").replace('layer { name: "fc8_fusion"', 'layer { name: "r" type: "ReLU" bottom: "fc_fusion" '
                                                            'top: "fc_fusion" }\nlayer { name: "fc8_fusion"'),
     r"layer 'r' \(ReLU\) rewrites the merged blob 'fc_fusion' in place"),
    (avg_merge("0.25").replace('bottom: "fc_fusion" top: "fc8_fusion"', 'bottom: "s1" top: "fc8_fusion"')
     + '\nlayer { name: "split" type: "Split" bottom: "fc_fusion" top: "s1" top: "s2" }'
     + '\nlayer { name: "other" type: "ReLU" bottom: "s2" top: "o" }',
     r"layer 'fc_fusion': its sum feeds \['fc8_fusion', 'other'\]; the average's Power layer must be the only"),
    (avg_merge("0.5") + '\nlayer { name: "again" type: "Power" bottom: "fc8_fusion" top: "twice" '
                        'power_param { scale: 0.5 } }',
     r"layers \['again'\] scale the average of Power layer 'fc8_fusion' again"),
])
def test_merges_the_model_cannot_run_are_named(tmp_path, weights, merge, match):
    proto = _proto(tmp_path, share_net(merge))
    with pytest.raises(CaffeFormatError, match=match) as err:
        convert_caffe(weights, target="attention_to_scale", prototxt=proto)
    assert str(proto) in str(err.value)


@pytest.mark.parametrize("options, match", [
    ({"merge": "max"}, (r"merge='max' was requested, but .*net.prototxt: layer 'fc_fusion' \(Eltwise SUM\) "
                        r"gives merge='avg'")),
    ({"avg_weight": 1 / 3}, (r"avg_weight=0.333.* was requested, but .*net.prototxt: Power layer 'fc8_fusion' "
                             r"\(scale 0.25\) gives avg_weight=0.25")),
    ({"scales": (1.0, 0.5)}, (r"scales=\(1.0, 0.5\) was requested, but .*layer 'fc_fusion' \(score maps of "
                              r"\['fc8_t', 'fc8_t_res075', 'fc8_t_res05'\]\) gives scales=\(1.0, 0.75, 0.5\)")),
])
def test_a_request_the_prototxt_contradicts_is_refused(tmp_path, weights, options, match):
    proto = _proto(tmp_path, share_net(avg_merge("0.25")))
    with pytest.raises(CaffeFormatError, match=match):
        convert_caffe(weights, target="attention_to_scale", prototxt=proto, options=options)
    # Agreeing requests are fine (the weight compared as the float Caffe holds).
    res = convert_caffe(weights, target="attention_to_scale", prototxt=proto,
                        options={"merge": "avg", "avg_weight": 0.25, "scales": (1.0, 0.75, 0.5)})
    assert res.model.avg_weight == 0.25


def test_cli_avg_weight_and_contradictions(tmp_path, weights, capsys):
    proto = _proto(tmp_path, share_net(avg_merge("0.25")))
    out = tmp_path / "c.safetensors"
    base = [str(weights), "--prototxt", str(proto), "--model", "attention_to_scale", "--out", str(out)]
    assert cli_main(base + ["--merge", "max"]) == 1
    assert "merge='max' was requested" in capsys.readouterr().err and not out.exists()
    assert cli_main(base + ["--avg-weight", "0.33333"]) == 1
    assert "Power layer 'fc8_fusion' (scale 0.25)" in capsys.readouterr().err
    assert cli_main(base + ["--avg-weight", "0.25", "--merge", "avg"]) == 0
    # Without a prototxt the weight is the caller's (default 1/S).
    out2 = tmp_path / "d.safetensors"
    assert cli_main([str(weights), "--model", "attention_to_scale", "--merge", "avg", "--scales", "1,0.5",
                     "--avg-weight", "0.4", "--out", str(out2)]) == 0
    from attn2scale.caffe.convert import load_converted

    assert load_converted(out2)[1]["model_options"]["avg_weight"] == 0.4


def test_pool5a_request_against_the_prototxt(tmp_path, weights):
    proto = _proto(tmp_path, share_net(MAX_MERGE))
    with pytest.raises(CaffeFormatError, match=r"pool5a=True was requested, but .*layer 'pool5a' absent"):
        convert_caffe(weights, target="deeplab_largefov", prototxt=proto, options={"pool5a": True})
    assert convert_caffe(weights, target="deeplab_largefov", prototxt=proto).meta["model_options"]["pool5a"] is False


# --------------------------------------------------------------------------
# The authors' prototxts (../shared)
# --------------------------------------------------------------------------

AUTHORS = {  # voc10_part net -> (merge, average weight, scales): configs/authors/README.md and the files
    "attention15_2": ("avg", 0.5, (1.0, 0.5)),
    "attention27_2": ("avg", 0.5, (1.0, 0.5)),
    "attention19_2": ("avg", 0.33333, (1.0, 0.75, 0.5)),
    "attention28_2": ("avg", 0.33333, (1.0, 0.75, 0.5)),
    "attention11": ("max", None, (1.0, 0.5)),
    "attention29": ("max", None, (1.0, 0.5)),
    "attention20": ("max", None, (1.0, 0.75, 0.5)),
    "attention30": ("max", None, (1.0, 0.75, 0.5)),
    "attention53": ("attention", None, (1.0, 0.5)),
    "attention47": ("attention", None, (1.0, 0.75, 0.5)),
}


def _authors_net(net_id: str, phase: str):
    path = require_shared("caffe", "configs", "authors", "voc10_part",
                          f"vgg128_noup_pool3_20M_largewin_{net_id}", f"{phase.lower()}.prototxt")
    text = read_text(path)
    values = {n: f"/placeholder/{n.lower()}" for n in placeholders(text)}
    values.update(NUM_LABELS="7", EXP="voc10_part", NET_ID=path.parent.name)
    return parse_net_text(text, source=str(path), values=values, strict="unquoted"), path


def _full_size_blobs(n_scales: int) -> dict:
    blobs = {"conv1_1": [np.zeros((64, 3, 3, 3), np.float32)], "fc8_voc10_part": [np.zeros((7, 1024, 1, 1), np.float32)]}
    blobs["att_fc"] = [np.zeros((n_scales, 512, 1, 1), np.float32)]
    return blobs


@pytest.mark.parametrize("phase", ["TEST", "TRAIN"])
@pytest.mark.parametrize("net_id", sorted(AUTHORS))
def test_authors_prototxts_give_their_merge(net_id, phase):
    merge, weight, scales = AUTHORS[net_id]
    net, path = _authors_net(net_id, phase)
    opts = infer_model_options(_full_size_blobs(len(scales)), "attention_to_scale", net, phase=phase,
                               source=str(path))
    assert (opts["merge"], opts.get("avg_weight"), tuple(opts["scales"])) == (merge, weight, scales)
    assert (opts["width_div"], opts["num_classes"]) == (1, 7)
    if weight == 0.33333:  # the file's 0.33333, not 1/3: an explicit 1/3 is a contradiction
        with pytest.raises(CaffeFormatError, match=r"Power layer 'fc8_fusion' \(scale 0.33333\)"):
            infer_model_options(_full_size_blobs(3), "attention_to_scale", net, phase=phase,
                                source=str(path), requested={"avg_weight": 1 / 3})
    other = "max" if merge != "max" else "avg"
    with pytest.raises(CaffeFormatError, match=rf"merge='{other}' was requested, but {re.escape(str(path))}"):
        infer_model_options(_full_size_blobs(len(scales)), "attention_to_scale", net, phase=phase,
                            source=str(path), requested={"merge": other})


def test_att_fc_count_must_match_the_prototxt():
    net, path = _authors_net("attention47", "TEST")
    with pytest.raises(CaffeFormatError, match=r"att_fc has 2 outputs \(one per scale\), but .*merges 3"):
        infer_model_options(_full_size_blobs(2), "attention_to_scale", net, source=str(path))


# --------------------------------------------------------------------------
# Real Caffe: the authors' fork ran avg28_2 and max30 (../shared/caffe/golden/authors_fork)
# --------------------------------------------------------------------------

def _reference(tmp_path, fork: Path, case: str) -> Path:
    h5py = pytest.importorskip("h5py")
    ref = tmp_path / f"{case}.h5"
    with h5py.File(ref, "w") as f:
        f["input"] = np.load(fork / "attention47" / "train" / "data.npy")
        f["blobs/fc8_fusion"] = np.load(fork / case / "train" / "blobs" / "fc8_fusion.npy")
        for name in ("fc8_voc10_part", "fc8_voc10_part_res05"):  # identical in every case: stored once
            f[f"blobs/{name}"] = np.load(fork / "attention47" / "train" / "blobs" / f"{name}.npy")
    return ref


@pytest.mark.parametrize("case, merge, weight", [("avg28_2", "avg", 0.33333), ("max30", "max", None)])
def test_golden_merges_verify_against_caffe(tmp_path, case, merge, weight):
    fork = require_shared("caffe", "golden", "authors_fork")
    ref = _reference(tmp_path, fork, case)
    # The weights file holds the attention head too; an avg / max net has no place for it.
    res = convert_caffe(fork / "weights" / "golden_weights.caffemodel", target="attention_to_scale",
                        prototxt=fork / case / "train_golden.prototxt", verify=str(ref), allow_unused=True,
                        tolerance=3e-6)
    assert res.verify.ok, "\n".join(res.verify.lines())
    assert {e.blob for e in res.verify.errors} == {"fc8_fusion", "fc8_voc10_part", "fc8_voc10_part_res05"}
    assert (res.model.merge, res.model.avg_weight) == (merge, weight)
    if merge == "avg":
        # Caffe scaled by 0.33333: the same model at 1/3 is ten times further from Caffe's blob.
        x = torch.from_numpy(np.load(fork / "attention47" / "train" / "data.npy"))
        caffe = np.load(fork / case / "train" / "blobs" / "fc8_fusion.npy")
        errs = []
        for w in (weight, None):
            res.model.avg_weight = w
            with torch.no_grad():
                errs.append(np.abs(res.model(x)["fusion"].numpy() - caffe).max() / np.abs(caffe).max())
        assert errs[0] < 2e-6 and errs[1] > 5e-6


def _manifest_lines():
    import json
    import shlex

    from conftest import REPO

    models = json.loads((REPO / "weights" / "manifest.json").read_text())["models"]
    return [pytest.param(shlex.split(m["convert"])[2:], id=m["id"]) for m in models
            if "--model attention_to_scale" in m["convert"] or "--model deeplab_largefov" in m["convert"]]


@pytest.mark.parametrize("argv", _manifest_lines())
def test_manifest_convert_lines_agree_with_their_prototxts(argv):
    """weights/manifest.json's options (--merge, --scales, --pool5a) agree with what the prototxts wire."""
    from attn2scale.cli.convert import _values, build_parser

    args = build_parser().parse_args(argv)
    path = require_shared("caffe", "configs", *args.prototxt.split("caffe/configs/")[1].split("/"))
    text = read_text(path)
    values = {n: f"/placeholder/{n.lower()}" for n in placeholders(text)}
    values.update(EXP="voc12", NUM_LABELS=str(args.num_labels), **_values(args.values))
    net = parse_net_text(text, source=str(path), values=values, strict="unquoted")
    requested = {"pool5a": args.pool5a, "merge": args.merge,
                 "scales": tuple(float(s) for s in args.scales.split(",")) if args.scales else None}
    if args.model == "deeplab_largefov":
        requested = {"pool5a": requested["pool5a"]}
    n = len(requested.get("scales") or ())
    blobs = _full_size_blobs(n) if n else {"conv1_1": [np.zeros((64, 3, 3, 3), np.float32)]}
    opts = infer_model_options(blobs, args.model, net, requested=requested, phase=args.phase, source=str(path))
    assert all(opts.get(k) == v for k, v in requested.items() if v is not None)
