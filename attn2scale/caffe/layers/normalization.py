"""BatchNorm, Scale and Bias as BVLC Caffe computes them (DeepLab v2 and ResNet nets).

BatchNorm has no affine part (a Scale layer follows it) and three blobs:
the accumulated mean, the accumulated variance and the moving-average
normaliser ``f``. The statistics used are ``mean / f`` and ``var / f`` (all 0
when ``f`` is 0). ``use_global_stats`` defaults to true in a TEST net and false in
a TRAIN net (the phase the net was built for, not ``.train()``/``.eval()``). With batch statistics the variance is the biased one and (in any phase,
as Caffe) the blobs are updated as ``f <- maf f + 1``, ``mean <- batch_mean + maf mean``,
``var <- m/(m-1) batch_var + maf var`` (m values per channel). The blobs get no
gradient (Caffe never writes their diffs).

DeepLab v2's ``update_global_stats`` (a TRAIN net with global statistics): the stored
mean stays the centre, the batch variance around it normalises the batch and is
accumulated as above; the fork's backward treats the statistics as constants.
"""

from __future__ import annotations

from typing import Tuple

import torch

from .. import schema
from .base import CaffeLayer, Shape


class BatchNorm(CaffeLayer):
    caffe_types = ("BatchNorm",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.batch_norm_param
        shape = bottom_shapes[0]
        if not shape:
            raise self.fail("bottom must have at least one axis")
        self.explicit_global = bool(p.use_global_stats) if p.HasField("use_global_stats") else None
        self.maf = float(p.moving_average_fraction)
        if not 0.0 <= self.maf <= 1.0:
            raise self.fail(f"moving_average_fraction must be in [0, 1], got {self.maf}")
        self.eps = float(p.eps)
        self.update_global = bool(p.update_global_stats)
        zero = schema.FillerParameter(type="constant", value=0.0)
        c = shape[1] if len(shape) > 1 else 1  # BVLC: a 1-D bottom is one channel
        self.add_blob("mean", (c,), zero)
        self.add_blob("variance", (c,), zero)
        self.add_blob("moving_average_factor", (1,), zero)

    def use_global_stats(self) -> bool:
        return self.phase == "TEST" if self.explicit_global is None else self.explicit_global

    def _view(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.view((1, -1) + (1,) * (x.dim() - 2)) if x.dim() > 1 else t

    def _stored(self) -> Tuple[torch.Tensor, torch.Tensor]:
        f = self.moving_average_factor.detach()[0]
        scale = torch.where(f == 0, torch.zeros_like(f), 1.0 / f)
        return self.mean.detach() * scale, self.variance.detach() * scale

    @torch.no_grad()
    def _accumulate(self, mean: torch.Tensor, var: torch.Tensor, m: int) -> None:
        correction = m / (m - 1) if m > 1 else 1.0
        self.moving_average_factor.mul_(self.maf).add_(1.0)
        self.mean.mul_(self.maf).add_(mean)
        self.variance.mul_(self.maf).add_(var * correction)

    def forward(self, x):
        if x.device.type == "meta":
            return [torch.empty_like(x)]
        dims = [0] + list(range(2, x.dim()))
        m = x.numel() // (x.shape[1] if x.dim() > 1 else 1)
        if self.use_global_stats() and not (self.phase == "TRAIN" and self.update_global):
            mean, var = self._stored()
        elif self.use_global_stats():  # DeepLab v2's update_global_stats
            mean = self._stored()[0]
            var = ((x.detach() - self._view(mean, x)) ** 2).mean(dims)
            self._accumulate(mean, var, m)
        else:
            mean = x.mean(dims)
            var = ((x - self._view(mean, x)) ** 2).mean(dims)
            self._accumulate(mean.detach(), var.detach(), m)  # whenever batch statistics are used, as Caffe
        return [(x - self._view(mean, x)) / torch.sqrt(self._view(var, x) + self.eps)]


def _param_span(layer: CaffeLayer, shape: Shape, axis: int, num_axes: int) -> Tuple[int, Shape]:
    """Caffe's Scale/Bias parameter axes: ``shape[axis:axis + num_axes]`` (num_axes -1: to the end)."""
    nd = len(shape)
    if not -nd <= axis < max(nd, 1):
        raise layer.fail(f"axis {axis} is out of range for a bottom of shape {tuple(shape)}")
    axis %= max(nd, 1)
    if num_axes < -1:
        raise layer.fail(f"num_axes must be -1 or more, got {num_axes}")
    end = nd if num_axes == -1 else axis + num_axes
    if end > nd:
        raise layer.fail(f"axis {axis} + num_axes {num_axes} exceeds the bottom's {nd} axes")
    return axis, tuple(shape[axis:end])


def _second_bottom_span(layer: CaffeLayer, shape: Shape, other: Shape, axis: int) -> int:
    """With a second bottom the parameter is that blob: its shape must equal ``shape[axis:...]``."""
    nd = len(shape)
    if not -nd <= axis < max(nd, 1):  # Caffe's CanonicalAxisIndex
        raise layer.fail(f"axis {axis} is out of range for a bottom of shape {tuple(shape)}")
    axis = axis % nd if nd else 0
    if tuple(shape[axis:axis + len(other)]) != tuple(other):
        raise layer.fail(f"bottom 1 of shape {tuple(other)} must equal axes {axis}.. of bottom 0 {tuple(shape)}")
    return axis


def _broadcast(t: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    return t.reshape((1,) * axis + tuple(t.shape) + (1,) * (x.dim() - axis - t.dim()))


class Scale(CaffeLayer):
    """``top = x * scale (+ bias)``, scale a blob (default filler 1) or the second bottom."""

    caffe_types = ("Scale",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.scale_param
        shape = bottom_shapes[0]
        if len(bottom_shapes) == 2:
            self.axis = _second_bottom_span(self, shape, bottom_shapes[1], int(p.axis))
            span = tuple(bottom_shapes[1])
        elif len(bottom_shapes) == 1:
            self.axis, span = _param_span(self, shape, int(p.axis), int(p.num_axes))
            one = schema.FillerParameter(type="constant", value=1.0)
            self.add_blob("weight", span, p.filler if p.HasField("filler") else one)
        else:
            raise self.fail(f"takes 1 or 2 bottoms, got {len(bottom_shapes)}")
        self.has_bias = bool(p.bias_term)
        if self.has_bias:
            self.add_blob("bias", span, p.bias_filler if p.HasField("bias_filler") else None)

    def forward(self, x, scale=None):
        s = self.weight if scale is None else scale
        y = x * _broadcast(s, x, self.axis)
        if self.has_bias:
            y = y + _broadcast(self.bias, x, self.axis)
        return [y]


class Bias(CaffeLayer):
    """``top = x + bias``, bias a blob (default filler 0) or the second bottom."""

    caffe_types = ("Bias",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.bias_param
        shape = bottom_shapes[0]
        if len(bottom_shapes) == 2:
            self.axis = _second_bottom_span(self, shape, bottom_shapes[1], int(p.axis))
        elif len(bottom_shapes) == 1:
            self.axis, span = _param_span(self, shape, int(p.axis), int(p.num_axes))
            self.add_blob("bias", span, p.filler if p.HasField("filler") else None)
        else:
            raise self.fail(f"takes 1 or 2 bottoms, got {len(bottom_shapes)}")

    def forward(self, x, bias=None):
        return [x + _broadcast(self.bias if bias is None else bias, x, self.axis)]
