"""Activations and element-wise layers.

Eltwise MAX follows Caffe's tie rule: the first two inputs tie to the second,
later ones keep the earlier winner, and the gradient goes to the winner only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import schema
from .base import CaffeLayer


class ReLU(CaffeLayer):
    caffe_types = ("ReLU",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        self.slope = float(lp.relu_param.negative_slope)

    def forward(self, x):
        if self.slope == 0.0:
            return [F.relu(x)]
        return [torch.where(x > 0, x, x * self.slope)]


class PReLU(CaffeLayer):
    caffe_types = ("PReLU",)

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
    caffe_types = ("Sigmoid",)

    def forward(self, x):
        return [torch.sigmoid(x)]


class TanH(CaffeLayer):
    caffe_types = ("TanH",)

    def forward(self, x):
        return [torch.tanh(x)]


class Dropout(CaffeLayer):
    """Caffe scales kept units by 1/(1-p) at train time, as PyTorch does; identity at test."""

    caffe_types = ("Dropout",)

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

    caffe_types = ("Power",)

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
    caffe_types = ("Softmax",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        self.axis = int(lp.softmax_param.axis) % len(bottom_shapes[0])

    def forward(self, x):
        return [torch.softmax(x, dim=self.axis)]


class Eltwise(CaffeLayer):
    caffe_types = ("Eltwise",)

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
