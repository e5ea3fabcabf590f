"""Fusion pass: the authors' merge patterns as one :func:`attn2scale.ops.scale_merge` call.

The attention merge (Softmax over scale logits -> Slice into one channel per
scale -> SpatialProduct per scale -> Eltwise SUM) and the average merge
(Eltwise SUM -> Power scale) are replaced by a :class:`FusedMerge` step when
their intermediate blobs feed nothing else. The pass reads the built net's
graph (``order``, ``types``, ``bottoms``, ``tops``, ``loss_weights``,
``layer(name)``) and returns the execution plan: ``(layer,)`` or ``(FusedMerge,)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from .. import ops


@dataclass
class FusedMerge:
    """One scale_merge call standing in for several layers."""

    mode: str
    scores: List[str]
    top: str
    layers: List[str]
    logits: Optional[str] = None
    avg_weight: Optional[float] = None


class _Graph:
    """Producer / consumer lookups over a built net."""

    def __init__(self, net):
        self.net = net
        self.uses: Counter = Counter(b for n in net.order for b in net.bottoms[n])
        self.producer = {t: n for n in net.order for t in net.tops[n]}

    def only_use(self, blob: str) -> bool:
        return self.uses[blob] == 1 and blob not in self.net.loss_weights

    def made_by(self, blob: str, caffe_type: str) -> Optional[str]:
        layer = self.producer.get(blob)
        return layer if layer is not None and self.net.types[layer] == caffe_type else None


def _match_attention(g: _Graph, name: str) -> Optional[FusedMerge]:
    net = g.net
    bots, top = net.bottoms[name], net.tops[name][0]
    prods = [g.made_by(b, "SpatialProduct") for b in bots]
    if not all(p is not None and g.only_use(b) for p, b in zip(prods, bots)):
        return None
    atts = [net.bottoms[p][1] for p in prods]
    slicer = g.made_by(atts[0], "Slice")
    if slicer is None or net.tops[slicer] != atts or not all(g.only_use(a) for a in atts):
        return None
    slice_layer = net.layer(slicer)
    if slice_layer.axis != 1 or any(s != 1 for s in slice_layer.sizes):
        return None
    soft_blob = net.bottoms[slicer][0]
    soft = g.made_by(soft_blob, "Softmax")
    if (soft is None or not g.only_use(soft_blob) or net.layer(soft).axis != 1
            or net.tops[soft][0] == net.bottoms[soft][0]):
        return None
    return FusedMerge("attention", [net.bottoms[p][0] for p in prods], top, [soft, slicer] + prods + [name],
                      logits=net.bottoms[soft][0])


def _match_average(g: _Graph, name: str) -> Optional[FusedMerge]:
    net = g.net
    top = net.tops[name][0]
    following = [n for n in net.order if net.bottoms[n] == [top]]
    if len(following) != 1 or not g.only_use(top) or net.types[following[0]] != "Power":
        return None
    power = net.layer(following[0])
    if power.power != 1.0 or power.shift != 0.0:
        return None
    return FusedMerge("avg", list(net.bottoms[name]), net.tops[following[0]][0], [name, following[0]],
                      avg_weight=power.scale)


def _overwritten_inside(net, f: FusedMerge, last: str, pos: Dict[str, int]) -> bool:
    """The fused call reads its inputs where the pattern ends: true when anything inside the
    pattern's span (an in-place ReLU on a score map, say) writes to one of them first."""
    inputs = set(f.scores) | ({f.logits} if f.logits else set())
    for reader_layer in f.layers:
        for b in inputs & set(net.bottoms[reader_layer]):
            if any(b in net.tops[n] for n in net.order[pos[reader_layer] + 1: pos[last] + 1]):
                return True
    return False


def fusion_plan(net) -> List[tuple]:
    """Execution steps of ``net``: ``(layer,)`` or ``(FusedMerge,)`` replacing a merge pattern."""
    g = _Graph(net)
    fused: Dict[str, FusedMerge] = {}  # keyed by the last layer of the pattern
    for name in net.order:
        if net.types[name] != "Eltwise":
            continue
        layer, bots = net.layer(name), net.bottoms[name]
        if layer.op != "SUM" or layer.coeff or len(set(bots)) != len(bots) or net.tops[name][0] in bots:
            continue
        merge = _match_attention(g, name)
        if merge is not None:
            fused[name] = merge
            continue
        merge = _match_average(g, name)
        if merge is not None:
            fused[merge.layers[-1]] = merge
    pos = {n: i for i, n in enumerate(net.order)}
    fused = {k: f for k, f in fused.items() if not _overwritten_inside(net, f, k, pos)}
    absorbed = {n for f in fused.values() for n in f.layers}
    return [(fused[n],) if n in fused else (n,) for n in net.order if n in fused or n not in absorbed]


def run_fused(f: FusedMerge, blobs: Dict[str, torch.Tensor], fail: Callable[[str], Exception]) -> torch.Tensor:
    """The merge of ``f`` on the blobs it reads; shape mismatches raise ``fail(message)``."""
    scores = [blobs[s] for s in f.scores]
    for s, t in zip(f.scores, scores):
        if t.shape != scores[0].shape:
            raise fail(f"merge {f.top!r}: score {s!r} has shape {tuple(t.shape)}, "
                       f"{f.scores[0]!r} has {tuple(scores[0].shape)}")
    size = scores[0].shape[-2:]
    if f.mode == "attention":
        logits = blobs[f.logits]
        if logits.shape[1] != len(scores):
            raise fail(f"merge {f.top!r}: {logits.shape[1]} attention channels for {len(scores)} scales")
        return ops.scale_merge(scores, size, mode="attention", logits=logits)
    return ops.scale_merge(scores, size, mode="avg", avg_weight=f.avg_weight)
