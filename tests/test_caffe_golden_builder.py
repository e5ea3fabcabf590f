"""Nets built from real prototxts + caffemodels equal real Caffe, blob for blob.

Fixtures: ../shared/caffe/golden (upstream BVLC Caffe; authors_fork/ = the
authors' DeepLab fork). Every net here is built by :class:`CaffeNet` from the
fixture's own prototxt and loaded from its own caffemodel; nothing is wired by
hand. Tolerance: max|err| <= 1e-5 * max|ref| (+ 1e-5 relative) per blob.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attn2scale.caffe import CaffeNet, load_caffemodel_blobs, read_caffemodel
from attn2scale.caffe.convert import convert_caffe
from attn2scale.caffe.reader import parse_net_text
from conftest import close, require_shared, shared_dir, skip_without_shared

h5py = pytest.importorskip("h5py")


def golden(*parts):
    return require_shared("caffe", "golden", *parts)


# --------------------------------------------------------------------------
# (a) DeepLab-LargeFOV topology, V2 and V1 files, two input sizes
# --------------------------------------------------------------------------

PAIRS = {
    "v2": ("deploy.prototxt", "largefov_slim.caffemodel"),
    "v1": ("deploy_v1.prototxt", "largefov_slim_v1.caffemodel"),
    "v1proto+v2model": ("deploy_v1.prototxt", "largefov_slim.caffemodel"),
    "v2proto+v1model": ("deploy.prototxt", "largefov_slim_v1.caffemodel"),
}


@pytest.fixture(scope="module")
def largefov_h5():
    with h5py.File(golden("largefov_slim", "largefov_slim.h5"), "r") as f:
        out = {}
        for key in ("in_97x97", "in_64x80"):
            out[key] = {
                "input": f[f"{key}/input"][()],
                "blobs": {k: v[()] for k, v in f[f"{key}/blobs"].items()},
                "preact": {k: v[()] for k, v in f[f"{key}/preact"].items()},
            }
        out["params"] = {layer: [f[f"params/{layer}/weight"][()], f[f"params/{layer}/bias"][()]]
                         for layer in f["params"]}
    return out


@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("key", ["in_97x97", "in_64x80"])
def test_largefov_every_blob_and_preactivation(pair, key, largefov_h5):
    proto, model = PAIRS[pair]
    ref = largefov_h5[key]
    net = CaffeNet.from_prototxt(golden("largefov_slim", proto), "TEST",
                                 input_shapes={"data": ref["input"].shape})
    report = net.load_caffemodel(golden("largefov_slim", model))
    assert len(report.loaded) == 16 and not report.missing
    for layer, (w, b) in largefov_h5["params"].items():
        assert torch.equal(net.layer(layer).weight.detach(), torch.from_numpy(w)), layer
        assert torch.equal(net.layer(layer).bias.detach(), torch.from_numpy(b).reshape(-1)), layer
    x = torch.from_numpy(ref["input"])
    with torch.no_grad():
        blobs = net(x)
    compared = [b for b in ref["blobs"] if b != "data"]
    assert len(compared) == 22
    for name in compared:
        close(blobs[name], ref["blobs"][name], f"{pair}/{key}/{name}")
    # Before the in-place ReLUs: stop the net right after each convolution, as net.forward(end=conv) did.
    assert len(ref["preact"]) == 16
    with torch.no_grad():
        for conv, value in ref["preact"].items():
            close(net(x, end=conv)[conv], value, f"{pair}/{key}/{conv} before ReLU")
    assert tuple(blobs["fc8"].shape[-2:]) == ((13, 13) if key == "in_97x97" else (9, 11))


def test_v1_and_v2_caffemodels_hold_identical_weights():
    v2 = load_caffemodel_blobs(golden("largefov_slim", "largefov_slim.caffemodel"))
    v1 = load_caffemodel_blobs(golden("largefov_slim", "largefov_slim_v1.caffemodel"))
    assert sorted(v1) == sorted(v2) and len(v1) == 16
    for layer in v2:
        # V1 stores legacy 4-D blobs (biases 1x1x1xN); V2 stores true shapes.
        assert v1[layer][1].shape == (1, 1, 1, v2[layer][1].shape[0])
        for a, b in zip(v1[layer], v2[layer]):
            assert np.array_equal(a.reshape(b.shape), b)


def test_v1_prototxt_upgrades_like_caffe():
    net = read_caffemodel(golden("largefov_slim", "largefov_slim_v1.caffemodel"))
    assert all(lp.type for lp in net.layer)
    types = {lp.name: lp.type for lp in net.layer}
    assert types["conv1_1"] == "Convolution" and types["relu1_1"] == "ReLU" and types["pool5a"] == "Pooling"
    from attn2scale.caffe import read_net_prototxt

    v1 = read_net_prototxt(golden("largefov_slim", "deploy_v1.prototxt"))
    # Caffe's UpgradeNetInput: the net-level input becomes an Input layer named "input".
    assert v1.layer[0].type == "Input" and v1.layer[0].name == "input"
    assert list(v1.layer[0].input_param.shape[0].dim) == [1, 3, 97, 97]
    fc6 = [lp for lp in v1.layer if lp.name == "fc6"][0]
    assert list(fc6.convolution_param.dilation) == [12] or fc6.convolution_param.hole == 12


@pytest.mark.parametrize("model", ["largefov_slim.caffemodel", "largefov_slim_v1.caffemodel"])
def test_largefov_converted_into_the_handwritten_model(model, largefov_h5, tmp_path):
    """The converter maps the caffemodel onto DeepLabLargeFOV (widths, classes and
    pool5a read off the files) and its --verify reproduces Caffe's blobs."""
    ref_path = tmp_path / "ref.h5"
    with h5py.File(ref_path, "w") as f:
        f["in_64x80/input"] = largefov_h5["in_64x80"]["input"]
        for k, v in largefov_h5["in_64x80"]["blobs"].items():
            f[f"in_64x80/blobs/{k}"] = v
    out = tmp_path / "largefov.safetensors"
    res = convert_caffe(golden("largefov_slim", model), prototxt=golden("largefov_slim", "deploy.prototxt"),
                        target="deeplab_largefov", out=out, verify=f"{ref_path}:in_64x80")
    assert res.verify.ok, "\n".join(res.verify.lines())
    assert len(res.verify.errors) == 22 and max(e.rel for e in res.verify.errors) < 1e-5
    assert res.meta["model_options"] == {"width_div": 8, "num_classes": 21, "pool5a": True}
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["name_map"]["fc6/0"] == "fc6.weight" and len(meta["name_map"]) == 32


