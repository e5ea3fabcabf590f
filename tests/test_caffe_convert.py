"""The converter: caffemodel -> safetensors + sidecar, verification, atomic writes, CLI.

Small nets are made here (prototxt text + a caffemodel written with the
project's schema), so these tests run without ../shared; the ones that convert
the real golden files skip when it is absent.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from attn2scale.caffe import CaffeFormatError, CaffeNet, schema
from attn2scale.caffe.convert import (
    TARGET_HELP,
    TARGETS,
    convert_caffe,
    eval_split_warning,
    load_converted,
    save_converted,
    split_contains,
)
from attn2scale.caffe.reader import parse_net_text
from attn2scale.cli.convert import main as cli_main
from conftest import REPO, require_shared

TINY = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "score" type: "Convolution" bottom: "pool1" top: "score" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "up" type: "Interp" bottom: "score" top: "up" interp_param { zoom_factor: 2 } }
"""


def write_caffemodel(path: Path, layers: dict, v1: bool = False) -> Path:
    """A caffemodel holding ``{layer: [arrays]}`` (V2 ``shape`` blobs, or V1 legacy 4-D ones)."""
    net = schema.NetParameter(name="written-by-test")
    for name, arrays in layers.items():
        lp = net.layers.add() if v1 else net.layer.add()
        lp.name = name
        if v1:
            lp.type = schema.V1LayerParameter.LayerType.Value("CONVOLUTION")
        else:
            lp.type = "Convolution"
        for a in arrays:
            b = lp.blobs.add()
            a = np.asarray(a, np.float32)
            if v1:
                dims = (1,) * (4 - a.ndim) + a.shape
                b.num, b.channels, b.height, b.width = dims
            else:
                b.shape.dim.extend(a.shape)
            b.data.extend(a.reshape(-1).tolist())
    path.write_bytes(net.SerializeToString())
    return path


def write_blobs(path: Path, layers: dict) -> Path:
    """A V2 caffemodel of ``{layer: [(array, how)]}``, ``how`` one of "shape" (``shape.dim``),
    "legacy" (num/channels/height/width, padded with leading 1s) or "double" (``double_data``)."""
    net = schema.NetParameter(name="written-by-test")
    for name, blobs in layers.items():
        lp = net.layer.add()
        lp.name, lp.type = name, "Convolution"
        for a, how in blobs:
            b = lp.blobs.add()
            a = np.asarray(a, np.float64 if how == "double" else np.float32)
            if how == "legacy":
                b.num, b.channels, b.height, b.width = (1,) * (4 - a.ndim) + a.shape
            else:
                b.shape.dim.extend(a.shape)
            (b.double_data if how == "double" else b.data).extend(a.reshape(-1).tolist())
    path.write_bytes(net.SerializeToString())
    return path


# VGG-16 LargeFOV: (layer, output width at full size, kernel); fc6/fc7 are 1024 wide.
LARGEFOV = ([(f"conv{s}_{k}", w, 3) for s, (w, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1)
             for k in range(1, n + 1)] + [("fc6", 1024, 3), ("fc7", 1024, 1)])


def largefov_blobs(width_div: int, num_classes: int, fc8: str, seed: int = 0) -> dict:
    """``{layer: [weight, bias]}`` of a slim LargeFOV (He-scaled, so scores stay O(1) through 16 layers)."""
    g = np.random.default_rng(seed)
    out, c_in = {}, 3
    for name, width, k in LARGEFOV + [(fc8, num_classes * width_div, 1)]:
        c_out = width // width_div
        out[name] = [(g.normal(size=(c_out, c_in, k, k)) * np.sqrt(2.0 / (c_in * k * k))).astype(np.float32),
                     g.uniform(-0.1, 0.1, size=c_out).astype(np.float32)]
        c_in = c_out
    return out


@pytest.fixture
def tiny(tmp_path):
    proto = tmp_path / "tiny.prototxt"
    proto.write_text(TINY)
    g = np.random.default_rng(0)
    weights = {"conv1": [g.normal(size=(4, 3, 3, 3)), g.normal(size=4)],
               "score": [g.normal(size=(2, 4, 1, 1)), g.normal(size=2)]}
    model = write_caffemodel(tmp_path / "tiny.caffemodel", weights)
    return proto, model, weights


