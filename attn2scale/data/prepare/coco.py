"""COCO instance annotations -> semantic label PNGs for the authors' COCO subset.

Labels: 0 is background; the JSON's categories, sorted by id, are 1..K (for
COCO 2014: the 80 categories, checked against their known ids and names).
Overlap rule: an image's instances are painted from the largest ``area`` to
the smallest (ties: lower annotation id first), so a pixel covered by
several instances takes the smallest one's category; crowd regions (RLE)
are painted with their category like the others. Masks are decoded with
pycocotools (polygons and RLE).

The subset's images are the authors' lists (``--lists``: train_small and
val_small, naming COCO_train2014_* / COCO_val2014_* images); there is no rule
to re-derive them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ...fileio import symlink_atomic
from ..io import DataError, write_label_png
from ..registry import COCO_CATEGORIES, get_dataset_info
from .common import PrepareError, Report, lists_from_dir, pending, require, run_jobs, verify_lists, write_split_lists

INFO = get_dataset_info("coco_subset")
SPLIT_FILES = {"train_small": ("train2014", "instances_train2014.json"),
               "val_small": ("val2014", "instances_val2014.json")}


def _pycocotools_mask():
    try:
        from pycocotools import mask
    except ImportError:
        raise PrepareError("preparing COCO needs pycocotools: pip install -e .[coco] (or pip install pycocotools)") from None
    return mask


def read_coco_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise PrepareError(f"{path}: COCO annotation file not found") from None
    except (OSError, ValueError) as exc:
        raise PrepareError(f"{path}: not a readable COCO JSON: {exc}") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise PrepareError(f"{path}: COCO JSON has no {key!r} list")
    return data


def category_labels(categories: Sequence[dict], path: Path, *, skip_names=("background", "_background_"),
                    expected: Optional[Sequence] = None) -> Dict[int, int]:
    """COCO category id -> label: the categories sorted by id are 1..K (a category named
    background is label 0). ``expected`` ((id, name), ...) must then match exactly."""
    for k, c in enumerate(categories):
        _check_keys(c, ("id", "name"), f"category entry {k}", str(path))
    cats = sorted(((int(c["id"]), str(c["name"])) for c in categories), key=lambda c: c[0])
    mapping = {cid: 0 for cid, name in cats if name in skip_names}
    kept = [(cid, name) for cid, name in cats if name not in skip_names]
    if expected is not None and kept != list(expected):
        missing = sorted(set(expected) - set(kept))[:5]
        extra = sorted(set(kept) - set(expected))[:5]
        raise PrepareError(f"{path}: {len(kept)} categories, expected the {len(expected)} of COCO "
                           f"(missing e.g. {missing}, unexpected e.g. {extra})")
    mapping.update({cid: k for k, (cid, _) in enumerate(kept, 1)})
    return mapping


def _check_keys(entry, keys, what: str, where: str) -> None:
    if not isinstance(entry, dict) or any(k not in entry for k in keys):
        have = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise DataError(f"{where}: {what} lacks one of {list(keys)} (has {have})")


def _rle(seg, h: int, w: int, mask_api, what: str, where: str):
    """A segmentation (polygons, uncompressed or compressed RLE) as one RLE."""
    if isinstance(seg, list):
        # pycocotools reads a 4-number list as a box: a polygon needs 3 points or more
        if not seg or any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg):
            raise DataError(f"{where}: {what}: each polygon must list x, y pairs of at least 3 points")
        return mask_api.merge(mask_api.frPyObjects(seg, h, w))
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [h, w]:
            raise DataError(f"{where}: {what}: RLE size {seg['size']} differs from the image's {[h, w]}")
        return mask_api.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
    raise DataError(f"{where}: {what}: segmentation is neither polygons nor RLE")


def paint(image: dict, anns: List[dict], labels: Dict[int, int], where: str) -> np.ndarray:
    """The semantic label map of one image (uint8, 0 = background)."""
    mask_api = _pycocotools_mask()
    _check_keys(image, ("id", "file_name", "height", "width"), "an image entry", where)
    h, w = int(image["height"]), int(image["width"])
    for ann in anns:
        _check_keys(ann, ("id", "category_id", "segmentation"), f"an annotation of {image['file_name']}", where)
    out = np.zeros((h, w), np.uint8)
    for ann in sorted(anns, key=lambda a: (-float(a.get("area", 0.0)), int(a["id"]))):
        what = f"annotation {ann['id']} of {image['file_name']}"
        if int(ann["category_id"]) not in labels:
            raise DataError(f"{where}: {what} has category {ann['category_id']}, not in the JSON's categories")
        try:
            rle = _rle(ann["segmentation"], h, w, mask_api, what, where)
            with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword notice, not ours to fix
                warnings.simplefilter("ignore", DeprecationWarning)
                m = mask_api.decode(rle)
        except DataError:
            raise
        except Exception as exc:  # pycocotools raises TypeError/ValueError for malformed input
            raise DataError(f"{where}: {what}: cannot decode the segmentation: {exc}") from None
        out[m.reshape(h, w) > 0] = labels[int(ann["category_id"])]
    return out


def _label_job(job) -> str:
    image, anns, labels, image_path, out, where = job
    from .voc12 import image_size

    if image_size(image_path) != (int(image["height"]), int(image["width"])):
        raise DataError(f"{image_path}: size differs from the JSON's {image['height']}x{image['width']} ({where})")
    write_label_png(out, paint(image, anns, labels, where), INFO.palette())
    return image["file_name"]


def rasterize(ann_file: Path, image_root: Path, names: Sequence[str], out: Path, *, labels: Dict[int, int] = None,
              workers: int = 4, image_dir: str = "JPEGImages", label_dir: str = "SegmentationClass",
              data: Optional[dict] = None) -> tuple:
    """Write ``out/label_dir/NAME.png`` for every image ``NAME`` (file stem) of ``ann_file`` and link
    ``out/image_dir/NAME.jpg`` to its image under ``image_root``. Returns (written, done before)."""
    data = read_coco_json(ann_file) if data is None else data
    if labels is None:
        labels = category_labels(data["categories"], ann_file)
    for k, im in enumerate(data["images"]):
        _check_keys(im, ("id", "file_name", "height", "width"), f"image entry {k}", str(ann_file))
    by_stem = {Path(im["file_name"]).stem: im for im in data["images"]}
    anns: Dict[int, List[dict]] = {}
    for k, a in enumerate(data["annotations"]):
        _check_keys(a, ("id", "image_id", "category_id", "segmentation"), f"annotation entry {k}", str(ann_file))
        anns.setdefault(int(a["image_id"]), []).append(a)
    (out / label_dir).mkdir(parents=True, exist_ok=True)
    (out / image_dir).mkdir(parents=True, exist_ok=True)
    jobs = []
    for name in names:
        if name not in by_stem:
            raise PrepareError(f"{ann_file}: the listed image {name!r} is not in the JSON's images")
        im = by_stem[name]
        src = require(image_root / im["file_name"], f"the image of {name}")
        link = out / image_dir / f"{name}{Path(im['file_name']).suffix}"
        if not link.exists():
            symlink_atomic(src.resolve(), link)
        jobs.append((im, anns.get(int(im["id"]), []), labels, src, out / label_dir / f"{name}.png", str(ann_file)))
    todo, done = pending(jobs, lambda j: j[4])
    run_jobs(_label_job, todo, workers, f"{ann_file.name} labels")
    return len(todo), done


def prepare(src: Path, out: Path, *, lists: Optional[str] = None, workers: int = 4) -> Report:
    if lists is None:
        raise PrepareError("coco_subset needs --lists: the folder of the authors' train_small/val_small lists "
                           "(the COCO subset is defined by them)")
    _pycocotools_mask()
    src, out = Path(src), Path(out)
    report = Report("coco_subset")
    splits = {}
    for split, (folder, json_name) in SPLIT_FILES.items():
        names = lists_from_dir(lists, split)
        ann_file = require(src / "annotations" / json_name, f"the COCO 2014 annotations {json_name}")
        require(src / folder, f"the COCO {folder} image folder")
        data = read_coco_json(ann_file)
        labels = category_labels(data["categories"], ann_file, expected=COCO_CATEGORIES)
        written, done = rasterize(ann_file, src / folder, names, out, labels=labels, workers=workers,
                                  image_dir=INFO.image_dir, label_dir=INFO.label_dir, data=data)
        report.written += written
        report.done_before += done
        splits[split] = [f"/{INFO.image_dir}/{n}.jpg /{INFO.label_dir}/{n}.png" for n in names]
    write_split_lists(INFO, out, splits, report)
    verify_lists(INFO, out, report)
    return report
