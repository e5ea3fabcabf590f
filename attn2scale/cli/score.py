"""``score``: mIoU and friends of label PNGs against ground truth (any method's outputs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def build_parser(prog: str = "attn2scale score") -> argparse.ArgumentParser:
    from ..data.registry import DATASETS

    p = argparse.ArgumentParser(prog=prog, description="Score label PNGs (palette, grey, or RGB colour-coded in "
                                "the dataset's palette) against ground truth, matched by file name.")
    p.add_argument("--pred", required=True, help="folder of predicted NAME.png")
    p.add_argument("--gt", required=True, help="folder of ground-truth NAME.png")
    p.add_argument("--num-classes", type=int, required=True, help="number of classes (labels 0..N-1; 255 ignored)")
    p.add_argument("--list", help="only these images: a DeepLab list or an id list")
    p.add_argument("--dataset", choices=sorted(DATASETS), help="class names and palette for the table")
    p.add_argument("--json", help="write the scores to this JSON file")
    return p


def main(argv: Optional[List[str]] = None, prog: str = "attn2scale score") -> int:
    args = build_parser(prog).parse_args(argv)
    from ..data.io import DataError
    from ..data.registry import get_dataset_info, voc_palette
    from ..engine.metrics import class_list, format_table, write_scores
    from ..data.io import read_names
    from ..engine.scoring import score_directories

    if args.num_classes < 1:
        print(f"{prog}: error: --num-classes must be >= 1", file=sys.stderr)
        return 2
    if args.json and not Path(args.json).resolve().parent.is_dir():
        print(f"{prog}: error: --json {args.json}: its folder does not exist", file=sys.stderr)
        return 2
    info = get_dataset_info(args.dataset) if args.dataset else None
    if info is not None and info.num_labels != args.num_classes:
        print(f"{prog}: error: --dataset {info.name} has {info.num_labels} classes, --num-classes says "
              f"{args.num_classes}", file=sys.stderr)
        return 2
    try:
        names = read_names(Path(args.list), "--list") if args.list else None
        cm = score_directories(Path(args.pred), Path(args.gt), args.num_classes,
                               info.palette() if info else voc_palette(), names=names,
                               gt_lut=info.lut() if info else None)
    except DataError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    scores = cm.scores(class_list(info.classes if info else None, args.num_classes))
    print(format_table(scores, f"{args.pred} vs {args.gt}"))
    if args.json:
        write_scores(Path(args.json), scores, {"pred": args.pred, "gt": args.gt})
    return 0
