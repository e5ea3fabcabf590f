"""Caffe's weight fillers: the same laws (not Caffe's random stream), with Caffe's fan-in/out rules."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from . import schema
from .errors import CaffeFormatError

def fill(filler, shape: Tuple[int, ...], gen: torch.Generator, *, where: str = "filler") -> torch.Tensor:
    """A tensor drawn as Caffe's filler ``filler`` describes (same law, not Caffe's random numbers)."""
    kind = filler.type if filler is not None else "constant"
    numel = int(np.prod(shape)) if shape else 1
    # Caffe: fan_in = count / shape(0), fan_out = count / shape(1) (count for a 1-D blob)
    fan_in = numel // shape[0] if shape else 1
    fan_out = numel // shape[1] if len(shape) > 1 else numel
    norms = schema.FillerParameter.VarianceNorm
    norm = norms.Name(filler.variance_norm) if filler is not None else "FAN_IN"
    n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2.0}[norm]
    if kind == "constant":
        return torch.full(shape, float(filler.value) if filler is not None else 0.0)
    if kind == "uniform":
        return torch.empty(shape).uniform_(float(filler.min), float(filler.max), generator=gen)
    if kind == "gaussian":
        out = torch.empty(shape).normal_(float(filler.mean), float(filler.std), generator=gen)
        if filler.sparse >= 0:
            if len(shape) < 1:
                raise CaffeFormatError(f"{where}: a sparse gaussian filler needs a blob with an axis, got {shape}")
            # Caffe: each weight is kept with probability sparse / shape(0) (the outputs).
            keep = torch.rand(shape, generator=gen) < filler.sparse / shape[0]
            out = out * keep
        return out
    if kind == "xavier":
        a = float(np.sqrt(3.0 / n))
        return torch.empty(shape).uniform_(-a, a, generator=gen)
    if kind == "msra":
        return torch.empty(shape).normal_(0.0, float(np.sqrt(2.0 / n)), generator=gen)
    if kind == "positive_unitball":
        out = torch.rand(shape, generator=gen)
        return out / out.reshape(shape[0], -1).sum(1).reshape((shape[0],) + (1,) * (len(shape) - 1))
    if kind == "bilinear":
        if len(shape) != 4 or shape[2] != shape[3]:
            raise CaffeFormatError(f"{where}: the bilinear filler needs a square 4-D kernel, got {shape}")
        k = shape[3]
        f = int(np.ceil(k / 2.0))
        c = (2 * f - 1 - f % 2) / (2.0 * f)
        x = np.arange(k, dtype=np.float64)
        w1 = 1 - np.abs(x / f - c)
        kern = torch.from_numpy(np.outer(w1, w1).astype(np.float32))
        return kern.expand(shape).clone()
    raise CaffeFormatError(f"{where}: filler type {kind!r} is not supported "
                           "(constant, uniform, gaussian, xavier, msra, positive_unitball, bilinear)")
