"""The training loop: Caffe's solver over a config, with checkpoints, logs and torchrun.

One iteration reads ``iter_size`` micro-batches of ``batch_size`` images (under
torchrun each of ``W`` processes reads ``iter_size / W`` of them), sums their
gradients, and takes one :class:`CaffeSGD` step at Caffe's learning rate for
the iteration. The image stream position after iteration ``i`` is
``(i + 1) * batch_size * iter_size`` whatever ``W`` is, so a run on 1 or 8
processes reads the same micro-batches; a resumed run continues the stream,
the RNG and the momentum exactly (bitwise on CPU).
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
import torch

from ..data import build_loader, get_dataset_info
from ..fileio import write_text_atomic
from . import distributed
from .checkpoint import (CheckpointError, config_differences, latest_checkpoint, load_checkpoint, load_init_weights,
                         manifest_hint, save_checkpoint, set_rng_state)
from .builders import build_model_for, train_dataset
from .config import Config, ConfigError
from .losses import segmentation_loss
from .solver import CaffeSGD
from .step import accumulate_gradients

REPO_ROOT = Path(__file__).resolve().parents[2]
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DROPOUT = 3  # SeedSequence purpose key (the data loader uses 0-2)


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, an unusable resume directory), named."""


# The output layers keep the prototxts' gaussian 0.01 filler (fc8, att_fc, the follow-up classifier).
OUTPUT_LAYERS = ("fc8", "att_fc", "classifier")


