"""Reading original Caffe files and running them.

``schema``   the Caffe protobuf schema (BVLC + DeepLab fork fields), built at import
             with the protobuf runtime's descriptor API: no generated module.
``reader``   prototxt / caffemodel parsing, V1 -> V2 upgrade, phase rules, blobs.
``layers``   Caffe layer semantics as small modules.
``net``      :class:`CaffeNet`: a runnable module from a prototxt.
``convert``  caffemodel -> safetensors + JSON sidecar, with verification.
"""

from .reader import (
    CaffeFormatError,
    filter_phase,
    load_caffemodel_blobs,
    read_caffemodel,
    read_net_prototxt,
    read_solver_prototxt,
    substitute,
)
from .net import CaffeNet

__all__ = [
    "CaffeFormatError",
    "CaffeNet",
    "filter_phase",
    "load_caffemodel_blobs",
    "read_caffemodel",
    "read_net_prototxt",
    "read_solver_prototxt",
    "substitute",
]
