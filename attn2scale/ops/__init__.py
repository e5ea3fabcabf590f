"""Fused score-map ops (``torch.ops.attn2scale.*``) and their pure-PyTorch twins.

``interp``           Caffe Interp: align-corners bilinear resize with Caffe's
                     size rules (:func:`caffe_interp_size`).
``scale_merge``      resize S score maps to one size and merge them by
                     average, max or a per-pixel softmax attention, with an
                     optional per-class gate, in one pass.
``upsample_argmax``  labels of a bilinearly resized score map without
                     materialising it.

When the compiled extension is missing, every function runs the reference
implementation in :mod:`attn2scale.ops.reference` and warns once. CUDA
tensors with a CPU-only build run the same CUDA kernels compiled at run time
by cupy's NVRTC when cupy is installed (:mod:`attn2scale.ops.nvrtc`). Inside
``with use_reference():`` every function runs the reference on purpose (no
warning), e.g. to compare or benchmark the two paths.
"""

from .api import (
    caffe_interp_size,
    cuda_kernels_available,
    extension_available,
    interp,
    nvrtc_kernels_active,
    reference_forced,
    scale_merge,
    upsample_argmax,
    use_reference,
)
from . import reference
from .reference import MERGE_MODES

__all__ = [
    "MERGE_MODES",
    "caffe_interp_size",
    "cuda_kernels_available",
    "extension_available",
    "interp",
    "nvrtc_kernels_active",
    "reference",
    "reference_forced",
    "scale_merge",
    "upsample_argmax",
    "use_reference",
]
