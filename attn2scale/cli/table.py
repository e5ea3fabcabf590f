"""``table``: the papers' tables beside ours, cell by cell, or the built-in mini benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def build_parser(prog: str) -> argparse.ArgumentParser:
    from ..tables import paper_tables

    names = list(paper_tables())
    p = argparse.ArgumentParser(prog=prog, description="Print a table of the papers beside our numbers "
                                "(Markdown on stdout; .md/.csv/.json under --out), or run the mini benchmark.")
    p.add_argument("--table", help=f"one of: {', '.join(names)}, or all")
    p.add_argument("--mini", action="store_true", help="the built-in mini reproduction (no downloads, CPU)")
    p.add_argument("--quick", action="store_true", help="with --mini: 3 cells, fewer images and steps (~2 minutes)")
    p.add_argument("--seed", type=int, default=0, help="with --mini: the dataset's and training's seed")
    p.add_argument("--out", help="results folder (default results/, with --mini results/mini or results/mini_quick)")
    p.add_argument("--runs", default="runs", help="training runs: RUNS/<config>/ (default runs/)")
    p.add_argument("--weights", help="converted Caffe weights and manifest.json (default the repository's weights/)")
    p.add_argument("--train", action="store_true", help="train the cells that have no checkpoint (resumable; "
                                                        "run under torchrun for several GPUs)")
    p.add_argument("--force", action="store_true", help="recompute cached cells (with --mini: retrain too)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of every cell's config")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[List[str]] = None, prog: str = "attn2scale table") -> int:
    args = build_parser(prog).parse_args(argv)
    from ..data.io import DataError
    from ..engine.checkpoint import CheckpointError
    from ..engine.config import ConfigError
    from ..engine import distributed
    from ..engine.crf import CRFUnavailable
    from ..engine.trainer import TrainingError
    from ..tables import RunOptions, TableError, main_process, reproduce
    from ..tables.mini import run_mini

    if bool(args.mini) == bool(args.table):
        print(f"{prog}: give --table NAME or --mini", file=sys.stderr)
        return 2
    if args.quick and not args.mini:
        print(f"{prog}: --quick belongs to --mini", file=sys.stderr)
        return 2
    if args.mini and (args.overrides or args.train or args.weights):
        print(f"{prog}: --mini trains its own cells from its own configs; --set, --train and --weights "
              "belong to --table", file=sys.stderr)
        return 2
    try:
        if args.mini:
            out = Path(args.out or ("results/mini_quick" if args.quick else "results/mini"))
            res = run_mini(out, seed=args.seed, quick=args.quick, force=args.force, progress=not args.no_progress)
            print(res["text"])
            print(f"table: {res['paths']['md']} (.csv, .json); figures: {out / 'figures'}")
            return 0
        opts = RunOptions(out=Path(args.out or "results"), runs=Path(args.runs), overrides=args.overrides,
                          train=args.train, force=args.force, progress=not args.no_progress)
        if args.weights:
            opts.weights = Path(args.weights)
        done = reproduce([args.table], opts)
        distributed.teardown()
    except (TableError, ConfigError, DataError, CheckpointError, CRFUnavailable, TrainingError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    for res in done.values() if main_process() else ():
        print(res["text"])
    missing = any(r["status"] == "missing" for res in done.values() for r in res["rows"])
    return 3 if missing else 0
