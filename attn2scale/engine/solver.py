"""Caffe's SGD solver: learning-rate policies and the update, in Caffe's order.

For each parameter, after the gradients of ``iter_size`` sub-batches have been
summed into ``.grad`` (each sub-batch loss normalised on its own, as Caffe's
loss layers do):

    g = grad * (1 / iter_size)                      # SGDSolver::Normalize
    g = g + weight_decay * decay_mult * w           # Regularize (L2)
    v = (rate * lr_mult) * g + momentum * v         # ComputeUpdateValue: lr INSIDE v
    w = w - v                                       # Blob::Update

``rate`` follows Caffe's ``GetLearningRate`` for the iteration. Unlike
``torch.optim.SGD`` (``v = m v + g; w -= lr v``) the learning rate multiplies the
gradient before it enters the momentum buffer, so a change of rate does not
rescale the history. All arithmetic is float32 for float32 parameters, as in
Caffe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List

import numpy as np
import torch

LR_POLICIES = ("fixed", "step", "multistep", "poly", "exp", "inv")


@dataclass
class SolverConfig:
    """The fields of Caffe's SolverParameter that the SGD update uses."""

    base_lr: float = 0.001
    lr_policy: str = "step"
    gamma: float = 0.1
    stepsize: int = 2000
    stepvalue: List[int] = field(default_factory=list)
    power: float = 0.9
    max_iter: int = 6000
    momentum: float = 0.9
    weight_decay: float = 0.0005
    iter_size: int = 1

    def __post_init__(self):
        if self.lr_policy not in LR_POLICIES:
            raise ValueError(f"solver.lr_policy must be one of {LR_POLICIES}, got {self.lr_policy!r}")
        if self.iter_size < 1 or self.max_iter < 1:
            raise ValueError(f"solver.iter_size and solver.max_iter must be >= 1, got {self.iter_size}, {self.max_iter}")
        if self.lr_policy == "step" and self.stepsize < 1:
            raise ValueError(f"solver.stepsize must be >= 1 for the step policy, got {self.stepsize}")
        if any(b <= a for a, b in zip(self.stepvalue, self.stepvalue[1:])):
            raise ValueError(f"solver.stepvalue must strictly increase, got {self.stepvalue}")
        for key in ("base_lr", "momentum", "weight_decay"):
            if getattr(self, key) < 0:
                raise ValueError(f"solver.{key} must be >= 0, got {getattr(self, key)}")

    @classmethod
    def from_caffe(cls, solver) -> "SolverConfig":
        """From a parsed Caffe SolverParameter (``attn2scale.caffe.read_solver_prototxt``)."""
        return cls(base_lr=solver.base_lr, lr_policy=solver.lr_policy, gamma=solver.gamma, stepsize=solver.stepsize,
                   stepvalue=list(solver.stepvalue), power=solver.power, max_iter=solver.max_iter,
                   momentum=solver.momentum, weight_decay=solver.weight_decay, iter_size=max(1, solver.iter_size))

    def learning_rate(self, it: int) -> float:
        """Caffe's ``SGDSolver::GetLearningRate`` at iteration ``it`` (0-based), rounded as Caffe
        rounds it: the parameters are floats; ``pow(float, int)`` is computed in double
        (step, multistep, exp), ``pow(float, float)`` in float (poly, inv); the rate is a float."""
        f = np.float32
        base, gamma, power = f(self.base_lr), f(self.gamma), f(self.power)
        p = self.lr_policy
        if p == "fixed":
            rate = base
        elif p in ("step", "multistep", "exp"):
            k = (it // self.stepsize if p == "step" else sum(1 for v in self.stepvalue if it >= v)
                 if p == "multistep" else it)
            rate = float(base) * float(gamma) ** k
        elif p == "poly":
            rate = base * np.power(f(1) - f(it) / f(self.max_iter), power, dtype=np.float32)
        else:  # inv
            rate = base * np.power(f(1) + gamma * f(it), -power, dtype=np.float32)
        return float(f(rate))


class CaffeSGD(torch.optim.Optimizer):
    """Caffe's SGD over parameter groups carrying ``lr_mult`` and ``decay_mult``
    (``model.caffe_param_groups()``). ``group["lr"]`` is the current rate (set it with
    :meth:`set_rate`); ``step()`` divides the accumulated gradients by ``iter_size``.
    """

    def __init__(self, groups: Iterable[dict], *, momentum: float, weight_decay: float, iter_size: int = 1,
                 rate: float = 0.0):
        groups = list(groups)
        for g in groups:
            if len(g.get("params", ())) != 1 or "name" not in g:
                raise ValueError("CaffeSGD: each group holds one named parameter (model.caffe_param_groups())")
            for key in ("lr_mult", "decay_mult"):
                if key not in g:
                    raise ValueError(f"CaffeSGD: parameter group {g.get('name', '?')!r} has no {key!r}; "
                                     "build groups with model.caffe_param_groups()")
        defaults = dict(lr=rate, momentum=momentum, weight_decay=weight_decay, iter_size=iter_size)
        super().__init__(groups, defaults)

    def set_rate(self, rate: float) -> None:
        for g in self.param_groups:
            g["lr"] = rate

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("CaffeSGD.step takes no closure: accumulate the gradients, then step")
        for g in self.param_groups:
            for p in g["params"]:
                self._update(p, g)
        return None

    def _update(self, p: torch.Tensor, g: dict) -> None:
        f32 = dict(dtype=p.dtype, device=p.device)
        # Caffe updates every learnable blob each iteration: no gradient is a zero gradient
        # (weight decay and momentum still apply).
        grad = (p.grad if p.grad is not None else torch.zeros_like(p)) * torch.tensor(1.0 / g["iter_size"], dtype=torch.float32).to(**f32)
        local_decay = torch.tensor(g["weight_decay"], dtype=torch.float32) * torch.tensor(g["decay_mult"],
                                                                                          dtype=torch.float32)
        if float(local_decay) != 0.0:
            grad = grad + local_decay.to(**f32) * p
        local_rate = (torch.tensor(g["lr"], dtype=torch.float32) * torch.tensor(g["lr_mult"], dtype=torch.float32))
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        v = state["momentum_buffer"]
        v.mul_(torch.tensor(g["momentum"], dtype=torch.float32).to(**f32)).add_(local_rate.to(**f32) * grad)
        p.sub_(v)

    def named_params(self):
        """(name, parameter, group) for every parameter."""
        for g in self.param_groups:
            yield g["name"], g["params"][0], g

    def momentum_buffers(self) -> dict:
        """{parameter name: momentum buffer} (checkpoints)."""
        return {n: self.state[p]["momentum_buffer"] for n, p, _ in self.named_params()
                if "momentum_buffer" in self.state.get(p, {})}

    def load_momentum_buffers(self, buffers: dict) -> None:
        """Inverse of :meth:`momentum_buffers`; every buffer must find its parameter, shapes equal."""
        params = {n: p for n, p, _ in self.named_params()}
        unused = sorted(set(buffers) - set(params))
        if unused:
            raise ValueError(f"momentum buffers without a parameter: {unused[:5]}{' ...' if len(unused) > 5 else ''}")
        for n, b in buffers.items():
            p = params[n]
            if tuple(b.shape) != tuple(p.shape):
                raise ValueError(f"momentum buffer {n!r} has shape {tuple(b.shape)}, the parameter {tuple(p.shape)}")
            self.state[p]["momentum_buffer"] = b.to(p.device, p.dtype).clone()
