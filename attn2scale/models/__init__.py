"""Models: DeepLab-LargeFOV and the multi-scale share-net, with a small registry."""

from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from .largefov import DeepLabLargeFOV
from .multiscale import PYRAMID, AttentionHead, MultiScaleNet
from .recalib import RecalibAttentionNet
from .resnet_psp import PSPHead, ResNet34D8

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
    num_classes: int = 21, width_div: int = 1, scales=(1.0, 0.75, 0.5), merge: str = "attention",
    fc8_lr_scale: float = 10.0, dropout: float = 0.5, **kw
) -> nn.Module:
    """The share-net on DeepLab-LargeFOV; ``dropout`` is the backbone's (fc6, fc7), ``att_dropout``
    the attention head's."""
    backbone = DeepLabLargeFOV(num_classes=num_classes, width_div=width_div, fc8_lr_scale=fc8_lr_scale,
                               dropout=dropout)
    return MultiScaleNet(backbone, scales=scales, merge=merge, att_hidden=512 // width_div, **kw)


@register("recalib_attention")
def _recalib_attention(num_classes: int = 21, width_div: int = 1, backbone: str = "vgg16", **kw) -> nn.Module:
    """The follow-up model on ``backbone`` = "vgg16", "resnet34_d8" or "resnet34_d8_psp"."""
    if backbone == "vgg16":
        net = None
    elif backbone in ("resnet34_d8", "resnet34_d8_psp"):
        net = ResNet34D8(width_div=width_div, psp=backbone.endswith("psp"), head=False)
    else:
        raise ValueError(f"recalib_attention: unknown backbone {backbone!r}")
    return RecalibAttentionNet(num_classes=num_classes, width_div=width_div, backbone=net, **kw)


@register("resnet34_d8_psp")
def _resnet34_d8_psp(
    num_classes: int = 150, width_div: int = 1, psp: bool = True, bn: str = "frozen", scales=None, merge: str = "attention",
    **kw,
) -> nn.Module:
    """ResNet34-dilated8 (+ PSP); with ``scales`` (e.g. (1.0, 0.5)) wrapped in the share-net."""
    backbone = ResNet34D8(num_classes=num_classes, width_div=width_div, psp=psp, bn=bn)
    if scales is None:
        if kw or merge != "attention":
            raise TypeError(f"resnet34_d8_psp: {sorted(kw) + (['merge'] if merge != 'attention' else [])} "
                            "only apply to the share-net (give scales)")
        return backbone
    return MultiScaleNet(backbone, scales=scales, merge=merge, att_hidden=512 // width_div, **kw)


def build_model(name: str, **options) -> nn.Module:
    """Build a registered model by name (``deeplab_largefov``, ``attention_to_scale``,
    ``recalib_attention``, ``resnet34_d8_psp``)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**options)


__all__ = [
    "AttentionHead",
    "DeepLabLargeFOV",
    "MultiScaleNet",
    "PSPHead",
    "PYRAMID",
    "RecalibAttentionNet",
    "ResNet34D8",
    "build_model",
    "register",
]
