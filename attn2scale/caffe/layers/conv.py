"""Convolution, Deconvolution (Caffe's and DeepLab's dilation fields) and InnerProduct."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from .base import CaffeLayer, check_4d, hw_field


class Convolution(CaffeLayer):
    caffe_types = ("Convolution",)
    transposed = False

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.convolution_param
        if len(bottom_shapes) != 1:
            raise self.fail(f"takes 1 bottom, got {len(bottom_shapes)} (multi-bottom convolutions are not supported)")
        check_4d(self, bottom_shapes[0])
        if p.axis != 1:
            raise self.fail(f"axis {p.axis} is not supported (only 1)")
        self.kernel = hw_field(p, "kernel_size", 0, self.caffe_name)
        if min(self.kernel) <= 0:
            raise self.fail("kernel_size (or kernel_h/kernel_w) must be given and positive")
        self.pad = hw_field(p, "pad", 0, self.caffe_name)
        self.stride = hw_field(p, "stride", 1, self.caffe_name)
        dil = hw_field(p, "dilation", 1, self.caffe_name)
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

    caffe_types = ("Deconvolution",)
    transposed = True


class InnerProduct(CaffeLayer):
    caffe_types = ("InnerProduct",)

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