def test_builder_conversion_roundtrip_and_sidecar(tiny, tmp_path):
    proto, model, weights = tiny
    out = tmp_path / "tiny.safetensors"
    res = convert_caffe(model, prototxt=proto, out=out, split="train_aug")
    state, meta = load_converted(out)
    assert sorted(state) == ["conv1.bias", "conv1.weight", "score.bias", "score.weight"]
    for layer, arrays in weights.items():
        assert torch.equal(state[f"{layer}.weight"], torch.from_numpy(arrays[0].astype(np.float32)))
        assert torch.equal(state[f"{layer}.bias"], torch.from_numpy(arrays[1].astype(np.float32)))
    src = meta["source"]
    assert src["file"] == "tiny.caffemodel" and src["bytes"] == model.stat().st_size
    assert src["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert meta["prototxt"]["sha256"] == hashlib.sha256(proto.read_bytes()).hexdigest()
    assert meta["name_map"] == {"conv1/0": "conv1.weight", "conv1/1": "conv1.bias",
                                "score/0": "score.weight", "score/1": "score.bias"}
    assert meta["training"]["split"] == "train_aug"
    # The converted weights run the same net as the original blobs.
    net = CaffeNet(parse_net_text(TINY), "TEST")
    net.load_blobs(weights)
    x = torch.randn(1, 3, 12, 12)
    assert torch.equal(net(x)["up"], res.model(x)["up"])
    assert net(x)["up"].shape == (1, 2, 13, 13)  # 12 -> ceil pooling 7 -> zoom 2: 13


def test_refuses_to_overwrite_unless_forced(tiny, tmp_path):
    proto, model, _ = tiny
    out = tmp_path / "w.safetensors"
    convert_caffe(model, prototxt=proto, out=out)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="exists; pass force=True"):
        convert_caffe(model, prototxt=proto, out=out)
    assert out.read_bytes() == before
    convert_caffe(model, prototxt=proto, out=out, force=True)


