"""``attn2scale eval``: a config's model on a split, scored as the benchmarks score it.

Predictions are written per image (``OUT/pred/NAME.png``, palette PNGs, atomically)
and reused on a rerun, so an interrupted evaluation resumes; ``OUT/eval.json``
records what they were computed with, and a rerun with other weights or test
settings is refused rather than mixed. Under torchrun each process takes every
W-th image and the confusion matrices are summed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..data import SegDataset, get_dataset_info, pad_collate
from ..data.io import png_complete, read_label_raw, write_label_png
from ..data.loader import ShardSampler
from ..fileio import write_text_atomic
from . import distributed
from .checkpoint import CheckpointError, file_sha256
from .config import Config
from .inference import InferenceSettings, labels_from_scores, load_weights, multiscale_scores, to_rgb_uint8
from .metrics import ConfusionMatrix, format_table, write_scores
from .builders import build_model_for, test_transform


def prepare_model(cfg: Config, weights: Path, device: torch.device):
    model = build_model_for(cfg)
    used = load_weights(model, weights)
    return model.to(device).eval(), used


def _record(cfg: Config, weights: str, weights_id: str, split: str, settings: InferenceSettings, crf,
            transform) -> dict:
    return {"config": cfg.name, "weights": weights, "weights_sha256": weights_id, "split": split,
            "model": dataclasses.asdict(cfg.model), "data": {"dataset": cfg.data.dataset, "root": cfg.data.root,
                                                             "test_crop": transform.crop_size,
                                                             "input_scale": transform.scale},
            "scales": list(settings.scales), "flip": settings.flip,
            "crf": None if crf is None else dataclasses.asdict(crf.params)}


def _check_cache(out: Path, record: dict, *, write: bool) -> None:
    meta = out / "eval.json"
    if meta.is_file():
        old = json.loads(meta.read_text())
        keys = ("weights_sha256", "split", "model", "data", "scales", "flip", "crf", "config")
        diff = [k for k in keys if old.get(k) != record[k]]
        if diff:
            raise CheckpointError(f"{out} holds predictions of another evaluation (differs in {', '.join(diff)}); "
                                  "use another --out")
    elif write:
        write_text_atomic(meta, json.dumps(record, indent=1) + "\n")


def evaluate(cfg: Config, weights: Path, out: Path, *, split: Optional[str] = None, settings=InferenceSettings(),
             batch_size: int = 1, crf=None, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Predict and score ``split`` (default the config's validation split) with trained
    ``weights``; returns the scores."""
    dist = distributed.setup(cfg.train.device)
    model, used = prepare_model(cfg, weights, dist.device)
    return evaluate_model(model, cfg, out, dist=dist, weights=(str(used), file_sha256(used)), split=split,
                          settings=settings, batch_size=batch_size, crf=crf, progress=progress, log=log)


def evaluate_model(model, cfg: Config, out: Path, *, dist, weights: tuple, split: Optional[str] = None,
                   settings=InferenceSettings(), batch_size: int = 1, crf=None, progress: bool = True,
                   log: Callable[[str], None] = print) -> dict:
    """:func:`evaluate` for a model in memory; ``weights`` = (description, identity) for the cache record."""
    info = get_dataset_info(cfg.data.dataset)
    split = split or cfg.data.val_split
    dataset = SegDataset(cfg.data.root, split, info, test_transform(cfg))
    used = weights[0]
    out = Path(out)
    pred_dir = out / "pred"
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    record = _record(cfg, weights[0], weights[1], split, settings, crf, dataset.transform)
    _check_cache(out, record, write=False)  # every process: a refusal must stop all of them
    if dist.main:
        pred_dir.mkdir(parents=True, exist_ok=True)
        _check_cache(out, record, write=True)
    distributed.barrier()
    cm = ConfusionMatrix(info.num_labels, info.ignore_label)
    mine = ShardSampler(len(dataset), rank=dist.rank, world=dist.world).indices
    todo = [i for i in mine if not png_complete(pred_dir / f"{dataset.entries[i].name}.png")]
    t0, done = time.perf_counter(), 0
    bar = _bar(len(todo), progress and dist.main, f"eval {cfg.name} {split}")
    for start in range(0, len(todo), batch_size):
        items = [dataset[i] for i in todo[start : start + batch_size]]
        batch = pad_collate(items, info.ignore_label)
        image = batch["image"].to(dist.device)
        with torch.no_grad():
            scores = multiscale_scores(model, image, settings)
            labels = (crf.labels(scores, batch, info) if crf is not None
                      else labels_from_scores(scores, batch["size"], image.shape))
        for item, lab in zip(items, labels):
            lab = lab.to("cpu", torch.uint8)
            write_label_png(pred_dir / f"{item['name']}.png", lab.numpy(), info.palette())
            if dataset.labelled:  # the transform's label, cropped back: no second decode
                h, w = item["size"].tolist()
                cm.update(lab, item["label"][:h, :w], where=item["name"])
        done += len(items)
        if bar is not None:
            bar.update(len(items))
            bar.set_postfix(img_s=f"{done / (time.perf_counter() - t0):.2f}")
    if bar is not None:
        bar.close()
    if dataset.labelled:  # predictions an earlier run wrote
        for i in sorted(set(mine) - set(todo)):
            e = dataset.entries[i]
            cm.update(read_label_raw(pred_dir / f"{e.name}.png"), dataset.load_label(i), where=f"{e.name} ({e.where})")
    cm.all_reduce()
    result = {"split": split, "images": len(dataset), "predicted_now": done,
              "images_per_s": done / max(time.perf_counter() - t0, 1e-9)}
    if dataset.labelled:
        scores = cm.scores(info.classes)
        result.update(scores)
        if dist.main:
            write_scores(out / "scores.json", scores, {"config": cfg.name, "weights": str(used), "split": split,
                                                       "scales": list(settings.scales), "flip": settings.flip,
                                                       "crf": crf is not None})
            log(format_table(scores, f"{cfg.name} on {info.name} {split} ({len(dataset)} images)"))
    return result


def _bar(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True)


def image_rgb(batch: dict, k: int, info) -> np.ndarray:
    """Image k of a batch as H x W x 3 RGB uint8, cropped to its size."""
    return to_rgb_uint8(batch["image"][k], info.mean_bgr, tuple(batch["size"][k].tolist()), info.input_scale)
