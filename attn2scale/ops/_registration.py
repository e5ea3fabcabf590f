"""Fake (meta) kernels and autograd for the compiled ops, through torch.library.

Imported once the extension has loaded. Fake kernels let torch.compile and
FakeTensor trace through the ops; autograd registrations make the forward
ops differentiable with the gather-based backward kernels.
"""

from __future__ import annotations

import torch

_lib = "attn2scale::"


def _merge_aux_shape(scores, size, mode):
    n, c = scores[0].shape[0], scores[0].shape[1]
    if mode == "attention":
        return (n, len(scores), size[0], size[1]), scores[0].dtype
    if mode == "max":
        return (n, c, size[0], size[1]), torch.uint8
    return (0,), scores[0].dtype


@torch.library.register_fake(_lib + "interp")
def _interp_fake(x, size, pad_beg=0, pad_end=0):
    torch._check(x.dim() == 4, lambda: f"interp: x must be 4-D, got {tuple(x.shape)}")
    return x.new_empty((x.shape[0], x.shape[1], size[0], size[1]))


@torch.library.register_fake(_lib + "interp_backward")
def _interp_backward_fake(grad, input_shape, pad_beg=0, pad_end=0):
    return grad.new_empty(tuple(input_shape))


@torch.library.register_fake(_lib + "scale_merge")
def _scale_merge_fake(scores, size, mode, logits=None, gate=None, avg_weight=None):
    s0 = scores[0]
    out = s0.new_empty((s0.shape[0], s0.shape[1], size[0], size[1]))
    shape, dtype = _merge_aux_shape(scores, size, mode)
    return out, s0.new_empty(shape, dtype=dtype)


@torch.library.register_fake(_lib + "scale_merge_backward")
def _scale_merge_backward_fake(grad, scores, mode, aux, gate=None, avg_weight=None):
    g_scores = [torch.empty_like(p) for p in scores]
    if mode == "attention":
        g_logits = grad.new_empty((grad.shape[0], len(scores), grad.shape[2], grad.shape[3]))
    else:
        g_logits = grad.new_empty((0,))
    g_gate = torch.empty_like(gate) if gate is not None else grad.new_empty((0,))
    return g_scores, g_logits, g_gate


@torch.library.register_fake(_lib + "upsample_argmax")
def _upsample_argmax_fake(scores, size, with_score=False):
    n = scores.shape[0]
    labels = scores.new_empty((n, size[0], size[1]), dtype=torch.long)
    score = scores.new_empty((n, size[0], size[1]) if with_score else (0,))
    return labels, score


# ---- autograd -------------------------------------------------------------


def _interp_setup(ctx, inputs, output):
    x, _size, pad_beg, pad_end = inputs
    ctx.input_shape = tuple(x.shape)
    ctx.pads = (pad_beg, pad_end)


def _interp_bwd(ctx, grad):
    g = torch.ops.attn2scale.interp_backward(grad, list(ctx.input_shape), *ctx.pads)
    return g, None, None, None


def _interp_backward_setup(ctx, inputs, output):
    grad, _shape, pad_beg, pad_end = inputs
    ctx.size = (grad.shape[2], grad.shape[3])
    ctx.pads = (pad_beg, pad_end)


def _interp_backward_bwd(ctx, gg):
    # interp_backward is linear in grad; its adjoint is interp itself.
    return torch.ops.attn2scale.interp(gg, list(ctx.size), *ctx.pads), None, None, None


def _merge_setup(ctx, inputs, output):
    scores, _size, mode, logits, gate, avg_weight = inputs
    _out, aux = output
    ctx.mark_non_differentiable(aux)
    ctx.mode = mode
    ctx.avg_weight = avg_weight
    ctx.has_logits = logits is not None
    ctx.has_gate = gate is not None
    ctx.num_scales = len(scores)
    ctx.save_for_backward(aux, gate, *scores)


def _merge_bwd(ctx, grad_out, _grad_aux):
    aux, gate, *scores = ctx.saved_tensors
    g_scores, g_logits, g_gate = torch.ops.attn2scale.scale_merge_backward(
        grad_out, scores, ctx.mode, aux, gate, ctx.avg_weight
    )
    return (
        list(g_scores),
        None,
        None,
        g_logits if ctx.has_logits else None,
        g_gate if ctx.has_gate else None,
        None,
    )


torch.library.register_autograd(_lib + "interp", _interp_bwd, setup_context=_interp_setup)
torch.library.register_autograd(
    _lib + "interp_backward", _interp_backward_bwd, setup_context=_interp_backward_setup
)
torch.library.register_autograd(_lib + "scale_merge", _merge_bwd, setup_context=_merge_setup)
