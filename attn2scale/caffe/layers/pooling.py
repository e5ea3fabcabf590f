"""Pooling with Caffe's rounding.

Ceil output size with Caffe's "last window must start inside the image" drop
when padded, AVE divisor counting padding but clipped at ``H + pad``
(``avg_pool2d(ceil_mode=True, count_include_pad=True)`` does this; the one case
where PyTorch and Caffe part, kernel < stride without padding, makes Caffe pool
an empty window and is refused).
"""

from __future__ import annotations

import torch.nn.functional as F

from .. import schema
from .base import CaffeLayer, check_4d, hw_field


class Pooling(CaffeLayer):
    caffe_types = ("Pooling",)

    def __init__(self, lp, bottom_shapes):
        super().__init__(lp, bottom_shapes)
        p = lp.pooling_param
        check_4d(self, bottom_shapes[0])
        methods = schema.PoolingParameter.PoolMethod
        self.method = methods.Name(p.pool)
        if self.method not in ("MAX", "AVE"):
            raise self.fail(f"pool {self.method} is not supported (MAX and AVE are)")
        h, w = bottom_shapes[0][2:]
        self.global_pooling = bool(p.global_pooling)
        if self.global_pooling:
            self.kernel, self.pad, self.stride = (h, w), (0, 0), (1, 1)
        else:
            self.kernel = hw_field(p, "kernel_size", 0, self.caffe_name)
            if min(self.kernel) <= 0:
                raise self.fail("kernel_size (or kernel_h/kernel_w) must be given and positive")
            self.pad = hw_field(p, "pad", 0, self.caffe_name)
            self.stride = hw_field(p, "stride", 1, self.caffe_name)
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
