"""Fake (meta) kernels for the compiled ops, through torch.library.

Imported once the extension has loaded. Fake kernels let torch.compile and
FakeTensor trace through the ops. Their autograd is not here: it is C++
(csrc/autograd.cpp, registered for the Autograd dispatch key when the
extension loads), which makes the forward ops differentiable with the
gather-based backward kernels on every backend. The argument checks here
(csrc/op_common.cpp's, in Python) also guard the runtime-compiled CUDA ops
of _nvrtc_ops.py.
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


# ---- argument checks --------------------------------------------------------
# Python twins of csrc/op_common.cpp's checks, in its order and with its words,
# so the fake kernels (meta tensors, torch.compile) and the runtime-compiled
# CUDA ops (_nvrtc_ops.py) refuse what the C++ ops refuse, as they do. They
# raise through torch._check (RuntimeError, as TORCH_CHECK), which also
# traces with symbolic sizes.

_FLOAT_TYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
MAX_SCALES = 16  # csrc/macros.h kMaxScales: kernels keep per-scale state in arrays of this length
MAX_SPATIAL = 1 << 24  # csrc/macros.h kMaxSpatial: coordinates are float32, exact below 2^24
_INT32_MAX = (1 << 31) - 1
# How c10 names a ScalarType (what the C++ messages print).
_SCALAR_TYPE_NAMES = {
    torch.float32: "Float", torch.float64: "Double", torch.float16: "Half", torch.bfloat16: "BFloat16",
    torch.uint8: "Byte", torch.int8: "Char", torch.int16: "Short", torch.int32: "Int", torch.int64: "Long",
    torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble",
}


def _scalar_type_name(dtype) -> str:
    """c10's name of dtype: the table, else the legacy tensor type name (torch.Float8_e4m3fnTensor)."""
    if dtype in _SCALAR_TYPE_NAMES:
        return _SCALAR_TYPE_NAMES[dtype]
    try:
        return torch.empty(0, dtype=dtype, device="meta").type().rsplit(".", 1)[-1].removesuffix("Tensor")
    except Exception:  # a dtype without a legacy type (quantized): torch's own name
        return str(dtype).replace("torch.", "")


def _int_list(values) -> str:
    """A size list as c10 prints an IntArrayRef: [2, 3, 5]."""
    return "[" + ", ".join(str(v) for v in values) + "]"


def _shape_str(t) -> str:
    """op_common.cpp's shape_str: sizes, scalar type and device, e.g. '[2, 3, 5, 5] Float on cpu'."""
    return f"{_int_list(t.shape)} {_scalar_type_name(t.dtype)} on {t.device}"


def _check_like(t, ref, op, name):
    """check_same: t on scores[0]'s device, with its dtype. The fake kernels run whenever
    any input is a meta tensor, so they check it instead of computing on mixed devices."""
    torch._check(t.device == ref.device, lambda: f"{op}: {name} is on {t.device} but scores[0] is on {ref.device}")
    torch._check(t.dtype == ref.dtype, lambda: f"{op}: {name} has dtype {_scalar_type_name(t.dtype)} "
                                              f"but scores[0] has {_scalar_type_name(ref.dtype)}")


def _check_float4d(t, op, name):
    """check_float_tensor: a 4-D float32/float64/float16/bfloat16 tensor."""
    torch._check(t is not None, lambda: f"{op}: {name} is undefined")
    torch._check(t.dtype in _FLOAT_TYPES, lambda: f"{op}: {name} must be a floating tensor (float32, float64, "
                                                   f"float16 or bfloat16), got {_shape_str(t)}")
    torch._check(t.dim() == 4, lambda: f"{op}: {name} must be 4-D, got {_shape_str(t)}")


def _check_size(size, op):
    """check_size: a requested output size (H, W), each side in [1, 2^24)."""
    torch._check(len(size) == 2, lambda: f"{op}: size must have 2 entries (H, W), got {_int_list(size)}")
    for v in size:
        msg = lambda: (f"{op}: target size {_int_list(size)} must be positive and below 2^24 per side "
                       "(coordinates are float32, as in Caffe)")
        torch._check(v > 0, msg)
        torch._check(v < MAX_SPATIAL, msg)