def test_failed_write_leaves_nothing(tiny, tmp_path, monkeypatch):
    """Write-then-rename: a crash in the middle of writing leaves neither file nor temporary."""
    import safetensors.torch as st

    proto, model, _ = tiny
    out = tmp_path / "w.safetensors"

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        convert_caffe(model, prototxt=proto, out=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.caffemodel", "tiny.prototxt"]


def test_sidecar_failure_removes_the_weights(tiny, tmp_path, monkeypatch):
    proto, model, _ = tiny
    out = tmp_path / "w.safetensors"
    real = Path.write_text

    def broken(self, *a, **k):
        if self.name.startswith(".w.json"):
            raise OSError("no space for the sidecar")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", broken)
    with pytest.raises(OSError, match="sidecar"):
        convert_caffe(model, prototxt=proto, out=out)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_verify_passes_and_fails(tiny, tmp_path):
    h5py = pytest.importorskip("h5py")
    proto, model, weights = tiny
    net = CaffeNet(parse_net_text(TINY), "TEST")
    net.load_blobs(weights)
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        blobs = net(x)
    ref = tmp_path / "ref.h5"
    with h5py.File(ref, "w") as f:
        f["case/input"] = x.numpy()
        for k in ("conv1", "pool1", "score", "up"):
            f[f"case/blobs/{k}"] = blobs[k].numpy()
        f["case/blobs/up_wrong"] = blobs["up"].numpy()
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f["input"] = x.numpy()
        f["blobs/up"] = blobs["up"].numpy()
        f["blobs/score"] = (blobs["score"] * 1.001).numpy()  # 1e-3 off
    res = convert_caffe(model, prototxt=proto, verify=f"{ref}:case", out=tmp_path / "a.safetensors")
    # up_wrong is not a blob of the net: the report fails and nothing is written.
    assert not res.verify.ok and res.verify.missing == ["up_wrong"]
    assert not (tmp_path / "a.safetensors").exists()
    res = convert_caffe(model, prototxt=proto, verify=str(good))
    errs = {e.blob: e.rel for e in res.verify.errors}
    assert errs["up"] == 0.0 and 5e-4 < errs["score"] < 2e-3 and not res.verify.ok
    assert "FAIL" in "\n".join(res.verify.lines())


def test_shape_mismatch_and_missing_layers_are_named(tiny, tmp_path):
    proto, _, weights = tiny
    bad = write_caffemodel(tmp_path / "bad.caffemodel", {**weights, "score": [np.zeros((3, 4, 1, 1)), np.zeros(3)]})
    with pytest.raises(CaffeFormatError, match=r"bad.caffemodel: layer 'score' blob 0 \(weight\) has shape \(3, 4, 1, 1\)"
                                               r" in the file, the net needs \(2, 4, 1, 1\)"):
        convert_caffe(bad, prototxt=proto)
    partial = write_caffemodel(tmp_path / "partial.caffemodel", {"conv1": weights["conv1"]})
    with pytest.raises(CaffeFormatError, match=r"layers without weights in the file \['score'\]"):
        convert_caffe(partial, prototxt=proto)
    extra = write_caffemodel(tmp_path / "extra.caffemodel", {**weights, "fc9": [np.zeros((2, 2))]})
    with pytest.raises(CaffeFormatError, match=r"weights for layers the net lacks \['fc9'\]"):
        convert_caffe(extra, prototxt=proto)
    res = convert_caffe(partial, prototxt=proto, allow_missing=True)
    assert res.meta["not_converted"] == ["score: not in the caffemodel"]


def test_legacy_v1_blobs_load_into_v2_shapes(tiny, tmp_path):
    proto, _, weights = tiny
    v1 = write_caffemodel(tmp_path / "v1.caffemodel", weights, v1=True)
    res = convert_caffe(v1, prototxt=proto)
    assert torch.equal(res.state["score.bias"], torch.from_numpy(weights["score"][1].astype(np.float32)))


def test_split_warning():
    assert split_contains("trainval_aug", "val") and split_contains("trainval", "val")
    assert not split_contains("train_aug", "val") and not split_contains(None, "val")
    meta = {"source": {"file": "train2_iter_8000.caffemodel"}, "training": {"split": "trainval_aug"}}
    assert "overstates" in eval_split_warning(meta, "val")
    assert eval_split_warning(meta, "test") is None


def test_load_converted_warns_on_train_plus_val(tiny, tmp_path):
    proto, model, _ = tiny
    out = tmp_path / "tv.safetensors"
    convert_caffe(model, prototxt=proto, out=out, split="trainval_aug")
    with pytest.warns(UserWarning, match="trained on 'trainval_aug', which contains 'val'"):
        load_converted(out, eval_split="val")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_converted(out, eval_split="test")


def test_training_split_is_read_from_the_prototxt(tmp_path):
    text = TINY.replace('layer { name: "data" type: "Input"', '''layer { name: "d" type: "ImageSegData" top: "data" top: "label"
      image_data_param { source: "voc12/list/trainval_aug.txt" batch_size: 1 } transform_param { crop_size: 12 }
      include { phase: TRAIN } }
layer { name: "data" type: "Input" include { phase: TEST }''')
    proto = tmp_path / "t.prototxt"
    proto.write_text(text)
    g = np.random.default_rng(1)
    model = write_caffemodel(tmp_path / "m.caffemodel", {"conv1": [g.normal(size=(4, 3, 3, 3)), g.normal(size=4)],
                                                         "score": [g.normal(size=(2, 4, 1, 1)), g.normal(size=2)]})
    res = convert_caffe(model, prototxt=proto)
    assert res.meta["training"]["split"] == "trainval_aug"


def test_cli_exit_codes_and_messages(tiny, tmp_path, capsys):
    proto, model, _ = tiny
    out = tmp_path / "c.safetensors"
    assert cli_main([str(model), "--prototxt", str(proto), "--out", str(out)]) == 0
    assert "4 tensors" in capsys.readouterr().out
    assert cli_main([str(model), "--prototxt", str(proto), "--out", str(out)]) == 1
    assert "exists; pass force=True" in capsys.readouterr().err
    assert cli_main([str(tmp_path / "nope.caffemodel"), "--out", str(out), "--force"]) == 1
    assert "nope.caffemodel: cannot read" in capsys.readouterr().err
    assert cli_main([str(model), "--prototxt", str(proto)]) == 2


def test_tool_script_runs(tiny, tmp_path):
    proto, model, _ = tiny
    out = tmp_path / "s.safetensors"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "convert_caffe.py"), str(model), "--prototxt", str(proto),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.exists() and out.with_suffix(".json").exists()
    r = subprocess.run([sys.executable, "-m", "attn2scale", "convert", "--help"], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert r.returncode == 0 and "--verify" in r.stdout


def test_save_converted_refuses_bad_names(tmp_path):
    with pytest.raises(ValueError, match="must end in .safetensors"):
        save_converted({}, {}, tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="output folder does not exist"):
        save_converted({}, {}, tmp_path / "no" / "x.safetensors")


# --------------------------------------------------------------------------
# Real files: the authors' fork weights into the hand-written share-net
# --------------------------------------------------------------------------

def test_fork_weights_into_the_attention_model_verify_against_caffe(tmp_path):
    h5py = pytest.importorskip("h5py")
    fork = require_shared("caffe", "golden", "authors_fork")
    ref = tmp_path / "attention47.h5"
    with h5py.File(ref, "w") as f:
        f["input"] = np.load(fork / "attention47" / "train" / "data.npy")
        for p in (fork / "attention47" / "train" / "blobs").glob("*.npy"):
            f[f"blobs/{p.stem}"] = np.load(p)
    out = tmp_path / "a47.safetensors"
    res = convert_caffe(fork / "weights" / "golden_weights.caffemodel", target="attention_to_scale",
                        prototxt=fork / "attention47" / "train_golden.prototxt", out=out, verify=str(ref))
    assert res.verify.ok, "\n".join(res.verify.lines())
    compared = {e.blob for e in res.verify.errors}
    assert {"fc8_fusion", "fc8_voc10_part", "fc8_voc10_part_res05", "att_fc", "fc7_concat"} <= compared
    assert len(compared) >= 60
    assert res.meta["model_options"] == {"width_div": 8, "num_classes": 7, "merge": "attention",
                                         "scales": [1.0, 0.75, 0.5]}
    state, meta = load_converted(out)
    assert "backbone.fc8.weight" in state and meta["name_map"]["fc8_voc10_part/0"] == "backbone.fc8.weight"


def test_odd_blobs_for_the_handwritten_model_are_named(tmp_path):
    zero = write_caffemodel(tmp_path / "zero.caffemodel", {"conv1_1": [np.zeros((0, 3, 3, 3)), np.zeros(0)]})
    with pytest.raises(CaffeFormatError, match=r"conv1_1 has 0 filters; LargeFOV widths are 64 / k"):
        convert_caffe(zero, target="deeplab_largefov")
    flat = write_caffemodel(tmp_path / "flat.caffemodel", {"conv1_1": [np.zeros(5), np.zeros(5)]})
    with pytest.raises(CaffeFormatError, match=r"conv1_1 has 0 filters"):
        convert_caffe(flat, target="deeplab_largefov")


def test_builder_from_the_caffemodel_alone_checks_blobs_before_allocating(tmp_path):
    """A file whose layers ask for a huge parameter but store a small one is refused on the meta
    device, before any memory is allocated for it."""
    net = parse_net_text(TINY)
    big = [lp for lp in net.layer if lp.name == "conv1"][0]
    big.convolution_param.num_output = 50_000_000  # 50e6 x 3 x 3 x 3 floats = 5.4 GB if built
    for lp in net.layer:
        if lp.type == "Convolution":
            b = lp.blobs.add()
            b.shape.dim.extend([1])
            b.data.append(0.0)
    p = tmp_path / "liar.caffemodel"
    p.write_bytes(net.SerializeToString())
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CaffeFormatError, match=r"liar.caffemodel: layer 'conv1' has 1 blobs in the file"):
        convert_caffe(p)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: far below 5.4 GB


