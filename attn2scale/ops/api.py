"""The public op functions: Caffe's size rules, argument handling, and the
choice between the compiled kernels and the pure-PyTorch reference."""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch

from . import reference

try:  # loading the library registers torch.ops.attn2scale.*
    from attn2scale import _C  # noqa: F401

    _EXT_ERROR: Optional[BaseException] = None
except ImportError as exc:  # pragma: no cover - exercised only without a build
    _C = None
    _EXT_ERROR = exc

if _C is not None:
    from . import _registration  # noqa: F401

_warned = False
# Which devices have compiled kernels, decided once at import: the dispatcher
# query is not traceable by torch.compile.
_device_support = {
    key: _C is not None and torch._C._dispatch_has_kernel_for_dispatch_key("attn2scale::interp", key)
    for key in ("CPU", "CUDA")
}


# CUDA tensors but no nvcc-built CUDA kernels (a pip install without a CUDA
# toolkit): the same kernels compiled at run time through cupy's NVRTC, when
# cupy is installed; otherwise the reason, for the fallback warning. Decided
# by _select_nvrtc when the first CUDA tensor reaches _use_fused (or
# nvrtc_kernels_active() is asked), not at import: the decision asks
# torch.cuda.is_available() and may import cupy, which a CPU-only user should
# not pay for, or have happen, on `import attn2scale`.
_nvrtc_lib = None
_nvrtc_decided = _C is None  # nothing to decide without the extension
_nvrtc_why = "the extension failed to load" if _C is None else "not decided yet (no CUDA tensor has reached the ops)"


_nvrtc_lock = threading.Lock()


def _select_nvrtc() -> bool:
    """Whether CUDA tensors run the NVRTC kernels; decided (and the kernels
    registered) on the first call, cached afterwards. Under a lock, since
    threads (DataParallel replicas) may bring their first CUDA tensors at
    once and the kernels can be registered only once; decided even when the
    registration fails, which then says why in the fallback warning instead
    of being retried (and failing) on every call."""
    global _nvrtc_lib, _nvrtc_decided, _nvrtc_why
    if _nvrtc_decided:
        return _nvrtc_lib is not None
    with _nvrtc_lock:
        if not _nvrtc_decided:
            try:
                from . import nvrtc

                use, _nvrtc_why = nvrtc.select(_device_support["CUDA"])
                if use:
                    from . import _nvrtc_ops

                    _nvrtc_lib = _nvrtc_ops.register()
            except Exception as exc:  # noqa: BLE001 - reported by the fallback warning
                _nvrtc_lib = None
                _nvrtc_why = f"registering the NVRTC kernels failed ({type(exc).__name__}: {exc})"
            finally:
                _nvrtc_decided = True
    return _nvrtc_lib is not None


# Under torch.compile the first CUDA tensor may arrive while tracing: dynamo
# then calls _select_nvrtc as plain Python and takes its (from then on fixed)
# result as a constant, instead of tracing the cupy import and the op
# registration, which it cannot. This is the mark that
# torch.compiler.assume_constant_result sets; set here directly because the
# decorator imports torch._dynamo, about a second at every `import attn2scale`.
# tests/test_nvrtc_source.py holds the two together.
_select_nvrtc._dynamo_marked_constant = True


def nvrtc_kernels_active() -> bool:
    """True when CUDA tensors run the runtime-compiled (cupy NVRTC) kernels.
    Asking decides it (see _select_nvrtc), as the first CUDA tensor would."""
    return _select_nvrtc()


# Set by use_reference(). _use_fused reads this module global on every call, so
# torch.compile guards on its value: a function compiled under one setting is
# recompiled, not reused, when called under the other.
_force_reference = False


@contextlib.contextmanager
def use_reference(enabled: bool = True):
    """Run the pure-PyTorch reference ops (:mod:`attn2scale.ops.reference`) inside the block,
    even where compiled kernels exist: for benchmarks and comparisons of the two paths.

    >>> with use_reference():
    ...     y = interp(torch.randn(1, 2, 3, 3), (5, 5))   # reference.interp

    Process-wide (not per thread); nests, and restores the previous setting on exit.
    ``use_reference(False)`` re-enables the kernels inside an outer block.
    """
    global _force_reference
    saved = _force_reference
    _force_reference = bool(enabled)
    try:
        yield
    finally:
        _force_reference = saved


