"""The benchmark cases: stock-PyTorch baselines, the fused calls, and how one
pass (fwd, or fwd+bwd) of a case is prepared and called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from attn2scale import ops

# --------------------------------------------------------------------------
# Baselines: stock PyTorch, as a user would write them.


def resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def eager_attention(scores: List[torch.Tensor], logits: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    w = torch.softmax(logits, 1)
    out = None
    for s, p in enumerate(scores):
        term = w[:, s : s + 1] * resize(p, size)
        out = term if out is None else out + term
    return out


# max and avg stack the S resized maps into one S x N x C x H x W tensor first:
# the baseline pays for that copy (and, in backward, for splitting the gradient).
def eager_max(scores: List[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
    return torch.stack([resize(p, size) for p in scores]).max(0).values


def eager_avg(scores: List[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
    return torch.stack([resize(p, size) for p in scores]).mean(0)


def eager_upsample_argmax(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return resize(x, size).argmax(1)


def eager_interp(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return resize(x, size)


# --------------------------------------------------------------------------
# Cases.


@dataclass
class Case:
    """One benchmark case: inputs, the eager and fused implementations, the passes."""

    name: str
    op: str  # "scale_merge[attention]", "upsample_argmax", "interp", ...
    passes: Tuple[str, ...]  # subset of ("fwd", "fwd+bwd")
    shapes: Dict[str, object]  # printable description
    make_args: Callable[[torch.device, torch.Generator], tuple]
    eager: Callable
    fused: Callable
    grad_args: Optional[Callable[[tuple], List[torch.Tensor]]] = None  # leaves for fwd+bwd
    labels: bool = False
    full_map_bytes: Optional[int] = None  # N*C*H*W*elem (upsample_argmax)
    shape_text: str = ""


def randn(gen, device, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float32).to(device)


def _merge_case(name, mode, n, c, sides, out_side) -> Case:
    size = (out_side, out_side)
    s = len(sides)

    def make_args(device, gen):
        scores = [randn(gen, device, n, c, h, h) for h in sides]
        if mode == "attention":
            return (scores, randn(gen, device, n, s, out_side, out_side))
        return (scores,)

    if mode == "attention":
        eager = lambda scores, logits: eager_attention(scores, logits, size)  # noqa: E731
        fused = lambda scores, logits: ops.scale_merge(scores, size, "attention", logits=logits)  # noqa: E731
        grad_args = lambda args: list(args[0]) + [args[1]]  # noqa: E731
    else:
        eager_fn = eager_max if mode == "max" else eager_avg
        eager = lambda scores, f=eager_fn: f(scores, size)  # noqa: E731
        fused = lambda scores, m=mode: ops.scale_merge(scores, size, m)  # noqa: E731
        grad_args = lambda args: list(args[0])  # noqa: E731
    text = f"N={n} C={c} {'/'.join(map(str, sides))}->{out_side}" + (f" logits N={n} S={s}" if mode == "attention" else "")
    return Case(
        name=name, op=f"scale_merge[{mode}]", passes=("fwd", "fwd+bwd"),
        shapes={"N": n, "C": c, "scales": list(sides), "out": list(size)},
        make_args=make_args, eager=eager, fused=fused, grad_args=grad_args, shape_text=text,
    )


def _argmax_case(name, n, c, side, out_side) -> Case:
    size = (out_side, out_side)
    return Case(
        name=name, op="upsample_argmax", passes=("fwd",),
        shapes={"N": n, "C": c, "in": [side, side], "out": list(size)},
        make_args=lambda device, gen: (randn(gen, device, n, c, side, side),),
        eager=lambda x: eager_upsample_argmax(x, size),
        fused=lambda x: ops.upsample_argmax(x, size),
        labels=True, full_map_bytes=n * c * out_side * out_side * 4,
        shape_text=f"N={n} C={c} {side}->{out_side}",
    )


def _interp_case(name, n, c, side, out_side, passes) -> Case:
    size = (out_side, out_side)
    return Case(
        name=name, op="interp", passes=passes,
        shapes={"N": n, "C": c, "in": [side, side], "out": list(size)},
        make_args=lambda device, gen: (randn(gen, device, n, c, side, side),),
        eager=lambda x: eager_interp(x, size),
        fused=lambda x: ops.interp(x, size),
        grad_args=lambda args: [args[0]],
        shape_text=f"N={n} C={c} {side}->{out_side}",
    )


def build_cases(tiny: bool = False) -> List[Case]:
    """The benchmark cases; ``tiny`` keeps the names and shrinks every shape (tests)."""
    if tiny:
        tr, co = dict(n=2, c=3), dict(n=2, c=5)
        sides, out = (9, 7, 5), 9
        am = [("upsample_argmax_c21", 1, 4, 5, 17), ("upsample_argmax_c81", 1, 6, 6, 21), ("upsample_argmax_c150", 1, 7, 4, 13)]
        it_train, it_inf = (2, 3, 5, 9), (1, 3, 6, 21)
    else:
        tr, co = dict(n=10, c=21), dict(n=3, c=81)
        sides, out = (41, 31, 21), 41
        am = [("upsample_argmax_c21", 1, 21, 65, 513), ("upsample_argmax_c81", 1, 81, 81, 641), ("upsample_argmax_c150", 1, 150, 64, 512)]
        it_train, it_inf = (10, 21, 21, 41), (1, 21, 65, 513)
    cases = [
        _merge_case("merge_attention_c21", "attention", tr["n"], tr["c"], sides, out),
        _merge_case("merge_max_c21", "max", tr["n"], tr["c"], sides, out),
        _merge_case("merge_avg_c21", "avg", tr["n"], tr["c"], sides, out),
        _merge_case("merge_attention_c81", "attention", co["n"], co["c"], sides, out),
    ]
    cases += [_argmax_case(*a) for a in am]
    cases.append(_interp_case("interp_train", *it_train, passes=("fwd", "fwd+bwd")))
    cases.append(_interp_case("interp_infer", *it_inf, passes=("fwd",)))
    return cases


# --------------------------------------------------------------------------
# One pass of one case.


def _nbytes(ts) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


def flat_inputs(args) -> List[torch.Tensor]:
    out = []
    for a in args:
        out.extend(a if isinstance(a, (list, tuple)) else [a])
    return out


def traffic_bytes(case: Case, args, pass_name: str) -> int:
    """Minimal-traffic model: read inputs + write output (+ backward: read grad_out and inputs, write grads)."""
    with torch.no_grad():
        out = case.eager(*args)
    ins = flat_inputs(args)
    fwd = _nbytes(ins) + _nbytes([out])
    if pass_name == "fwd":
        return fwd
    leaves = case.grad_args(args)
    return fwd + _nbytes([out]) + _nbytes(ins) + _nbytes(leaves)


def make_callable(case: Case, fn: Callable, args, pass_name: str, grad_out: Optional[torch.Tensor]):
    """A zero-argument callable doing one forward (or forward+backward) pass; returns its results."""
    if pass_name == "fwd":

        def call():
            with torch.no_grad():
                return (fn(*args),)

        return call
    leaves = case.grad_args(args)

    def call():
        out = fn(*args)
        grads = torch.autograd.grad(out, leaves, grad_out)
        return (out,) + tuple(grads)

    return call


def prepare_args(case: Case, device: torch.device, pass_name: str, seed: int = 0):
    """The case's inputs (leaves requiring grad for fwd+bwd) and a fixed random upstream gradient."""
    gen = torch.Generator().manual_seed(seed)
    args = case.make_args(device, gen)
    grad_out = None
    if pass_name == "fwd+bwd":
        for t in case.grad_args(args):
            t.requires_grad_(True)
        with torch.no_grad():
            out_shape = case.eager(*args).shape
        grad_out = randn(gen, device, *out_shape)
    return args, grad_out
