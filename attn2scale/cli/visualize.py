"""``visualize``: the paper's attention figure for images — which scale each pixel attends to."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def build_parser(prog: str = "attn2scale visualize") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Image, prediction, each scale's attention weight (one colour "
                                "scale), the winning scale, and the follow-up model's recalibration gate, as PNG.")
    p.add_argument("images", nargs="+")
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True, help=".safetensors or a run folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True)
    return p


def main(argv: Optional[List[str]] = None, prog: str = "attn2scale visualize") -> int:
    args = build_parser(prog).parse_args(argv)
    from ..data.io import DataError
    from ..engine.checkpoint import CheckpointError
    from ..engine.config import ConfigError, load_config
    from ..viz.attention import MatplotlibUnavailable

    try:
        cfg = load_config(args.config, args.overrides)
        paths = visualize(cfg, Path(args.weights), [Path(p) for p in args.images], Path(args.out))
    except (ConfigError, DataError, CheckpointError, MatplotlibUnavailable) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"{prog}: {len(paths)} figures in {args.out}")
    return 0


def visualize(cfg, weights: Path, images: List[Path], out: Path) -> List[Path]:
    import torch

    from ..data import get_dataset_info, pad_collate
    from ..engine.builders import test_transform
    from ..data.dataset import file_item
    from ..engine.config import ConfigError
    from ..engine.evaluate import image_rgb, prepare_model
    from ..engine.inference import attention_arrays
    from ..viz.attention import attention_figure

    info = get_dataset_info(cfg.data.dataset)
    model, _ = prepare_model(cfg, weights, torch.device("cpu"))
    scales = [float(s) for s in getattr(model, "scales", ())]
    if len(scales) < 2:
        raise ConfigError(f"{cfg.name}: model {cfg.model.name!r} runs one scale; the figure needs a multi-scale model")
    transform = test_transform(cfg)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in images:
        batch = pad_collate([file_item(f, transform)])
        label, arrays = attention_arrays(model, batch)
        if arrays is None:
            raise ConfigError(f"{cfg.name}: the model merges scales by {getattr(model, 'merge', 'a fixed rule')}; "
                              "only attention models have per-pixel scale weights")
        path = out / f"{f.stem}_attention.png"
        attention_figure(path, image_rgb(batch, 0, info), label, info.palette(), arrays, scales,
                         title=f"{cfg.name}: {f.name}")
        paths.append(path)
    return paths
