"""The DeepLab forks' layers: Interp, SpatialProduct, SegAccuracy, BiasChannel, DenseCRF.

Interp runs on :func:`attn2scale.ops.interp` (the fused kernel). The fork types
that inference and conversion never need are listed in :data:`NOT_IMPLEMENTED`
with what they compute; a net holding one builds with ``skip_types``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from ... import ops
from .base import CaffeLayer, channel_topk, check_4d


class Interp(CaffeLayer):
    """DeepLab's Interp on the fused kernel (:func:`attn2scale.ops.interp`)."""

    caffe_types = ("Interp",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.interp_param
        check_4d(self, bottom_shapes[0])
        self.kw = dict(
            shrink_factor=int(p.shrink_factor) if p.HasField("shrink_factor") else None,
            zoom_factor=int(p.zoom_factor) if p.HasField("zoom_factor") else None,
            out_height=int(p.height) if p.HasField("height") else None,
            out_width=int(p.width) if p.HasField("width") else None,
            pad_beg=int(p.pad_beg), pad_end=int(p.pad_end),
        )
        try:
            ops.caffe_interp_size(*bottom_shapes[0][2:], **self.kw)
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def forward(self, x):
        size = ops.caffe_interp_size(x.shape[-2], x.shape[-1], **self.kw)
        return [ops.interp(x, size, pad_beg=self.kw["pad_beg"], pad_end=self.kw["pad_end"])]


class SpatialProduct(CaffeLayer):
    """The fork's SpatialProduct: features N x C x H x W times a map N x 1 x H x W."""

    caffe_types = ("SpatialProduct",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        if len(bottom_shapes) != 2:
            raise self.fail(f"takes 2 bottoms (features, map), got {len(bottom_shapes)}")
        f, a = bottom_shapes
        check_4d(self, f, "bottom 0")
        check_4d(self, a, "bottom 1")
        if a[1] != 1 or a[0] != f[0] or tuple(a[2:]) != tuple(f[2:]):
            raise self.fail(f"map {tuple(a)} must be N x 1 x H x W of features {tuple(f)}")

    def forward(self, feat, att):
        return [feat * att]


class SegAccuracy(CaffeLayer):
    """The fork's SegAccuracy: [pixel accuracy, mean recall, mean IoU] of a running confusion matrix.

    ``reset`` (the fork's default: true) clears the matrix at every call; with
    ``reset: false`` it accumulates across calls, and :meth:`reset_confusion`
    starts over. Empty rows/columns count as 0 in the means (not dropped).
    """

    caffe_types = ("SegAccuracy",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.seg_accuracy_param
        s, lab = bottom_shapes
        if lab[1] != 1 or lab[0] != s[0] or tuple(lab[2:]) != tuple(s[2:]):
            raise self.fail(f"label {tuple(lab)} must be N x 1 x H x W of the scores {tuple(s)}")
        self.ignore = [int(v) for v in p.ignore_label]
        self.reset_each = bool(p.reset)
        self.classes = s[1]
        self.register_buffer("confusion", torch.zeros(self.classes, self.classes, dtype=torch.float64, device="meta"),
                             persistent=False)

    def reset_confusion(self) -> None:
        self.confusion = torch.zeros_like(self.confusion)

    def reset_state(self) -> None:
        self.reset_confusion()

    def forward(self, scores, label):
        if scores.device.type == "meta":
            return [scores.new_empty((1, 1, 1, 3))]
        if self.confusion.device != scores.device:
            self.confusion = torch.zeros(self.classes, self.classes, dtype=torch.float64, device=scores.device)
        if self.reset_each:
            self.reset_confusion()
        gt = label.detach().long().flatten()
        pred = channel_topk(scores, 1)[0].flatten()
        keep = torch.ones_like(gt, dtype=torch.bool)
        for v in self.ignore:
            keep &= gt != v
        gt, pred = gt[keep], pred[keep]
        if gt.numel() and (gt.min() < 0 or gt.max() >= self.classes):
            raise self.fail(f"label values must be in 0..{self.classes - 1} or ignored {self.ignore}, "
                            f"got {int(gt.min())}..{int(gt.max())}")
        self.confusion += torch.bincount(gt * self.classes + pred, minlength=self.classes ** 2).view(
            self.classes, self.classes).to(self.confusion)
        m = self.confusion
        diag, rows, cols = m.diag(), m.sum(1), m.sum(0)
        total = m.sum()
        acc = diag.sum() / total if total > 0 else torch.zeros((), dtype=m.dtype, device=m.device)
        recall = torch.where(rows > 0, diag / rows.clamp(min=1), torch.zeros_like(diag)).mean()
        union = rows + cols - diag
        iou = torch.where(union > 0, diag / union.clamp(min=1), torch.zeros_like(diag)).mean()
        return [torch.stack([acc, recall, iou]).to(scores.dtype).view(1, 1, 1, 3)]


class BiasChannel(CaffeLayer):
    """DeepLab's BiasChannel (weakly supervised training): the scores plus a constant on the
    channels of the labels present, ``bg_bias`` for ``background_label`` and ``fg_bias`` for the
    others. IMAGE: the labels are a list N x K x 1 x 1 (each listed label adds once per listing);
    PIXEL: a map N x 1 x H x W, biased where it holds the label. -1 and ``ignore_label`` are
    skipped; any other label outside 0..C-1 is an error, as in the fork. The gradient passes
    to the scores unchanged."""

    caffe_types = ("BiasChannel",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.bias_channel_param
        if len(bottom_shapes) != 2:
            raise self.fail(f"takes 2 bottoms (scores, labels), got {len(bottom_shapes)}")
        s, lab = bottom_shapes
        check_4d(self, s, "bottom 0")
        self.pixel = p.label_type == type(p).LabelType.Value("PIXEL")
        want = (s[0], 1) + tuple(s[2:]) if self.pixel else None
        if self.pixel and tuple(lab) != want:
            raise self.fail(f"label_type PIXEL needs a label map {want}, got {tuple(lab)}")
        if not self.pixel and (len(lab) != 4 or lab[0] != s[0] or lab[2:] != (1, 1)):
            raise self.fail(f"label_type IMAGE needs a label list N x K x 1 x 1 with N = {s[0]}, got {tuple(lab)}")
        self.bg_bias, self.fg_bias = float(p.bg_bias), float(p.fg_bias)
        self.background = int(p.background_label)
        self.ignore = sorted({-1} | {int(v) for v in p.ignore_label})

    def forward(self, scores, labels):
        if scores.device.type == "meta":
            return [torch.empty_like(scores)]
        lab = labels.detach().round().long()
        keep = torch.ones_like(lab, dtype=torch.bool)
        for v in self.ignore:
            keep &= lab != v
        c = scores.shape[1]
        bad = keep & ((lab < 0) | (lab >= c))
        if bad.any():
            raise self.fail(f"unexpected label {int(lab[bad][0])} (channels 0..{c - 1}, ignored {self.ignore})")
        value = torch.where(lab == self.background, self.bg_bias, self.fg_bias).to(scores.dtype) * keep
        idx = lab.clamp(0, c - 1)
        if self.pixel:  # N x 1 x H x W: one channel per pixel
            bias = torch.zeros_like(scores).scatter_add_(1, idx, value)
        else:  # N x K x 1 x 1: whole channels, once per listing
            per_channel = torch.zeros(scores.shape[:2], dtype=scores.dtype, device=scores.device)
            per_channel.scatter_add_(1, idx.flatten(1), value.flatten(1))
            bias = per_channel[:, :, None, None]
        return [scores + bias]


@dataclass(frozen=True)
class CRFKernels:
    """A DenseCRF layer's model: Potts kernels over (x, y) and over (x, y, image channels)."""

    max_iter: int
    positional: Tuple[Tuple[float, float], ...]        # (weight, xy std)
    bilateral: Tuple[Tuple[float, float, float], ...]  # (weight, xy std, colour std)


#: what runs a DenseCRF layer: (unary energy M x H x W, image C x H x W or None, kernels) -> Q (M x H x W)
CRFSolver = Callable[[np.ndarray, Optional[np.ndarray], CRFKernels], np.ndarray]


class DenseCRF(CaffeLayer):
    """The fork's DenseCRF: mean-field inference of a fully connected CRF whose unary energy is
    minus bottom 0, over the valid H x W given by bottom 1 (``data_dim``), with one positional
    kernel per (pos_w, pos_xy_std) (none when none is given, as the fork) and, when bottom 2 (the image as fed, BGR) is given, one
    bilateral kernel per (bi_w, bi_xy_std, bi_rgb_std). Top: Q (or log Q) in the valid region,
    0 outside. The inference itself is the evaluation code's CRF, passed in as ``solver``
    (``CaffeNet(..., crf_solver=attn2scale.engine.crf.caffe_dense_crf)``); it has no gradient."""

    caffe_types = ("DenseCRF",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.dense_crf_param
        if len(bottom_shapes) not in (2, 3):
            raise self.fail(f"takes 2 or 3 bottoms (scores, data_dim[, image]), got {len(bottom_shapes)}")
        check_4d(self, bottom_shapes[0], "bottom 0")
        dims = bottom_shapes[1]
        if not dims or dims[0] != bottom_shapes[0][0] or int(np.prod(dims[1:])) != 2:
            raise self.fail(f"bottom 1 (data_dim) must hold (height, width) per image: N x 1 x 1 x 2 with "
                            f"N = {bottom_shapes[0][0]}, got {tuple(dims)}")
        if len(bottom_shapes) == 3 and (bottom_shapes[2][1] != 3 or bottom_shapes[2][2:] != bottom_shapes[0][2:]):
            raise self.fail(f"image {tuple(bottom_shapes[2])} must be N x 3 x H x W of the scores "
                            f"{tuple(bottom_shapes[0])}")
        self.kernels = CRFKernels(int(p.max_iter), self._kernels(p, ("pos_w", "pos_xy_std")),
                                  self._kernels(p, ("bi_w", "bi_xy_std", "bi_rgb_std")) if len(bottom_shapes) == 3
                                  else ())
        self.log_output = not p.output_probability
        self.solver: Optional[CRFSolver] = None

    def _kernels(self, p, fields) -> tuple:
        values = [list(getattr(p, f)) for f in fields]
        if len({len(v) for v in values}) != 1:
            raise self.fail(f"{', '.join(fields)} need one value each per kernel, got "
                            f"{', '.join(f'{f}: {len(v)}' for f, v in zip(fields, values))}")
        return tuple(zip(*[[float(x) for x in v] for v in values]))

    def _valid(self, dims: torch.Tensor, h: int, w: int) -> Tuple[int, int]:
        rh, rw = int(dims[0]), int(dims[1])
        if h <= rh and w <= rw:
            return h, w  # the image was cropped
        if rh > h or rw > w:
            raise self.fail(f"data_dim {rh} x {rw} does not fit in the {h} x {w} scores")
        return rh, rw

    def forward(self, scores, dims, image=None):
        if scores.device.type == "meta":
            return [torch.empty_like(scores)]
        if self.solver is None:
            raise self.fail("needs the evaluation code's CRF: build the net with "
                            "crf_solver=attn2scale.engine.crf.caffe_dense_crf (pip install -e .[crf])")
        out = torch.zeros_like(scores)
        h, w = scores.shape[2:]
        for n in range(scores.shape[0]):
            vh, vw = self._valid(dims[n].detach().reshape(-1).cpu(), h, w)
            unary = -scores[n, :, :vh, :vw].detach().float().cpu().numpy()
            img = None if image is None else image[n, :, :vh, :vw].detach().float().cpu().numpy()
            q = torch.from_numpy(np.asarray(self.solver(unary, img, self.kernels), dtype=np.float32))
            if self.log_output:
                q = torch.log(q.clamp_min(float(np.finfo(np.float32).tiny)))
            out[n, :, :vh, :vw] = q.to(out)
        return [out]


#: DeepLab fork types not implemented, with what they compute; a net holding one builds with skip_types.
NOT_IMPLEMENTED: Dict[str, str] = {
    "MatRead": "reads blobs from MATLAB .mat files (feed the blob as an input instead)",
    "UniqueLabel": "lists each image's distinct labels (weakly supervised training)",
    "AdaptiveBiasChannel": "biases present labels' channels to a target share of pixels (weak supervision)",
    "DomainTransform": "edge-preserving recursive filtering (DeepLab-DT)",
    "DomainTransformForwardOnly": "edge-preserving recursive filtering, forward only (DeepLab-DT timing)",
}
