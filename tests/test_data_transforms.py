"""Caffe's ImageSegData transform: values against numpy computations written here,
and the parameters read off the authors' prototxts."""

from pathlib import Path

import numpy as np
import pytest
import torch

from attn2scale.data import SegTransform, caffe_data_params, get_dataset_info
from attn2scale.data.registry import DATASETS

from conftest import require_shared

MEAN = np.array([104.008, 116.669, 122.675], np.float32)  # float, as Caffe's mean_value


def _positions_image(h, w):
    """B = row, G = column, R = 7: every pixel says where it came from."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(h)[:, None]
    img[..., 1] = np.arange(w)[None, :]
    img[..., 2] = 7
    return img


def test_known_pixels_hand_computed():
    img = np.array([[[104, 117, 123], [0, 0, 0]], [[255, 255, 255], [1, 2, 3]]], np.uint8)  # 2 x 2 BGR
    out, lab, size = SegTransform(crop_size=3, train=False)(img, np.array([[1, 2], [3, 0]], np.uint8))
    assert size == (2, 2) and out.shape == (3, 3, 3) and out.dtype == torch.float32
    # B channel: 104 - 104.008f = -0.008000030..., 0 - 104.008f, 255 - 104.008f, 1 - 104.008f; pads exactly 0
    expect_b = np.array([[104 - MEAN[0], 0 - MEAN[0], 0], [255 - MEAN[0], 1 - MEAN[0], 0], [0, 0, 0]], np.float32)
    assert torch.equal(out[0], torch.from_numpy(expect_b))
    assert out[1, 0, 0].item() == np.float32(117) - MEAN[1] and out[2, 1, 1].item() == np.float32(3) - MEAN[2]
    assert torch.equal(lab, torch.tensor([[1, 2, 255], [3, 0, 255], [255, 255, 255]]))


def test_real_voc_image_padded_like_caffe():
    """A VOC image read as Caffe reads it (OpenCV, BGR), padded to 513: an independent numpy computation."""
    cv2 = pytest.importorskip("cv2")
    root = require_shared("data", "voc2012_sample")
    from attn2scale.data import SegDataset

    ds = SegDataset(root, "val", "voc12")
    item = ds[0]
    bgr = cv2.imread(str(root / "JPEGImages" / f"{item['name']}.jpg"), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    expect = np.zeros((513, 513, 3), np.float32)
    expect[:h, :w] = bgr.astype(np.float32) - MEAN
    assert tuple(item["size"].tolist()) == (h, w)
    assert torch.equal(item["image"], torch.from_numpy(expect.transpose(2, 0, 1).copy()))
    assert (item["label"][h:, :] == 255).all() and (item["label"][:, w:] == 255).all()


@pytest.mark.parametrize("h,w", [(7, 9), (3, 4), (12, 5)])
def test_train_crop_is_a_window_of_the_padded_image(h, w):
    crop = 6
    t = SegTransform(crop_size=crop, train=True, mirror=True)
    img = _positions_image(h, w)
    lab = (np.arange(h * w).reshape(h, w) % 21).astype(np.uint8)
    ph, pw = max(h, crop), max(w, crop)
    pad_img = np.zeros((ph, pw, 3), np.float32)
    pad_img[:] = MEAN
    pad_img[:h, :w] = img
    pad_img = pad_img - MEAN
    pad_lab = np.full((ph, pw), 255, np.int64)
    pad_lab[:h, :w] = lab
    seen, mirrored = set(), 0
    for seed in range(300):
        out, olab, _ = t(img, lab, np.random.default_rng(seed))
        o = out.numpy().transpose(1, 2, 0)
        matches = []
        for y0 in range(ph - crop + 1):
            for x0 in range(pw - crop + 1):
                for flip in (False, True):
                    win = pad_img[y0 : y0 + crop, x0 : x0 + crop]
                    wl = pad_lab[y0 : y0 + crop, x0 : x0 + crop]
                    if flip:
                        win, wl = win[:, ::-1], wl[:, ::-1]
                    if np.array_equal(o, win) and np.array_equal(olab.numpy(), wl):
                        matches.append((y0, x0, flip))
        assert matches, f"seed {seed}: the output is no (mirrored) window of the padded image with its label"
        y0, x0, flip = matches[0]
        seen.add((y0, x0))
        mirrored += flip
    # every offset is reached, and the mirror coin is fair
    assert seen == {(y, x) for y in range(ph - crop + 1) for x in range(pw - crop + 1)}
    assert 100 < mirrored < 200


def test_test_phase_never_moves_and_mirrors_only_when_asked():
    """Caffe's TEST phase pads without moving; its mirror coin is drawn in either phase."""
    img = _positions_image(5, 8)
    plain = SegTransform(crop_size=9, train=False)
    a, _, _ = plain(img, None)
    assert a[1, 0, 7].item() == np.float32(7) - MEAN[1] and (a[:, 5:, :] == 0).all() and (a[:, :, 8:] == 0).all()
    flips = [SegTransform(crop_size=9, train=False, mirror=True)(img, None, np.random.default_rng(k))[0]
             for k in range(40)]
    assert all(torch.equal(f, a) or torch.equal(f, a.flip(-1)) for f in flips)
    assert 5 < sum(torch.equal(f, a.flip(-1)) for f in flips) < 35


