"""Reading original Caffe files and running them. Where to look, in the order data flows:

``schema``         the Caffe protobuf schema (BVLC + the DeepLab forks' fields), built at
                   import with the protobuf runtime's descriptor API: no generated module.
``errors``         CaffeFormatError (every reading failure) and LenientReadWarning.
``reader``         prototxt / caffemodel parsing, ``${NAME}`` placeholders, phase rules;
                   ``lenient`` finds other forks' unknown fields for ``lenient=True``.
``upgrade``        V1 -> V2 layers, net-level inputs, other Caffes' binary field numbers.
``blobs``          blobs as numpy arrays; a caffemodel's weights by layer.
``layers``         Caffe layer semantics, a module per family, registered by Caffe type.
``net``            :class:`CaffeNet`: a runnable module from a prototxt (build, share, load).
``fusion``         the pass running the authors' merge patterns as one fused op.
``fillers``        Caffe's weight fillers.
``convert``        caffemodel -> safetensors + JSON sidecar (``model_options`` reads the
                   hand-written models' options off the files, ``verify`` compares blobs).
"""

from .blobs import load_caffemodel_blobs
from .errors import CaffeFormatError
from .net import CaffeNet
from .reader import filter_phase, read_caffemodel, read_net_prototxt, read_solver_prototxt, substitute

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
