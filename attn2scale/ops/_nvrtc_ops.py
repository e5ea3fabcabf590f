"""The five ops on CUDA tensors through the NVRTC-compiled kernels.

Registered for torch's CUDA dispatch key by :func:`register` (see
attn2scale/ops/nvrtc.py), so the fake kernels of _registration.py and the
C++ autograd kernels (csrc/autograd.cpp, Autograd key) apply unchanged. Each
function mirrors csrc/cuda/ops_cuda.cpp (checks, contiguous inputs,
allocation) and launchers.inl (which kernels, how many blocks). The checks
are _registration.py's twins of csrc/op_common.cpp, run before anything is
allocated or launched: a bad call raises the C++ op's error instead of
letting a kernel read out of bounds.
"""

from __future__ import annotations

import numpy as np
import torch

from . import nvrtc
from ._registration import (_check_interp, _check_interp_backward, _check_merge, _check_merge_backward,
                            _check_upsample_argmax)
from .reference import MERGE_MODES

_AVG, _MAX, _ATT = (MERGE_MODES[m] for m in ("avg", "max", "attention"))

INTERP_ARGS = np.dtype([("planes", "<i8"), ("H", "<i4"), ("W", "<i4"), ("off", "<i4"), ("He", "<i4"),
                        ("We", "<i4"), ("Ho", "<i4"), ("Wo", "<i4")], align=True)


def merge_args_dtype(max_scales: int) -> np.dtype:
    """csrc/cuda/launch.h's MergeArgs (C layout: numpy's align=True)."""
    return np.dtype([("mode", "<i4"), ("S", "<i4"), ("N", "<i8"), ("C", "<i8"), ("H", "<i4"), ("W", "<i4"),
                     ("h", "<i4", (max_scales,)), ("w", "<i4", (max_scales,)), ("P", "<u8", (max_scales,)),
                     ("gate", "<u8"), ("avg_weight", "<f8")], align=True)


def _ptr(t):
    return np.uint64(t.data_ptr() if t is not None and t.numel() else 0)


def _launch(t: torch.Tensor, name: str, n: int, *args):
    """name<T...>(args) over blocks_for(n) blocks on torch's current stream of t's device."""
    cupy = nvrtc.require_cupy()
    threads, _ = nvrtc.launch_geometry()
    tname = nvrtc.DTYPES[t.dtype]
    # The function is fetched with t's device current: a cupy RawModule's functions belong to the device
    # current when they are looked up.
    with cupy.cuda.Device(t.device.index), cupy.cuda.ExternalStream(torch.cuda.current_stream(t.device).cuda_stream):
        fn = nvrtc.module(tname).get_function(name.replace("<T", "<" + tname))
        fn((nvrtc.blocks_for(n),), (threads,), args)


def _interp_struct(planes, H, W, pad_beg, pad_end, Ho, Wo):
    """op_common.cpp's InterpGeometry (the arguments are checked by the caller)."""
    he, we = H + pad_beg + pad_end, W + pad_beg + pad_end
    a = np.zeros((), INTERP_ARGS)
    for k, v in dict(planes=planes, H=H, W=W, off=-pad_beg, He=he, We=we, Ho=Ho, Wo=Wo).items():
        a[k] = v
    return a[()]


def interp(x, size, pad_beg=0, pad_end=0):
    _check_interp(x, size, pad_beg, pad_end)
    x = x.contiguous()
    n, c = x.shape[:2]
    y = x.new_empty((n, c, size[0], size[1]))
    a = _interp_struct(n * c, x.shape[2], x.shape[3], pad_beg, pad_end, size[0], size[1])
    if y.numel():
        _launch(x, "a2s::kern::interp_forward<T>", y.numel(), _ptr(x), _ptr(y), a)
    return y


def interp_backward(grad, input_shape, pad_beg=0, pad_end=0):
    _check_interp_backward(grad, input_shape, pad_beg, pad_end)
    grad = grad.contiguous()
    n, c, H, W = (int(v) for v in input_shape)
    gx = grad.new_empty((n, c, H, W))
    a = _interp_struct(n * c, H, W, pad_beg, pad_end, grad.shape[2], grad.shape[3])
    if gx.numel():
        _launch(grad, "a2s::kern::interp_backward<T>", gx.numel(), _ptr(grad), _ptr(gx), a)
    return gx


