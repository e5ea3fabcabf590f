"""Labels for the extra-supervision losses, shrunk as the authors' nets shrink them.

The authors' train prototxts make ``label_shrink8`` and ``label_shrink16``
with a Caffe ``Interp`` layer (``shrink_factor`` 8 or 16) on the float label
blob, and ``SoftmaxWithLoss`` casts the result to int. At the training crop
(321 = 8 * 40 + 1) every sample lands on a pixel, so the labels are copied
exactly; the golden tests check this against real Caffe.
"""

from __future__ import annotations

from typing import List, Sequence

import torch

from .. import ops


def shrink_labels(label: torch.Tensor, factor: int, *, strict: bool = True) -> torch.Tensor:
    """``label`` (N x H x W or N x 1 x H x W, integer) shrunk by ``factor`` as Caffe's
    ``Interp(shrink_factor=factor)`` + int cast: N x h x w int64 with
    ``h = (H - 1) // factor + 1``.

    With ``strict`` (default) ``H - 1`` and ``W - 1`` must be multiples of
    ``factor``, so that the result is a pure decimation; otherwise Caffe blends
    neighbouring labels (e.g. 0 and 255 into 127), which ``strict=False``
    reproduces exactly.
    """
    if label.dim() == 4:
        if label.shape[1] != 1:
            raise ValueError(f"shrink_labels: expected N x 1 x H x W or N x H x W labels, got {tuple(label.shape)}")
        label = label[:, 0]
    if label.dim() != 3:
        raise ValueError(f"shrink_labels: expected N x H x W labels, got {tuple(label.shape)}")
    if label.dtype.is_floating_point:
        raise ValueError(f"shrink_labels: labels must be integers, got {label.dtype}")
    if factor < 1:
        raise ValueError(f"shrink_labels: factor must be >= 1, got {factor}")
    h, w = label.shape[-2:]
    if strict and ((h - 1) % factor or (w - 1) % factor):
        raise ValueError(f"shrink_labels: label size {h}x{w} is not 1 + a multiple of {factor}; Caffe would blend "
                         f"neighbouring labels here (pass strict=False to reproduce that)")
    if factor == 1:
        return label.to(torch.int64)
    shrunk = ops.interp(label[:, None].to(torch.float32), shrink_factor=factor)
    return shrunk[:, 0].to(torch.int64)  # Caffe's static_cast<int>: truncation toward zero


def supervision_labels(label: torch.Tensor, shrinks: Sequence[int], *, strict: bool = True) -> List[torch.Tensor]:
    """One shrunk label map per entry of a model's ``label_shrink`` output (computed once per factor)."""
    cache = {}
    out = []
    for f in shrinks:
        if f not in cache:
            cache[f] = shrink_labels(label, int(f), strict=strict)
        out.append(cache[f])
    return out
