"""The follow-up model: location attention over scales plus a recalibrating branch.

Our reading of the follow-up paper's summary (``../shared/PAPER_TABLES.md``);
every choice the summary leaves open is a constructor argument:

* each scale's image (Caffe Interp pyramid, default scales 1 and 0.5) goes
  through one shared backbone: the VGG-16 trunk of DeepLab-LargeFOV, or
  ResNet34-dilated8 (optionally with PSP on its last stage);
* **multi-stage features**: the backbone's four stage outputs (VGG: pool2 to
  pool5; ResNet: layer1 to layer4/PSP), resized (Interp) to the resolution
  after the second pooling (stride 4) and concatenated, hypercolumn style;
  without it, the last stage alone at stride 8;
* **diverse dilations**: each scale's stream has its own dilated 3x3 conv
  (default dilation 2 on the 1x stream, 12 on the 0.5x stream) -> ReLU ->
  Dropout -> 1x1 classifier giving that scale's scores P_s;
* the streams' features, resized to the finest, are concatenated and feed two
  parallel 2-conv branches: **location attention** (3x3 conv -> ReLU -> 1x1
  conv to S logits, softmax over scales) and **recalibration** (3x3 conv ->
  ReLU -> 1x1 conv to C, sigmoid), shared across scales;
* final = sum_s softmax_s * (P_s * r): one fused ``scale_merge`` with ``gate``;
  the ``"bias"`` variant adds the branch's output instead of multiplying;
* losses: the fusion plus one per scale (1 + S), labels shrunk to each map.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .params import caffe_convention
from .largefov import DeepLabLargeFOV
from .multiscale import PYRAMID

def _branch(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, c_out, 1))


class RecalibAttentionNet(nn.Module):
    """Location attention + recalibrating branch over a multi-scale VGG trunk.

    Ablation switches (the follow-up paper's rows): ``multi_stage``,
    ``dilations`` (equal values = no diverse dilations), ``location_attention``
    (False: average of the scales), ``recalibration`` (``"gate"``, ``"bias"``
    or None).
    """

    def __init__(
        self,
        num_classes: int = 21,
        width_div: int = 1,
        scales: Sequence[float] = (1.0, 0.5),
        dilations: Sequence[int] = (2, 12),
        multi_stage: bool = True,
        location_attention: bool = True,
        recalibration: Optional[str] = "gate",
        stream_channels: int = 512,
        branch_channels: int = 512,
        dropout: float = 0.5,
        backbone: Optional[nn.Module] = None,
    ):
        super().__init__()
        scales = tuple(float(s) for s in scales)
        if len(dilations) != len(scales):
            raise ValueError(f"RecalibAttentionNet: {len(scales)} scales need as many dilations, got {tuple(dilations)}")
        unknown = [s for s in scales if s not in PYRAMID]
        if unknown:
            raise ValueError(f"RecalibAttentionNet: unsupported scales {unknown}; known: {sorted(PYRAMID)}")
        if recalibration not in ("gate", "bias", None):
            raise ValueError(f"RecalibAttentionNet: recalibration must be 'gate', 'bias' or None, got {recalibration!r}")
        # Any module with stage_features(x) (stride 4, 8, 8, 8) and stage_channels.
        self.backbone = backbone if backbone is not None else DeepLabLargeFOV(width_div=width_div, head=False)
        self.scales, self.multi_stage = scales, multi_stage
        self.location_attention, self.recalibration = location_attention, recalibration
        self.dropout = dropout
        widths = list(self.backbone.stage_channels)
        c_feat = sum(widths) if multi_stage else widths[-1]
        c_stream = stream_channels // width_div
        self.streams = nn.ModuleList(nn.Conv2d(c_feat, c_stream, 3, padding=d, dilation=d) for d in dilations)
        self.classifier = nn.Conv2d(c_stream, num_classes, 1)
        c_cat, hidden = c_stream * len(scales), branch_channels // width_div
        self.attention = _branch(c_cat, hidden, len(scales)) if location_attention else None
        self.recalib = _branch(c_cat, hidden, num_classes) if recalibration else None

    def caffe_param_groups(self) -> List[dict]:
        """The encoder (backbone) at the base rates, the decoder (streams, classifier,
        attention and recalibrating branches) at 10x, as the follow-up paper trains them."""
        return caffe_convention(self, head=("streams", "classifier", "attention", "recalib"))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        stages = self.backbone.stage_features(x)
        if not self.multi_stage:
            return stages[-1]
        size = tuple(stages[0].shape[-2:])
        return torch.cat([stages[0]] + [ops.interp(t, size) for t in stages[1:]], dim=1)

    def forward(self, image: torch.Tensor) -> Dict[str, object]:
        feats, scores = [], []
        for s, stream in zip(self.scales, self.streams):
            x = image if PYRAMID[s] is None else ops.interp(image, **PYRAMID[s])
            f = F.dropout(F.relu(stream(self._features(x))), self.dropout, self.training)
            feats.append(f)
            scores.append(self.classifier(f))
        size = tuple(scores[0].shape[-2:])
        concat = torch.cat([feats[0]] + [ops.interp(f, size) for f in feats[1:]], dim=1)
        logits = self.attention(concat) if self.attention is not None else None
        mode = "attention" if logits is not None else "avg"
        r = self.recalib(concat) if self.recalib is not None else None
        gate = torch.sigmoid(r) if self.recalibration == "gate" else None
        fusion, aux = ops.scale_merge(scores, size, mode, logits, gate, return_aux=True)
        if self.recalibration == "bias":
            fusion = fusion + r
        stride = 4 if self.multi_stage else 8  # the finest map's output stride
        label_shrink: List[int] = [int(round(stride / s)) for s in self.scales]
        return {
            "fusion": fusion,
            "scores": scores,
            "supervised": scores,
            "label_shrink": label_shrink,
            "attention": aux if mode == "attention" else None,
            "recalibration": gate if gate is not None else r,
        }
