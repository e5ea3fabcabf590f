"""Caffe's per-parameter learning-rate and weight-decay multipliers, one protocol for
every model.

Every model (and :class:`attn2scale.caffe.CaffeNet`) has ``caffe_param_groups()``
returning a list of :func:`param_group` dicts, one per trainable parameter:
``{"params": [p], "name": str, "lr_mult": float, "decay_mult": float}`` — torch
optimizer parameter groups, which :class:`attn2scale.engine.solver.CaffeSGD` reads.

The convention of the authors' prototxts (and DeepLab's): weights 1/1, biases
2/0; a newly initialised head (fc8, the attention net, the follow-up model's
decoder) 10x that: weights 10/1, biases 20/0. Normalisation layers (BatchNorm
weight and bias) take the layer's rate and no decay.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence

from torch import nn

HEAD_SCALE = 10.0


def param_group(name: str, p: nn.Parameter, lr_mult: float, decay_mult: float) -> dict:
    return {"params": [p], "name": name, "lr_mult": float(lr_mult), "decay_mult": float(decay_mult)}


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm))


def caffe_convention(module: nn.Module, prefix: str = "", *, head: Sequence[str] = (),
                     exclude: Sequence[str] = (), head_scale: float = HEAD_SCALE) -> List[dict]:
    """Groups for ``module``'s trainable parameters by the convention above; parameters
    under a submodule named in ``head`` get the head rates, those under ``exclude`` none
    (another rule covers them). Frozen parameters are left out."""
    out = []
    for mod_name, mod in module.named_modules():
        if any(_under(mod_name, e) for e in exclude):
            continue
        scale = head_scale if any(_under(mod_name, h) for h in head) else 1.0
        for pname, p in mod.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{prefix}{mod_name}.{pname}" if mod_name else f"{prefix}{pname}"
            if _is_norm(mod):
                out.append(param_group(full, p, scale, 0.0))
            elif pname == "bias":
                out.append(param_group(full, p, 2.0 * scale, 0.0))
            else:
                out.append(param_group(full, p, scale, 1.0))
    return out


def _under(name: str, root: str) -> bool:
    """Whether module ``name`` is ``root`` or inside it ("" is the whole module)."""
    return root == "" or name == root or name.startswith(root + ".")


def prefixed(groups: Iterable[dict], prefix: str) -> List[dict]:
    """``groups`` of a submodule, their names seen from its parent."""
    return [dict(g, name=prefix + g["name"]) for g in groups]
