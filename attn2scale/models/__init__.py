"""Models: DeepLab-LargeFOV and the multi-scale share-net, with a small registry."""

from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from .largefov import DeepLabLargeFOV
from .multiscale import PYRAMID, AttentionHead, MultiScaleNet

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn

    return deco


@register("deeplab_largefov")
def _largefov(num_classes: int = 21, width_div: int = 1, pool5a: bool = False, **kw) -> nn.Module:
    return DeepLabLargeFOV(num_classes=num_classes, width_div=width_div, pool5a=pool5a, **kw)


@register("attention_to_scale")
def _attention_to_scale(
    num_classes: int = 21, width_div: int = 1, scales=(1.0, 0.75, 0.5), merge: str = "attention", **kw
) -> nn.Module:
    backbone = DeepLabLargeFOV(num_classes=num_classes, width_div=width_div)
    return MultiScaleNet(backbone, scales=scales, merge=merge, att_hidden=512 // width_div, **kw)


def build_model(name: str, **options) -> nn.Module:
    """Build a registered model by name (``deeplab_largefov``, ``attention_to_scale``)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**options)


__all__ = ["AttentionHead", "DeepLabLargeFOV", "MultiScaleNet", "PYRAMID", "build_model", "register"]