def msra_fill(model: torch.nn.Module) -> None:
    """Caffe's MSRAFiller (variance_norm FAN_IN: N(0, 2 / fan_in)) on every hidden convolution,
    N(0, 0.01) on the output layers, zero biases: a from-scratch start in which a deep ReLU
    net keeps its signal and the first scores are small."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                std = 0.01 if name.split(".")[-1] in OUTPUT_LAYERS else (2.0 / fan_in) ** 0.5
                m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.zero_()


class Trainer:
    """``Trainer(cfg, out).run()``; ``resume=True`` continues from ``out``'s latest checkpoint."""

    def __init__(self, cfg: Config, out: Path, *, resume: bool = False, progress: bool = True,
                 log: Callable[[str], None] = print):
        self.cfg, self.out, self.resume, self.progress = cfg, Path(out), resume, progress
        if not resume and latest_checkpoint(self.out) is not None:
            raise TrainingError(f"{self.out} holds checkpoints of an earlier run: pass --resume to continue it, "
                                "or choose another --out")
        try:
            self.dist = distributed.setup(cfg.train.device)
        except RuntimeError as exc:
            raise ConfigError(f"{cfg.name}: train.device: {exc}") from None
        self.log = log if self.dist.main else (lambda msg: None)
        if cfg.solver.iter_size % self.dist.world:
            raise ConfigError(f"{cfg.name}: solver.iter_size {cfg.solver.iter_size} is not a multiple of the "
                              f"{self.dist.world} processes; the global batch would change")
        self.local_iter_size = cfg.solver.iter_size // self.dist.world
        torch.manual_seed(cfg.train.seed)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.dataset = train_dataset(cfg)  # checks the root and every listed file first
        if cfg.train.val_every and cfg.data.val_split in get_dataset_info(cfg.data.dataset).unlabelled:
            raise ConfigError(f"{cfg.name}: train.val_every needs a labelled data.val_split; "
                              f"{cfg.data.val_split!r} has no labels")
        self.model = build_model_for(cfg).to(self.dist.device)
        self.start_iter, self.notes = 0, []
        self.optimizer = CaffeSGD(self.model.caffe_param_groups(), momentum=cfg.solver.momentum,
                                  weight_decay=cfg.solver.weight_decay, iter_size=self.local_iter_size)
        if resume:
            self._resume()
        elif cfg.init.weights:
            self.notes += load_init_weights(self.model, self._path(cfg.init.weights), cfg.init.expect_missing,
                                            source_hint=manifest_hint(cfg.init.source, REPO_ROOT))
        elif cfg.init.filler == "msra":
            msra_fill(self.model)
            self.notes.append("init: Caffe's MSRA filler on every convolution (no pretrained weights)")
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net, self.ddp = self.model, None
        if self.dist.world > 1:
            self.net = self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None)
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        self.scaler = torch.amp.GradScaler(self.dist.device.type) if cfg.train.amp == "fp16" else None
        if self.scaler is not None and getattr(self, "_scaler_state", None):
            self.scaler.load_state_dict(self._scaler_state)  # fp16 loss scale, as it was at the checkpoint

    def _path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() or path.exists() else REPO_ROOT / path

    def _resume(self) -> None:
        meta = latest_checkpoint(self.out)
        if meta is None:
            raise TrainingError(f"--resume: {self.out / 'checkpoints'} holds no checkpoint")
        record, weights, solver = load_checkpoint(meta)
        diffs = config_differences(record["config"], self.cfg.to_dict())
        if diffs:
            raise TrainingError(f"--resume: {meta} was trained with another config: " + "; ".join(diffs[:5]))
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{meta}: weights do not fit the model: {exc}") from None
        self.optimizer.load_momentum_buffers({k[len("momentum."):]: v for k, v in solver.items()
                                              if k.startswith("momentum.")})
        set_rng_state(solver)
        self._scaler_state = record.get("grad_scaler")
        self.start_iter = int(record["iteration"])
        self.notes.append(f"resumed from {meta} at iteration {self.start_iter}")

    # -- one iteration ----------------------------------------------------------------------
    def _loss(self, numbered) -> torch.Tensor:
        micro_batch, batch = numbered
        # Dropout draws from a stream keyed by the global micro-batch number, so its masks do
        # not depend on how many processes share the iteration (nor on a resume).
        torch.manual_seed(int(np.random.SeedSequence([self.cfg.train.seed, _DROPOUT, micro_batch])
                              .generate_state(1, np.uint64)[0] >> 1))
        dev = self.dist.device
        image = batch["image"].to(dev, non_blocking=True)
        if self.cfg.train.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        label = batch["label"].to(dev, non_blocking=True)
        amp = self.cfg.train.amp
        ctx = torch.autocast(dev.type, dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()
        with ctx:
            out = self.net(image)
        total, parts = segmentation_loss(out, label)
        self._parts.append(torch.stack([p.detach() for p in parts]))
        return self.scaler.scale(total) if self.scaler is not None else total

    def step(self, it: int, batches: List[dict]) -> torch.Tensor:
        """One solver iteration; returns the per-loss values (mean over micro-batches and processes)."""
        rate = self.cfg.solver.learning_rate(it)
        self.optimizer.set_rate(rate)
        self.optimizer.zero_grad(set_to_none=True)
        self._parts = []
        no_sync = self.ddp.no_sync if self.ddp is not None else None  # also when compiled around DDP
        # rank r's k-th micro-batch of iteration it is the stream's it * iter_size + k * W + r
        first = it * self.cfg.solver.iter_size + self.dist.rank
        numbered = [(first + k * self.dist.world, b) for k, b in enumerate(batches)]
        accumulate_gradients(self._loss, numbered, no_sync)
        parts = distributed.mean_across(torch.stack(self._parts).mean(0))
        if not bool(torch.isfinite(parts).all()):
            raise TrainingError(f"iteration {it}: the loss is not finite ({parts.tolist()}: fusion, then each "
                                "scale); nothing was written for this iteration")
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return parts

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        per_iter = cfg.data.batch_size * cfg.solver.iter_size
        loader = build_loader(self.dataset, cfg.data.batch_size, train=True, seed=cfg.train.seed,
                              workers=cfg.data.workers, start=self.start_iter * per_iter)
        batches = iter(loader)
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            import yaml

            write_text_atomic(self.out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        for n in self.notes:
            self.log(n)
        logger = _Logs(self.out, self.start_iter, enabled=self.dist.main, log=self.log)
        bar = _progress(range(self.start_iter, cfg.solver.max_iter), self.progress and self.dist.main, cfg.name)
        self.model.train()
        last = None
        for it in bar:
            t0 = time.perf_counter()
            parts = self.step(it, [next(batches) for _ in range(self.local_iter_size)])
            ips = per_iter / (time.perf_counter() - t0)
            last = {"iteration": it + 1, "loss": float(parts.sum()), "lr": cfg.solver.learning_rate(it),
                    "images_per_s": ips, **{f"loss_{k}": float(v) for k, v in enumerate(parts)}}
            logger.row(last)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}", img_s=f"{ips:.1f}")
            if (it + 1) % cfg.train.checkpoint_every == 0 or it + 1 == cfg.solver.max_iter:
                self._checkpoint(it + 1, (it + 1) * per_iter)
            if cfg.train.val_every and (it + 1) % cfg.train.val_every == 0:
                logger.validation(it + 1, self._validate(it + 1))
        logger.close()
        distributed.barrier()
        return last or {"iteration": self.start_iter}

    def _validate(self, iteration: int) -> dict:
        """The evaluation protocol on the validation split (``OUT/val/iter_N``); the model's
        RNG-free eval mode, then back to training."""
        import shutil

        from .evaluate import evaluate_model

        folder = self.out / "val" / f"iter_{iteration:06d}"
        if self.dist.main and folder.exists():
            shutil.rmtree(folder)  # left by an earlier (crashed or resumed) run: never reused
        distributed.barrier()
        self.model.eval()
        try:
            res = evaluate_model(self.model, self.cfg, folder, dist=self.dist,
                                 weights=(f"training iteration {iteration}", f"iteration-{iteration}"),
                                 progress=False, log=lambda msg: None)
        finally:
            self.model.train()
        self.log(f"validation at iteration {iteration}: mIoU {100 * res['miou']:.2f}")
        return res

    def _checkpoint(self, iteration: int, position: int) -> None:
        if self.dist.main:
            meta = save_checkpoint(self.out, iteration, self.model, self.optimizer.momentum_buffers(),
                                   self.cfg.to_dict(), {"stream_position": position, "world_size": self.dist.world,
                                                        "grad_scaler": self.scaler.state_dict() if self.scaler else None})
            self.log(f"checkpoint: {meta}")
        distributed.barrier()


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, unit="it", dynamic_ncols=True)


