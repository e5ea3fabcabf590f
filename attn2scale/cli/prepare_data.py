"""``prepare-data``: a public dataset download -> ROOT in DeepLab's layout (images, labels, lists)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional


def build_parser(prog: str = "attn2scale prepare-data") -> argparse.ArgumentParser:
    from ..data.prepare import PREPARERS, SOURCES

    p = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Turn a public dataset distribution into DeepLab's layout: ROOT/<images>, ROOT/<labels> "
                    "(palette PNGs of training ids) and ROOT/list/SPLIT.txt. Reruns skip finished files.",
        epilog="sources:\n" + "\n".join(f"  {k}: {v}" for k, v in SOURCES.items()),
    )
    p.add_argument("dataset", choices=sorted(PREPARERS), help="which dataset")
    p.add_argument("--src", required=True, help="the raw distribution's folder (see below)")
    p.add_argument("--out", required=True, help="the dataset root to write (may equal --src)")
    p.add_argument("--sbd", help="voc12: SBD's benchmark_RELEASE/dataset folder")
    p.add_argument("--parts", help="person_part: the PASCAL-Part Annotations_Part folder")
    p.add_argument("--lists", help="a folder of the authors' lists (SPLIT.txt or SPLIT_id.txt) deciding the images; "
                                   "required for coco_subset")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="worker processes")
    return p


def main(argv: Optional[List[str]] = None, prog: str = "attn2scale prepare-data") -> int:
    args = build_parser(prog).parse_args(argv)
    from ..data.io import DataError
    from ..data.prepare import prepare_dataset

    options = {"lists": args.lists, "workers": args.workers}
    if args.dataset == "voc12":
        options["sbd"] = args.sbd
    elif args.sbd:
        print(f"{prog}: --sbd is only for voc12", file=sys.stderr)
        return 2
    if args.dataset == "person_part":
        options["parts"] = args.parts
    elif args.parts:
        print(f"{prog}: --parts is only for person_part", file=sys.stderr)
        return 2
    try:
        report = prepare_dataset(args.dataset, args.src, args.out, **options)
    except DataError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    if report.differences:
        print(f"{prog}: prepared, but {len(report.differences)} list(s) differ from the authors' sizes (above); "
              "exit status 3", file=sys.stderr)
        return 3
    return 0
