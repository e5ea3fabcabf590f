"""Samplers and the DataLoader factory.

Training reads an endless stream, as Caffe's data layer does: the list is
reshuffled at every pass and a batch may straddle two passes. Position ``p``
of the stream is the same image with the same random draws whatever the
number of processes or workers. The stream is cut into micro-batches of
``batch_size`` consecutive positions; under torchrun rank ``r`` of ``W`` reads
micro-batches ``r, r + W, r + 2W, ...``. So ``W`` ranks with ``iter_size / W``
micro-batches per step read exactly the micro-batches, grouped the same way,
that one process with ``iter_size`` reads: Caffe normalises each loss per
micro-batch, so the grouping matters, not just the set of images. Starting at
a position (``start``, a multiple of the batch size) resumes the stream.
"""

from __future__ import annotations

import functools
import os
import random
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

# numpy SeedSequence keys: (seed, purpose, ...), so that the permutation and
# the per-sample draws never share a stream.
_PERMUTATION, _SAMPLE, _WORKER = 0, 1, 2


def dist_rank_world() -> Tuple[int, int]:
    """(rank, world size) of the running torch.distributed group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun started us, but nobody joined the group yet
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} (torchrun) but torch.distributed is not "
                           "initialised: call init_process_group before building loaders, or every rank reads "
                           "the same data")
    return 0, 1


class StreamSampler(Sampler):
    """Endless (index, sample_seed) stream over ``n`` items, shuffled per pass.

    Args:
        n: dataset length.
        seed: run seed.
        shuffle: reshuffle at every pass (Caffe's ``shuffle: true``); else list order.
        batch_size: the micro-batch: blocks of this many consecutive positions.
        rank, world: this process's share (blocks rank, rank + world, ...).
        start: the first global position (resume); a multiple of ``batch_size``.
    """

    def __init__(self, n: int, seed: int, *, shuffle: bool = True, batch_size: int = 1, rank: int = 0,
                 world: int = 1, start: int = 0):
        if n <= 0:
            raise ValueError(f"StreamSampler: dataset is empty (n={n})")
        if not 0 <= rank < world:
            raise ValueError(f"StreamSampler: rank {rank} is not in [0, {world})")
        if batch_size <= 0:
            raise ValueError(f"StreamSampler: batch_size must be positive, got {batch_size}")
        if start < 0 or start % batch_size:
            raise ValueError(f"StreamSampler: start {start} must be a non-negative multiple of batch_size {batch_size}")
        self.n, self.seed, self.shuffle, self.rank, self.world = n, int(seed), shuffle, rank, world
        self.batch_size, self.start = batch_size, start
        self._perm: Dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, _PERMUTATION, epoch]).permutation(self.n)}
        return self._perm[epoch]

    def item(self, position: int) -> Tuple[int, int]:
        """(dataset index, sample seed) at global stream ``position``."""
        epoch, within = divmod(position, self.n)
        seed = int(np.random.SeedSequence([self.seed, _SAMPLE, position]).generate_state(1, np.uint64)[0] >> 1)
        return int(self.permutation(epoch)[within]), seed

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        block = self.start // self.batch_size + self.rank
        while True:
            for p in range(block * self.batch_size, (block + 1) * self.batch_size):
                yield self.item(p)
            block += self.world

    def __len__(self) -> int:  # endless; DataLoader only needs len for progress bars
        raise TypeError("StreamSampler is endless")


class ShardSampler(Sampler):
    """Evaluation order: every index once, rank ``r`` of ``W`` taking r, r + W, ... (no padding,
    no duplicates, so per-rank confusion matrices add up to the single-process one)."""

    def __init__(self, n: int, *, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"ShardSampler: rank {rank} is not in [0, {world})")
        self.indices: List[int] = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def pad_collate(items: List[dict], ignore_label: int = 255) -> dict:
    """Stack items; images of different sizes are padded at the bottom/right with 0
    (the mean colour after subtraction) and labels with ``ignore_label``."""
    h = max(it["image"].shape[-2] for it in items)
    w = max(it["image"].shape[-1] for it in items)
    out = {
        "image": torch.zeros(len(items), 3, h, w, dtype=items[0]["image"].dtype),
        "size": torch.stack([it["size"] for it in items]),
        "name": [it["name"] for it in items],
        "index": torch.tensor([it["index"] for it in items], dtype=torch.int64),
    }
    for i, it in enumerate(items):
        out["image"][i, :, : it["image"].shape[-2], : it["image"].shape[-1]] = it["image"]
    if all("label" in it for it in items):
        out["label"] = torch.full((len(items), h, w), ignore_label, dtype=torch.int64)
        for i, it in enumerate(items):
            out["label"][i, : it["label"].shape[-2], : it["label"].shape[-1]] = it["label"]
    return out


def _seed_worker(worker_id: int) -> None:
    # Everything a transform might use besides its per-sample generator.
    info = torch.utils.data.get_worker_info()
    base = info.seed if info is not None else worker_id
    np.random.seed(base % 2**32)
    random.seed(base)


def build_loader(dataset, batch_size: int, *, train: bool, seed: int = 0, workers: int = 2,
                 pin_memory: Optional[bool] = None, start: int = 0, shuffle: bool = True,
                 rank: Optional[int] = None, world: Optional[int] = None) -> DataLoader:
    """A DataLoader over ``dataset`` for this process.

    ``train``: the endless shuffled stream (:class:`StreamSampler`, in blocks of
    ``batch_size``, from stream position ``start``); else every item once
    (:class:`ShardSampler`), in list order, padded to a common size per batch. Under torchrun the rank and
    world size are taken from the process group unless given. Worker seeds
    come from ``seed`` and the rank, so a run is reproducible for any number
    of workers.
    """
    if batch_size <= 0:
        raise ValueError(f"build_loader: batch_size must be positive, got {batch_size}")
    if rank is None or world is None:
        r, w = dist_rank_world()
        rank = r if rank is None else rank
        world = w if world is None else world
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, _WORKER, rank]).generate_state(1)[0]))
    sampler = (StreamSampler(len(dataset), seed, shuffle=shuffle, batch_size=batch_size, rank=rank, world=world,
                             start=start)
               if train else ShardSampler(len(dataset), rank=rank, world=world))
    ignore = getattr(getattr(dataset, "info", None), "ignore_label", 255)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
        drop_last=False, collate_fn=functools.partial(pad_collate, ignore_label=ignore), worker_init_fn=_seed_worker,
        generator=gen, persistent_workers=workers > 0 and train,
    )
