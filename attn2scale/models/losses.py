"""Caffe's ``SoftmaxWithLoss`` as one function: the training engine's loss and the
Caffe layer of :mod:`attn2scale.caffe` both call it.

Value: ``-log(max(p, FLT_MIN))`` of the softmax, as Caffe computes it; gradient:
Caffe's ``p - onehot`` (the gradient of ``-log_softmax``, finite where ``p``
underflows). Ignored positions add nothing and get a zero gradient. The sum is
divided by Caffe's normalisation: VALID (the non-ignored count; the default),
FULL (all positions), BATCH_SIZE (the outer count) or NONE, and never by less
than 1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

FLT_MIN = float(np.finfo(np.float32).tiny)
NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")


def softmax_with_loss(scores: torch.Tensor, label: torch.Tensor, *, ignore: Sequence[int] = (255,),
                      normalization: str = "VALID", axis: int = 1, where: str = "SoftmaxWithLoss") -> torch.Tensor:
    """Caffe's SoftmaxWithLoss of ``scores`` (classes on ``axis``) against integer ``label``
    (one value per position; e.g. N x H x W or N x 1 x H x W for N x C x H x W scores).

    A label outside ``[0, C)`` that is not ignored is an error naming ``where`` and the value.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"{where}: normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    axis = axis % scores.dim()
    c = scores.shape[axis]
    outer = int(np.prod(scores.shape[:axis]))
    inner = int(np.prod(scores.shape[axis + 1:]))
    if label.numel() != outer * inner:
        raise ValueError(f"{where}: label {tuple(label.shape)} must hold one value per position of the scores "
                         f"{tuple(scores.shape)} ({outer} x {inner}); are they the same H x W?")
    lab = label.detach().reshape(-1).long()
    valid = torch.ones_like(lab, dtype=torch.bool)
    for v in ignore:
        valid &= lab != v
    if scores.device.type != "meta":
        bad = valid & ((lab < 0) | (lab >= c))
        if bool(bad.any()):
            raise ValueError(f"{where}: label values must be in 0..{c - 1}"
                             f"{f' or ignored {list(ignore)}' if ignore else ''}; found {int(lab[bad][0])}")
    safe = torch.where(valid, lab, torch.zeros_like(lab))
    logp = torch.log_softmax(scores, dim=axis).movedim(axis, -1).reshape(-1, c)
    grad_path = -logp.gather(1, safe[:, None])[:, 0]
    prob = torch.softmax(scores.detach(), dim=axis).movedim(axis, -1).reshape(-1, c)
    value = -torch.log(prob.gather(1, safe[:, None])[:, 0].clamp(min=FLT_MIN))
    nll = grad_path + (value - grad_path).detach()
    total = torch.where(valid, nll, torch.zeros_like(nll)).sum()
    if normalization == "FULL":
        norm = float(outer * inner)
    elif normalization == "VALID":
        norm = valid.sum().to(scores.dtype).clamp(min=1.0) if ignore else float(outer * inner)
    elif normalization == "BATCH_SIZE":
        norm = float(outer)
    else:
        norm = 1.0
    return total / (max(1.0, norm) if isinstance(norm, float) else norm)