# --------------------------------------------------------------------------
# Provenance: each saved tensor's Caffe layer, blob, file shape and transforms
# --------------------------------------------------------------------------

SHARED = """
name: "shared"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" param { name: "c1_w" } param { name: "c1_b" }
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "conv1b" type: "Convolution" bottom: "data" top: "conv1b" param { name: "c1_w" } param { name: "c1_b" }
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "conv1" bottom: "conv1b" top: "sum" }
layer { name: "score" type: "Convolution" bottom: "sum" top: "score" convolution_param { num_output: 2 kernel_size: 1 } }
"""


def _expected_entry(layer, idx, array, how, out_shape, shared=None):
    """What the sidecar must say of a blob this test wrote (``how`` as in write_blobs)."""
    file_shape = list((1,) * (4 - array.ndim) + array.shape) if how == "legacy" else list(array.shape)
    transforms = []
    if file_shape != list(out_shape):
        transforms.append({"op": "reshape", "from": file_shape, "to": list(out_shape)})
    if how == "double":
        transforms.append({"op": "cast", "from": "float64", "to": "float32"})
    if shared:
        transforms.append({"op": "shared", **shared})
    return {"layer": layer, "blob": idx, "file_shape": file_shape, "legacy_shape": how == "legacy",
            "transforms": transforms}


