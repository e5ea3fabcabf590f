"""Fake (meta) kernels for the compiled ops, through torch.library.

Imported once the extension has loaded. Fake kernels let torch.compile and
FakeTensor trace through the ops. Their autograd is not here: it is C++
(csrc/autograd.cpp, registered for the Autograd dispatch key when the
extension loads), which makes the forward ops differentiable with the
gather-based backward kernels on every backend.
"""

from __future__ import annotations

import torch

from .reference import is_merge_mode, merge_mode_list

_lib = "attn2scale::"


def _merge_aux_shape(scores, size, mode):
    n, c = scores[0].shape[0], scores[0].shape[1]
    if mode == "attention":
        return (n, len(scores), size[0], size[1]), scores[0].dtype
    if mode == "max":
        return (n, c, size[0], size[1]), torch.uint8
    return (0,), scores[0].dtype


_FLOAT_TYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check_like(t, ref, op, name):
    """The fake kernels run whenever any input is a meta tensor, so they check
    what the device kernels check, instead of computing on mixed devices."""
    torch._check(t.device == ref.device, lambda: f"{op}: {name} is on {t.device} but scores[0] is on {ref.device}")
    torch._check(t.dtype == ref.dtype, lambda: f"{op}: {name} has dtype {t.dtype} but scores[0] has {ref.dtype}")


def _check_float4d(t, op, name):
    torch._check(t.dtype in _FLOAT_TYPES, lambda: f"{op}: {name} must be float32/float64/float16/bfloat16, got {t.dtype}")
    torch._check(t.dim() == 4, lambda: f"{op}: {name} must be 4-D, got shape {tuple(t.shape)}")


def _check_merge(scores, size, mode, logits, gate, op):
    torch._check(len(scores) > 0, lambda: f"{op}: scores is empty; give one score map per scale")
    torch._check(is_merge_mode(mode), lambda: f"{op}: mode must be {merge_mode_list()}, got {mode!r}")
    s0 = scores[0]
    for i, p in enumerate(scores):
        _check_float4d(p, op, f"scores[{i}]")
        _check_like(p, s0, op, f"scores[{i}]")
        torch._check(p.shape[:2] == s0.shape[:2], lambda: f"{op}: scores[{i}] is {tuple(p.shape)} but scores[0] is {tuple(s0.shape)}; N and C must agree")
    n, c = s0.shape[0], s0.shape[1]
    if mode == "attention":
        torch._check(logits is not None, lambda: f"{op}: mode='attention' needs logits (N, S, H, W)")
        _check_float4d(logits, op, "logits")
        _check_like(logits, s0, op, "logits")
        torch._check(tuple(logits.shape) == (n, len(scores), size[0], size[1]), lambda: f"{op}: logits must be (N, S, H, W) = {(n, len(scores), size[0], size[1])}, got {tuple(logits.shape)}")
    else:
        torch._check(logits is None, lambda: f"{op}: logits are only used with mode='attention'")
    if gate is not None:
        _check_float4d(gate, op, "gate")
        _check_like(gate, s0, op, "gate")
        torch._check(tuple(gate.shape) == (n, c, size[0], size[1]), lambda: f"{op}: gate must be (N, C, H, W) = {(n, c, size[0], size[1])}, got {tuple(gate.shape)}")


@torch.library.register_fake(_lib + "interp")
def _interp_fake(x, size, pad_beg=0, pad_end=0):
    _check_float4d(x, "interp", "x")
    return x.new_empty((x.shape[0], x.shape[1], size[0], size[1]))


@torch.library.register_fake(_lib + "interp_backward")
def _interp_backward_fake(grad, input_shape, pad_beg=0, pad_end=0):
    return grad.new_empty(tuple(input_shape))


@torch.library.register_fake(_lib + "scale_merge")
def _scale_merge_fake(scores, size, mode, logits=None, gate=None, avg_weight=None):
    _check_merge(scores, size, mode, logits, gate, "scale_merge")
    s0 = scores[0]
    out = s0.new_empty((s0.shape[0], s0.shape[1], size[0], size[1]))
    shape, dtype = _merge_aux_shape(scores, size, mode)
    return out, s0.new_empty(shape, dtype=dtype)


@torch.library.register_fake(_lib + "scale_merge_backward")
def _scale_merge_backward_fake(grad, scores, mode, aux, gate=None, avg_weight=None):
    _check_merge(scores, (grad.shape[2], grad.shape[3]), mode, None if mode != "attention" else aux, gate, "scale_merge_backward")
    _check_like(grad, scores[0], "scale_merge_backward", "grad")
    g_scores = [torch.empty_like(p) for p in scores]
    if mode == "attention":
        g_logits = grad.new_empty((grad.shape[0], len(scores), grad.shape[2], grad.shape[3]))
    else:
        g_logits = grad.new_empty((0,))
    g_gate = torch.empty_like(gate) if gate is not None else grad.new_empty((0,))
    return g_scores, g_logits, g_gate


@torch.library.register_fake(_lib + "upsample_argmax")
def _upsample_argmax_fake(scores, size, with_score=False):
    _check_float4d(scores, "upsample_argmax", "scores")
    n = scores.shape[0]
    labels = scores.new_empty((n, size[0], size[1]), dtype=torch.long)
    score = scores.new_empty((n, size[0], size[1]) if with_score else (0,))
    return labels, score