class _Logs:
    """log.csv (on resume, rows after the checkpoint are dropped first) and TensorBoard events
    when the ``tensorboard`` package is installed (said once when it is not)."""

    def __init__(self, out: Path, start: int, *, enabled: bool, log):
        self.enabled, self.writer, self.file = enabled, None, None
        if not enabled:
            return
        self.path = out / "log.csv"
        self.has_header = _trim_csv(self.path, start)
        _trim_csv(self.path.with_name("val.csv"), start)
        self.file = open(self.path, "a", newline="")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start + 1)
        except ImportError:
            log("TensorBoard events off: pip install tensorboard to write them (log.csv is written)")

    def row(self, values: dict) -> None:
        if not self.enabled:
            return
        w = csv.writer(self.file)
        if not self.has_header:
            w.writerow(list(values))
            self.has_header = True
        w.writerow([f"{v:.9g}" if isinstance(v, float) else v for v in values.values()])
        self.file.flush()
        if self.writer is not None:
            for k, v in values.items():
                if k != "iteration" and isinstance(v, float) and math.isfinite(v):
                    self.writer.add_scalar(f"train/{k}", v, values["iteration"])

    def validation(self, iteration: int, res: dict) -> None:
        """val.csv (iteration, mIoU, pixel accuracy) and TensorBoard val/ scalars."""
        if not self.enabled:
            return
        path = self.path.with_name("val.csv")
        new = not path.is_file()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["iteration", "miou", "pixel_acc", "mean_acc", "fwiou"])
            w.writerow([iteration] + [f"{res[k]:.6f}" for k in ("miou", "pixel_acc", "mean_acc", "fwiou")])
        if self.writer is not None:
            for k in ("miou", "pixel_acc"):
                self.writer.add_scalar(f"val/{k}", res[k], iteration)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.writer is not None:
            self.writer.close()


def _trim_csv(path: Path, start: int) -> bool:
    """Keep a log's rows up to iteration ``start`` (a resume) or none (a fresh run: the log of
    an unfinished earlier run goes); whether a header remains."""
    if not path.is_file():
        return False
    if start == 0:
        path.unlink()
        return False
    lines = path.read_text().splitlines()
    kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= start]
    write_text_atomic(path, "".join(ln + "\n" for ln in kept))
    return bool(kept)