# --------------------------------------------------------------------------
# (d) SoftmaxWithLoss, (f) pooling, (g) bilinear deconvolution, (c) attention merge
# --------------------------------------------------------------------------

LOSS_VARIANTS = ["default_ignore255", "valid", "batch_size", "full", "none",
                 "legacy_normalize_false", "legacy_normalize_true"]


@pytest.mark.parametrize("variant", LOSS_VARIANTS)
def test_softmax_with_loss_value_and_gradient(variant):
    with h5py.File(golden("softmax_loss", "softmax_loss.h5"), "r") as f:
        score = torch.from_numpy(f["input/score"][()]).requires_grad_(True)
        label = torch.from_numpy(f["input/label"][()])
        loss_ref, grad_ref = f[f"{variant}/loss"][()], f[f"{variant}/score_grad"][()]
    net = CaffeNet.from_prototxt(golden("softmax_loss", f"loss_{variant}.prototxt"), "TRAIN")
    blobs = net({"score": score, "label": label})
    close(blobs["loss"].reshape(1), loss_ref, f"{variant} loss")
    net.objective(blobs).backward()
    close(score.grad, grad_ref, f"{variant} d loss / d score")
    ignored = (label == 255).expand_as(score)
    assert bool((score.grad[ignored] == 0).all())


def test_pooling_edge_cases_every_size_and_input():
    path = golden("pooling_edge", "pooling_edge.h5")
    n = 0
    with h5py.File(path, "r") as f:
        for size in f:
            for kind in f[size]:
                g = f[size][kind]
                x = torch.from_numpy(g["input"][()])
                net = CaffeNet.from_prototxt(golden("pooling_edge", "pooling_edge.prototxt"), "TEST",
                                             input_shapes={"data": x.shape})
                blobs = net(x)
                for cfg in g:
                    if cfg == "input":
                        continue
                    assert torch.equal(blobs[cfg], torch.from_numpy(g[cfg][()])) or close(
                        blobs[cfg], g[cfg][()], f"{size}/{kind}/{cfg}") < 1e-6
                    n += 1
    assert n == 120