def reference_forced() -> bool:
    """True inside :func:`use_reference`: the ops run the reference whatever is built."""
    return _force_reference


def extension_available() -> bool:
    """True when the compiled kernels (attn2scale._C) are loaded."""
    return _C is not None


def cuda_kernels_available() -> bool:
    """True when the compiled extension carries CUDA kernels (a GPU is not required)."""
    return _has_kernel("CUDA")


def _has_kernel(key: str) -> bool:
    return _device_support.get(key, False)


def _use_fused(t: torch.Tensor) -> bool:
    global _warned
    if _force_reference:  # asked for, so no warning
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(t.device.type)
    if key is not None and _has_kernel(key):
        return True
    if key == "CUDA" and _select_nvrtc():
        return True
    if t.device.type == "meta":  # shape propagation: the registered fake kernels answer, or the reference does
        return _C is not None
    if not _warned:
        _warned = True
        why = f"the extension failed to load ({_EXT_ERROR})" if _C is None else f"no {t.device.type} kernels were built"
        if key == "CUDA" and _C is not None:
            why = _nvrtc_why
        warnings.warn(f"attn2scale: using the pure-PyTorch reference ops because {why}", RuntimeWarning, stacklevel=3)
    return False


def caffe_interp_size(
    height: int,
    width: int,
    *,
    shrink_factor: Optional[int] = None,
    zoom_factor: Optional[int] = None,
    out_height: Optional[int] = None,
    out_width: Optional[int] = None,
    pad_beg: int = 0,
    pad_end: int = 0,
) -> Tuple[int, int]:
    """Output size of Caffe's (DeepLab) Interp layer for an input of height x width.

    Branch order as in the layer: shrink only ``(H_eff-1)//s + 1``; zoom only
    ``H_eff + (H_eff-1)(z-1)``; explicit ``out_height``/``out_width`` (Caffe's
    ``height``/``width``) when neither or both factors are given and the size is
    set; shrink and zoom: shrink first, then zoom. ``H_eff = H + pad_beg +
    pad_end``; pads must be <= 0 (they crop).
    """
    if pad_beg > 0 or pad_end > 0:
        raise ValueError(f"Interp: pad_beg ({pad_beg}) and pad_end ({pad_end}) must be <= 0 (they crop)")
    h_eff, w_eff = height + pad_beg + pad_end, width + pad_beg + pad_end
    if h_eff <= 0 or w_eff <= 0:
        raise ValueError(f"Interp: cropping pad_beg={pad_beg} pad_end={pad_end} leaves nothing of {height}x{width}")
    for name, f in (("shrink_factor", shrink_factor), ("zoom_factor", zoom_factor)):
        if f is not None and f < 1:
            raise ValueError(f"Interp: {name} must be >= 1, got {f}")

    def shrink(v, s):
        return (v - 1) // s + 1

    def zoom(v, z):
        return v + (v - 1) * (z - 1)

    if shrink_factor is not None and zoom_factor is None:
        h, w = shrink(h_eff, shrink_factor), shrink(w_eff, shrink_factor)
    elif zoom_factor is not None and shrink_factor is None:
        h, w = zoom(h_eff, zoom_factor), zoom(w_eff, zoom_factor)
    elif out_height is not None and out_width is not None:
        h, w = out_height, out_width
    elif shrink_factor is not None and zoom_factor is not None:
        h, w = zoom(shrink(h_eff, shrink_factor), zoom_factor), zoom(shrink(w_eff, shrink_factor), zoom_factor)
    else:
        raise ValueError("Interp: give shrink_factor and/or zoom_factor, or both out_height and out_width")
    if h <= 0 or w <= 0:
        raise ValueError(f"Interp: output size {h}x{w} is not positive")
    return int(h), int(w)