def _merge_struct(scores, size, mode, gate, avg_weight):
    """csrc/cuda/launch.h's MergeArgs (the arguments are checked by the caller)."""
    S = len(scores)
    a = np.zeros((), merge_args_dtype(nvrtc.max_scales()))
    a["mode"], a["S"], a["N"], a["C"], a["H"], a["W"] = MERGE_MODES[mode], S, *scores[0].shape[:2], *size
    for s, p in enumerate(scores):
        a["h"][s], a["w"][s], a["P"][s] = p.shape[2], p.shape[3], _ptr(p)
    a["gate"] = _ptr(gate)
    a["avg_weight"] = 1.0 / S if avg_weight is None else avg_weight
    return a[()]


def _contig(ts):
    return [t.contiguous() if t is not None else None for t in ts]


def scale_merge(scores, size, mode, logits=None, gate=None, avg_weight=None):
    _check_merge(scores, size, mode, logits, gate, avg_weight)
    *scores, logits, gate = _contig(list(scores) + [logits, gate])
    s0, (H, W), S = scores[0], size, len(scores)
    n, c = s0.shape[:2]
    out = s0.new_empty((n, c, H, W))
    aux = {_ATT: lambda: s0.new_empty((n, S, H, W)), _MAX: lambda: s0.new_empty((n, c, H, W), dtype=torch.uint8),
           _AVG: lambda: s0.new_empty((0,))}[MERGE_MODES[mode]]()
    if out.numel() == 0 and aux.numel() == 0:
        return out, aux
    a, m = _merge_struct(scores, size, mode, gate, avg_weight), MERGE_MODES[mode]
    if m == _ATT:
        _launch(s0, "a2s::kern::softmax_scales_kernel<T>", n * H * W, _ptr(logits), _ptr(aux), np.int64(n),
                np.int32(S), np.int64(H * W))
    _launch(s0, f"a2s::kern::merge_forward<T, {m}>", out.numel(), a, _ptr(aux if m == _ATT else None), _ptr(out),
            _ptr(aux if m == _MAX else None))
    return out, aux


def scale_merge_backward(grad, scores, mode, aux, gate=None, avg_weight=None):
    _check_merge_backward(grad, scores, mode, aux, gate, avg_weight)
    size = (grad.shape[2], grad.shape[3])
    *scores, grad, aux, gate = _contig(list(scores) + [grad, aux, gate])
    n, c = scores[0].shape[:2]
    # The kernels write every element (zeros where no output pixel reads it,
    # e.g. for a grad of 0 rows); with N or C == 0 nothing runs and the
    # (logits) gradient is zero, as in ops_cuda.cpp.
    new = torch.zeros_like if n == 0 or c == 0 else torch.empty_like
    g_scores = [new(p) for p in scores]
    g_logits = new(grad.new_empty((n, len(scores), *size))) if mode == "attention" else grad.new_empty((0,))
    g_gate = new(gate) if gate is not None else grad.new_empty((0,))
    if n == 0 or c == 0:
        return g_scores, g_logits, g_gate
    a, m = _merge_struct(scores, size, mode, gate, avg_weight), MERGE_MODES[mode]
    wts, arg = (aux if m == _ATT else None), (aux if m == _MAX else None)
    for s, gp in enumerate(g_scores):
        _launch(grad, f"a2s::kern::merge_backward_scores<T, {m}>", gp.numel(), a, np.int32(s), _ptr(grad),
                _ptr(wts), _ptr(arg), _ptr(gp))
    if m == _ATT or gate is not None:
        _launch(grad, f"a2s::kern::merge_backward_pixels<T, {m}>", n * size[0] * size[1], a, _ptr(grad),
                _ptr(wts), _ptr(g_logits), _ptr(g_gate))
    return g_scores, g_logits, g_gate


def upsample_argmax(scores, size, with_score=False):
    _check_upsample_argmax(scores, size)
    x = scores.contiguous()
    n, c, h, w = x.shape
    labels = x.new_empty((n, size[0], size[1]), dtype=torch.long)
    score = x.new_empty((n, size[0], size[1]) if with_score else (0,))
    if labels.numel():
        _launch(x, "a2s::kern::upsample_argmax_kernel<T>", labels.numel(), _ptr(x), np.int64(n), np.int64(c),
                np.int32(h), np.int32(w), np.int32(size[0]), np.int32(size[1]), _ptr(labels),
                _ptr(score if with_score else None))
    return labels, score


def register():
    """Make these the CUDA implementations of torch.ops.attn2scale.* (once)."""
    lib = torch.library.Library("attn2scale", "IMPL")
    for name, fn in (("interp", interp), ("interp_backward", interp_backward), ("scale_merge", scale_merge),
                     ("scale_merge_backward", scale_merge_backward), ("upsample_argmax", upsample_argmax)):
        lib.impl(name, fn, "CUDA")
    return lib