@pytest.mark.parametrize("cfg,out_hw", [("k16s8p4", 40), ("k4s2p1", 10)])
def test_deconvolution_with_bilinear_filler(cfg, out_hw):
    with h5py.File(golden("deconv_bilinear", "deconv_bilinear.h5"), "r") as f:
        x = torch.from_numpy(f["input"][()])
        w_ref, out_ref = f[f"{cfg}/weight"][()], f[f"{cfg}/output"][()]
    net = CaffeNet.from_prototxt(golden("deconv_bilinear", f"deconv_{cfg}.prototxt"), "TEST",
                                 input_shapes={"data": x.shape})
    (deconv,) = [n for n in net.order if net.types[n] == "Deconvolution"]
    # Weights come from the prototxt's bilinear filler alone: no caffemodel.
    assert torch.equal(net.layer(deconv).weight.detach(), torch.from_numpy(w_ref))
    out = net(x)[net.tops[deconv][0]]
    assert out.shape[-1] == out_hw
    close(out, out_ref, cfg)


def test_bvlc_attention_merge_forward_and_backward():
    with h5py.File(golden("attention_merge", "attention_merge.h5"), "r") as f:
        inputs = {k: torch.from_numpy(v[()]).requires_grad_(True) for k, v in f["input"].items()}
        outputs = {k: v[()] for k, v in f["output"].items()}
        top_diff = torch.from_numpy(f["top_diff/fusion"][()])
        grads = {k: v[()] for k, v in f["grad"].items()}
    net = CaffeNet.from_prototxt(golden("attention_merge", "attention_merge.prototxt"), "TEST")
    blobs = net(inputs)
    for k, v in outputs.items():
        close(blobs[k], v, k)
    torch.autograd.backward(blobs["fusion"], top_diff)
    for k in ("score_s1", "score_s2", "att_logits"):
        close(inputs[k].grad, grads[k], f"d fusion / d {k}")


# --------------------------------------------------------------------------
# authors' fork: attention47, max30, avg28_2 train nets from their own prototxts
# --------------------------------------------------------------------------

FORK_CASES = {"attention47": "attention", "max30": "max", "avg28_2": "avg"}


def _fork_blobs(case):
    """name -> path of every stored blob (max30 / avg28_2 omit those identical to attention47's)."""
    paths = {p.stem: p for p in golden("authors_fork", "attention47", "train", "blobs").glob("*.npy")}
    if case != "attention47":
        summary = json.loads(golden("authors_fork", case, "summary.json").read_text())
        skipped = set(summary["train_skipped_identical_to_attention47"])
        paths = {k: v for k, v in paths.items() if k in skipped}
        paths.update({p.stem: p for p in golden("authors_fork", case, "train", "blobs").glob("*.npy")})
    return paths


def _fork_blob(case, name):
    return np.load(_fork_blobs(case)[name])


@pytest.fixture(scope="module")
def fork_inputs():
    d = golden("authors_fork", "attention47", "train")
    return torch.from_numpy(np.load(d / "data.npy")), torch.from_numpy(np.load(d / "label.npy"))


def _fork_net(case, fuse):
    net = CaffeNet.from_prototxt(golden("authors_fork", case, "train_golden.prototxt"), "TRAIN", fuse=fuse)
    # One weight file for the three nets; max/avg have no attention layers, so load by name as Caffe does.
    report = net.load_caffemodel(golden("authors_fork", "weights", "golden_weights.caffemodel"), strict=False)
    assert not report.missing
    assert report.unexpected == ([] if case == "attention47" else ["att_conv1", "att_fc"])
    return net


@pytest.mark.parametrize("case", list(FORK_CASES))
def test_fork_train_net_every_blob_loss_and_gradient(case, fork_inputs):
    data, label = fork_inputs
    net = _fork_net(case, fuse=False)
    data = data.clone().requires_grad_(True)
    blobs = net({"data": data, "label": label})
    refs = _fork_blobs(case)
    for name, path in refs.items():
        ref = np.load(path)
        close(blobs[name].reshape(ref.shape), ref, f"{case}/{name}")
    assert len(refs) >= 70
    losses = json.loads(golden("authors_fork", case, "train", "losses.json").read_text())
    for top, value in net.losses(blobs).items():
        assert abs(value.item() - losses[top]) <= 1e-5 * abs(losses[top]), (top, value.item(), losses[top])
    net.objective(blobs).backward()
    close(data.grad, np.load(golden("authors_fork", case, "train", "data_grad.npy")), f"{case} d/d data")
    grads = golden("authors_fork", case, "train", "param_grads")
    n = 0
    for layer in net.order:
        for i, spec_name in enumerate(_param_names(net, layer)):
            if spec_name is None or not (grads / f"{spec_name}.npy").exists():
                continue
            p = net.layer(layer).blobs()[i]
            close(p.grad.reshape(-1), np.load(grads / f"{spec_name}.npy").reshape(-1), f"{case} grad {spec_name}")
            n += 1
    assert n == len(list(grads.glob("*.npy")))


