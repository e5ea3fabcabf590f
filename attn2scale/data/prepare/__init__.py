"""``attn2scale prepare-data``: public dataset downloads -> the DeepLab layout.

Each preparer turns one raw distribution into ``ROOT/`` with images, label
PNGs (palette PNGs whose indices are the training ids) and ``ROOT/list/*.txt``
in DeepLab's list format; see each module's docstring for its rules. Every
output file is written atomically, so a rerun skips what is done.
"""

from __future__ import annotations

from typing import Callable, Dict

from . import ade20k, coco, person_part, voc12
from .common import PrepareError, Report

# dataset name (attn2scale.data.registry) -> preparer; the options each accepts.
PREPARERS: Dict[str, Callable[..., Report]] = {
    "voc12": voc12.prepare,
    "person_part": person_part.prepare,
    "coco_subset": coco.prepare,
    "ade20k": ade20k.prepare,
}
SOURCES = {
    "voc12": "--src VOCdevkit/VOC2012 (JPEGImages, SegmentationClass, ImageSets/Segmentation) "
             "--sbd benchmark_RELEASE/dataset (cls/, train.txt, val.txt)",
    "person_part": "--src VOCdevkit/VOC2010 (JPEGImages, ImageSets/Main) [--parts Annotations_Part, "
                   "default SRC/Annotations_Part]",
    "coco_subset": "--src COCO root (train2014/, val2014/, annotations/instances_{train,val}2014.json) "
                   "--lists the authors' list folder (train_small.txt, val_small.txt)",
    "ade20k": "--src ADEChallengeData2016 (images/, annotations/)",
}


def prepare_dataset(name: str, src, out, **options) -> Report:
    if name not in PREPARERS:
        raise PrepareError(f"unknown dataset {name!r}; known: {', '.join(PREPARERS)}")
    return PREPARERS[name](src, out, **options)


__all__ = ["PREPARERS", "SOURCES", "PrepareError", "Report", "prepare_dataset"]
