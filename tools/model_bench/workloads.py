"""The two workloads and their four configurations.

* **train**: one solver iteration of the paper's model exactly as
  ``attn2scale.engine.trainer.Trainer.step`` runs it with ``iter_size`` 1:
  ``zero_grad``, dropout seeded per micro-batch, forward, the E-Supv objective
  (``engine.losses.segmentation_loss``: the fused map's loss plus one loss per
  scale), backward through ``engine.step.accumulate_gradients``, a
  ``CaffeSGD`` step (momentum 0.9, weight decay 5e-4, rate 1e-3).
* **infer**: DeepLab's test protocol of ``attn2scale.engine.inference`` on a
  padded test crop: ``multiscale_scores`` (test scale 1, no flip, as the
  paper's evaluation) then ``labels_from_scores`` (Caffe zoom back to the
  input grid + argmax in ``ops.upsample_argmax``, crop).

A configuration is a path (``fused``: the compiled kernels; ``reference``:
``with ops.use_reference()``) and a mode (``eager``; ``compiled``:
``torch.compile`` of the model for training, as the trainer does, and of the
whole protocol function for inference, so inductor may fuse the reference's
resize + argmax). Each configuration owns its model, built from the same seed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, Optional

import torch

from attn2scale import ops
from attn2scale.engine.inference import labels_from_scores, multiscale_scores
from attn2scale.engine.losses import segmentation_loss
from attn2scale.engine.solver import CaffeSGD
from attn2scale.engine.step import accumulate_gradients
from attn2scale.models import build_model

PATHS = ("fused", "reference")
MODES = ("eager", "compiled")
SCALES = (1.0, 0.75, 0.5)  # the paper's three-scale share-net
MODEL_SEED, DATA_SEED, DROPOUT_SEED = 0, 1, 2
RATE = 1e-3  # the paper's base_lr


@dataclass
class Sizes:
    """What is run: ``batch`` images of ``train_size`` per step, ``infer_batch`` of ``infer_size``."""

    classes: int = 21
    width_div: int = 1
    train_size: int = 321
    infer_size: int = 513
    batch: int = 3
    infer_batch: int = 1

    def describe(self) -> dict:
        return dict(self.__dict__)


def default_contexts() -> Dict[str, Callable[[], ContextManager]]:
    """The context each path's calls run in (the tests replace one to inject a wrong op)."""
    return {"fused": contextlib.nullcontext, "reference": ops.use_reference}


@dataclass
class Config:
    """One (workload, path, mode): its model, what is called, and the context it runs in."""

    workload: str
    path: str
    mode: str
    model: torch.nn.Module
    fn: Callable  # train: the network (maybe compiled); infer: the protocol (maybe compiled)
    context: Callable[[], ContextManager]
    opt: Optional[CaffeSGD] = None
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.path} {self.mode}"


def build_net(sizes: Sizes, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(MODEL_SEED)
    model = build_model("attention_to_scale", num_classes=sizes.classes, width_div=sizes.width_div,
                        scales=SCALES, merge="attention", extra_supervision=True)
    return model.to(device)


def train_inputs(sizes: Sizes, device: torch.device):
    """Images of mean-subtracted-pixel scale and labels with ~5% ignored (255), fixed by seed."""
    g = torch.Generator().manual_seed(DATA_SEED)
    s = sizes.train_size
    image = torch.randn(sizes.batch, 3, s, s, generator=g) * 60
    label = torch.randint(0, sizes.classes, (sizes.batch, s, s), generator=g)
    label[torch.rand(label.shape, generator=g) < 0.05] = 255
    return image.to(device), label.to(device)


def infer_inputs(sizes: Sizes, device: torch.device):
    """A padded test crop and the image sizes inside it (the whole crop)."""
    g = torch.Generator().manual_seed(DATA_SEED + 1)
    s = sizes.infer_size
    image = (torch.randn(sizes.infer_batch, 3, s, s, generator=g) * 60).to(device)
    return image, torch.tensor([[s, s]] * sizes.infer_batch)


def protocol(model: torch.nn.Module) -> Callable:
    """The test protocol on ``model``: (scores on the 1x grid, cropped labels per image)."""

    def run(image: torch.Tensor, sizes: torch.Tensor):
        scores = multiscale_scores(model, image)
        return scores, labels_from_scores(scores, sizes, image.shape)

    return run


def make_configs(workload: str, sizes: Sizes, device: torch.device, compile_: bool,
                 contexts: Dict[str, Callable[[], ContextManager]]) -> list:
    configs = []
    for mode in MODES if compile_ else MODES[:1]:
        for path in PATHS:
            model = build_net(sizes, device)
            if workload == "train":
                model.train()
                opt = CaffeSGD(model.caffe_param_groups(), momentum=0.9, weight_decay=0.0005, iter_size=1, rate=RATE)
                fn = torch.compile(model) if mode == "compiled" else model
            else:
                model.eval()
                opt, fn = None, protocol(model)
                fn = torch.compile(fn) if mode == "compiled" else fn
            configs.append(Config(workload, path, mode, model, fn, contexts[path], opt))
    return configs


def train_step(cfg: Config, image: torch.Tensor, label: torch.Tensor, capture: bool = False) -> dict:
    """One solver iteration (see the module doc); with ``capture`` the losses, the fused map
    and the gradients (taken before the solver step) are returned."""
    got: dict = {}

    def loss_fn(batch):
        torch.manual_seed(DROPOUT_SEED)  # the same dropout masks in every configuration
        out = cfg.fn(batch[0])
        total, parts = segmentation_loss(out, batch[1])
        if capture:
            got["losses"] = torch.stack([p.detach() for p in parts])
            got["fusion"] = out["fusion"].detach().clone()
        return total

    with cfg.context():
        cfg.opt.zero_grad(set_to_none=True)
        accumulate_gradients(loss_fn, [(image, label)])
        if capture:
            got["grads"] = {n: p.grad.detach().clone() for n, p in cfg.model.named_parameters()
                            if p.grad is not None}
        cfg.opt.step()
    return got


def infer_step(cfg: Config, image: torch.Tensor, sizes: torch.Tensor, capture: bool = False) -> dict:
    with cfg.context(), torch.no_grad():
        scores, labels = cfg.fn(image, sizes)
    return {"scores": scores, "labels": torch.stack(labels)} if capture else {}


def step_callable(cfg: Config, inputs, capture: bool = False) -> Callable[[], dict]:
    step = train_step if cfg.workload == "train" else infer_step
    return lambda: step(cfg, *inputs, capture=capture)
