"""Models and datasets from a config (shared by training and evaluation)."""

from __future__ import annotations

import torch

from ..data import SegDataset, SegTransform, get_dataset_info
from ..models import build_model
from .config import Config, ConfigError


def build_model_for(cfg: Config) -> torch.nn.Module:
    info = get_dataset_info(cfg.data.dataset)
    options = dict(cfg.model.options)
    if "num_classes" in options:
        raise ConfigError(f"{cfg.name}: model.options.num_classes is set by the dataset ({info.num_labels}); "
                          "remove it")
    try:
        return build_model(cfg.model.name, num_classes=info.num_labels, width_div=cfg.model.width_div, **options)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{cfg.name}: model {cfg.model.name!r} with options {options}: {exc}") from None


def test_transform(cfg: Config) -> SegTransform:
    """Caffe's TEST-phase transform for the config's dataset (``data.test_crop`` if set)."""
    info = get_dataset_info(cfg.data.dataset)
    return SegTransform.for_dataset(info, False, **({"crop_size": cfg.data.test_crop} if cfg.data.test_crop else {}))


def train_dataset(cfg: Config) -> SegDataset:
    info = get_dataset_info(cfg.data.dataset)
    overrides = dict(mirror=cfg.data.mirror)
    if cfg.data.crop_size is not None:
        overrides["crop_size"] = cfg.data.crop_size
    if cfg.data.scale_range is not None:
        if len(cfg.data.scale_range) != 2:
            raise ConfigError(f"{cfg.name}: data.scale_range must be [low, high], got {cfg.data.scale_range}")
        overrides["scale_range"] = tuple(cfg.data.scale_range)
    return SegDataset(cfg.data.root, cfg.data.train_split, info, SegTransform.for_dataset(info, True, **overrides),
                      seed=cfg.train.seed)
