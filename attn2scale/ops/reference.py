"""Pure-PyTorch reference of every fused op.

Each function computes what the kernel computes, element by element in the
same order (taps from a float32 ratio for float/half/bfloat16 and float64 for
float64, Caffe's expression order), so float64 results agree to rounding and
float32 results bit for bit, except the attention weights: the kernels' exp
is csrc/exp_math.h's (correctly rounded in float, identical on CPU and CUDA),
torch.exp is PyTorch's vectorised one, which may differ in the last bit, so
the weights agree to about 1 ulp. Gradients come from PyTorch's autograd.
They materialise every intermediate map and exist to be compared against and
to fall back on, not to be fast.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch

# The merge modes: the one Python table, name -> code of the C++ MergeMode
# (csrc/scale_merge_math.h, whose names attn2scale._C.merge_mode_names()
# returns in code order; tests/test_ops_merge_modes.py holds the two
# together). The op checks, the models and the CLI read it from here. Adding
# a mode: an entry here, its branch in scale_merge below, the C++ header,
# and the pinned table in tests/test_ops_merge_modes.py.
MERGE_MODES: Dict[str, int] = {"avg": 0, "max": 1, "attention": 2}


def merge_mode_list() -> str:
    """The modes as error messages list them: ``'avg', 'max' or 'attention'``."""
    quoted = [repr(m) for m in MERGE_MODES]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def is_merge_mode(mode) -> bool:
    """True for a known mode name (any other value, of any type, is False)."""
    return isinstance(mode, str) and mode in MERGE_MODES


def check_merge_mode(mode, who: str = "scale_merge", what: str = "mode") -> str:
    """``mode`` if it names a merge mode, else ValueError naming ``who`` and the known modes."""
    if not is_merge_mode(mode):
        raise ValueError(f"{who}: {what} must be {merge_mode_list()}, got {mode!r}")
    return mode


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of the kernels: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def taps(n_in: int, n_out: int, dtype: torch.dtype, device=None):
    """Source indices (i0, i1) and the weight of i1 for each output coordinate."""
    acc = acc_dtype(dtype)
    if n_out > 1:
        r = torch.tensor(n_in - 1, dtype=acc) / torch.tensor(n_out - 1, dtype=acc)
    else:
        r = torch.tensor(0, dtype=acc)
    src = r.to(device) * torch.arange(n_out, dtype=acc, device=device)
    i0 = src.to(torch.int64)
    i1 = i0 + (i0 < n_in - 1).to(torch.int64)
    return i0, i1, src - i0.to(acc)


def interp(x: torch.Tensor, size: Sequence[int], pad_beg: int = 0, pad_end: int = 0) -> torch.Tensor:
    """Caffe Interp of an N x C x H x W tensor to ``size``, cropping by non-positive pads."""
    return _interp_acc(x, size, pad_beg, pad_end).to(x.dtype)


def _interp_acc(x: torch.Tensor, size: Sequence[int], pad_beg: int = 0, pad_end: int = 0) -> torch.Tensor:
    """interp, returned in the accumulation dtype (the kernels merge before rounding)."""
    out_h, out_w = int(size[0]), int(size[1])
    if pad_beg > 0 or pad_end > 0:
        raise ValueError(f"interp: pad_beg ({pad_beg}) and pad_end ({pad_end}) must be <= 0")
    off = -pad_beg
    h_eff = x.shape[-2] + pad_beg + pad_end
    w_eff = x.shape[-1] + pad_beg + pad_end
    xa = x[..., off : off + h_eff, off : off + w_eff].to(acc_dtype(x.dtype))
    if (h_eff, w_eff) == (out_h, out_w):  # Caffe copies; taps would turn inf into NaN
        return xa.clone()
    h0, h1, lh1 = taps(h_eff, out_h, x.dtype, x.device)
    w0, w1, lw1 = taps(w_eff, out_w, x.dtype, x.device)
    lh1 = lh1[:, None]
    lh0, lw0 = 1 - lh1, 1 - lw1
    r0, r1 = xa[..., h0, :], xa[..., h1, :]
    return lh0 * (lw0 * r0[..., w0] + lw1 * r0[..., w1]) + lh1 * (lw0 * r1[..., w0] + lw1 * r1[..., w1])


def softmax_scales(logits: torch.Tensor) -> torch.Tensor:
    """Caffe's Softmax over dim 1: exp(l - max) / sum, in the accumulation dtype."""
    la = logits.to(acc_dtype(logits.dtype))
    e = torch.exp(la - la.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def scale_merge(
    scores: Sequence[torch.Tensor],
    size: Sequence[int],
    mode: str = "attention",
    logits: Optional[torch.Tensor] = None,
    gate: Optional[torch.Tensor] = None,
    avg_weight: Optional[float] = None,
):
    """Reference of ``torch.ops.attn2scale.scale_merge``; returns (out, aux) like the op."""
    check_merge_mode(mode)
    dtype = scores[0].dtype
    acc = acc_dtype(dtype)
    resized = [_interp_acc(p, size) for p in scores]
    if mode == "attention":
        if logits is None:
            raise ValueError("scale_merge: mode='attention' needs logits (N, S, H, W)")
        w = softmax_scales(logits).to(dtype).to(acc)  # the op keeps the weights in the input dtype
        merged = w[:, 0:1] * resized[0]
        for s in range(1, len(resized)):
            merged = merged + w[:, s : s + 1] * resized[s]
        aux = w.to(dtype).detach()
    elif mode == "max":
        merged = resized[0]
        arg = torch.zeros(merged.shape, dtype=torch.uint8, device=merged.device)
        for s in range(1, len(resized)):
            better = resized[s] > merged
            merged = torch.where(better, resized[s], merged)
            arg = torch.where(better, torch.full_like(arg, s), arg)
        aux = arg
    else:
        merged = resized[0]
        for s in range(1, len(resized)):
            merged = merged + resized[s]
        weight = 1.0 / len(resized) if avg_weight is None else avg_weight
        merged = merged * torch.tensor(weight, dtype=acc)
        aux = scores[0].new_empty((0,))
    if gate is not None:
        merged = gate.to(acc) * merged
    return merged.to(dtype), aux


def upsample_argmax(scores: torch.Tensor, size: Sequence[int], with_score: bool = False):
    """Reference of ``torch.ops.attn2scale.upsample_argmax``: materialises the resized map."""
    up = _interp_acc(scores, size)
    labels = up.argmax(dim=1)
    score = up.gather(1, labels[:, None])[:, 0].to(scores.dtype) if with_score else scores.new_empty((0,))
    return labels, score
