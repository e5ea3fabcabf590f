"""SoftmaxWithLoss, Accuracy and ArgMax.

SoftmaxWithLoss: normalisation VALID / FULL / BATCH_SIZE / NONE and the legacy
``normalize``, ``log(max(p, FLT_MIN))``, ignore_label (the one implementation is
the training engine's :func:`attn2scale.models.losses.softmax_with_loss`).
ArgMax (DeepLab fork): per pixel over channels; ties go to the higher channel.
"""

from __future__ import annotations

import numpy as np
import torch

from ...models.losses import softmax_with_loss
from .. import schema
from .base import CaffeLayer, LayerError, channel_topk


class ArgMax(CaffeLayer):
    """ArgMax. With ``axis``: along it (BVLC). Without, on an N x C x H x W map with
    H*W > 1: per pixel over channels, as the DeepLab fork does (its test nets'
    ``fc8_interp_argmax``); otherwise per sample over all values, BVLC's
    N x (1|2) x top_k. Ties go to the higher index (``std::partial_sort`` with
    ``greater<pair<value, index>>`` in both)."""

    caffe_types = ("ArgMax",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.argmax_param
        shape = bottom_shapes[0]
        self.top_k, self.out_max_val = int(p.top_k), bool(p.out_max_val)
        if p.HasField("axis"):
            self.mode, self.axis = "axis", int(p.axis) % len(shape)
            n = shape[self.axis]
        elif len(shape) == 4 and shape[2] * shape[3] > 1:
            self.mode, self.axis, n = "pixel", 1, shape[1]
        else:
            self.mode, self.axis, n = "flat", 1, int(np.prod(shape[1:]))
        if not 1 <= self.top_k <= n:
            raise self.fail(f"top_k {self.top_k} must be in 1..{n}")

    def forward(self, x):
        if self.mode == "flat":
            idx, val = channel_topk(x.reshape(x.shape[0], -1), self.top_k)
            idx, val = idx[:, None, :], val[:, None, :]
        else:
            idx, val = channel_topk(x.movedim(self.axis, 1), self.top_k)
            if self.mode == "axis":
                idx, val = idx.movedim(1, self.axis), val.movedim(1, self.axis)
        idx = idx.to(x.dtype)
        if not self.out_max_val:
            return [idx]
        if self.mode == "axis":  # BVLC: with an axis, out_max_val outputs the values only
            return [val]
        return [torch.cat([idx, val], 1)]


class Accuracy(CaffeLayer):
    """BVLC Accuracy: the fraction of non-ignored positions whose label is in the top_k scores."""

    caffe_types = ("Accuracy",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.accuracy_param
        self.top_k = int(p.top_k)
        self.axis = int(p.axis) % len(bottom_shapes[0])
        self.ignore = int(p.ignore_label) if p.HasField("ignore_label") else None

    def forward(self, scores, label):
        if scores.device.type == "meta":
            return [scores.new_empty(())]
        s = scores.detach().movedim(self.axis, -1).reshape(-1, scores.shape[self.axis])
        lab = label.detach().reshape(-1).long()
        if lab.numel() != s.shape[0]:
            raise self.fail(f"label {tuple(label.shape)} needs one value per position of scores {tuple(scores.shape)}")
        keep = torch.ones_like(lab, dtype=torch.bool) if self.ignore is None else lab != self.ignore
        top = channel_topk(s, self.top_k)[0]
        hit = (top == lab[:, None]).any(1) & keep
        return [hit.sum().to(scores.dtype) / keep.sum().clamp(min=1).to(scores.dtype)]


class SoftmaxWithLoss(CaffeLayer):
    """Caffe's SoftmaxWithLoss: tops ``loss`` (a scalar) and optionally ``prob``."""

    caffe_types = ("SoftmaxWithLoss",)
    n_tops = None

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        if len(bottom_shapes) != 2:
            raise self.fail(f"takes 2 bottoms (scores, label), got {len(bottom_shapes)}")
        if self.n_top_names not in (1, 2):
            raise self.fail(f"has 1 or 2 tops (loss, prob), got {self.n_top_names}")
        s, lab = bottom_shapes
        self.axis = int(lp.softmax_param.axis) % len(s)
        outer = int(np.prod(s[: self.axis]))
        inner = int(np.prod(s[self.axis + 1:]))
        if int(np.prod(lab)) != outer * inner:
            raise self.fail(f"label {tuple(lab)} must hold one value per position of the scores {tuple(s)} "
                            f"({outer} x {inner} = {outer * inner}); are they the same H x W?")
        lp_ = lp.loss_param
        # BVLC's one ignore label, plus any of DeepLab's repeated softmax_loss_param.ignore_label.
        self.ignore = [int(lp_.ignore_label)] if lp_.HasField("ignore_label") else []
        fork = lp.softmax_loss_param
        self.ignore += [int(v) for v in fork.ignore_label if int(v) not in self.ignore]
        if fork.weight_source:
            raise self.fail(f"per-class loss weights (weight_source {fork.weight_source!r}) are not supported")
        modes = schema.LossParameter.NormalizationMode
        if lp_.HasField("normalization"):
            self.norm = modes.Name(lp_.normalization)
        elif lp_.HasField("normalize"):
            self.norm = "VALID" if lp_.normalize else "BATCH_SIZE"
        else:
            self.norm = "VALID"

    def forward(self, scores, label):
        try:  # the one implementation, shared with the training engine
            loss = softmax_with_loss(scores, label, ignore=self.ignore, normalization=self.norm, axis=self.axis,
                                     where=f"layer {self.caffe_name!r} ({self.caffe_type})")
        except ValueError as exc:
            raise LayerError(str(exc)) from None
        if self.n_top_names == 1:
            return [loss]
        return [loss, torch.softmax(scores, dim=self.axis)]
