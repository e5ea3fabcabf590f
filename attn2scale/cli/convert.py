"""``convert``: Caffe caffemodel (+ prototxt) -> safetensors + JSON sidecar."""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from ..caffe.convert import TARGET_HELP, TARGETS
from ..ops.reference import MERGE_MODES


def _values(items: List[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--set expects NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def build_parser(prog: str = "convert_caffe.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Convert an original Caffe model to safetensors (+ a .json sidecar with provenance).",
    )
    p.add_argument("caffemodel", help="binary .caffemodel (V1 or V2 format)")
    p.add_argument("--prototxt", help="the net's .prototxt (topology; required for --model builder "
                                      "unless the caffemodel holds its layers)")
    p.add_argument("--model", default="builder", choices=TARGETS,
                   help="target (default builder): " + "; ".join(f"{k}: {v}" for k, v in TARGET_HELP.items()))
    p.add_argument("--lenient", action="store_true",
                   help="read a prototxt of another Caffe fork: unknown fields of data layers (transform_param, "
                        "*_data_param) are dropped with a warning listing them; any other unknown field is an error")
    p.add_argument("--phase", default="TEST", choices=["TRAIN", "TEST"], help="prototxt phase (builder)")
    p.add_argument("--set", dest="values", action="append", default=[], metavar="NAME=VALUE",
                   help="prototxt placeholder value, e.g. --set NUM_LABELS=21 (repeatable)")
    p.add_argument("--num-labels", type=int, help="NUM_LABELS placeholder / class count check")
    p.add_argument("--pool5a", action="store_true", default=None,
                   help="deeplab_largefov: the model has pool5a (official DeepLab v1 LargeFOV)")
    p.add_argument("--scales", help="attention_to_scale: comma-separated scales, e.g. 1,0.75,0.5")
    p.add_argument("--merge", choices=list(MERGE_MODES),
                   help="attention_to_scale: scale merge (read off the prototxt when given; must agree)")
    p.add_argument("--avg-weight", type=float,
                   help="attention_to_scale, merge avg: per-scale weight (the prototxt's Power scale when given; "
                        "without a prototxt the default is 1/S)")
    p.add_argument("--split", help="the list the model was trained on (e.g. trainval_aug); "
                                   "guessed from the prototxt when it names one")
    p.add_argument("--out", help="output .safetensors (the sidecar is written next to it as .json)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--verify", metavar="REF.h5[:GROUP]",
                   help="compare every blob with reference blobs (GROUP/input, GROUP/blobs/<name>); "
                        "nothing is written if any blob is off by more than --tolerance")
    p.add_argument("--tolerance", type=float, default=1e-5, help="max |err| / max |ref| per blob (default 1e-5)")
    p.add_argument("--allow-unused", action="store_true", help="drop caffemodel layers the target has no place for")
    p.add_argument("--allow-missing", action="store_true",
                   help="init models (e.g. vgg16_20M): parameters the caffemodel lacks, or whose blob does not fit "
                        "(an ImageNet fc8), keep their initialisation; the sidecar lists them")
    return p


def main(argv: Optional[List[str]] = None, prog: str = "convert_caffe.py") -> int:
    args = build_parser(prog).parse_args(argv)
    from ..caffe.convert import convert_caffe
    from ..caffe.reader import CaffeFormatError

    values = _values(args.values)
    if args.num_labels is not None:
        values.setdefault("NUM_LABELS", str(args.num_labels))
    options = {}
    if args.model != "builder":
        if args.num_labels is not None:
            options["num_classes"] = args.num_labels
        if args.model == "deeplab_largefov" and args.pool5a:
            options["pool5a"] = True
        if args.model == "attention_to_scale":
            if args.scales:
                options["scales"] = tuple(float(s) for s in args.scales.split(","))
            if args.merge:
                options["merge"] = args.merge
            if args.avg_weight is not None:
                options["avg_weight"] = args.avg_weight
    if args.out is None and args.verify is None:
        print(f"{prog}: give --out (and/or --verify)", file=sys.stderr)
        return 2
    try:
        res = convert_caffe(
            args.caffemodel, prototxt=args.prototxt, target=args.model, values=values or None, phase=args.phase,
            options=options, split=args.split, out=args.out, force=args.force, verify=args.verify,
            allow_unused=args.allow_unused, allow_missing=args.allow_missing, tolerance=args.tolerance,
            lenient=args.lenient,
        )
    except (CaffeFormatError, FileExistsError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    n = sum(t.numel() for t in res.state.values())
    print(f"{args.caffemodel}: {len(res.state)} tensors, {n:,} parameters -> target {args.model}")
    if args.model != "builder":  # what was read off the files (merge, average weight, scales...)
        print("model options: " + ", ".join(f"{k}={v}" for k, v in res.meta["model_options"].items()))
    if res.verify is not None:
        print("\n".join(res.verify.lines()))
        if not res.verify.ok:
            print(f"{prog}: verification failed; nothing written", file=sys.stderr)
            return 3
    if args.out:
        print(f"wrote {args.out} and {args.out.rsplit('.', 1)[0]}.json")
        for line in res.meta["not_converted"]:
            print(f"left at initialisation: {line}")
        split = res.meta["training"]["split"]
        if split:
            print(f"trained on: {split}")
    else:
        print(json.dumps({"verified": True}))
    return 0
