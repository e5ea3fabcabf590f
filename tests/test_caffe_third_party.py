"""Real third-party caffemodels (../shared/caffe/models) with independent references.

* CIFAR-10 quick (V1 file): real Caffe's recorded classes for its three images.
* MTCNN det1-det3 (V2, PReLU): every blob equals the independent caffe-tensorflow
  conversion (python-2 pickles of ``{layer: {weights (HWIO), biases, alpha}}``).
* All MTCNN nets and LeNet build and run; where OpenCV 4's Caffe importer is
  installed it is an independent oracle for their outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attn2scale.caffe import CaffeNet, load_caffemodel_blobs, read_caffemodel
from conftest import require_shared


def models(*parts):
    return require_shared("caffe", "models", *parts)


# --------------------------------------------------------------------------
# CIFAR-10 quick: classes 5, 3, 9
# --------------------------------------------------------------------------

def _bgr_png(path):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless reads the PNGs as Caffe's ImageData did")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, alpha dropped: what Caffe's ImageData layer feeds
    assert img is not None and img.shape == (32, 32, 3), path
    return img.astype(np.float32)


def test_cifar10_quick_v1_model_gives_real_caffes_classes():
    d = models("cifar10_quick")
    # V1 file: legacy layers, enum types, num/channels/height/width blobs.
    raw = read_caffemodel(d / "cifar10_quick_iter_5000.caffemodel")
    assert {lp.type for lp in raw.layer} >= {"Convolution", "Pooling", "ReLU", "InnerProduct"}
    net = CaffeNet.from_prototxt(d / "prediction_example.prototxt", "TEST")
    assert net.blob_shapes["data"] == (3, 3, 32, 32)  # IMAGE_DATA batch 3, new_height/new_width 32
    report = net.load_caffemodel(d / "cifar10_quick_iter_5000.caffemodel")
    assert sorted(report.loaded) == ["conv1", "conv2", "conv3", "ip1", "ip2"]
    # file_list.txt order: dog, cat, truck. Per-channel mean of the README, in B, G, R order of the image.
    mean_bgr = np.array([113.87, 122.96, 125.31], np.float32)
    batch = np.stack([(_bgr_png(d / f) - mean_bgr).transpose(2, 0, 1) for f in ("dog10.png", "cat10.png", "truck10.png")])
    with torch.no_grad():
        blobs = net({"data": torch.from_numpy(batch), "label": torch.tensor([0.0, 1.0, 2.0]).view(3, 1, 1, 1)})
    classes = blobs["prob"].argmax(1).tolist()
    assert classes == [5, 3, 9]
    # The prototxt's own ArgMax layer (top_k 5) agrees on the winner.
    assert blobs["argmax"].reshape(3, -1)[:, 0].tolist() == [5.0, 3.0, 9.0]


# --------------------------------------------------------------------------
# MTCNN: blobs equal the caffe-tensorflow conversion; nets build and run
# --------------------------------------------------------------------------

def _reference(det):
    return np.load(models("mtcnn", "reference_caffe_tensorflow", f"{det}.npy"), allow_pickle=True,
                   encoding="latin1").item()


@pytest.mark.parametrize("det", ["det1", "det2", "det3"])
def test_mtcnn_blobs_equal_independent_conversion(det):
    blobs = load_caffemodel_blobs(models("mtcnn", f"{det}.caffemodel"))
    ref = _reference(det)
    # det2's caffemodel also stores conv5-3 (landmarks), which neither its prototxt nor the reference has.
    extra = {"det2": {"conv5-3"}}.get(det, set())
    assert set(ref) == set(blobs) - extra, f"layers: ours {sorted(blobs)} vs reference {sorted(ref)}"
    net = CaffeNet.from_prototxt(models("mtcnn", f"{det}.prototxt"), "TEST")
    n = 0
    for layer, entry in ref.items():
        ours = blobs[layer]
        if "alpha" in entry:  # PReLU slopes
            assert len(ours) == 1 and np.array_equal(ours[0].reshape(-1), entry["alpha"].reshape(-1)), layer
            n += 1
            continue
        w, b = ours
        rw = entry["weights"]
        if rw.ndim == 4:  # HWIO -> Caffe OIHW
            rw = rw.transpose(3, 2, 0, 1)
        else:  # fully connected: (in, out) -> Caffe (out, in)
            rw = rw.T
            bottom = net.blob_shapes[net.bottoms[layer][0]]
            if len(bottom) == 4:  # after a conv, TF flattens H, W, C where Caffe flattens C, H, W
                _, c, h, wd = bottom
                w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        assert np.array_equal(w, rw), f"{det}/{layer} weights"
        assert np.array_equal(b.reshape(-1), entry["biases"].reshape(-1)), f"{det}/{layer} biases"
        n += 2
    assert n >= 10


@pytest.mark.parametrize("det,size", [("det1", 12), ("det2", 24), ("det3", 48), ("det4", 24)])
def test_mtcnn_nets_build_and_run(det, size):
    net = CaffeNet.from_prototxt(models("mtcnn", f"{det}.prototxt"), "TEST")
    report = net.load_caffemodel(models("mtcnn", f"{det}.caffemodel"), strict=False)
    assert not report.missing and report.unexpected == (["conv5-3"] if det == "det2" else [])
    assert any(net.types[n] == "PReLU" for n in net.order)
    shapes = dict(net.blob_shapes)
    x = {name: torch.randn(shapes[name], generator=torch.Generator().manual_seed(0)) for name in net.inputs}
    with torch.no_grad():
        blobs = net(x)
    outs = [t for n in net.order for t in net.tops[n] if net.types[n] == "Softmax"]
    for t in outs:
        assert torch.allclose(blobs[t].sum(1), torch.ones(()), atol=1e-5)
    assert all(bool(torch.isfinite(v).all()) for v in blobs.values())


# --------------------------------------------------------------------------
# OpenCV 4's Caffe importer as an independent oracle
# --------------------------------------------------------------------------

def _opencv_forward(prototxt, caffemodel, inputs, outputs):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless<5 (its Caffe importer) is the oracle")
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip("this OpenCV has no Caffe importer (OpenCV 5 dropped it)")
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    for name, value in inputs.items():
        net.setInput(value, name)
    return dict(zip(outputs, net.forward(outputs)))


ORACLE = {
    "largefov_v2": (("golden", "largefov_slim", "deploy.prototxt"), ("golden", "largefov_slim", "largefov_slim.caffemodel"),
                    ["fc8", "pool5a", "pool4"]),
    "largefov_v1": (("golden", "largefov_slim", "deploy_v1.prototxt"),
                    ("golden", "largefov_slim", "largefov_slim_v1.caffemodel"), ["fc8"]),
    "lenet": (("models", "lenet", "lenet.prototxt"), ("models", "lenet", "lenet_iter_10000.caffemodel"), ["prob"]),
    "mtcnn_det1": (("models", "mtcnn", "det1.prototxt"), ("models", "mtcnn", "det1.caffemodel"), ["prob1", "conv4-2"]),
    "mtcnn_det2": (("models", "mtcnn", "det2.prototxt"), ("models", "mtcnn", "det2.caffemodel"), ["prob1", "conv5-2"]),
    "mtcnn_det3": (("models", "mtcnn", "det3.prototxt"), ("models", "mtcnn", "det3.caffemodel"),
                   ["prob1", "conv6-2", "conv6-3"]),
}


@pytest.mark.parametrize("case", list(ORACLE))
def test_builder_equals_opencv_caffe_importer(case):
    proto_parts, model_parts, outputs = ORACLE[case]
    proto, model = require_shared("caffe", *proto_parts), require_shared("caffe", *model_parts)
    net = CaffeNet.from_prototxt(proto, "TEST")
    net.load_caffemodel(model, strict=False)
    gen = torch.Generator().manual_seed(1)
    inputs = {name: torch.randn(net.blob_shapes[name], generator=gen) for name in net.inputs}
    with torch.no_grad():
        ours = net(inputs)
    theirs = _opencv_forward(proto, model, {k: v.numpy() for k, v in inputs.items()}, outputs)
    for name in outputs:
        ref = torch.from_numpy(np.asarray(theirs[name])).reshape(ours[name].shape)
        err = (ours[name] - ref).abs().max() / ref.abs().max().clamp_min(1e-30)
        assert err < 1e-5, f"{case}/{name}: relative error {err.item():.3g} vs OpenCV"
