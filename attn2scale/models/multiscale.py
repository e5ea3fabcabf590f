"""The multi-scale share-net of Attention to Scale.

One backbone (shared weights) runs on an input pyramid made with Caffe's
Interp; each scale's score map is resized to the finest and merged by
average, max or a learned per-pixel attention over scales, in one fused op
(:func:`attn2scale.ops.scale_merge`). With extra supervision every scale's
scores are returned for their own loss, wired as the authors' prototxts wire
them.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .params import caffe_convention, prefixed

# Caffe Interp parameters of the authors' input pyramid: the scale's image is
# interp(data, **PYRAMID[s]) (0.75: shrink 4 then zoom 3, so 321 -> 241).
PYRAMID = {
    1.0: None,
    0.75: dict(shrink_factor=4, zoom_factor=3),
    0.5: dict(shrink_factor=2),
    0.25: dict(shrink_factor=4),
}
# Caffe blob-name suffix of each scale's tower.
SUFFIX = {1.0: "", 0.75: "_res075", 0.5: "_res05", 0.25: "_res025"}


class AttentionHead(nn.Module):
    """Concat(fc7 of all scales, resized to the finest) -> 3x3 conv (512) ->
    ReLU -> Dropout -> 1x1 conv (S): per-pixel logits over the scales."""

    def __init__(self, in_channels: int, num_scales: int, hidden: int = 512, dropout: float = 0.5):
        super().__init__()
        self.att_conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.att_fc = nn.Conv2d(hidden, num_scales, 1)
        self.dropout = dropout
        nn.init.normal_(self.att_conv1.weight, std=0.005)
        nn.init.zeros_(self.att_conv1.bias)
        nn.init.normal_(self.att_fc.weight, std=0.01)
        nn.init.zeros_(self.att_fc.bias)

    def forward(self, fc7_concat: torch.Tensor, blobs: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        h = F.dropout(F.relu(self.att_conv1(fc7_concat)), self.dropout, self.training)
        logits = self.att_fc(h)
        if blobs is not None:
            blobs["att_conv1"] = h
            blobs["att_fc"] = logits
        return logits


class MultiScaleNet(nn.Module):
    """Share-net over an input pyramid with an avg / max / attention merge.

    Args:
        backbone: returns ``(fc7, scores)`` for an image batch and exposes
            ``fc7_channels`` (e.g. :class:`DeepLabLargeFOV`).
        scales: pyramid scales, finest first (keys of ``PYRAMID``).
        merge: ``"avg"``, ``"max"`` or ``"attention"``.
        avg_weight: per-scale weight of ``avg`` (default 1/S; the authors'
            prototxts use Caffe Power scale 0.33333 for three scales).
        att_hidden, att_dropout: the attention head's width and dropout.
        extra_supervision: return each scale's supervised scores (E-Supv);
            without it ``supervised`` and ``label_shrink`` are empty.

    ``forward`` returns a dict:
        ``fusion``: merged scores at the finest scale's resolution;
        ``scores``: each scale's own scores at its native resolution;
        ``supervised``: the scores of the extra-supervision losses, as the
        prototxts wire them: scales whose output grid is an exact decimation
        of the labels (1, 0.5, 0.25: labels shrunk by 8, 16, 32) at their
        native size, the others (0.75) resized to the finest;
        ``label_shrink``: the Interp shrink factor of the labels each
        supervised map is compared with;
        ``attention``: the per-pixel scale weights (attention merge) or None.
    """

    def __init__(
        self,
        backbone: nn.Module,
        scales: Sequence[float] = (1.0, 0.75, 0.5),
        merge: str = "attention",
        avg_weight: Optional[float] = None,
        att_hidden: int = 512,
        att_dropout: float = 0.5,
        extra_supervision: bool = True,
    ):
        super().__init__()
        scales = tuple(float(s) for s in scales)
        unknown = [s for s in scales if s not in PYRAMID]
        if unknown:
            raise ValueError(f"MultiScaleNet: unsupported scales {unknown}; known: {sorted(PYRAMID)}")
        if scales[0] != max(scales):
            raise ValueError(f"MultiScaleNet: scales must start with the finest, got {scales}")
        ops.reference.check_merge_mode(merge, "MultiScaleNet", "merge")
        if avg_weight is not None and merge != "avg":
            raise ValueError(f"MultiScaleNet: avg_weight is only used with merge='avg', got merge={merge!r}")
        self.backbone = backbone
        self.scales = scales
        self.merge = merge
        self.avg_weight = avg_weight
        self.extra_supervision = extra_supervision
        self.attention = (
            AttentionHead(backbone.fc7_channels * len(scales), len(scales), att_hidden, att_dropout)
            if merge == "attention"
            else None
        )

    def caffe_param_groups(self) -> List[dict]:
        """The shared tower's multipliers (each parameter once, as Caffe's named ``param``
        sharing), and the attention net's 10/1 and 20/0 (attention47's prototxt)."""
        groups = prefixed(self.backbone.caffe_param_groups(), "backbone.")
        if self.attention is not None:
            groups += caffe_convention(self.attention, "attention.", head=("",))
        return groups

    @staticmethod
    def _exact_decimation(scale: float) -> bool:
        return scale in (1.0, 0.5, 0.25)

    def forward(self, image: torch.Tensor, blobs: Optional[Dict[str, torch.Tensor]] = None) -> Dict[str, object]:
        fc7s, scores = [], []
        for s in self.scales:
            x = image if PYRAMID[s] is None else ops.interp(image, **PYRAMID[s])
            if blobs is not None and PYRAMID[s] is not None:
                blobs["shrink_data" + SUFFIX[s].replace("_res", "")] = x
            fc7, sc = self.backbone(x, blobs=blobs, suffix=SUFFIX[s])
            fc7s.append(fc7)
            scores.append(sc)
        size = tuple(scores[0].shape[-2:])
        logits = None
        if self.attention is not None:
            resized = [fc7s[0]] + [ops.interp(f, size) for f in fc7s[1:]]
            concat = torch.cat(resized, dim=1)
            if blobs is not None:
                for s, r in zip(self.scales[1:], resized[1:]):
                    blobs["fc7" + SUFFIX[s] + "_interp"] = r
                blobs["fc7_concat"] = concat
            logits = self.attention(concat, blobs)
        fusion, aux = ops.scale_merge(scores, size, self.merge, logits, None, self.avg_weight, return_aux=True)
        supervised: List[torch.Tensor] = []
        label_shrink: List[int] = []
        for s, sc in zip(self.scales, scores if self.extra_supervision else []):
            if self._exact_decimation(s):
                supervised.append(sc)
                label_shrink.append(int(round(8 / s)))
            else:
                supervised.append(ops.interp(sc, size))
                label_shrink.append(8)
        if blobs is not None:
            blobs["fusion"] = fusion
            if self.merge == "attention":
                blobs["attention"] = aux
        return {
            "fusion": fusion,
            "scores": scores,
            "supervised": supervised,
            "label_shrink": label_shrink,
            "attention": aux if self.merge == "attention" else None,
        }
