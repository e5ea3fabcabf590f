"""ADE20K SceneParsing (ADEChallengeData2016) as released: lists and links only.

The release already has one label PNG per image (0 = "other", 1..150 the
classes); the dataset maps stored values to training ids on reading
(0 -> 255 ignored, k -> k - 1; ``DatasetInfo.label_lut``). Preparation links
``images/`` and ``annotations/`` into the root, writes ``list/train.txt`` and
``list/val.txt``, and reads every label once to check its values and size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..io import DataError, map_labels, read_label_raw
from ..registry import get_dataset_info
from .common import PrepareError, Report, link_dir, require, run_jobs, verify_lists, write_split_lists
from .voc12 import image_size

INFO = get_dataset_info("ade20k")
FOLDERS = {"train": "training", "val": "validation"}


def _check_job(job) -> str:
    image, label = job
    lab = map_labels(read_label_raw(label), INFO.lut(), label, INFO.num_labels)
    h, w = image_size(image)
    if lab.shape != (h, w):
        raise DataError(f"{label}: label size {lab.shape[1]}x{lab.shape[0]} (WxH) differs from {image} {w}x{h}")
    return label.name


def prepare(src: Path, out: Path, *, lists: Optional[str] = None, workers: int = 4) -> Report:
    if lists is not None:
        raise PrepareError("ade20k: --lists is not used; the lists are the release's training/validation folders")
    src, out = Path(src), Path(out)
    report = Report("ade20k")
    splits, jobs = {}, []
    for split, folder in FOLDERS.items():
        img_dir = require(src / "images" / folder, f"the ADEChallengeData2016 images/{folder} folder")
        lab_dir = require(src / "annotations" / folder, f"the ADEChallengeData2016 annotations/{folder} folder")
        names = sorted(p.stem for p in img_dir.glob("*.jpg"))
        if not names:
            raise PrepareError(f"--src: {img_dir} has no .jpg images")
        for n in names:
            if not (lab_dir / f"{n}.png").is_file():
                raise PrepareError(f"{lab_dir / (n + '.png')}: the annotation of {img_dir / (n + '.jpg')} is missing")
            jobs.append((img_dir / f"{n}.jpg", lab_dir / f"{n}.png"))
        splits[split] = [f"/images/{folder}/{n}.jpg /annotations/{folder}/{n}.png" for n in names]
    run_jobs(_check_job, jobs, workers, "ade20k check")
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("images", "annotations"):
        report.notes.append(link_dir(src / sub, out / sub))
    write_split_lists(INFO, out, splits, report)
    verify_lists(INFO, out, report)
    return report
