"""One solver iteration's gradient accumulation, as Caffe's ``Solver::Step``:
``iter_size`` forward/backward passes whose gradients add up in ``.grad``."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, List

import torch


def accumulate_gradients(loss_fn: Callable[[object], torch.Tensor], micro_batches: Iterable,
                         no_sync: Callable[[], contextlib.AbstractContextManager] = None) -> List[torch.Tensor]:
    """Backward ``loss_fn(batch)`` for every micro-batch (each loss normalised on its own, as
    Caffe's loss layers do); the gradients sum in ``.grad`` and the solver divides by their
    number. ``no_sync`` (DDP's) skips the all-reduce on all but the last micro-batch.
    Returns the detached losses."""
    batches = list(micro_batches)
    losses = []
    for k, batch in enumerate(batches):
        ctx = no_sync() if (no_sync is not None and k < len(batches) - 1) else contextlib.nullcontext()
        with ctx:
            loss = loss_fn(batch)
            loss.backward()
        losses.append(loss.detach())
    return losses
