"""Scores, the test protocol, eval/predict/visualize end to end on the real VOC sample."""

import json
import shutil
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from attn2scale import ops
from attn2scale.cli.eval import main as eval_main
from attn2scale.cli.predict import main as predict_main
from attn2scale.cli.score import main as score_main
from attn2scale.cli.visualize import main as visualize_main
from attn2scale.data.registry import voc_palette
from attn2scale.engine.config import load_config
from attn2scale.engine.inference import InferenceSettings, labels_from_scores, multiscale_scores
from attn2scale.engine.metrics import ConfusionMatrix
from attn2scale.engine.builders import build_model_for

from conftest import REPO, require_shared

# ---- metrics --------------------------------------------------------------------------


def test_hand_checked_scores():
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 1, 1, 1, 0, 2, 3]), torch.tensor([0, 0, 1, 1, 2, 255, 255]))
    assert cm.matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    s = cm.scores(["a", "b", "c", "d"])
    # IoU: a 1/(1+1+1), b 2/(2+1), c 0/1, d absent (no union): mIoU over a, b, c
    iou = s["per_class_iou"]
    assert iou["d"] is None and [iou[k] for k in "abc"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert s["pixel_acc"] == pytest.approx(3 / 5) and s["mean_acc"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert s["fwiou"] == pytest.approx(2 / 5 * 1 / 3 + 2 / 5 * 2 / 3)


def _numpy_scores(pred, gt, n, ignore=255):
    """Independent: per class, count pixels with loops over classes."""
    keep = gt != ignore
    p, g = pred[keep], gt[keep]
    ious, accs, freq = [], [], []
    for c in range(n):
        tp = np.sum((p == c) & (g == c))
        union = np.sum((p == c) | (g == c))
        if union:
            ious.append((c, tp / union))
        if np.sum(g == c):
            accs.append(tp / np.sum(g == c))
        freq.append(np.sum(g == c) / g.size)
    miou = np.mean([v for _, v in ious])
    fw = sum(freq[c] * v for c, v in ious)
    return miou, np.mean(p == g), np.mean(accs), fw


def test_random_maps_against_numpy():
    rng = np.random.default_rng(0)
    cm = ConfusionMatrix(6)
    preds, gts = [], []
    for _ in range(5):
        g = rng.integers(0, 6, (13, 17))
        g[rng.random(g.shape) < 0.1] = 255
        g[g == 4] = 5  # class 4 absent from the ground truth
        p = np.where(rng.random(g.shape) < 0.7, np.where(g == 255, 0, g), rng.integers(0, 6, g.shape))
        cm.update(p, g)
        preds.append(p.ravel())
        gts.append(g.ravel())
    miou, pa, ma, fw = _numpy_scores(np.concatenate(preds), np.concatenate(gts), 6)
    s = cm.scores()
    assert (s["miou"], s["pixel_acc"], s["mean_acc"], s["fwiou"]) == pytest.approx((miou, pa, ma, fw), rel=1e-12)


def test_labels_outside_the_classes_are_named():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="x.png: ground truth holds label 7, outside \\[0, 3\\)"):
        cm.update(np.zeros((2, 2)), np.array([[0, 7], [1, 255]]), where="x.png")
    with pytest.raises(ValueError, match="differ in size"):
        cm.update(np.zeros((2, 3)), np.zeros((2, 2)))


# ---- score on real label PNGs ------------------------------------------------------------------


def _gt_dir():
    return require_shared("data", "voc2012_sample", "SegmentationClassAug")


def test_score_self_and_perturbed_and_rgb(tmp_path, capsys):
    gt = _gt_dir()
    pred = tmp_path / "pred"
    shutil.copytree(gt, pred)
    out = tmp_path / "s.json"
    assert score_main(["--pred", str(pred), "--gt", str(gt), "--num-classes", "21", "--json", str(out),
                       "--dataset", "voc12"]) == 0
    s = json.loads(out.read_text())
    assert s["miou"] == 1.0 and s["pixel_acc"] == 1.0 and s["fwiou"] == 1.0
    # perturb: in one file every person pixel becomes background, and write it as RGB colours
    name = "2008_000700"
    lab = np.asarray(Image.open(gt / f"{name}.png")).copy()
    assert (lab == 15).any()
    lab[lab == 15] = 0
    Image.fromarray(voc_palette()[lab]).save(pred / f"{name}.png")  # colour-coded; 255 as (224, 224, 192)
    assert score_main(["--pred", str(pred), "--gt", str(gt), "--num-classes", "21", "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    gts = [np.asarray(Image.open(p)) for p in sorted(gt.glob("*.png"))]
    preds = [lab if p.stem == name else g for p, g in zip(sorted(gt.glob("*.png")), gts)]
    miou, pa, ma, fw = _numpy_scores(np.concatenate([p.ravel() for p in preds]),
                                     np.concatenate([g.ravel() for g in gts]), 21)
    assert (s["miou"], s["pixel_acc"], s["mean_acc"], s["fwiou"]) == pytest.approx((miou, pa, ma, fw), rel=1e-12)
    assert s["miou"] < 1.0
    capsys.readouterr()


def test_score_names_missing_missized_and_out_of_range(tmp_path, capsys):
    gt = _gt_dir()
    pred = tmp_path / "pred"
    shutil.copytree(gt, pred)
    (pred / "2008_000700.png").unlink()
    (pred / "2008_000726.png").unlink()
    assert score_main(["--pred", str(pred), "--gt", str(gt), "--num-classes", "21"]) == 1
    assert "2 of 22 predictions missing" in capsys.readouterr().err
    shutil.copy(gt / "2008_000652.png", pred / "2008_000700.png")
    shutil.copy(gt / "2008_000726.png", pred / "2008_000726.png")
    assert score_main(["--pred", str(pred), "--gt", str(gt), "--num-classes", "21"]) == 1
    assert "2008_000700 (prediction 320x213, ground truth 500x375)" in capsys.readouterr().err
    shutil.copy(gt / "2008_000700.png", pred / "2008_000700.png")
    assert score_main(["--pred", str(pred), "--gt", str(gt), "--num-classes", "10"]) == 1
    assert "holds label 15, outside [0, 10)" in capsys.readouterr().err


# ---- the test protocol -------------------------------------------------------------------------


def _slim(tmp_path, merge="attention"):
    import yaml

    root = require_shared("data", "voc2012_sample")
    cfg = {"_base_": str(REPO / "attn2scale" / "configs" / "voc12_val_imagenet" / f"{merge}_s3_esupv.yaml"),
           "name": "slim", "model": {"width_div": 16}, "init": {"weights": None},
           "data": {"root": str(root), "workers": 0}}
    path = tmp_path / f"slim_{merge}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(path)
    torch.manual_seed(0)
    model = build_model_for(config).eval()
    with torch.no_grad():  # fc8 with a visible spread, so the labels are not all one class
        model.backbone.fc8.weight.normal_(0, 1)
    weights = tmp_path / f"w_{merge}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return path, config, model, weights


def _reference_ms_flip(model, image, scales, flip):
    """Plain PyTorch: align-corners bilinear everywhere, mean of the scores, zoom 8, argmax."""
    h, w = image.shape[-2:]
    runs = []
    for s in scales:
        size = (int(round((h - 1) * s)) + 1, int(round((w - 1) * s)) + 1)
        x = image if s == 1 else F.interpolate(image, size=size, mode="bilinear", align_corners=True)
        for fl in ([False, True] if flip else [False]):
            sc = model(x.flip(-1) if fl else x)["fusion"]
            sc = sc.flip(-1) if fl else sc
            runs.append(sc if not runs else F.interpolate(sc, size=runs[0].shape[-2:], mode="bilinear",
                                                          align_corners=True))
    mean = torch.stack(runs).mean(0)
    gh, gw = mean.shape[-2:]
    up = F.interpolate(mean, size=((gh - 1) * 8 + 1, (gw - 1) * 8 + 1), mode="bilinear", align_corners=True)
    return up, up.argmax(1)


class StrideEight(torch.nn.Module):
    """A stand-in with the models' output contract: varied scores on the stride-8 grid."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv2d(6, 21, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        g = F.interpolate(x, size=((h - 1) // 8 + 1, (w - 1) // 8 + 1), mode="bilinear", align_corners=True)
        return {"fusion": self.head(torch.cat([g, torch.sin(g / 7)], 1))}


def test_multiscale_flip_inference_equals_plain_pytorch():
    torch.manual_seed(0)
    model = StrideEight()
    image = torch.randn(2, 3, 97, 97).cumsum(-1) * 10  # smooth structure, different left and right
    sizes = torch.tensor([[97, 97], [90, 70]])
    with torch.no_grad():
        ours = labels_from_scores(multiscale_scores(model, image, InferenceSettings((1.0, 0.75, 0.5), True)), sizes,
                                  image.shape)
        up, ref = _reference_ms_flip(model, image, (1.0, 0.75, 0.5), True)
    top2 = up.topk(2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]) < 1e-4 * up.abs().amax()
    for k, (h, w) in enumerate(sizes.tolist()):
        differ = ours[k] != ref[k, :h, :w]
        assert not bool((differ & ~near_tie[k, :h, :w]).any()), int(differ.sum())
        assert len(ours[k].unique()) > 1


def test_upsample_argmax_equals_interpolate_argmax_away_from_ties():
    x = torch.randn(2, 21, 17, 13)
    size = ((17 - 1) * 8 + 1, (13 - 1) * 8 + 1)
    ours = ops.upsample_argmax(x, size)
    up = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    top2 = up.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-5
    assert torch.equal(ours[clear], up.argmax(1)[clear]) and clear.float().mean() > 0.99


# ---- eval, predict, visualize through the CLI ------------------------------------------------


def _assert_protocol(model, root, name, pred, stride):
    """The protocol written out independently: mean-padded input (the dataset's transform),
    the model, align-corners zoom by the stride, argmax, crop."""
    from attn2scale.data import SegDataset, pad_collate

    ds = SegDataset(root, "train_aug", "voc12")
    b = pad_collate([ds[[e.name for e in ds.entries].index(name)]])
    with torch.no_grad():
        sc = model(b["image"])["fusion"]
    h, w = sc.shape[-2:]
    up = F.interpolate(sc, size=((h - 1) * stride + 1, (w - 1) * stride + 1), mode="bilinear", align_corners=True)
    assert up.shape[-2:] == b["image"].shape[-2:]
    ih, iw = b["size"][0].tolist()
    ref = up.argmax(1)[0, :ih, :iw].numpy()
    top2 = up.topk(2, dim=1).values[0, :, :ih, :iw]
    clear = ((top2[0] - top2[1]) > 1e-4 * up.abs().max()).numpy()
    assert pred.shape == (ih, iw) and np.array_equal(pred[clear], ref[clear]) and clear.mean() > 0.9


def test_eval_end_to_end_resumes_and_refuses_other_weights(tmp_path, capsys):
    cfg, config, model, weights = _slim(tmp_path)
    out = tmp_path / "ev"
    assert eval_main(["--config", str(cfg), "--weights", str(weights), "--split", "train_aug", "--out", str(out),
                      "--batch", "2", "--no-progress"]) == 0
    s = json.loads((out / "scores.json").read_text())
    assert {"miou", "pixel_acc", "mean_acc", "fwiou", "per_class_iou"} <= set(s) and 0 <= s["miou"] <= 1
    root = require_shared("data", "voc2012_sample")
    names = [l.split()[0][12:-4] for l in (root / "list" / "train_aug.txt").read_text().splitlines()]
    for n in names:
        pred = Image.open(out / "pred" / f"{n}.png")
        img = Image.open(root / "JPEGImages" / f"{n}.jpg")
        assert pred.mode == "P" and pred.size == img.size
        assert np.asarray(pred.getpalette()[:63]).tolist() == voc_palette()[:21].reshape(-1).tolist()
    # cropped back: the prediction equals plain PyTorch's zoom x8 + argmax of the model's scores
    # on the padded image, cropped to the image (away from near-ties)
    _assert_protocol(model, root, names[0], np.asarray(Image.open(out / "pred" / f"{names[0]}.png")), stride=8)
    # the confusion matrix equals the scores of the PNGs via `score`
    assert score_main(["--pred", str(out / "pred"), "--gt", str(root / "SegmentationClassAug"), "--num-classes",
                       "21", "--list", str(root / "list" / "train_aug.txt"), "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["miou"] == pytest.approx(s["miou"], rel=1e-12)
    # rerun: nothing predicted again; another model into the same folder is refused
    capsys.readouterr()
    assert eval_main(["--config", str(cfg), "--weights", str(weights), "--split", "train_aug", "--out", str(out),
                      "--no-progress"]) == 0
    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() * 2 for k, v in model.state_dict().items()}, str(other))
    assert eval_main(["--config", str(cfg), "--weights", str(other), "--split", "train_aug", "--out", str(out),
                      "--no-progress"]) == 1
    assert "holds predictions of another evaluation (differs in weights_sha256)" in capsys.readouterr().err


def test_weights_that_do_not_fit_are_listed(tmp_path, capsys):
    cfg, _, model, _ = _slim(tmp_path)
    bad = tmp_path / "bad.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "att_fc" not in k}
    state["backbone.fc8.weight"] = torch.zeros(5, 64, 1, 1)
    save_file(state, str(bad))
    assert eval_main(["--config", str(cfg), "--weights", str(bad), "--out", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert "missing: attention.att_fc.bias, attention.att_fc.weight" in err
    assert "backbone.fc8.weight (5, 64, 1, 1) vs model (21, 64, 1, 1)" in err


def test_predict_with_server_layout_and_bad_image(tmp_path, capsys):
    cfg, _, _, weights = _slim(tmp_path)
    root = require_shared("data", "voc2012_sample")
    images = [str(root / "JPEGImages" / n) for n in ("2008_000700.jpg", "2011_000003.jpg")]
    out = tmp_path / "p"
    assert predict_main(images + ["--config", str(cfg), "--weights", str(weights), "--out", str(out),
                                  "--server", "--flip"]) == 0
    for f in images:
        name = f.rsplit("/", 1)[1][:-4]
        size = Image.open(f).size
        assert Image.open(out / f"{name}.png").size == size and Image.open(out / f"{name}_overlay.png").size == size
        assert (out / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls" / f"{name}.png").is_file()
    with tarfile.open(out / "results.tgz") as tar:
        assert "results/VOC2012/Segmentation/comp6_test_cls/2008_000700.png" in tar.getnames()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert predict_main([str(broken), "--config", str(cfg), "--weights", str(weights), "--out", str(out)]) == 1
    assert "broken.jpg: cannot decode the image" in capsys.readouterr().err


def test_visualize_attention_panels_sum_to_one(tmp_path):
    cfg, _, _, weights = _slim(tmp_path)
    root = require_shared("data", "voc2012_sample")
    img = root / "JPEGImages" / "2008_000700.jpg"
    out = tmp_path / "v"
    assert visualize_main([str(img), "--config", str(cfg), "--weights", str(weights), "--out", str(out)]) == 0
    png = out / "2008_000700_attention.png"
    assert Image.open(png).format == "PNG"
    arrays = np.load(out / "2008_000700_attention.npz")
    att = arrays["attention"]
    w, h = Image.open(img).size
    assert att.shape == (3, h, w) and np.allclose(att.sum(0), 1.0, atol=1e-5) and (att >= 0).all()
    assert np.array_equal(arrays["winner"], att.argmax(0)) and arrays["prediction"].shape == (h, w)
    cfg_max, _, _, w_max = _slim(tmp_path, "max")
    assert visualize_main([str(img), "--config", str(cfg_max), "--weights", str(w_max), "--out", str(out)]) == 1


def test_crf_without_the_extra_says_how_to_install(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # as if pydensecrf2 were not installed
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    cfg, _, _, weights = _slim(tmp_path)
    assert eval_main(["--config", str(cfg), "--weights", str(weights), "--out", str(tmp_path / "e"), "--crf"]) == 1
    assert "pip install -e .[crf]" in capsys.readouterr().err


def test_crf_parameters_from_a_prototxt(tmp_path):
    from attn2scale.engine.crf import DenseCRFParams

    assert DenseCRFParams() == DenseCRFParams(10, 4.0, 49.0, 5.0, 3.0, 3.0)  # the paper's submission
    p = tmp_path / "test.prototxt"
    p.write_text('layer { name: "crf" type: "DenseCRF" bottom: "a" bottom: "b" top: "c" dense_crf_param { '
                 'max_iter: 5 pos_w: 2 pos_xy_std: 1 bi_w: 6 bi_xy_std: 121 bi_rgb_std: 7 } }\n')
    assert DenseCRFParams.from_prototxt(p) == DenseCRFParams(5, 6.0, 121.0, 7.0, 2.0, 1.0)
    authors = require_shared("caffe", "configs", "authors", "voc12",
                             "vgg128_noup_pool3_20M_largewin_coco_attention13_2", "test.prototxt")
    from attn2scale.caffe import CaffeFormatError

    with pytest.raises(CaffeFormatError, match="no DenseCRF layer"):  # theirs is commented out
        DenseCRFParams.from_prototxt(authors, {"NUM_LABELS": 21})


def test_crf_snaps_noisy_labels_to_image_edges():
    pytest.importorskip("pydensecrf.densecrf", reason="the [crf] extra (pydensecrf2) is not installed")
    from attn2scale.engine.crf import DenseCRFParams, dense_crf

    rng = np.random.default_rng(0)
    h, w = 60, 80
    truth = np.zeros((h, w), np.int64)
    truth[:, 40:] = 1
    image = np.where(truth[..., None] == 1, 230, 20).astype(np.uint8).repeat(3, -1)
    p1 = np.clip(np.where(truth == 1, 0.6, 0.4) + rng.normal(0, 0.2, (h, w)), 0.01, 0.99)
    prob = np.stack([1 - p1, p1]).astype(np.float32)
    noisy = prob.argmax(0)
    out = dense_crf(image, prob, DenseCRFParams())
    assert (noisy == truth).mean() < 0.85 and (out == truth).mean() > 0.98
    assert np.array_equal(dense_crf(image, prob, DenseCRFParams(max_iter=0)), noisy)  # no iteration: the unary


def test_eval_with_crf(tmp_path):
    pytest.importorskip("pydensecrf.densecrf", reason="the [crf] extra (pydensecrf2) is not installed")
    cfg, _, _, weights = _slim(tmp_path)
    out = tmp_path / "crf"
    assert eval_main(["--config", str(cfg), "--weights", str(weights), "--out", str(out), "--crf",
                      "--no-progress"]) == 0
    assert json.loads((out / "eval.json").read_text())["crf"]["bi_xy_std"] == 49.0
    assert json.loads((out / "scores.json").read_text())["crf"] is True


def test_stride_four_model_is_zoomed_by_four(tmp_path):
    """The follow-up model's multi-stage net scores at stride 4 (129 x 129 at 513)."""
    import yaml

    root = require_shared("data", "voc2012_sample")
    cfg_path = tmp_path / "recalib.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "_base_": str(REPO / "attn2scale" / "configs" / "recalib_voc12" / "recalib.yaml"), "name": "r",
        "model": {"width_div": 16}, "init": {"weights": None}, "data": {"root": str(root), "workers": 0}}))
    torch.manual_seed(0)
    model = build_model_for(load_config(cfg_path)).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1)
    weights = tmp_path / "r.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = tmp_path / "ev"
    assert eval_main(["--config", str(cfg_path), "--weights", str(weights), "--split", "train_aug", "--out", str(out),
                      "--no-progress"]) == 0
    name = "2008_000652"
    _assert_protocol(model, root, name, np.asarray(Image.open(out / "pred" / f"{name}.png")), stride=4)


def test_score_maps_ade20k_ground_truth(tmp_path):
    from attn2scale.data.io import write_label_png

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 151, (20, 30)).astype(np.uint8)  # stored: 0 other, 1..150
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    write_label_png(tmp_path / "gt" / "a.png", raw)
    write_label_png(tmp_path / "pred" / "a.png", np.where(raw == 0, 7, raw - 1).astype(np.uint8))  # training ids
    out = tmp_path / "s.json"
    assert score_main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "150",
                       "--dataset", "ade20k", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["miou"] == 1.0


def test_eval_cache_refuses_another_model(tmp_path, capsys):
    cfg, _, _, weights = _slim(tmp_path)
    out = tmp_path / "ev"
    assert eval_main(["--config", str(cfg), "--weights", str(weights), "--out", str(out), "--no-progress"]) == 0
    assert eval_main(["--config", str(cfg), "--weights", str(weights), "--out", str(out), "--no-progress",
                      "--set", "model.options.att_dropout=0.3"]) == 1
    assert "differs in model" in capsys.readouterr().err