def test_eval_keeps_images_larger_than_the_crop_whole():
    img = _positions_image(20, 6)
    out, lab, size = SegTransform(crop_size=9, train=False)(img, np.zeros((20, 6), np.uint8))
    # 20 rows > crop 9: padded to 8k + 1 = 25 (corner-aligned stride-8 grid), nothing cropped
    assert out.shape == (3, 25, 9) and size == (20, 6) and (lab[:, 6:] == 255).all() and (lab[20:] == 255).all()
    assert (lab[:20, :6] == 0).all() and (out[:, 20:] == 0).all()


def test_random_scaling_as_cv2_resize():
    """Image bilinear and label nearest as cv2.resize(fx=fy=s) (INTER_LINEAR / INTER_NEAREST) computes them."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    lab = rng.integers(0, 21, (40, 30), dtype=np.uint8)
    t = SegTransform(crop_size=0, train=True, scale_range=(0.6, 1.4))
    sizes = set()
    for seed in range(20):
        s = float(np.random.default_rng(seed).uniform(0.6, 1.4))  # the only draw (no mirror, no crop)
        out, olab, size = t(img, lab, np.random.default_rng(seed))
        h, w = int(round(40 * s)), int(round(30 * s))
        assert size == (h, w) and out.shape == (3, h, w)
        assert np.array_equal(olab.numpy(), cv2.resize(lab, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST))
        ref = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR).astype(np.float32) - MEAN
        # cv2 rounds to uint8 with fixed-point weights; ours stays in floating point
        assert np.abs(out.numpy().transpose(1, 2, 0) - ref).max() <= 1.0
        sizes.add(size)
    assert len(sizes) > 10


def test_random_scaling_then_padding_and_crop():
    """With a crop: the window of the (padded) cv2-resized image at the drawn offset.
    Draw order (documented): scale, then row and column offsets (no mirror coin when mirror=False)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    lab = rng.integers(0, 21, (30, 44), dtype=np.uint8)
    crop = 33
    t = SegTransform(crop_size=crop, train=True, scale_range=(0.6, 1.4))
    for seed in range(30):
        r = np.random.default_rng(seed)
        s = r.uniform(0.6, 1.4)
        h, w = int(round(30 * s)), int(round(44 * s))
        ph, pw = max(h, crop), max(w, crop)
        y0, x0 = int(r.integers(ph - crop + 1)), int(r.integers(pw - crop + 1))
        big = np.zeros((ph, pw, 3), np.float32)
        big[:h, :w] = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR).astype(np.float32) - MEAN
        big_lab = np.full((ph, pw), 255, np.int64)
        big_lab[:h, :w] = cv2.resize(lab, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
        out, olab, size = t(img, lab, np.random.default_rng(seed))
        assert size == (h, w)
        assert np.array_equal(olab.numpy(), big_lab[y0 : y0 + crop, x0 : x0 + crop])
        assert np.abs(out.numpy().transpose(1, 2, 0) - big[y0 : y0 + crop, x0 : x0 + crop]).max() <= 1.0


def test_bad_transform_arguments():
    with pytest.raises(ValueError, match="scale_range"):
        SegTransform(crop_size=5, train=True, scale_range=(1.4, 0.6))
    with pytest.raises(ValueError, match="rng"):
        SegTransform(crop_size=5, train=True)(_positions_image(3, 3), None)


# The authors' prototxts: every ImageSegData layer equals the dataset facts' transform.
EXP_TO_DATASET = {info.authors_exp: info for info in DATASETS.values() if info.authors_exp}
PLACEHOLDERS = {"NUM_LABELS": 21, "NUM_LABELS1": 21, "NET_ID": "net", "DATA_ROOT": "/data", "EXP": "voc12",
                "TRAIN_SET": "train", "TEST_SET": "val", "FEATURE_DIR": "/f"}


def _data_prototxts():
    root = require_shared("caffe", "configs", "authors")
    out = []
    for exp, info in EXP_TO_DATASET.items():
        for p in sorted((root / exp).glob("*/*.prototxt")):
            if p.name.startswith(("train", "test")):
                out.append((p, info))
    return out


def test_transforms_equal_every_authors_prototxt():
    cases = _data_prototxts()
    assert len(cases) >= 100
    checked = 0
    for path, info in cases:
        text = path.read_text()
        if "ImageSegData" not in text:
            continue
        for phase in ("TRAIN", "TEST"):
            if f"phase: {phase}" not in text:
                continue
            params = caffe_data_params(path, phase, PLACEHOLDERS)
            ours = SegTransform.for_dataset(info, train=phase == "TRAIN")
            theirs = SegTransform.from_prototxt(path, phase, PLACEHOLDERS)
            assert ours == theirs, f"{path} {phase}: {ours} != prototxt {theirs}"
            assert params["has_label"] == (phase == "TRAIN") and params["ignore_label"] == info.ignore_label
            checked += 1
    assert checked >= 100


def test_official_deeplab_v1_train_transform():
    p = require_shared("caffe", "configs", "deeplab_v1_official", "DeepLab-LargeFOV", "train.prototxt")
    t = SegTransform.from_prototxt(p, "TRAIN", PLACEHOLDERS)
    assert t == SegTransform.for_dataset(get_dataset_info("voc12"), train=True)
    params = caffe_data_params(p, "TRAIN", PLACEHOLDERS)
    assert params["batch_size"] == 30 and params["shuffle"]  # DeepLab v1 LargeFOV: batch 30, no iter_size


def test_prototxt_without_data_layer_is_named(tmp_path):
    from attn2scale.caffe import CaffeFormatError

    p = tmp_path / "net.prototxt"
    p.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }\n')
    with pytest.raises(CaffeFormatError, match=r"net\.prototxt: expected one ImageSegData layer in phase TRAIN"):
        caffe_data_params(p, "TRAIN")


def test_dataset_facts():
    voc = get_dataset_info("voc12")
    assert voc.num_labels == 21 and voc.splits["train_aug"] == 10582 and voc.splits["test"] == 1456
    assert get_dataset_info("person_part").num_labels == 7
    coco = get_dataset_info("coco_subset")
    assert coco.num_labels == 81 and coco.test_crop == 641 and coco.classes[1] == "person"
    ade = get_dataset_info("ade20k")
    lut = ade.lut()
    assert ade.num_labels == 150 and lut[0] == 255 and lut[1] == 0 and lut[150] == 149 and lut[151] == -1
    pal = voc.palette()
    assert pal[0].tolist() == [0, 0, 0] and pal[15].tolist() == [192, 128, 128] and pal[255].tolist() == [224, 224, 192]
    with pytest.raises(KeyError, match="known: voc12"):
        get_dataset_info("voc2007")


def test_authors_lists_have_the_known_sizes():
    lists = require_shared("caffe", "configs", "lists")
    for exp, info in EXP_TO_DATASET.items():
        for split, n in info.splits.items():
            f = Path(lists) / exp / f"{split}.txt"
            assert f.is_file(), f
            assert len(f.read_text().split()) // (1 if split in info.unlabelled else 2) == n, f