def _without_rule(entry):
    return dict(entry, transforms=[{k: v for k, v in t.items() if k != "rule"} for t in entry["transforms"]])


def test_provenance_of_a_builder_net(tmp_path):
    """Shared parameters (Caffe keeps the last stored copy), a legacy 1x1x1xN bias, double_data."""
    g = np.random.default_rng(3)
    w1, w1b = g.normal(size=(4, 3, 3, 3)), g.normal(size=(4, 3, 3, 3))
    b1, ws, bs = g.normal(size=4), g.normal(size=(2, 4, 1, 1)), g.normal(size=2)
    written = {"conv1": [(w1, "shape"), (b1, "legacy")], "conv1b": [(w1b, "double"), (b1, "shape")],
               "score": [(ws, "double"), (bs, "legacy")]}
    model = write_blobs(tmp_path / "s.caffemodel", written)
    proto = tmp_path / "s.prototxt"
    proto.write_text(SHARED)
    out = tmp_path / "s.safetensors"
    with pytest.warns(UserWarning, match="store different values for one shared parameter"):
        convert_caffe(model, prototxt=proto, out=out)
    state, meta = load_converted(out)
    prov = meta["provenance"]
    assert sorted(prov) == sorted(state) == ["conv1.bias", "conv1.weight", "score.bias", "score.weight"]
    share = {"layers": ["conv1", "conv1b"], "stored_in": ["conv1", "conv1b"]}
    expected = {  # the tensor under the owner's name holds conv1b's copy: the last one in the file
        "conv1.weight": _expected_entry("conv1b", 0, w1b, "double", (4, 3, 3, 3), dict(param="c1_w", **share)),
        "conv1.bias": _expected_entry("conv1b", 1, b1, "shape", (4,), dict(param="c1_b", **share)),
        "score.weight": _expected_entry("score", 0, ws, "double", (2, 4, 1, 1)),
        "score.bias": _expected_entry("score", 1, bs, "legacy", (2,)),
    }
    for key, want in expected.items():
        assert _without_rule(prov[key]) == want, key
        layer, idx = want["layer"], want["blob"]
        assert torch.equal(state[key], torch.from_numpy(written[layer][idx][0].astype(np.float32)).reshape(
            state[key].shape)), key
    assert all("rule" in t for e in prov.values() for t in e["transforms"] if t["op"] == "shared")


def test_provenance_of_the_share_net(tmp_path):
    """The hand-written share-net: one backbone tensor per parameter for every tower, tower copies
    the file stores again, fc8 renamed from the release's layer, legacy and double blobs."""
    blobs = largefov_blobs(16, 3, "fc8_t")
    written = {k: [(a, "shape") for a in v] for k, v in blobs.items()}
    written["fc7"][1] = (blobs["fc7"][1], "legacy")
    written["fc6"][0] = (blobs["fc6"][0], "double")
    written["conv1_1_res05"] = written["conv1_1"]  # a Caffe-saved share-net stores the tower's copy too
    model = write_blobs(tmp_path / "sn.caffemodel", written)
    out = tmp_path / "sn.safetensors"
    convert_caffe(model, target="attention_to_scale", options={"merge": "avg", "scales": (1.0, 0.5)}, out=out)
    state, meta = load_converted(out)
    prov = meta["provenance"]
    assert sorted(prov) == sorted(state)
    assert len(prov) == 2 * len(blobs)
    for layer in blobs:
        for idx, kind in enumerate(("weight", "bias")):
            key = f"backbone.{'fc8' if layer == 'fc8_t' else layer}.{kind}"
            array, how = written[layer][idx]
            share = {"param": None, "layers": [layer, layer + "_res05"],
                     "stored_in": [layer] + ([layer + "_res05"] if layer == "conv1_1" else [])}
            assert _without_rule(prov[key]) == _expected_entry(layer, idx, array, how, tuple(state[key].shape),
                                                               share), key
            assert np.array_equal(state[key].numpy().reshape(-1), array.astype(np.float32).reshape(-1)), key


# --------------------------------------------------------------------------
# The targets are listed once
# --------------------------------------------------------------------------

def test_cli_targets_come_from_the_converter():
    from attn2scale.cli.convert import build_parser

    parser = build_parser()
    model = next(a for a in parser._actions if a.dest == "model")
    assert tuple(model.choices) == TARGETS == tuple(TARGET_HELP)
    for name, text in TARGET_HELP.items():
        assert f"{name}: {text}" in model.help