def _check_spatial(t, op, name):
    """check_spatial: an input read by the kernels has 1 .. 2^24 - 1 rows and columns."""
    if t.shape[0] == 0:  # empty batch: nothing is read
        return
    for v in t.shape[2:]:
        torch._check(v > 0, lambda: f"{op}: {name} has an empty spatial size: {_shape_str(t)}")
        torch._check(v < MAX_SPATIAL, lambda: f"{op}: {name} is too large per side (limit 2^24): {_shape_str(t)}")


def _check_interp_geometry(n, h, w, size, pad_beg, pad_end, op):
    torch._check(pad_beg <= 0 and pad_end <= 0, lambda: f"{op}: pad_beg ({pad_beg}) and pad_end ({pad_end}) must "
                                                        "be <= 0; Caffe's Interp only crops")
    _check_size(size, op)
    if n != 0:  # an empty batch reads nothing, so any crop will do
        for v in (h, w):
            torch._check(v + pad_beg + pad_end > 0, lambda: f"{op}: cropping pad_beg={pad_beg} pad_end={pad_end} "
                                                            f"leaves nothing of a {h}x{w} input")


def _check_interp(x, size, pad_beg, pad_end):
    _check_float4d(x, "interp", "x")
    _check_spatial(x, "interp", "x")
    _check_interp_geometry(x.shape[0], x.shape[2], x.shape[3], size, pad_beg, pad_end, "interp")


def _check_interp_backward(grad, input_shape, pad_beg, pad_end):
    op = "interp_backward"
    _check_float4d(grad, op, "grad")
    torch._check(len(input_shape) == 4, lambda: f"{op}: input_shape must have 4 entries, got {_int_list(input_shape)}")
    torch._check(input_shape[0] == grad.shape[0] and input_shape[1] == grad.shape[1],
                 lambda: f"{op}: grad {_shape_str(grad)} does not match input_shape {_int_list(input_shape)} in N or C")
    for v in input_shape:
        torch._check(v >= 0, lambda: f"{op}: bad input_shape {_int_list(input_shape)}")
        torch._check(v < MAX_SPATIAL, lambda: f"{op}: bad input_shape {_int_list(input_shape)}")
    if grad.shape[0] != 0:
        for v in input_shape[2:]:
            torch._check(v > 0, lambda: f"{op}: empty spatial input_shape {_int_list(input_shape)}")
    _check_interp_geometry(input_shape[0], input_shape[2], input_shape[3], (grad.shape[2], grad.shape[3]), pad_beg,
                           pad_end, op)


def _check_merge_scores(scores, mode, avg_weight, op):
    """merge_geometry: the mode, 1 .. MAX_SCALES score maps alike in N, C, dtype and device, avg_weight."""
    torch._check(is_merge_mode(mode), lambda: f"{op}: mode must be {merge_mode_list()}, got {mode!r}")
    torch._check(len(scores) > 0, lambda: f"{op}: scores is empty; give one score map per scale")
    torch._check(len(scores) <= MAX_SCALES,
                 lambda: f"{op}: at most {MAX_SCALES} scales are supported, got {len(scores)}")
    s0 = scores[0]
    for i, p in enumerate(scores):
        name = f"scores[{i}]"
        _check_float4d(p, op, name)
        _check_like(p, s0, op, name)
        torch._check(p.shape[:2] == s0.shape[:2], lambda: f"{op}: {name} is {_shape_str(p)} but scores[0] is "
                                                          f"{_shape_str(s0)}; N and C must agree across scales")
        _check_spatial(p, op, name)
    torch._check(avg_weight is None or mode == "avg", lambda: f"{op}: avg_weight is only used with mode='avg'")


def _check_gate(gate, scores, size, op):
    if gate is None:
        return
    s0 = scores[0]
    _check_float4d(gate, op, "gate")
    _check_like(gate, s0, op, "gate")
    want = (s0.shape[0], s0.shape[1], size[0], size[1])
    torch._check(tuple(gate.shape) == want, lambda: f"{op}: gate must be (N, C, H, W) = ({', '.join(map(str, want))})"
                                                    f", got {_shape_str(gate)}")


