"""PASCAL-Part ``Annotations_Part/*.mat`` -> PASCAL-Person-Part label maps.

Merge rule (``PART_TO_LABEL``): the person parts of PASCAL-Part become six
labels: head (head, hair, eyes, ears, eyebrows, nose, mouth), torso (torso,
neck), upper arms (luarm, ruarm), lower arms (llarm, rlarm, lhand, rhand),
upper legs (luleg, ruleg), lower legs (llleg, rlleg, lfoot, rfoot). This is
the 6-part grouping of Chen et al.'s PASCAL-Person-Part ("Detect What You
Can", CVPR 2014), as tabulated by the PASCAL multi-task loader of
facebookresearch/astmt (``HUMAN_PART[6]``). Part masks are painted in the
file's order (objects, then their parts), a later part winning where two
overlap; every other pixel, including person pixels outside any part and
persons without part annotations, is background (0).

Splits: VOC 2010 ``ImageSets/Main/{train,val}.txt`` restricted to images with
at least one annotated person part, unless ``--lists`` gives the authors' lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ...fileio import write_text_atomic
from ..io import DataError, write_label_png
from ..registry import get_dataset_info
from .common import Report, link_dir, lists_from_dir, pending, read_ids, require, run_jobs, verify_lists
from .common import write_split_lists
from .matfile import as_list, field, load_mat
from .voc12 import image_size

INFO = get_dataset_info("person_part")

_GROUPS = {
    1: ("head", "hair", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth"),
    2: ("torso", "neck"),
    3: ("luarm", "ruarm"),
    4: ("llarm", "rlarm", "lhand", "rhand"),
    5: ("luleg", "ruleg"),
    6: ("llleg", "rlleg", "lfoot", "rfoot"),
}
PART_TO_LABEL = {part: label for label, parts in _GROUPS.items() for part in parts}


def _string(value, path, what: str) -> str:
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        value = "".join(value.reshape(-1).tolist())
    if not isinstance(value, str):
        raise DataError(f"{path}: {what} is not a string ({type(value).__name__})")
    return value


def person_part_label(mat_path: Path):
    """(label map uint8, number of person parts painted) of one annotation file."""
    anno = field(load_mat(mat_path), "anno", mat_path, "the file")
    objects = as_list(field(anno, "objects", mat_path, "anno"))
    label, painted = None, 0
    for k, obj in enumerate(objects):
        mask = np.asarray(field(obj, "mask", mat_path, f"object {k}"))
        if label is None:
            label = np.zeros(mask.shape, np.uint8)
        if mask.shape != label.shape:
            raise DataError(f"{mat_path}: object {k} mask {mask.shape} differs from object 0's {label.shape}")
        if _string(field(obj, "class", mat_path, f"object {k}"), mat_path, f"object {k} class") != "person":
            continue
        for j, part in enumerate(as_list(field(obj, "parts", mat_path, f"object {k}"))):
            name = _string(field(part, "part_name", mat_path, f"object {k} part {j}"), mat_path, "part_name")
            if name not in PART_TO_LABEL:
                raise DataError(f"{mat_path}: object {k} (person) has part {name!r}, which is not a person part "
                                f"({', '.join(sorted(PART_TO_LABEL))})")
            pmask = np.asarray(field(part, "mask", mat_path, f"object {k} part {name}"))
            if pmask.shape != label.shape:
                raise DataError(f"{mat_path}: part {name} mask {pmask.shape} differs from the object mask {label.shape}")
            label[pmask > 0] = PART_TO_LABEL[name]
            painted += 1
    if label is None:
        raise DataError(f"{mat_path}: anno.objects is empty; the image size cannot be known")
    return label, painted


def _label_job(job):
    name, mat, image, out, write = job
    label, painted = person_part_label(mat)
    h, w = image_size(image)
    if label.shape != (h, w):
        raise DataError(f"{mat}: annotation size {label.shape[1]}x{label.shape[0]} (WxH) differs from {image} {w}x{h}")
    if write and painted:
        write_label_png(out, label, INFO.palette())
    return name, painted


def prepare(src: Path, out: Path, *, parts: Optional[Path] = None, lists: Optional[str] = None,
            workers: int = 4) -> Report:
    src, out = Path(src), Path(out)
    jpeg = require(src / "JPEGImages", "the VOC2010 JPEGImages folder")
    parts = Path(parts) if parts is not None else src / "Annotations_Part"
    require(parts, "the PASCAL-Part Annotations_Part folder (ID.mat)", "--parts" if parts != src else "--src")
    report = Report("person_part")
    if lists is not None:
        split_ids = {s: lists_from_dir(lists, s) for s in ("train", "val")}
        report.notes.append(f"lists taken from {lists}")
    else:
        main = src / "ImageSets" / "Main"
        split_ids = {s: read_ids(main / f"{s}.txt", f"VOC2010's ImageSets/Main/{s}.txt") for s in ("train", "val")}
    (out / INFO.label_dir).mkdir(parents=True, exist_ok=True)
    names = sorted(set(split_ids["train"]) | set(split_ids["val"]))
    outs = {n: out / INFO.label_dir / f"{n}.png" for n in names}
    # Images found without person parts by an earlier run: nothing was written for them.
    marker = out / INFO.label_dir / ".no_person_parts.txt"
    known_empty = set(marker.read_text().split()) if marker.is_file() else set()
    jobs = [(n, parts / f"{n}.mat", jpeg / f"{n}.jpg", outs[n], True) for n in names if n not in known_empty]
    todo, report.done_before = pending(jobs, lambda j: j[3])
    results = dict(run_jobs(_label_job, todo, workers, "person_part labels"))
    report.written = sum(1 for p in results.values() if p)
    known_empty |= {n for n, p in results.items() if not p}
    write_text_atomic(marker, "".join(f"{n}\n" for n in sorted(known_empty)))
    has_parts = {n for n in names if outs[n].exists()}
    if lists is not None:  # the authors' list is authoritative: an image without parts is all background
        for n in sorted(set(names) - has_parts):
            _write_background(jpeg / f"{n}.jpg", outs[n])
            report.notes.append(f"{n}: in the given lists but has no person part; written as all background")
        has_parts = set(names)
    report.notes.append(link_dir(jpeg, out / INFO.image_dir))

    def lines(ids):
        return [f"/{INFO.image_dir}/{n}.jpg /{INFO.label_dir}/{n}.png" for n in ids if n in has_parts]

    splits = {s: lines(split_ids[s]) for s in ("train", "val")}
    splits["trainval"] = lines(sorted(set(split_ids["train"]) | set(split_ids["val"])))
    write_split_lists(INFO, out, splits, report)
    verify_lists(INFO, out, report)
    return report


def _write_background(image: Path, out: Path) -> None:
    h, w = image_size(image)
    write_label_png(out, np.zeros((h, w), np.uint8), INFO.palette())
