#!/usr/bin/env python
"""Time and memory of reading / converting a full-size Caffe model, and of running it.

Nothing is downloaded: a full-width DeepLab-LargeFOV caffemodel (20.5 M
parameters, 82 MB, random weights; V2 or V1 layout) is written to a temporary
folder first. Measured, each in a fresh subprocess so peak memory is its own:

* ``read``     load_caffemodel_blobs (protobuf parse + numpy arrays)
* ``convert``  tools/convert_caffe.py to the hand-written model and to the builder net
* ``forward``  CaffeNet (built from the official prototxt when ../shared has it,
               otherwise from the synthetic one) vs the hand-written DeepLabLargeFOV
               on one 3 x H x H image, median of --repeats

    python tools/bench_convert.py [--format v2|v1] [--size 321] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_full_largefov(path: Path, fmt: str) -> dict:
    import numpy as np

    from attn2scale.caffe import schema
    from attn2scale.models import build_model

    model = build_model("deeplab_largefov", num_classes=21, pool5a=True)
    net = schema.NetParameter(name="largefov_full_random")
    rng = np.random.default_rng(0)
    for name, mod in model.named_children():
        if not hasattr(mod, "weight"):
            continue
        lname = "fc8_voc12" if name == "fc8" else name
        if fmt == "v1":
            layer = net.layers.add(name=lname, type=schema.V1LayerParameter.LayerType.Value("CONVOLUTION"))
        else:
            layer = net.layer.add(name=lname, type="Convolution")
        for p in (mod.weight, mod.bias):
            b = layer.blobs.add()
            if fmt == "v1":
                b.num, b.channels, b.height, b.width = (1,) * (4 - p.dim()) + tuple(p.shape)
            else:
                b.shape.dim.extend(p.shape)
            b.data.extend(rng.normal(0, 0.01, p.numel()).astype(np.float32))
    data = net.SerializeToString()
    path.write_bytes(data)
    return {"bytes": len(data), "parameters": sum(p.numel() for p in model.parameters())}


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line; add its peak RSS."""
    wrapped = code + "\nimport json, resource\nprint(json.dumps(dict(RESULT, peak_rss_mb=" \
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))\n"
    out = subprocess.run([sys.executable, "-c", wrapped], cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"benchmark step failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", choices=["v2", "v1"], default="v2")
    ap.add_argument("--size", type=int, default=321, help="input H = W for the forward timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", help="write a short report here (e.g. docs/bench_convert.md)")
    args = ap.parse_args(argv)

    shared_proto = REPO.parent / "shared" / "caffe" / "configs" / "deeplab_v1_official" / "DeepLab-LargeFOV" / "test.prototxt"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "largefov_full.caffemodel"
        t = time.perf_counter()
        results["file"] = write_full_largefov(model, args.format)
        results["file"]["write_s"] = time.perf_counter() - t
        if shared_proto.exists():
            proto, values = shared_proto, {"NUM_LABELS": 21, "EXP": "voc12"}
        else:  # the same topology, written here
            proto, values = tmp / "largefov.prototxt", {}
            proto.write_text(_LARGEFOV_PROTOTXT)
        results["read"] = _child(f"""
import time
from attn2scale.caffe import load_caffemodel_blobs
t = time.perf_counter(); b = load_caffemodel_blobs({str(model)!r}); RESULT = dict(seconds=time.perf_counter() - t)
""")
        for target in ("deeplab_largefov", "builder"):
            out = tmp / f"{target}.safetensors"
            results[f"convert_{target}"] = _child(f"""
import time
from attn2scale.caffe.convert import convert_caffe
t = time.perf_counter()
convert_caffe({str(model)!r}, prototxt={str(proto)!r}, values={values!r}, target={target!r}, out={str(out)!r},
              options={{"pool5a": True}} if {target!r} != "builder" else {{}})
RESULT = dict(seconds=time.perf_counter() - t)
""")
        results["forward"] = _child(f"""
import time, statistics, torch
from attn2scale.caffe import CaffeNet
from attn2scale.caffe.convert import convert_caffe
torch.manual_seed(0)
x = torch.randn(1, 3, {args.size}, {args.size})
shapes = {{"data": tuple(x.shape), "label": (1, 1) + tuple(x.shape[2:])}}
net = CaffeNet.from_prototxt({str(proto)!r}, "TEST", values={values!r}, strict="unquoted", input_shapes=shapes)
feed = {{k: (x if k == "data" else torch.zeros(shapes[k])) for k in net.inputs}}  # the test net's label feeds its accuracy
net.load_caffemodel({str(model)!r}, strict=False)
hand = convert_caffe({str(model)!r}, target="deeplab_largefov", options={{"pool5a": True}}).model
def med(f):
    ts = []
    for _ in range({args.repeats}):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
with torch.no_grad():
    a = net(feed)["fc8_voc12"]; b = hand(x)[1]
    diff = float((a - b).abs().max() / b.abs().max())
    RESULT = dict(builder_s=med(lambda: net(feed)), handwritten_s=med(lambda: hand(x)), rel_diff=diff,
                  threads=torch.get_num_threads(), size={args.size})
""")
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(_markdown(results, args, proto))
    return 0