def _param_names(net, layer):
    specs = net.param_specs[layer]
    lay = net.layer(layer)
    out = []
    for i, _ in enumerate(lay.blob_names):
        if i < len(specs) and specs[i].name:
            owner = net._owner[specs[i].name]
            out.append(specs[i].name if owner == (layer, i) else None)
        else:
            out.append(f"{layer}_{'wb'[i]}")
    return out


@pytest.mark.parametrize("case", ["attention47", "avg28_2"])
def test_fork_merge_runs_fused_and_equals_caffe(case, fork_inputs):
    data, label = fork_inputs
    net = _fork_net(case, fuse=True)
    (merge,) = net.fused_merges()
    assert merge.mode == FORK_CASES[case] and merge.top == "fc8_fusion" and len(merge.scores) == 3
    blobs = net({"data": data, "label": label})
    close(blobs["fc8_fusion"], _fork_blob(case, "fc8_fusion"), f"{case} fused fc8_fusion")
    if case == "attention47":
        assert "fc8_product" not in blobs  # the intermediate products are never materialised
    unfused = _fork_net(case, fuse=False)
    a = net.objective(blobs)
    b = unfused.objective(unfused({"data": data, "label": label}))
    assert abs(a.item() - b.item()) <= 1e-6 * abs(b.item())


# --------------------------------------------------------------------------
# The fork's stand-alone Interp and SpatialProduct fixtures, as one-layer nets
# --------------------------------------------------------------------------

def _interp_cases():
    path = shared_dir() / "caffe" / "golden" / "authors_fork" / "interp" / "cases.json"
    if not path.exists():
        return [pytest.param(None, id="fixtures-absent")]
    return [pytest.param(k, id=k) for k in sorted(json.loads(path.read_text()))]


@pytest.mark.parametrize("case", _interp_cases())
def test_fork_interp_layer_as_a_net(case):
    if case is None:
        skip_without_shared(f"no Interp fixtures under {shared_dir()} (../shared is absent)")
    cases = json.loads(golden("authors_fork", "interp", "cases.json").read_text())
    d = golden("authors_fork", "interp", case)
    x = torch.from_numpy(np.load(d / "input.npy")).requires_grad_(True)
    params = " ".join(f"{k}: {v}" for k, v in cases[case]["interp_param"].items())
    text = (f'input: "data" input_shape {{ {" ".join(f"dim: {v}" for v in x.shape)} }}\n'
            f'layer {{ name: "up" type: "Interp" bottom: "data" top: "up" interp_param {{ {params} }} }}')
    net = CaffeNet(parse_net_text(text), "TEST")
    out = net(x)["up"]
    assert list(out.shape) == cases[case]["out_shape"]
    assert torch.equal(out, torch.from_numpy(np.load(d / "output.npy")))  # bit-exact, as Caffe
    out.backward(torch.from_numpy(np.load(d / "top_diff.npy")))
    close(x.grad, np.load(d / "input_grad.npy"), f"{case} backward")


@pytest.mark.parametrize("case", ["N1_C7_H13_W13", "N2_C5_H7_W9"])
def test_fork_spatial_product_layer_as_a_net(case):
    d = golden("authors_fork", "spatial_product", case)
    feat = torch.from_numpy(np.load(d / "feat.npy")).requires_grad_(True)
    att = torch.from_numpy(np.load(d / "att.npy")).requires_grad_(True)
    dims = lambda t: " ".join(f"dim: {v}" for v in t.shape)  # noqa: E731
    text = (f'input: "feat" input_shape {{ {dims(feat)} }} input: "att" input_shape {{ {dims(att)} }}\n'
            'layer { name: "p" type: "SpatialProduct" bottom: "feat" bottom: "att" top: "p" }')
    out = CaffeNet(parse_net_text(text), "TEST")({"feat": feat, "att": att})["p"]
    close(out, np.load(d / "output.npy"), f"{case} forward")
    out.backward(torch.from_numpy(np.load(d / "top_diff.npy")))
    close(feat.grad, np.load(d / "feat_grad.npy"), f"{case} d/d feat")
    close(att.grad, np.load(d / "att_grad.npy"), f"{case} d/d att")
