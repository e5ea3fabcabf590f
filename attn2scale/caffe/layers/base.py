"""The base of every Caffe layer module, the registry by Caffe type, and shared helpers.

A layer is built from its LayerParameter and the shapes of its bottoms (Caffe
sizes parameters at setup from the bottoms, and so do we); ``forward`` takes the
bottom tensors and returns the list of tops. A subclass registers itself for the
Caffe type strings in its ``caffe_types``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from torch import nn

#: no real Caffe layer comes near this (VGG's fc6 has 1e8); a bigger one is a corrupted prototxt
MAX_PARAM_ELEMENTS = 1 << 31

Shape = Tuple[int, ...]

#: Caffe type string -> layer class; filled by CaffeLayer subclasses as they are defined
LAYER_TYPES: Dict[str, Type["CaffeLayer"]] = {}


class LayerError(ValueError):
    """A layer that cannot be built or run, named with its type."""


class CaffeLayer(nn.Module):
    """Base class: keeps the Caffe name/type and the parameter specs."""

    #: the Caffe type strings this class implements (registered at class creation)
    caffe_types: Tuple[str, ...] = ()
    #: tops that are produced (None: as many as the prototxt names)
    n_tops: Optional[int] = 1
    #: the phase of the net the layer belongs to (set by CaffeNet): Caffe fixes some defaults by it
    #: (BatchNorm's use_global_stats), independently of ``.train()`` / ``.eval()``
    phase: str = "TEST"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.__dict__.get("caffe_types", ()):
            if name in LAYER_TYPES:
                raise TypeError(f"Caffe type {name!r} is registered twice: {LAYER_TYPES[name].__name__} "
                                f"and {cls.__name__}")
            LAYER_TYPES[name] = cls

    def __init__(self, lp, bottom_shapes: Sequence[Shape]):
        super().__init__()
        self.caffe_name = lp.name
        self.caffe_type = lp.type
        self.bottom_shapes = [tuple(s) for s in bottom_shapes]
        self.n_top_names = len(lp.top)
        # Parameter names in Caffe's blob order (weight, bias, ...).
        self.blob_names: List[str] = []
        self.fillers: List = []

    # -- helpers -------------------------------------------------------
    def fail(self, msg: str) -> LayerError:
        return LayerError(f"layer {self.caffe_name!r} ({self.caffe_type}): {msg}")

    def add_blob(self, name: str, shape: Shape, filler) -> None:
        if any(d <= 0 for d in shape):
            raise self.fail(f"parameter {name!r} would have shape {tuple(shape)}; check num_output and the bottom shapes")
        if int(np.prod(shape, dtype=np.float64)) > MAX_PARAM_ELEMENTS:
            raise self.fail(f"parameter {name!r} would have shape {tuple(shape)}, more than {MAX_PARAM_ELEMENTS} "
                            "elements; a corrupted prototxt?")
        self.register_parameter(name, nn.Parameter(torch.empty(shape, device="meta")))
        self.blob_names.append(name)
        self.fillers.append(filler)

    def blobs(self) -> List[nn.Parameter]:
        return [getattr(self, n) for n in self.blob_names]

    def reset_state(self) -> None:
        """Clear run-time state (buffers come out of ``to_empty`` uninitialised); most layers have none."""

    def extra_repr(self) -> str:
        return f"caffe_name={self.caffe_name!r}"


# --------------------------------------------------------------------------
# Helpers shared by the layer families
# --------------------------------------------------------------------------

_HW_FIELDS = {"kernel_size": ("kernel_h", "kernel_w"), "pad": ("pad_h", "pad_w"), "stride": ("stride_h", "stride_w")}


def hw_field(param, field: str, default: int, name: str) -> Tuple[int, int]:
    """Caffe's (height, width) of a geometry field: ``field_h``/``field_w``, or 1 or 2 repeated values."""
    h_f, w_f = _HW_FIELDS.get(field, (None, None))
    if h_f is not None and (param.HasField(h_f) or param.HasField(w_f)):
        return int(getattr(param, h_f)), int(getattr(param, w_f))
    values = getattr(param, field)
    if isinstance(values, int):  # a singular field (Pooling)
        return (int(values), int(values)) if param.HasField(field) else (default, default)
    values = list(values)
    if not values:
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise LayerError(f"{name}: {field} has {len(values)} values; 2-D layers take 1 or 2")


def check_4d(layer: CaffeLayer, shape: Shape, what: str = "bottom") -> None:
    if len(shape) != 4:
        raise layer.fail(f"{what} must be N x C x H x W, got shape {tuple(shape)}")


def channel_topk(x: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-k channel indices and values per pixel, ties to the higher channel as the fork's
    ``std::partial_sort`` with ``greater<pair<value, index>>`` orders them."""
    x = x.detach()
    val, idx = torch.sort(x.flip(1), dim=1, descending=True, stable=True)
    return x.shape[1] - 1 - idx[:, :k], val[:, :k]
