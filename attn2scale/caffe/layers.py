"""Caffe layers as small ``nn.Module`` s, one class per layer type.

Each layer is built from its LayerParameter and the shapes of its bottoms (Caffe
sizes parameters at setup from the bottoms, and so do we); ``forward`` takes the
bottom tensors and returns the list of tops. The semantics are Caffe's, layer
by layer; where a rule is easy to get wrong the comment says which one:

* Pooling: ceil output size with Caffe's "last window must start inside the
  image" drop when padded, AVE divisor counting padding but clipped at
  ``H + pad`` (``avg_pool2d(ceil_mode=True, count_include_pad=True)`` does this;
  the one case where PyTorch and Caffe part, kernel < stride without padding,
  makes Caffe pool an empty window and is refused).
* SoftmaxWithLoss: normalisation VALID / FULL / BATCH_SIZE / NONE and the
  legacy ``normalize``, ``log(max(p, FLT_MIN))``, ignore_label.
* Eltwise MAX: the first two inputs tie to the second, later ones keep the
  earlier winner, and the gradient goes to the winner only.
* ArgMax (DeepLab fork): per pixel over channels; ties go to the higher channel.
* Interp runs on :func:`attn2scale.ops.interp` (the fused kernel).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Type

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..models.losses import softmax_with_loss
from . import schema

#: no real Caffe layer comes near this (VGG's fc6 has 1e8); a bigger one is a corrupted prototxt
MAX_PARAM_ELEMENTS = 1 << 31

Shape = Tuple[int, ...]


class LayerError(ValueError):
    """A layer that cannot be built or run, named with its type."""


class CaffeLayer(nn.Module):
    """Base class: keeps the Caffe name/type and the parameter specs."""

    caffe_type = ""
    #: tops that are produced (None: as many as the prototxt names)
    n_tops: Optional[int] = 1

    def __init__(self, lp, bottom_shapes: Sequence[Shape]):
        super().__init__()
        self.caffe_name = lp.name
        self.bottom_shapes = [tuple(s) for s in bottom_shapes]
        self.n_top_names = len(lp.top)
        # Parameter names in Caffe's blob order (weight, bias, ...).
        self.blob_names: List[str] = []
        self.fillers: List = []

    # -- helpers -------------------------------------------------------
    def fail(self, msg: str) -> LayerError:
        return LayerError(f"layer {self.caffe_name!r} ({self.caffe_type}): {msg}")

    def add_blob(self, name: str, shape: Shape, filler) -> None:
        if any(d <= 0 for d in shape):
            raise self.fail(f"parameter {name!r} would have shape {tuple(shape)}; check num_output and the bottom shapes")
        if int(np.prod(shape, dtype=np.float64)) > MAX_PARAM_ELEMENTS:
            raise self.fail(f"parameter {name!r} would have shape {tuple(shape)}, more than {MAX_PARAM_ELEMENTS} "
                            "elements; a corrupted prototxt?")
        self.register_parameter(name, nn.Parameter(torch.empty(shape, device="meta")))
        self.blob_names.append(name)
        self.fillers.append(filler)

    def blobs(self) -> List[nn.Parameter]:
        return [getattr(self, n) for n in self.blob_names]

    def extra_repr(self) -> str:
        return f"caffe_name={self.caffe_name!r}"


# --------------------------------------------------------------------------
# Geometry helpers (Caffe's repeated / _h/_w fields)
# --------------------------------------------------------------------------

_HW_FIELDS = {"kernel_size": ("kernel_h", "kernel_w"), "pad": ("pad_h", "pad_w"), "stride": ("stride_h", "stride_w")}


def _hw(param, field: str, default: int, name: str) -> Tuple[int, int]:
    h_f, w_f = _HW_FIELDS.get(field, (None, None))
    if h_f is not None and (param.HasField(h_f) or param.HasField(w_f)):
        return int(getattr(param, h_f)), int(getattr(param, w_f))
    values = getattr(param, field)
    if isinstance(values, int):  # a singular field (Pooling)
        return (int(values), int(values)) if param.HasField(field) else (default, default)
    values = list(values)
    if not values:
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise LayerError(f"{name}: {field} has {len(values)} values; 2-D layers take 1 or 2")


def _check_4d(layer: CaffeLayer, shape: Shape, what: str = "bottom") -> None:
    if len(shape) != 4:
        raise layer.fail(f"{what} must be N x C x H x W, got shape {tuple(shape)}")


# --------------------------------------------------------------------------
# Data / input placeholders
# --------------------------------------------------------------------------

class InputLayer(CaffeLayer):
    """Input, net-level inputs and data layers: their tops come from the caller.

    ``shapes`` are what the net is built for (Input's shapes, or a data layer's
    batch and crop); the forward pass accepts other spatial sizes.
    """

    caffe_type = "Input"
    n_tops = None

    def __init__(self, lp, bottom_shapes, shapes: List[Shape]):
        super().__init__(lp, bottom_shapes)
        self.caffe_type = lp.type
        self.top_names = list(lp.top)
        self.shapes = [tuple(s) for s in shapes]

    def forward(self):  # pragma: no cover - tops are fed by CaffeNet
        raise RuntimeError("input layers are fed by CaffeNet.forward")


# --------------------------------------------------------------------------
# Convolutions
# --------------------------------------------------------------------------

class Convolution(CaffeLayer):
    caffe_type = "Convolution"
    transposed = False

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.convolution_param
        if len(bottom_shapes) != 1:
            raise self.fail(f"takes 1 bottom, got {len(bottom_shapes)} (multi-bottom convolutions are not supported)")
        _check_4d(self, bottom_shapes[0])
        if p.axis != 1:
            raise self.fail(f"axis {p.axis} is not supported (only 1)")
        self.kernel = _hw(p, "kernel_size", 0, self.caffe_name)
        if min(self.kernel) <= 0:
            raise self.fail("kernel_size (or kernel_h/kernel_w) must be given and positive")
        self.pad = _hw(p, "pad", 0, self.caffe_name)
        self.stride = _hw(p, "stride", 1, self.caffe_name)
        dil = _hw(p, "dilation", 1, self.caffe_name)
        # DeepLab's name for dilation: hole, or hole_h / hole_w.
        if p.HasField("hole_h") or p.HasField("hole_w"):
            hole = (int(p.hole_h), int(p.hole_w))
        else:
            hole = (int(p.hole),) * 2 if p.HasField("hole") else (1, 1)
        if hole != (1, 1) and dil != (1, 1) and dil != hole:
            raise self.fail(f"hole {hole} and dilation {dil} disagree")
        self.dilation = hole if hole != (1, 1) else dil
        self.group = int(p.group)
        c_in = bottom_shapes[0][1]
        n_out = int(p.num_output)
        if n_out <= 0:
            raise self.fail("num_output must be positive")
        if c_in % self.group or n_out % self.group:
            raise self.fail(f"group {self.group} does not divide input channels {c_in} and num_output {n_out}")
        if self.transposed:
            wshape = (c_in, n_out // self.group) + self.kernel
        else:
            wshape = (n_out, c_in // self.group) + self.kernel
        self.add_blob("weight", wshape, p.weight_filler)
        self.has_bias = bool(p.bias_term)
        if self.has_bias:
            self.add_blob("bias", (n_out,), p.bias_filler)

    def forward(self, x):
        b = self.bias if self.has_bias else None
        if self.transposed:
            return [F.conv_transpose2d(x, self.weight, b, self.stride, self.pad, 0, self.group, self.dilation)]
        return [F.conv2d(x, self.weight, b, self.stride, self.pad, self.dilation, self.group)]


class Deconvolution(Convolution):
    """Caffe Deconvolution: ``(H-1)s - 2p + d(k-1) + 1``; weight is in x out/group x kh x kw."""

    caffe_type = "Deconvolution"
    transposed = True


class InnerProduct(CaffeLayer):
    caffe_type = "InnerProduct"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.inner_product_param
        shape = bottom_shapes[0]
        self.axis = p.axis % len(shape)
        k = int(np.prod(shape[self.axis:]))
        n = int(p.num_output)
        self.transpose = bool(p.transpose)
        self.add_blob("weight", (k, n) if self.transpose else (n, k), p.weight_filler)
        self.has_bias = bool(p.bias_term)
        if self.has_bias:
            self.add_blob("bias", (n,), p.bias_filler)

    def forward(self, x):
        x = x.flatten(self.axis)
        w = self.weight.t() if self.transpose else self.weight
        return [F.linear(x, w, self.bias if self.has_bias else None)]


# --------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------

class Pooling(CaffeLayer):
    caffe_type = "Pooling"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.pooling_param
        _check_4d(self, bottom_shapes[0])
        methods = schema.PoolingParameter.PoolMethod
        self.method = methods.Name(p.pool)
        if self.method not in ("MAX", "AVE"):
            raise self.fail(f"pool {self.method} is not supported (MAX and AVE are)")
        h, w = bottom_shapes[0][2:]
        self.global_pooling = bool(p.global_pooling)
        if self.global_pooling:
            self.kernel, self.pad, self.stride = (h, w), (0, 0), (1, 1)
        else:
            self.kernel = _hw(p, "kernel_size", 0, self.caffe_name)
            if min(self.kernel) <= 0:
                raise self.fail("kernel_size (or kernel_h/kernel_w) must be given and positive")
            self.pad = _hw(p, "pad", 0, self.caffe_name)
            self.stride = _hw(p, "stride", 1, self.caffe_name)
        if any(pd >= k for pd, k in zip(self.pad, self.kernel)):
            raise self.fail(f"pad {self.pad} must be smaller than kernel {self.kernel} (Caffe's check)")
        if any(2 * pd > k for pd, k in zip(self.pad, self.kernel)):
            raise self.fail(f"pad {self.pad} larger than half the kernel {self.kernel} is not supported")
        self.ceil = True
        if p.HasField("round_mode"):
            self.ceil = schema.PoolingParameter.RoundMode.Name(p.round_mode) == "CEIL"
        self._check_size(h, w)

    def _check_size(self, h: int, w: int) -> None:
        """PyTorch drops a last window that starts past the input whether or not there is
        padding; Caffe only with padding. Without it (kernel < stride) Caffe's last window is
        empty: -FLT_MAX for MAX, a division by zero for AVE. Such a layer is refused."""
        for size, k, pd, st, axis in ((h, self.kernel[0], self.pad[0], self.stride[0], "height"),
                                      (w, self.kernel[1], self.pad[1], self.stride[1], "width")):
            if self.global_pooling:
                continue
            span = size + 2 * pd - k
            if span < 0:
                raise self.fail(f"kernel {k} is larger than the padded {axis} {size + 2 * pd}")
            n = (-(-span // st) if self.ceil else span // st) + 1
            if pd > 0 and (n - 1) * st >= size + pd:
                n -= 1
            if (n - 1) * st - pd >= size:
                raise self.fail(f"on a {axis} of {size}, Caffe's last window (kernel {k}, stride {st}, pad {pd}) "
                                "starts past the input and pools nothing; such a layer is not supported")

    def forward(self, x):
        if self.global_pooling:  # Caffe re-reads the kernel from the bottom at every reshape
            kernel = tuple(x.shape[-2:])
            if self.method == "MAX":
                return [F.max_pool2d(x, kernel)]
            return [F.avg_pool2d(x, kernel)]
        if tuple(x.shape[-2:]) != tuple(self.bottom_shapes[0][2:]):  # checked at build for that size
            self._check_size(*x.shape[-2:])
        if self.method == "MAX":
            # Padding acts as -inf; PyTorch's ceil rule drops a window starting in the padding, as Caffe does
            # (the case where the rules part is refused in _check_size).
            return [F.max_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=self.ceil)]
        return [F.avg_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=self.ceil, count_include_pad=True)]


# --------------------------------------------------------------------------
# Element-wise and activation layers
# --------------------------------------------------------------------------

class ReLU(CaffeLayer):
    caffe_type = "ReLU"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        self.slope = float(lp.relu_param.negative_slope)

    def forward(self, x):
        if self.slope == 0.0:
            return [F.relu(x)]
        return [torch.where(x > 0, x, x * self.slope)]


class PReLU(CaffeLayer):
    caffe_type = "PReLU"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.prelu_param
        if len(bottom_shapes[0]) < 2:
            raise self.fail(f"bottom needs a channel axis, got shape {bottom_shapes[0]}")
        self.shared = bool(p.channel_shared)
        filler = schema.FillerParameter(type="constant", value=0.25)
        if p.HasField("filler"):
            filler = p.filler
        # channel_shared: Caffe's blob is 0-D (vector<int>(0)).
        self.add_blob("weight", () if self.shared else (bottom_shapes[0][1],), filler)

    def forward(self, x):
        a = self.weight if self.shared else self.weight.view((1, -1) + (1,) * (x.dim() - 2))
        return [torch.clamp(x, min=0) + a * torch.clamp(x, max=0)]


class Sigmoid(CaffeLayer):
    caffe_type = "Sigmoid"

    def forward(self, x):
        return [torch.sigmoid(x)]


class TanH(CaffeLayer):
    caffe_type = "TanH"

    def forward(self, x):
        return [torch.tanh(x)]


class Dropout(CaffeLayer):
    """Caffe scales kept units by 1/(1-p) at train time, as PyTorch does; identity at test."""

    caffe_type = "Dropout"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        self.ratio = float(lp.dropout_param.dropout_ratio)
        if not 0.0 <= self.ratio < 1.0:
            raise self.fail(f"dropout_ratio must be in [0, 1), got {self.ratio}")

    def forward(self, x):
        if not self.training or self.ratio == 0.0:
            return [x]
        return [F.dropout(x, self.ratio, training=True)]


class Power(CaffeLayer):
    """``(shift + scale * x) ** power``."""

    caffe_type = "Power"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)

    def forward(self, x):
        y = x * self.scale if self.scale != 1.0 else x
        if self.shift != 0.0:
            y = y + self.shift
        if self.power != 1.0:
            y = y.pow(self.power)
        return [y]


class Softmax(CaffeLayer):
    caffe_type = "Softmax"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        self.axis = int(lp.softmax_param.axis) % len(bottom_shapes[0])

    def forward(self, x):
        return [torch.softmax(x, dim=self.axis)]


class Eltwise(CaffeLayer):
    caffe_type = "Eltwise"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.eltwise_param
        self.op = schema.EltwiseParameter.EltwiseOp.Name(p.operation)
        if len(bottom_shapes) < 2:
            raise self.fail(f"needs at least 2 bottoms, got {len(bottom_shapes)}")
        for i, s in enumerate(bottom_shapes[1:], 1):
            if tuple(s) != tuple(bottom_shapes[0]):
                raise self.fail(f"bottom {i} has shape {tuple(s)}, bottom 0 has {tuple(bottom_shapes[0])}; "
                                "Eltwise needs equal shapes")
        self.coeff = [float(c) for c in p.coeff]
        if self.coeff and (self.op != "SUM" or len(self.coeff) != len(bottom_shapes)):
            raise self.fail(f"coeff needs operation SUM and one value per bottom ({len(bottom_shapes)})")

    def forward(self, *xs):
        if self.op == "SUM":
            out = None
            for i, x in enumerate(xs):
                term = x * self.coeff[i] if self.coeff and self.coeff[i] != 1.0 else x
                out = term if out is None else out + term
            return [out]
        if self.op == "PROD":
            out = xs[0]
            for x in xs[1:]:
                out = out * x
            return [out]
        # MAX, Caffe's tie rule: bottom 0 wins over bottom 1 only when strictly greater;
        # every later bottom must be strictly greater than the running max.
        out = torch.where(xs[0] > xs[1], xs[0], xs[1])
        for x in xs[2:]:
            out = torch.where(x > out, x, out)
        return [out]


# --------------------------------------------------------------------------
# Blob plumbing
# --------------------------------------------------------------------------

def _axis_or_legacy(layer: CaffeLayer, p, legacy: str, ndim: int) -> int:
    """Concat/Slice ``axis``, or the legacy ``concat_dim``/``slice_dim``; default 1; both is an error."""
    if p.HasField("axis") and p.HasField(legacy):
        raise layer.fail(f"give either axis or the legacy {legacy}, not both (Caffe refuses both)")
    axis = p.axis if p.HasField("axis") else (getattr(p, legacy) if p.HasField(legacy) else 1)
    return int(axis) % ndim


class Split(CaffeLayer):
    caffe_type = "Split"
    n_tops = None

    def forward(self, x):
        return [x] * self.n_top_names


class Concat(CaffeLayer):
    caffe_type = "Concat"

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
    caffe_type = "Slice"
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
    caffe_type = "Tile"

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
    caffe_type = "Flatten"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        nd = len(bottom_shapes[0])
        self.start = int(lp.flatten_param.axis) % nd
        self.end = int(lp.flatten_param.end_axis) % nd

    def forward(self, x):
        return [x.flatten(self.start, self.end)]


class Sink(CaffeLayer):
    """Silence, MatWrite (writes .mat files in the fork): consume bottoms, produce nothing."""

    n_tops = 0

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        self.caffe_type = lp.type
        if lp.top:
            raise self.fail(f"a {lp.type} layer has no tops, got {list(lp.top)}")

    def forward(self, *xs):
        return []


# --------------------------------------------------------------------------
# DeepLab fork layers
# --------------------------------------------------------------------------

class Interp(CaffeLayer):
    """DeepLab's Interp on the fused kernel (:func:`attn2scale.ops.interp`)."""

    caffe_type = "Interp"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.interp_param
        _check_4d(self, bottom_shapes[0])
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

    caffe_type = "SpatialProduct"

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        if len(bottom_shapes) != 2:
            raise self.fail(f"takes 2 bottoms (features, map), got {len(bottom_shapes)}")
        f, a = bottom_shapes
        _check_4d(self, f, "bottom 0")
        _check_4d(self, a, "bottom 1")
        if a[1] != 1 or a[0] != f[0] or tuple(a[2:]) != tuple(f[2:]):
            raise self.fail(f"map {tuple(a)} must be N x 1 x H x W of features {tuple(f)}")

    def forward(self, feat, att):
        return [feat * att]


