"""PASCAL VOC 2012 + SBD -> DeepLab's SegmentationClassAug layout.

Rule (DeepLab's convention): ``train_aug`` = (SBD train ∪ SBD val ∪ VOC train)
minus VOC val; ``trainval_aug`` = train_aug ∪ VOC val; ``val`` = VOC val;
``test`` = VOC test (images only). An image's label is VOC's own
``SegmentationClass`` annotation where VOC has one (it keeps the 255 borders),
else SBD's ``cls/ID.mat`` (``GTcls.Segmentation``, no borders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..io import DataError, map_labels, read_label_raw, write_label_png
from ..registry import get_dataset_info
from .common import Report, lists_from_dir, pending, read_ids, require, run_jobs, verify_lists, write_split_lists
from .common import link_dir
from .matfile import field, load_mat

INFO = get_dataset_info("voc12")


def image_size(path: Path) -> tuple:
    """(height, width) from the image header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot decode the image: {exc}") from None


def sbd_segmentation(path: Path) -> np.ndarray:
    """SBD's class segmentation: ``GTcls.Segmentation`` of ``cls/ID.mat``."""
    gt = field(load_mat(path), "GTcls", path, "the file")
    seg = np.asarray(field(gt, "Segmentation", path, "GTcls"))
    if seg.ndim != 2:
        raise DataError(f"{path}: GTcls.Segmentation has shape {seg.shape}, expected a 2-D map")
    if seg.min() < 0 or seg.max() > 255:
        raise DataError(f"{path}: GTcls.Segmentation values {int(seg.min())}..{int(seg.max())} do not fit a label")
    return seg.astype(np.uint8)


def _label_job(job) -> str:
    kind, src, image, out = job
    raw = read_label_raw(src) if kind == "voc" else sbd_segmentation(src)
    label = map_labels(raw, INFO.lut(), src, INFO.num_labels)
    h, w = image_size(image)
    if label.shape != (h, w):
        raise DataError(f"{src}: label size {label.shape[1]}x{label.shape[0]} (WxH) differs from its image "
                        f"{image} {w}x{h}")
    write_label_png(out, label, INFO.palette())
    return kind


def prepare(src: Path, out: Path, *, sbd: Optional[Path], lists: Optional[str] = None, workers: int = 4) -> Report:
    if sbd is None:
        raise DataError("voc12 needs --sbd: the SBD release's dataset folder (benchmark_RELEASE/dataset, with cls/)")
    src, sbd, out = Path(src), Path(sbd), Path(out)
    jpeg = require(src / "JPEGImages", "the VOC2012 JPEGImages folder")
    voc_seg = require(src / "SegmentationClass", "the VOC2012 SegmentationClass folder")
    sets = src / "ImageSets" / "Segmentation"
    voc_train = read_ids(sets / "train.txt", "VOC's ImageSets/Segmentation/train.txt")
    voc_val = read_ids(sets / "val.txt", "VOC's ImageSets/Segmentation/val.txt")
    require(sbd / "cls", "the SBD cls folder (ID.mat class segmentations)", "--sbd")
    sbd_ids = read_ids(sbd / "train.txt", "SBD's train.txt", "--sbd") + read_ids(sbd / "val.txt", "SBD's val.txt",
                                                                                  "--sbd")
    val = sorted(set(voc_val))
    train_aug = sorted((set(sbd_ids) | set(voc_train)) - set(val))
    report = Report("voc12")
    if lists is not None:  # the authors' own lists decide which images
        train_aug, val = lists_from_dir(lists, "train_aug"), lists_from_dir(lists, "val")
        report.notes.append(f"lists taken from {lists}")
    test_file = sets / "test.txt"
    test = read_ids(test_file, "VOC's test list") if test_file.is_file() else None
    if test is None:
        report.notes.append(f"test list not written: {test_file} is absent (it comes with the VOC2012 test "
                            "download; unpack it into --src and rerun)")
    voc_labelled = set(voc_train) | set(voc_val)
    (out / INFO.label_dir).mkdir(parents=True, exist_ok=True)
    jobs = []
    for name in sorted(set(train_aug) | set(val)):
        kind, lab_src = ("voc", voc_seg / f"{name}.png") if name in voc_labelled else ("sbd", sbd / "cls" / f"{name}.mat")
        jobs.append((kind, lab_src, jpeg / f"{name}.jpg", out / INFO.label_dir / f"{name}.png"))
    todo, report.done_before = pending(jobs, lambda j: j[3])
    report.written = len(run_jobs(_label_job, todo, workers, "voc12 labels"))
    report.notes.append(link_dir(jpeg, out / INFO.image_dir))

    def line(name, labelled=True):
        img = f"/{INFO.image_dir}/{name}.jpg"
        return f"{img} /{INFO.label_dir}/{name}.png" if labelled else img

    splits = {"train_aug": [line(n) for n in train_aug], "val": [line(n) for n in val],
              "trainval_aug": [line(n) for n in sorted(set(train_aug) | set(val))]}
    if test is not None:
        splits["test"] = [line(n, False) for n in test]
    write_split_lists(INFO, out, splits, report, absent_ok=("test",))
    verify_lists(INFO, out, report)
    return report
