"""The training objective of every model: Caffe's SoftmaxWithLoss on the fused scores
against labels shrunk by 8 (the models' output stride), plus, with extra supervision,
one such loss (weight 1) per entry of the model's ``supervised`` output against labels
shrunk by its ``label_shrink`` — the maps and labels of the authors' prototxts
(``loss``, ``loss_res1``, ``loss_res075``, ``loss_res05`` of attention47)."""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch

from ..data.labels import supervision_labels
from ..models.losses import softmax_with_loss


def fusion_shrink(out: Dict[str, object], label: torch.Tensor) -> int:
    """The label shrink of the fused map: the factor that takes the label to its size."""
    h = out["fusion"].shape[-2]
    for f in (4, 8, 16):
        if (label.shape[-2] - 1) // f + 1 == h:
            return f
    raise ValueError(f"fused scores {tuple(out['fusion'].shape[-2:])} are no Caffe shrink of the label "
                     f"{tuple(label.shape[-2:])} by 4, 8 or 16")


def model_outputs(out) -> Dict[str, object]:
    """Models return a dict (share-nets) or (features, scores) (single-scale backbones)."""
    if isinstance(out, dict):
        return out
    return {"fusion": out[1], "supervised": [], "label_shrink": []}


def segmentation_loss(out, label: torch.Tensor, *, ignore: int = 255) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """(total, [fusion loss, per-scale losses...]) for one micro-batch."""
    out = model_outputs(out)
    maps = [out["fusion"]] + list(out["supervised"])
    shrinks = [fusion_shrink(out, label)] + list(out["label_shrink"])
    labels = supervision_labels(label, shrinks)
    names = ["fusion"] + [f"scale{k}" for k in range(len(maps) - 1)]
    losses = [softmax_with_loss(m.float(), lab, ignore=(ignore,), where=f"loss on {n}")
              for m, lab, n in zip(maps, labels, names)]
    return torch.stack(losses).sum(), losses
