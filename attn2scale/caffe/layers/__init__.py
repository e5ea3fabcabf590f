"""Caffe layers as small ``nn.Module`` s, by family; each class registers itself for its
Caffe type strings (:data:`LAYER_TYPES`).

``base``           the base class, the registry, shared geometry helpers
``conv``           Convolution, Deconvolution, InnerProduct
``pooling``        Pooling (Caffe's rounding)
``elementwise``    activations, Power, Softmax, Eltwise
``normalization``  BatchNorm, Scale, Bias
``plumbing``       fed inputs, Split, Concat, Slice, Tile, Flatten, sinks
``loss``           SoftmaxWithLoss, Accuracy, ArgMax
``deeplab``        Interp, SpatialProduct, SegAccuracy, BiasChannel, DenseCRF
"""

from typing import List

from . import conv, deeplab, elementwise, loss, normalization, plumbing, pooling  # noqa: F401 (registration)
from .base import LAYER_TYPES, CaffeLayer, LayerError, channel_topk
from .deeplab import NOT_IMPLEMENTED, CRFKernels, CRFSolver, DenseCRF
from .elementwise import Eltwise, Power, Softmax
from .plumbing import INPUT_TYPES, SINK_TYPES, InputLayer, Slice

__all__ = [
    "CRFKernels", "CRFSolver", "CaffeLayer", "DenseCRF", "Eltwise", "INPUT_TYPES", "InputLayer", "LAYER_TYPES",
    "LayerError", "NOT_IMPLEMENTED", "Power", "SINK_TYPES", "Slice", "Softmax", "channel_topk", "supported_types",
]


def supported_types() -> List[str]:
    return sorted(LAYER_TYPES)
