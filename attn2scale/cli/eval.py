"""``eval``: DeepLab's test protocol on a config's split; mIoU, per-class IoU, JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def build_parser(prog: str = "attn2scale eval") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Evaluate a config's model: pad to the test crop, zoom the "
                                "fused scores by 8 with the fused upsample-argmax, crop back, score.")
    p.add_argument("--config", required=True, help="a YAML file or a packaged config")
    p.add_argument("--weights", required=True, help="trained weights (.safetensors) or a run folder (its latest "
                                                    "checkpoint)")
    p.add_argument("--split", help="split to evaluate (default the config's val split)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="output folder (default runs/CONFIG/eval_SPLIT): pred/*.png, scores.json")
    p.add_argument("--scales", default="1", help="test scales, e.g. 1,0.75,0.5 (merged on the 1x score grid)")
    p.add_argument("--flip", action="store_true", help="also the mirrored image, merged in score space")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass")
    p.add_argument("--crf", action="store_true", help="DenseCRF post-processing (pip install -e .[crf])")
    p.add_argument("--crf-prototxt", help="read the CRF parameters from this test prototxt's DenseCRF layer")
    p.add_argument("--workers", type=int, default=2, help="CRF worker processes")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[List[str]] = None, prog: str = "attn2scale eval") -> int:
    args = build_parser(prog).parse_args(argv)
    from ..caffe.reader import CaffeFormatError
    from ..data.io import DataError
    from ..engine.checkpoint import CheckpointError
    from ..engine.config import ConfigError, load_config
    from ..engine.crf import CRFUnavailable, crf_from_args
    from ..engine.evaluate import evaluate
    from ..engine.inference import InferenceSettings, default_scales

    try:
        settings = InferenceSettings(default_scales(args.scales), args.flip)
        if args.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {args.batch}")
        if args.crf_prototxt and not args.crf:
            raise ValueError("--crf-prototxt is only read with --crf")
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, args.overrides)
        crf = crf_from_args(args.crf, args.crf_prototxt, args.workers)
        split = args.split or cfg.data.val_split
        out = Path(args.out or Path("runs") / cfg.name / f"eval_{split}")
        result = evaluate(cfg, Path(args.weights), out, split=split, settings=settings, batch_size=args.batch,
                          crf=crf, progress=not args.no_progress)
    except (ConfigError, DataError, CheckpointError, CaffeFormatError, CRFUnavailable) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        from ..engine import distributed

        distributed.teardown()
    if "miou" in result:
        print(f"{prog}: {cfg.name} {split}: mIoU {100 * result['miou']:.2f} over {result['images']} images; "
              f"{out / 'scores.json'}")
    else:
        print(f"{prog}: {cfg.name} {split}: {result['images']} images predicted (no labels); {out / 'pred'}")
    return 0
