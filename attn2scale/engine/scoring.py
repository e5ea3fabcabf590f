"""Scoring label images against ground truth, as the VOC devkit does: files matched by
name, every missing or mis-sized prediction listed (none skipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data.io import DataError, map_labels, read_label_any
from .metrics import ConfusionMatrix


def score_directories(pred_dir: Path, gt_dir: Path, num_classes: int, palette: np.ndarray, *,
                      names: Optional[Sequence[str]] = None, ignore_label: int = 255,
                      gt_lut: Optional[np.ndarray] = None) -> ConfusionMatrix:
    """The confusion matrix of ``pred_dir/NAME.png`` against ``gt_dir/NAME.png`` for every
    ground-truth file (or every name given). Missing and mis-sized predictions are errors
    listing every such name. ``gt_lut`` maps stored ground-truth values to training ids
    (a dataset's table: ADE20K stores 0 = other, 1..150); predictions are training ids."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for d, what in ((pred_dir, "--pred"), (gt_dir, "--gt")):
        if not d.is_dir():
            raise DataError(f"{what}: folder {d} not found")
    if names is None:
        names = sorted(p.stem for p in gt_dir.glob("*.png"))
        if not names:
            raise DataError(f"--gt: {gt_dir} holds no .png ground truth")
    missing = [n for n in names if not (pred_dir / f"{n}.png").is_file()]
    if missing:
        raise DataError(f"{len(missing)} of {len(names)} predictions missing in {pred_dir}: "
                        f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
    cm = ConfusionMatrix(num_classes, ignore_label)
    mis_sized = []
    for n in names:
        gt = read_label_any(gt_dir / f"{n}.png", palette)
        if gt_lut is not None:
            gt = map_labels(gt, gt_lut, gt_dir / f"{n}.png", num_classes)
        pred = read_label_any(pred_dir / f"{n}.png", palette)
        if gt.shape != pred.shape:
            mis_sized.append(f"{n} (prediction {pred.shape[1]}x{pred.shape[0]}, ground truth {gt.shape[1]}x{gt.shape[0]})")
            continue
        try:
            cm.update(pred, gt, where=str(pred_dir / f"{n}.png"))
        except ValueError as exc:
            raise DataError(f"{exc}; is --num-classes {num_classes} right?") from None
    if mis_sized:
        raise DataError(f"{len(mis_sized)} predictions differ in size from their ground truth: "
                        f"{'; '.join(mis_sized[:10])}{' ...' if len(mis_sized) > 10 else ''}")
    return cm