def _check_size(size, op: str) -> Tuple[int, int]:
    if len(size) != 2:
        raise ValueError(f"{op}: size must be (H, W), got {size}")
    return int(size[0]), int(size[1])


def interp(
    x: torch.Tensor,
    size: Optional[Sequence[int]] = None,
    *,
    shrink_factor: Optional[int] = None,
    zoom_factor: Optional[int] = None,
    height: Optional[int] = None,
    width: Optional[int] = None,
    pad_beg: int = 0,
    pad_end: int = 0,
) -> torch.Tensor:
    """Caffe Interp: align-corners bilinear resize of an N x C x H x W tensor.

    Give the output ``size`` directly, or Caffe's interp_param fields
    (``shrink_factor``, ``zoom_factor``, ``height``/``width``) and let
    :func:`caffe_interp_size` compute it. Non-positive ``pad_beg``/``pad_end``
    crop the input first. Differentiable; equal sizes copy.

    >>> interp(torch.randn(1, 21, 21, 21), zoom_factor=2).shape
    torch.Size([1, 21, 41, 41])
    """
    if size is None:
        size = caffe_interp_size(
            x.shape[-2], x.shape[-1], shrink_factor=shrink_factor, zoom_factor=zoom_factor,
            out_height=height, out_width=width, pad_beg=pad_beg, pad_end=pad_end,
        )
    size = _check_size(size, "interp")
    if _use_fused(x):
        return torch.ops.attn2scale.interp(x, list(size), pad_beg, pad_end)
    return reference.interp(x, size, pad_beg, pad_end)


def scale_merge(
    scores: Sequence[torch.Tensor],
    size: Optional[Sequence[int]] = None,
    mode: str = "attention",
    logits: Optional[torch.Tensor] = None,
    gate: Optional[torch.Tensor] = None,
    avg_weight: Optional[float] = None,
    return_aux: bool = False,
) -> Union[torch.Tensor, Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """Resize S score maps (N x C x h_s x w_s) to ``size`` and merge them, in one pass.

    mode ``"avg"``: ``avg_weight * sum_s R_s(P_s)`` (default weight 1/S; the
    authors' average nets use Caffe Power scale 0.33333). ``"max"``: per-element
    max over scales, ties to the lowest scale. ``"attention"``: per-pixel
    softmax over the S channels of ``logits`` (N x S x H x W) weighting the
    scales. ``gate`` (N x C x H x W) multiplies the merge (the recalibrating
    branch). ``size`` defaults to the first (finest) scale's size.

    Returns the merge, or ``(merge, aux)`` with ``return_aux``: the attention
    weights (attention), the winning scale index as uint8 (max) or None (avg).
    Gradients flow to every score map at its own resolution, to the logits and
    to the gate; aux is not differentiable.
    """
    scores = list(scores)
    if not scores:
        raise ValueError("scale_merge: scores is empty; give one score map per scale")
    if size is None:
        size = scores[0].shape[-2:]
    size = _check_size(size, "scale_merge")
    if _use_fused(scores[0]):
        out, aux = torch.ops.attn2scale.scale_merge(scores, list(size), mode, logits, gate, avg_weight)
    else:
        out, aux = reference.scale_merge(scores, size, mode, logits, gate, avg_weight)
    if not return_aux:
        return out
    return out, (None if mode == "avg" else aux)


def upsample_argmax(
    scores: torch.Tensor, size: Sequence[int], return_score: bool = False
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Labels (N x H x W, int64) of ``scores`` (N x C x h x w) resized to ``size``.

    Align-corners bilinear as :func:`interp`, then argmax over classes (ties to
    the lowest class, as ``torch.argmax``), without allocating the N x C x H x W
    map. With ``return_score`` also the winning score. Inference only.
    """
    size = _check_size(size, "upsample_argmax")
    scores = scores.detach()
    if _use_fused(scores):
        labels, score = torch.ops.attn2scale.upsample_argmax(scores, list(size), return_score)
    else:
        labels, score = reference.upsample_argmax(scores, size, return_score)
    return (labels, score) if return_score else labels
