"""``train``: train a config (a packaged table cell or a YAML file) with Caffe's solver."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def build_parser(prog: str = "attn2scale train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train a model as the authors' Caffe did. Under torchrun "
                                "(torchrun --nproc_per_node N -m attn2scale train ...) the global batch stays "
                                "batch_size x iter_size.")
    p.add_argument("--config", required=True, help="a YAML file, or a packaged config such as "
                                                   "person_part/attention_s3_esupv (attn2scale train --list)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set solver.base_lr=0.01 (repeatable)")
    p.add_argument("--out", help="run folder (default runs/CONFIG_NAME)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[List[str]] = None, prog: str = "attn2scale train") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--list"]:
        from ..engine.config import list_configs

        print("\n".join(list_configs()))
        return 0
    args = build_parser(prog).parse_args(argv)
    from ..data.io import DataError
    from ..engine.checkpoint import CheckpointError
    from ..engine.config import ConfigError, load_config
    from ..engine.trainer import Trainer, TrainingError

    try:
        cfg = load_config(args.config, args.overrides)
        out = Path(args.out or Path("runs") / cfg.name)
        last = Trainer(cfg, out, resume=args.resume, progress=not args.no_progress).run()
    except (ConfigError, DataError, CheckpointError, TrainingError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        from ..engine import distributed

        distributed.teardown()
    print(f"{prog}: {cfg.name}: iteration {last['iteration']}" +
          (f", loss {last['loss']:.4f}" if "loss" in last else "") + f"; run folder {out}")
    return 0
