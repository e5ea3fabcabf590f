"""``predict``: label PNGs (dataset palette) and colour overlays for images or a split;
``--server`` writes the VOC 2012 evaluation server's layout and archive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional



def build_parser(prog: str = "attn2scale predict") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Predict label maps with a config's model.")
    p.add_argument("images", nargs="*", help="image files (or use --split)")
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True, help=".safetensors or a run folder")
    p.add_argument("--split", help="predict a split of the config's dataset instead of image files")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scales", default="1", help="test scales, e.g. 1,0.75,0.5")
    p.add_argument("--flip", action="store_true")
    p.add_argument("--server", action="store_true", help="VOC 2012: also write results/VOC2012/Segmentation/"
                                                         "comp6_test_cls and results.tgz for the evaluation server")
    return p


def main(argv: Optional[List[str]] = None, prog: str = "attn2scale predict") -> int:
    args = build_parser(prog).parse_args(argv)
    from ..data.io import DataError
    from ..engine.checkpoint import CheckpointError
    from ..engine.config import ConfigError, load_config
    from ..engine.inference import InferenceSettings, default_scales

    if bool(args.images) == bool(args.split):
        print(f"{prog}: give image files or --split, not both or neither", file=sys.stderr)
        return 2
    try:
        settings = InferenceSettings(default_scales(args.scales), args.flip)
        cfg = load_config(args.config, args.overrides)
        if args.server and cfg.data.dataset != "voc12":
            raise ConfigError(f"--server is the VOC 2012 evaluation server's layout; {cfg.name} is "
                              f"{cfg.data.dataset}")
        written = _predict(cfg, args, settings)
    except (ConfigError, DataError, CheckpointError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"{prog}: {len(written)} label maps in {args.out}")
    return 0


def _predict(cfg, args, settings) -> List[Path]:
    import torch

    from ..data import SegDataset, get_dataset_info, pad_collate
    from ..engine.builders import test_transform
    from ..data.dataset import file_item
    from ..data.io import write_label_png
    from ..engine.evaluate import image_rgb, prepare_model
    from ..engine.inference import labels_from_scores, multiscale_scores
    from ..engine.submission import VOC_SERVER_DIR, write_server_archive
    from ..fileio import atomic_path
    from ..viz import overlay

    info = get_dataset_info(cfg.data.dataset)
    transform = test_transform(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, _ = prepare_model(cfg, Path(args.weights), device)
    stems = [Path(f).stem for f in args.images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f"several input images share the name {clashes}: their outputs would overwrite each other")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.split:
        ds = SegDataset(cfg.data.root, args.split, info, transform)
        items = (ds[i] for i in range(len(ds)))
    else:
        items = (file_item(f, transform) for f in args.images)
    server = out / VOC_SERVER_DIR if args.server else None
    if server is not None:
        if (out / "results").exists():
            raise ValueError(f"{out / 'results'} exists: the archive must hold this run's predictions only; "
                             "choose an empty --out")
        server.mkdir(parents=True, exist_ok=True)
    written = []
    from PIL import Image

    for item in items:
        batch = pad_collate([item], info.ignore_label)
        image = batch["image"].to(device)
        label = labels_from_scores(multiscale_scores(model, image, settings), batch["size"], image.shape)[0].cpu()
        lab = label.to(torch.uint8).numpy()
        path = out / f"{item['name']}.png"
        write_label_png(path, lab, info.palette())
        with atomic_path(out / f"{item['name']}_overlay.png", durable=False) as tmp:
            Image.fromarray(overlay(image_rgb(batch, 0, info), lab, info.palette())).save(tmp, format="PNG")
        if server is not None:
            write_label_png(server / f"{item['name']}.png", lab, info.palette())
        written.append(path)
    if server is not None:
        write_server_archive(server, out / "results.tgz")
    return written
