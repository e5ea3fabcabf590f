"""Blob plumbing: fed inputs, Split, Concat, Slice, Tile, Flatten, and the sinks."""

from __future__ import annotations

from typing import List

import torch

from ..reader import DATA_LAYER_TYPES
from .base import CaffeLayer, Shape

#: layers whose tops the caller feeds
INPUT_TYPES = DATA_LAYER_TYPES
#: layers that consume their bottoms and produce nothing here
SINK_TYPES = ("Silence", "MatWrite")


class InputLayer(CaffeLayer):
    """Input, net-level inputs and data layers: their tops come from the caller.

    ``shapes`` are what the net is built for (Input's shapes, or a data layer's
    batch and crop); the forward pass accepts other spatial sizes.
    """

    caffe_types = INPUT_TYPES
    n_tops = None

    def __init__(self, lp, bottom_shapes, shapes: List[Shape]):
        super().__init__(lp, bottom_shapes)
        self.top_names = list(lp.top)
        self.shapes = [tuple(s) for s in shapes]

    def forward(self):  # pragma: no cover - tops are fed by CaffeNet
        raise RuntimeError("input layers are fed by CaffeNet.forward")


def _axis_or_legacy(layer: CaffeLayer, p, legacy: str, ndim: int) -> int:
    """Concat/Slice ``axis``, or the legacy ``concat_dim``/``slice_dim``; default 1; both is an error."""
    if p.HasField("axis") and p.HasField(legacy):
        raise layer.fail(f"give either axis or the legacy {legacy}, not both (Caffe refuses both)")
    axis = p.axis if p.HasField("axis") else (getattr(p, legacy) if p.HasField(legacy) else 1)
    return int(axis) % ndim


class Split(CaffeLayer):
    caffe_types = ("Split",)
    n_tops = None

    def forward(self, x):
        return [x] * self.n_top_names


class Concat(CaffeLayer):
    caffe_types = ("Concat",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        self.axis = _axis_or_legacy(self, lp.concat_param, "concat_dim", len(bottom_shapes[0]))
        ref = list(bottom_shapes[0])
        for i, s in enumerate(bottom_shapes):
            other = list(s)
            if len(other) != len(ref) or any(a != b for k, (a, b) in enumerate(zip(ref, other)) if k != self.axis):
                raise self.fail(f"bottom {i} has shape {tuple(s)}, bottom 0 has {tuple(ref)}; "
                                f"they must agree except on axis {self.axis}")

    def forward(self, *xs):
        return [torch.cat(xs, dim=self.axis)]


class Slice(CaffeLayer):
    caffe_types = ("Slice",)
    n_tops = None

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.slice_param
        shape = bottom_shapes[0]
        self.axis = _axis_or_legacy(self, p, "slice_dim", len(shape))
        n = shape[self.axis]
        k = self.n_top_names
        if p.slice_point:
            points = [int(v) for v in p.slice_point]
            if len(points) != k - 1:
                raise self.fail(f"{len(points)} slice_point values for {k} tops (needs {k - 1})")
            bounds = [0] + points + [n]
            if any(b <= a for a, b in zip(bounds, bounds[1:])):
                raise self.fail(f"slice points {points} are not increasing inside 0..{n}")
            self.sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        else:
            if n % k:
                raise self.fail(f"axis {self.axis} of size {n} does not split evenly into {k} tops")
            self.sizes = [n // k] * k

    def forward(self, x):
        return list(torch.split(x, self.sizes, dim=self.axis))


class Tile(CaffeLayer):
    caffe_types = ("Tile",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.tile_param
        self.axis = int(p.axis) % len(bottom_shapes[0])
        self.tiles = int(p.tiles)
        if self.tiles <= 0:
            raise self.fail("tiles must be positive")

    def forward(self, x):
        reps = [1] * x.dim()
        reps[self.axis] = self.tiles
        return [x.repeat(*reps)]


class Flatten(CaffeLayer):
    caffe_types = ("Flatten",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        nd = len(bottom_shapes[0])
        self.start = int(lp.flatten_param.axis) % nd
        self.end = int(lp.flatten_param.end_axis) % nd

    def forward(self, x):
        return [x.flatten(self.start, self.end)]


class Sink(CaffeLayer):
    """Silence, MatWrite (writes .mat files in the fork): consume bottoms, produce nothing."""

    caffe_types = SINK_TYPES
    n_tops = 0

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        if lp.top:
            raise self.fail(f"a {lp.type} layer has no tops, got {list(lp.top)}")

    def forward(self, *xs):
        return []