def _markdown(r: dict, args, proto: Path) -> str:
    import platform

    import torch

    f, fw = r["file"], r["forward"]
    rows = [
        ("read (`load_caffemodel_blobs`)", r["read"]),
        ("convert to `deeplab_largefov` (read, map, write safetensors + sidecar)", r["convert_deeplab_largefov"]),
        ("convert to the builder net of the prototxt", r["convert_builder"]),
    ]
    lines = [
        "# Caffe conversion benchmark",
        "",
        f"`python tools/bench_convert.py --format {args.format} --size {args.size} --repeats {args.repeats}"
        f" --markdown docs/bench_convert.md` on {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {fw['threads']} threads. A full-width DeepLab-LargeFOV caffemodel "
        f"({f['parameters']:,} parameters, {f['bytes'] / 1e6:.1f} MB, {args.format.upper()} layout, random weights) "
        f"is written first; prototxt: `{proto.name}` of "
        f"{'the official DeepLab v1 LargeFOV' if 'shared' in str(proto) else 'the built-in LargeFOV text'}. "
        "Each step runs in a fresh interpreter; peak RSS includes importing torch (about 510 MB here).",
        "",
        "| step | seconds | peak RSS MB |",
        "|---|---|---|",
        *[f"| {name} | {v['seconds']:.2f} | {v['peak_rss_mb']:.0f} |" for name, v in rows],
        "",
        f"Forward on one 3 x {fw['size']} x {fw['size']} image (median of {args.repeats}): builder "
        f"`CaffeNet` {fw['builder_s']:.3f} s, hand-written `DeepLabLargeFOV` {fw['handwritten_s']:.3f} s; "
        f"fc8 of the two differs by {fw['rel_diff']:.2g} of max|fc8|.",
        "",
    ]
    return "\n".join(lines)


# DeepLab-LargeFOV (official v1 topology, with pool5a), used when ../shared is absent.
_CONV = 'layer {{ name: "{n}" type: "Convolution" bottom: "{b}" top: "{n}" convolution_param {{ num_output: {c} kernel_size: {k} pad: {p} dilation: {d} }} }}\n'
_RELU = 'layer {{ name: "relu_{n}" type: "ReLU" bottom: "{n}" top: "{n}" }}\n'
_POOL = 'layer {{ name: "{n}" type: "Pooling" bottom: "{b}" top: "{n}" pooling_param {{ pool: {m} kernel_size: 3 stride: {s} pad: 1 }} }}\n'


def _largefov_text() -> str:
    text = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 321 dim: 321 } } }\n'
    bottom = "data"
    for stage, (width, n, stride, dil) in enumerate([(64, 2, 2, 1), (128, 2, 2, 1), (256, 3, 2, 1), (512, 3, 1, 1), (512, 3, 1, 2)], 1):
        for i in range(1, n + 1):
            name = f"conv{stage}_{i}"
            text += _CONV.format(n=name, b=bottom, c=width, k=3, p=dil, d=dil) + _RELU.format(n=name)
            bottom = name
        text += _POOL.format(n=f"pool{stage}", b=bottom, m="MAX", s=stride)
        bottom = f"pool{stage}"
    text += _POOL.format(n="pool5a", b=bottom, m="AVE", s=1)
    text += _CONV.format(n="fc6", b="pool5a", c=1024, k=3, p=12, d=12) + _RELU.format(n="fc6")
    text += _CONV.format(n="fc7", b="fc6", c=1024, k=1, p=0, d=1) + _RELU.format(n="fc7")
    text += _CONV.format(n="fc8_voc12", b="fc7", c=21, k=1, p=0, d=1)
    return text


_LARGEFOV_PROTOTXT = _largefov_text()

if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
