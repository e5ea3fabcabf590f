"""Segmentation scores from a confusion matrix, as the VOC devkit computes them.

The matrix counts (ground truth, prediction) pairs over pixels whose ground
truth is not the ignore label, in int64 (exact), accumulated with one bincount
per image and summed across processes with an all-reduce. From it:

* IoU of class c = TP / (TP + FP + FN); mIoU is the mean over classes whose
  union TP + FP + FN is non-empty (a class absent from both ground truth and
  prediction does not count);
* pixel accuracy = trace / total; mean class accuracy = mean over classes
  present in the ground truth of TP / (TP + FN); frequency-weighted IoU =
  sum of (ground-truth frequency x IoU).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch


class ConfusionMatrix:
    """``num_classes`` x ``num_classes`` int64 counts; rows ground truth, columns prediction."""

    def __init__(self, num_classes: int, ignore_label: int = 255):
        if num_classes < 1:
            raise ValueError(f"ConfusionMatrix: num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_label = int(num_classes), int(ignore_label)
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred, gt, where: str = "") -> None:
        """Add one prediction/ground-truth pair (same shape, integer labels)."""
        pred, gt = (torch.from_numpy(np.array(t)) if isinstance(t, np.ndarray) else torch.as_tensor(t)
                    for t in (pred, gt))
        ctx = f"{where}: " if where else ""
        if pred.shape != gt.shape:
            raise ValueError(f"{ctx}prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in size")
        pred, gt = pred.reshape(-1).long(), gt.reshape(-1).long()
        keep = gt != self.ignore_label
        pred, gt = pred[keep], gt[keep]
        n = self.num_classes
        for what, t in (("ground truth", gt), ("prediction", pred)):
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
                bad = t[(t < 0) | (t >= n)]
                raise ValueError(f"{ctx}{what} holds label {int(bad[0])}, outside [0, {n}) "
                                 f"(and not the ignore label {self.ignore_label}); {bad.numel()} pixels")
        self.matrix += torch.bincount(gt * n + pred, minlength=n * n).reshape(n, n).to(self.matrix.device)

    def all_reduce(self) -> None:
        """Sum over torchrun processes."""
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_world_size() > 1:
            # NCCL reduces CUDA tensors only
            dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            m = self.matrix.to(dev)
            dist.all_reduce(m)
            self.matrix = m.cpu()

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix

    def scores(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
        m = self.matrix.double()
        tp = m.diag()
        gt_count, pred_count = m.sum(1), m.sum(0)
        union = gt_count + pred_count - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        acc = torch.where(gt_count > 0, tp / gt_count.clamp(min=1), torch.full_like(tp, float("nan")))
        total = m.sum()
        valid = union > 0
        freq = gt_count / total if total > 0 else gt_count
        names = list(class_names) if class_names is not None else [str(c) for c in range(self.num_classes)]
        return {
            "miou": float(iou[valid].mean()) if bool(valid.any()) else float("nan"),
            "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
            "mean_acc": float(acc[gt_count > 0].mean()) if bool((gt_count > 0).any()) else float("nan"),
            "fwiou": float((freq[valid] * iou[valid]).sum()) if total > 0 else float("nan"),
            "per_class_iou": {n: (None if not bool(valid[c]) else float(iou[c])) for c, n in enumerate(names)},
            "pixels": int(total),
        }


def format_table(scores: Dict[str, object], title: str = "") -> str:
    """A Markdown table: per-class IoU then the summary scores (percent)."""
    lines = ([f"**{title}**", ""] if title else []) + ["| class | IoU (%) |", "|---|---|"]
    for name, v in scores["per_class_iou"].items():
        lines.append(f"| {name} | {'absent' if v is None else f'{100 * v:.2f}'} |")
    for key, label in (("miou", "mean IoU"), ("pixel_acc", "pixel accuracy"), ("mean_acc", "mean class accuracy"),
                       ("fwiou", "frequency-weighted IoU")):
        lines.append(f"| **{label}** | **{100 * scores[key]:.2f}** |")
    return "\n".join(lines)


def write_scores(path: Path, scores: Dict[str, object], extra: Optional[dict] = None) -> None:
    from ..fileio import write_text_atomic

    write_text_atomic(path, json.dumps({**scores, **(extra or {})}, indent=1) + "\n")


def class_list(names: Optional[Sequence[str]], n: int) -> List[str]:
    return list(names) if names is not None and len(names) == n else [str(c) for c in range(n)]
