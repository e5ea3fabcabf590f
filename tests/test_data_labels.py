"""Extra-supervision labels: shrunk as the authors' Caffe nets shrink them."""

import numpy as np
import pytest
import torch

from attn2scale.data import shrink_labels, supervision_labels
from attn2scale.models import build_model

from conftest import require_shared

FORK = ("caffe", "golden", "authors_fork", "attention47", "train")


def test_equals_real_caffe_label_shrink8_and_16():
    label = torch.from_numpy(np.load(require_shared(*FORK, "label.npy")))  # 1 x 1 x 97 x 97 float, as fed to Caffe
    for factor in (8, 16):
        ref = np.load(require_shared(*FORK, "blobs", f"label_shrink{factor}.npy"))
        got = shrink_labels(label.to(torch.int64), factor)
        assert got.dtype == torch.int64 and tuple(got.shape) == ref.shape[:1] + ref.shape[2:]
        assert torch.equal(got, torch.from_numpy(ref[:, 0]).to(torch.int64)), f"label_shrink{factor} differs from Caffe"


def test_decimation_at_the_training_crop():
    """At 321 (= 8 * 40 + 1) the shrink is label[::8, ::8] (and [::16, ::16])."""
    lab = torch.from_numpy(np.random.default_rng(0).integers(0, 21, (2, 321, 321))).to(torch.int64)
    lab[:, 100:, 200:] = 255
    for f in (8, 16):
        assert torch.equal(shrink_labels(lab, f), lab[:, ::f, ::f])


def _caffe_interp_numpy(x, out_h, out_w):
    """Align-corners bilinear with Caffe's float taps, written independently (float32)."""
    h, w = x.shape
    rh = np.float32((h - 1) / (out_h - 1)) if out_h > 1 else np.float32(0)
    rw = np.float32((w - 1) / (out_w - 1)) if out_w > 1 else np.float32(0)
    out = np.zeros((out_h, out_w), np.float32)
    for i in range(out_h):
        hh = rh * np.float32(i)
        i0 = int(hh)
        i1 = i0 + (1 if i0 < h - 1 else 0)
        lh = np.float32(hh - np.float32(i0))
        for j in range(out_w):
            ww = rw * np.float32(j)
            j0 = int(ww)
            j1 = j0 + (1 if j0 < w - 1 else 0)
            lw = np.float32(ww - np.float32(j0))
            out[i, j] = ((np.float32(1) - lh) * ((np.float32(1) - lw) * x[i0, j0] + lw * x[i0, j1])
                         + lh * ((np.float32(1) - lw) * x[i1, j0] + lw * x[i1, j1]))
    return out


def test_non_decimating_sizes_refused_or_blended_like_caffe():
    lab = torch.from_numpy(np.random.default_rng(1).choice([0, 3, 255], (1, 30, 23))).to(torch.int64)
    with pytest.raises(ValueError, match="30x23 is not 1 \\+ a multiple of 8"):
        shrink_labels(lab, 8)
    got = shrink_labels(lab, 8, strict=False)
    ref = _caffe_interp_numpy(lab[0].numpy().astype(np.float32), (30 - 1) // 8 + 1, (23 - 1) // 8 + 1)
    assert torch.equal(got[0], torch.from_numpy(np.trunc(ref).astype(np.int64)))
    assert not set(got.unique().tolist()) <= {0, 3, 255}  # blended values, as Caffe would feed its loss


def test_shapes_match_the_models_supervised_outputs():
    model = build_model("attention_to_scale", num_classes=5, width_div=16).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 97, 97))
    lab = torch.randint(0, 5, (1, 97, 97))
    labels = supervision_labels(lab, [8] + out["label_shrink"])
    maps = [out["fusion"]] + out["supervised"]
    assert [tuple(l.shape[-2:]) for l in labels] == [tuple(m.shape[-2:]) for m in maps] == [(13, 13)] * 3 + [(7, 7)]
    assert labels[0] is labels[1]  # one shrink per factor


def test_bad_label_tensors():
    with pytest.raises(ValueError, match="integers"):
        shrink_labels(torch.zeros(1, 9, 9), 8)
    with pytest.raises(ValueError, match="N x H x W"):
        shrink_labels(torch.zeros(9, 9, dtype=torch.int64), 8)