class ArgMax(CaffeLayer):
    """ArgMax. With ``axis``: along it (BVLC). Without, on an N x C x H x W map with
    H*W > 1: per pixel over channels, as the DeepLab fork does (its test nets'
    ``fc8_interp_argmax``); otherwise per sample over all values, BVLC's
    N x (1|2) x top_k. Ties go to the higher index (``std::partial_sort`` with
    ``greater<pair<value, index>>`` in both)."""

    caffe_type = "ArgMax"

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

    caffe_type = "Accuracy"

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


def channel_topk(x: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-k channel indices and values per pixel, ties to the higher channel as the fork's
    ``std::partial_sort`` with ``greater<pair<value, index>>`` orders them."""
    x = x.detach()
    val, idx = torch.sort(x.flip(1), dim=1, descending=True, stable=True)
    return x.shape[1] - 1 - idx[:, :k], val[:, :k]


class SegAccuracy(CaffeLayer):
    """The fork's SegAccuracy: [pixel accuracy, mean recall, mean IoU] of a running confusion matrix.

    ``reset`` (the fork's default: true) clears the matrix at every call; with
    ``reset: false`` it accumulates across calls, and :meth:`reset_confusion`
    starts over. Empty rows/columns count as 0 in the means (not dropped).
    """

    caffe_type = "SegAccuracy"

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


# --------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------

class SoftmaxWithLoss(CaffeLayer):
    """Caffe's SoftmaxWithLoss: tops ``loss`` (a scalar) and optionally ``prob``."""

    caffe_type = "SoftmaxWithLoss"
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


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

LAYER_TYPES: Dict[str, Type[CaffeLayer]] = {
    cls.caffe_type: cls
    for cls in (
        Convolution, Deconvolution, InnerProduct, Pooling, ReLU, PReLU, Sigmoid, TanH, Dropout, Power,
        Softmax, Eltwise, Split, Concat, Slice, Tile, Flatten, Interp, SpatialProduct, ArgMax, Accuracy,
        SegAccuracy, SoftmaxWithLoss,
    )
}
SINK_TYPES = ("Silence", "MatWrite")
#: layers whose tops the caller feeds
INPUT_TYPES = ("Input", "Data", "ImageData", "ImageSegData", "HDF5Data", "MemoryData", "WindowData", "DummyData")


def supported_types() -> List[str]:
    return sorted(set(LAYER_TYPES) | set(SINK_TYPES) | set(INPUT_TYPES))