def _check_merge(scores, size, mode, logits, gate, avg_weight=None):
    """check_scale_merge: the arguments of scale_merge."""
    op = "scale_merge"
    _check_size(size, op)
    _check_merge_scores(scores, mode, avg_weight, op)
    s0 = scores[0]
    if mode == "attention":
        torch._check(logits is not None, lambda: f"{op}: mode='attention' needs logits (N, S, H, W)")
        _check_float4d(logits, op, "logits")
        _check_like(logits, s0, op, "logits")
        want = (s0.shape[0], len(scores), size[0], size[1])
        torch._check(tuple(logits.shape) == want, lambda: f"{op}: logits must be (N, S, H, W) = "
                                                          f"({', '.join(map(str, want))}), got {_shape_str(logits)}")
    else:
        torch._check(logits is None, lambda: f"{op}: logits are only used with mode='attention', got mode='{mode}'")
    _check_gate(gate, scores, size, op)


def _check_merge_backward(grad, scores, mode, aux, gate, avg_weight=None):
    """check_scale_merge_backward: the arguments of scale_merge_backward; aux is what
    scale_merge returned for the mode (attention weights, winning scale, or unused for avg)."""
    op = "scale_merge_backward"
    _check_float4d(grad, op, "grad")
    _check_merge_scores(scores, mode, avg_weight, op)
    s0 = scores[0]
    _check_like(grad, s0, op, "grad")
    torch._check(grad.shape[:2] == s0.shape[:2],
                 lambda: f"{op}: grad {_shape_str(grad)} does not match scores[0] {_shape_str(s0)}")
    size = (grad.shape[2], grad.shape[3])
    if mode == "attention":
        _check_like(aux, s0, op, "aux (attention weights)")
        torch._check(aux.dim() == 4 and tuple(aux.shape) == (s0.shape[0], len(scores), *size),
                     lambda: f"{op}: aux must hold the attention weights (N, S, H, W), got {_shape_str(aux)}")
    elif mode == "max":
        torch._check(aux.dtype == torch.uint8 and aux.device == s0.device and aux.dim() == 4
                     and tuple(aux.shape) == (s0.shape[0], s0.shape[1], *size),
                     lambda: f"{op}: aux must hold the winning scale (N, C, H, W) uint8, got {_shape_str(aux)}")
    _check_gate(gate, scores, size, op)


def _check_upsample_argmax(scores, size):
    op = "upsample_argmax"
    _check_float4d(scores, op, "scores")
    _check_spatial(scores, op, "scores")
    torch._check(scores.shape[1] > 0, lambda: f"{op}: scores has no classes: {_shape_str(scores)}")
    torch._check(scores.shape[1] <= _INT32_MAX, lambda: f"{op}: too many classes: {_shape_str(scores)}")
    _check_size(size, op)


@torch.library.register_fake(_lib + "interp")
def _interp_fake(x, size, pad_beg=0, pad_end=0):
    _check_interp(x, size, pad_beg, pad_end)
    return x.new_empty((x.shape[0], x.shape[1], size[0], size[1]))


@torch.library.register_fake(_lib + "interp_backward")
def _interp_backward_fake(grad, input_shape, pad_beg=0, pad_end=0):
    _check_interp_backward(grad, input_shape, pad_beg, pad_end)
    return grad.new_empty(tuple(input_shape))


@torch.library.register_fake(_lib + "scale_merge")
def _scale_merge_fake(scores, size, mode, logits=None, gate=None, avg_weight=None):
    _check_merge(scores, size, mode, logits, gate, avg_weight)
    s0 = scores[0]
    out = s0.new_empty((s0.shape[0], s0.shape[1], size[0], size[1]))
    shape, dtype = _merge_aux_shape(scores, size, mode)
    return out, s0.new_empty(shape, dtype=dtype)


@torch.library.register_fake(_lib + "scale_merge_backward")
def _scale_merge_backward_fake(grad, scores, mode, aux, gate=None, avg_weight=None):
    _check_merge_backward(grad, scores, mode, aux, gate, avg_weight)
    g_scores = [torch.empty_like(p) for p in scores]
    if mode == "attention":
        g_logits = grad.new_empty((grad.shape[0], len(scores), grad.shape[2], grad.shape[3]))
    else:
        g_logits = grad.new_empty((0,))
    g_gate = torch.empty_like(gate) if gate is not None else grad.new_empty((0,))
    return g_scores, g_logits, g_gate


@torch.library.register_fake(_lib + "upsample_argmax")
def _upsample_argmax_fake(scores, size, with_score=False):
    _check_upsample_argmax(scores, size)
    n = scores.shape[0]
    labels = scores.new_empty((n, size[0], size[1]), dtype=torch.long)
    score = scores.new_empty((n, size[0], size[1]) if with_score else (0,))
    return labels, score
