"""Interp output sizes on the authors' real Caffe nets.

Every Interp layer of every train*/test*/deploy* prototxt under
``../shared/caffe/configs/authors`` is sized with this file's own reading of the
DeepLab Interp rule (:func:`interp_out`, written from the fork's layer as a fact,
not calling the library) inside a small spatial-shape propagator (Convolution / Pooling with Caffe's
rounding, ImageSegData crop size, shape-preserving layers). The real check is
the one Caffe itself makes when it builds these nets: every multi-input layer
(Concat, Eltwise, SpatialProduct, SoftmaxWithLoss, SegAccuracy) needs equal
H x W on all its inputs, and those inputs come out of Interp layers (the image
pyramid, the resized score maps, the shrunk labels). Absolute sizes from the
README and the paper (321 -> 161/241, fc8 41/31/21, test 513 -> 65 -> 513,
COCO 641 -> 81 -> 641) are asserted too; they are derived by hand below.

The prototxt reader and propagator here are deliberately small, test-local and
independent of :mod:`attn2scale.caffe`: ``test_caffe_configs_build`` compares the
real builder's blob shapes with this propagator's, blob for blob. Direct unit
tests of ``caffe_interp_size`` cover each branch with hand-derived numbers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from attn2scale import ops
from conftest import require_shared, shared_dir

CONFIGS = ("caffe", "configs", "authors")
NUM_LABELS = {"voc10_part": 7, "voc12": 21, "coco": 81}


def interp_out(h: int, w: int, p: dict) -> Tuple[int, int]:
    """DeepLab's Interp output size, in the order its layer decides: shrink alone, zoom alone,
    height and width, then shrink followed by zoom; on the input padded by pad_beg + pad_end."""
    pad = one(p, "pad_beg", 0) + one(p, "pad_end", 0)
    h, w = h + pad, w + pad
    shrink, zoom = one(p, "shrink_factor"), one(p, "zoom_factor")
    shrunk = (lambda n: (n - 1) // shrink + 1)
    zoomed = (lambda n: n + (n - 1) * (zoom - 1))
    if shrink is not None and zoom is None:
        return shrunk(h), shrunk(w)
    if zoom is not None and shrink is None:
        return zoomed(h), zoomed(w)
    if "height" in p and "width" in p:
        return one(p, "height"), one(p, "width")
    if shrink is not None and zoom is not None:
        return zoomed(shrunk(h)), zoomed(shrunk(w))
    raise Unsupported(f"interp_param {p} sets no size")


# --------------------------------------------------------------------------
# A small protobuf text-format reader
# --------------------------------------------------------------------------

class Quoted(str):
    """A value that was a quoted string in the file (vs. a bare word / enum)."""


_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
    r"""|(?P<punct>[{}:;,])|(?P<word>[^\s{}:;,#"'\[\]<>]+)|(?P<bad>.)"""
)


def _tokenize(text: str) -> List[Tuple[str, str, int]]:
    toks = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind is None:  # whitespace or comment
            continue
        if kind == "bad":
            line = text.count("\n", 0, m.start()) + 1
            raise ValueError(f"prototxt: unexpected character {m.group()!r} on line {line}")
        toks.append((kind, m.group(), text.count("\n", 0, m.start()) + 1))
    return toks


def _unquote(s: str) -> str:
    body = s[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _scalar(tok: str):
    for conv in (int, float):
        try:
            return conv(tok)
        except ValueError:
            pass
    return tok  # enum / bool word


def parse_prototxt(text: str) -> Dict[str, list]:
    """Text prototxt -> message dict: every key maps to the list of its values
    (repeated keys append); nested ``key { ... }`` / ``key: { ... }`` blocks are dicts."""
    toks = _tokenize(text)
    pos = 0

    def where() -> str:
        return f" (line {toks[min(pos, len(toks) - 1)][2]})" if toks else ""

    def message(closing: bool) -> Dict[str, list]:
        nonlocal pos
        msg: Dict[str, list] = {}
        while True:
            if pos == len(toks):
                if closing:
                    raise ValueError("prototxt: missing '}' at end of file" + where())
                return msg
            kind, tok, _ = toks[pos]
            if kind == "punct" and tok == "}":
                if not closing:
                    raise ValueError("prototxt: unbalanced '}'" + where())
                pos += 1
                return msg
            if kind == "punct" and tok in ";,":
                pos += 1
                continue
            if kind != "word":
                raise ValueError(f"prototxt: expected a field name, got {tok!r}" + where())
            key = tok
            pos += 1
            colon = pos < len(toks) and toks[pos][:2] == ("punct", ":")
            if colon:
                pos += 1
            if pos == len(toks):
                raise ValueError(f"prototxt: field {key!r} has no value" + where())
            kind, tok, _ = toks[pos]
            if kind == "punct" and tok == "{":
                pos += 1
                value = message(closing=True)
            elif not colon:
                raise ValueError(f"prototxt: field {key!r} needs ':' or '{{'" + where())
            elif kind == "str":
                parts = []
                while pos < len(toks) and toks[pos][0] == "str":  # "a" "b" concatenates
                    parts.append(_unquote(toks[pos][1]))
                    pos += 1
                value = Quoted("".join(parts))
            elif kind == "word":
                value = _scalar(tok)
                pos += 1
            else:
                raise ValueError(f"prototxt: field {key!r} has bad value {tok!r}" + where())
            msg.setdefault(key, []).append(value)

    return message(closing=False)


def one(msg: dict, key: str, default=None):
    """A singular field (error when repeated)."""
    vals = msg.get(key, [])
    if len(vals) > 1:
        raise ValueError(f"field {key!r} given {len(vals)} times, expected at most once")
    return vals[0] if vals else default


def many(msg: dict, key: str) -> list:
    return list(msg.get(key, []))


# --------------------------------------------------------------------------
# Placeholders (authors/sub.sed) and file discovery
# --------------------------------------------------------------------------

def sed_placeholders(sed_path: Path) -> List[str]:
    names = sorted(set(re.findall(r"\$\{([A-Z0-9_]+)\}", sed_path.read_text())))
    assert names, f"no placeholders found in {sed_path}"
    return names


def substitute(text: str, path: Path, names: List[str]) -> str:
    dataset, net_id = path.parent.parent.name, path.parent.name
    values = {n: f"/placeholder/{n.lower()}" for n in names}
    values.update(NUM_LABELS=str(NUM_LABELS[dataset]), EXP=dataset, NET_ID=net_id)
    for n in ("NUM_LABELS1", "NUM_LABELS_UNION", "BATCH_SIZE", "TRAIN_STEP"):
        values[n] = "1"
    for n in ("BG_BIAS", "FG_BIAS"):
        values[n] = "0"
    out = text
    for n in names:
        out = out.replace("${" + n + "}", values[n])
    left = sorted(set(re.findall(r"\$\{[^}]*\}", out)))
    assert not left, f"{path}: placeholders not in sub.sed: {left}"
    return out


def _config_files() -> List[Path]:
    root = shared_dir().joinpath(*CONFIGS)
    if not root.is_dir():
        return []
    return sorted(p for pat in ("train*.prototxt", "test*.prototxt", "deploy*.prototxt")
                  for p in root.glob(f"*/*/{pat}"))


try:  # collect at import time; never let a filesystem problem break collection
    CONFIG_FILES = _config_files()
    _COLLECT_ERROR = None
except OSError as exc:  # pragma: no cover
    CONFIG_FILES, _COLLECT_ERROR = [], exc


def _file_id(p: Path) -> str:
    return "/".join(p.parts[-3:])


# --------------------------------------------------------------------------
# Shape propagation with Caffe's rules
# --------------------------------------------------------------------------

Shape = Tuple[int, int, int]  # (C, H, W); None for non-spatial blobs (loss, accuracy)


class Unsupported(Exception):
    """A layer the propagator does not know: reported as a test failure."""


def _dims(param: dict, key: str, hkey: str, wkey: str, default: int) -> Tuple[int, int]:
    vals = many(param, key)
    if param.get(hkey) or param.get(wkey):
        return one(param, hkey, default), one(param, wkey, default)
    if len(vals) == 0:
        return default, default
    if len(vals) == 1:
        return vals[0], vals[0]
    if len(vals) == 2:
        return vals[0], vals[1]
    raise Unsupported(f"{key} has {len(vals)} values")


def conv_out(size: int, k: int, p: int, s: int, d: int) -> int:
    """Caffe convolution (DeepLab ``hole`` = dilation): floor division."""
    ext = d * (k - 1) + 1
    out = (size + 2 * p - ext) // s + 1
    assert out > 0, f"convolution output {out} from {size} (k={k} p={p} s={s} d={d})"
    return out


def pool_out(size: int, k: int, p: int, s: int) -> int:
    """Caffe pooling: ceil, then drop a last window that starts in the padding."""
    out = int(math.ceil((size + 2 * p - k) / s)) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    assert out > 0
    return out


def _phase_ok(layer: dict, phase: str) -> bool:
    for rule_key in ("include", "exclude"):
        for rule in many(layer, rule_key):
            if set(rule) - {"phase"}:
                raise Unsupported(f"net state rule fields {sorted(rule)} (only phase is handled)")
    inc, exc = many(layer, "include"), many(layer, "exclude")
    if inc and exc:
        raise Unsupported("layer with both include and exclude rules")
    if inc:
        return any(one(r, "phase") == phase for r in inc)
    return not any(one(r, "phase") == phase for r in exc)


SAME_SHAPE = {"ReLU", "Dropout", "Power", "Softmax", "Sigmoid", "TanH", "BatchNorm", "Scale"}
SINKS = {"MatWrite", "Silence"}  # consume anything, produce nothing
EQUAL_HW = {"Concat", "Eltwise", "SpatialProduct", "SoftmaxWithLoss", "SegAccuracy"}


class Net:
    def __init__(self, path: Path, names: List[str]):
        self.path = path
        self.phase = "TRAIN" if path.name.startswith("train") else "TEST"
        self.text = substitute(path.read_text(), path, names)
        self.proto = parse_prototxt(self.text)
        self.blobs: Dict[str, Optional[Shape]] = {}
        self.interps: List[Tuple[str, Shape, Shape, dict]] = []  # name, in, out, interp_param
        self.skipped_interps: List[str] = []  # excluded by phase
        self.hw_checks = 0  # multi-input equal-H x W checks made
        self.data_crop: Optional[int] = None

    def run(self) -> "Net":
        if "layers" in self.proto:
            raise Unsupported("old V1 'layers' syntax")
        self._inputs()
        for layer in many(self.proto, "layer"):
            name, ltype = one(layer, "name"), one(layer, "type")
            if not _phase_ok(layer, self.phase):
                if ltype == "Interp":
                    self.skipped_interps.append(name)
                continue
            try:
                self._layer(layer, name, ltype)
            except Unsupported as exc:
                raise Unsupported(f"layer {name!r} ({ltype}): {exc}") from None
        return self

    def _inputs(self):
        inputs = many(self.proto, "input")
        dims = many(self.proto, "input_dim")
        shapes = [many(s, "dim") for s in many(self.proto, "input_shape")]
        if dims:
            assert len(dims) == 4 * len(inputs), f"{len(dims)} input_dim for {len(inputs)} inputs"
            shapes = [dims[4 * i:4 * i + 4] for i in range(len(inputs))]
        assert len(shapes) == len(inputs)
        for name, s in zip(inputs, shapes):
            assert len(s) == 4, f"input {name}: {s}"
            self.blobs[name] = (s[1], s[2], s[3])

    def _get(self, blob: str) -> Optional[Shape]:
        if blob not in self.blobs:
            raise AssertionError(f"{self.path}: bottom blob {blob!r} is produced by no earlier layer")
        return self.blobs[blob]

    def _spatial(self, blob: str, layer: str) -> Shape:
        s = self._get(blob)
        assert s is not None, f"layer {layer!r} needs a spatial blob but {blob!r} is not one"
        return s

    def _layer(self, layer: dict, name: str, ltype: str):
        bottoms, tops = many(layer, "bottom"), many(layer, "top")
        if ltype == "ImageSegData":
            crop = one(one(layer, "transform_param", {}), "crop_size")
            if crop is None:
                raise Unsupported("ImageSegData without transform_param.crop_size")
            data_phase = [one(r, "phase") for r in many(layer, "include")]
            assert data_phase == [self.phase], f"{name}: data phase {data_phase} in a {self.phase} file"
            assert 1 <= len(tops) <= 2 and not bottoms
            label_type = one(one(layer, "image_data_param", {}), "label_type", "PIXEL")
            assert (len(tops) == 2) == (label_type == "PIXEL"), f"{name}: tops {tops}, label_type {label_type}"
            self.data_crop = crop
            self.blobs[tops[0]] = (3, crop, crop)
            if len(tops) == 2:
                self.blobs[tops[1]] = (1, crop, crop)
            return
        if ltype in SINKS:
            for b in bottoms:
                self._get(b)
            assert not tops, f"{ltype} {name} has tops {tops}"
            return
        ins = [self._spatial(b, name) for b in bottoms]
        if ltype in EQUAL_HW:
            hw = {(s[1], s[2]) for s in ins}
            assert len(ins) >= 2, f"{name}: {ltype} with {len(ins)} bottoms"
            assert len(hw) == 1, (
                f"{self.path}: {ltype} {name!r} bottoms have different H x W: "
                + ", ".join(f"{b}={s[1]}x{s[2]}" for b, s in zip(bottoms, ins))
            )
            self.hw_checks += 1

        if ltype == "Convolution":
            (c, h, w), = ins
            p = one(layer, "convolution_param")
            kh, kw = _dims(p, "kernel_size", "kernel_h", "kernel_w", None)
            ph, pw = _dims(p, "pad", "pad_h", "pad_w", 0)
            sh, sw = _dims(p, "stride", "stride_h", "stride_w", 1)
            hole = one(p, "hole")
            dil = many(p, "dilation")
            if hole is not None and dil:
                raise Unsupported("both hole and dilation")
            dh = dw = hole if hole is not None else 1
            if dil:
                dh, dw = (dil[0], dil[0]) if len(dil) == 1 else (dil[0], dil[1])
            if kh is None:
                raise Unsupported("no kernel size")
            if one(p, "group", 1) != 1 and one(p, "num_output") % one(p, "group") != 0:
                raise Unsupported("bad group")
            out = (one(p, "num_output"), conv_out(h, kh, ph, sh, dh), conv_out(w, kw, pw, sw, dw))
        elif ltype == "Pooling":
            (c, h, w), = ins
            p = one(layer, "pooling_param")
            if one(p, "global_pooling", False):
                raise Unsupported("global_pooling")
            kh, kw = _dims(p, "kernel_size", "kernel_h", "kernel_w", None)
            ph, pw = _dims(p, "pad", "pad_h", "pad_w", 0)
            sh, sw = _dims(p, "stride", "stride_h", "stride_w", 1)
            out = (c, pool_out(h, kh, ph, sh), pool_out(w, kw, pw, sw))
        elif ltype == "Interp":
            (c, h, w), = ins
            p = one(layer, "interp_param", {})
            known = {"shrink_factor", "zoom_factor", "height", "width", "pad_beg", "pad_end"}
            if set(p) - known:
                raise Unsupported(f"interp_param fields {sorted(set(p) - known)}")
            oh, ow = interp_out(h, w, p)
            out = (c, oh, ow)
            self.interps.append((name, ins[0], out, p))
        elif ltype in SAME_SHAPE:
            (out,) = ins
        elif ltype == "Concat":
            p = one(layer, "concat_param", {})
            axis = one(p, "axis", one(p, "concat_dim", 1))
            if axis != 1:
                raise Unsupported(f"concat axis {axis}")
            out = (sum(s[0] for s in ins),) + ins[0][1:]
        elif ltype == "Eltwise":
            assert len(set(ins)) == 1, f"Eltwise {name}: bottom shapes differ {ins}"
            out = ins[0]
        elif ltype == "SpatialProduct":
            assert len(ins) == 2, f"SpatialProduct {name}: {len(ins)} bottoms"
            assert ins[1][0] == 1, f"SpatialProduct {name}: weight map has {ins[1][0]} channels"
            out = ins[0]
        elif ltype == "Slice":
            (c, h, w), = ins
            p = one(layer, "slice_param", {})
            if one(p, "axis", 1) != 1:
                raise Unsupported("slice axis != 1")
            pts = many(p, "slice_point")
            if pts:
                assert len(pts) == len(tops) - 1, f"Slice {name}: {len(pts)} points for {len(tops)} tops"
                edges = [0] + pts + [c]
            else:
                assert c % len(tops) == 0
                edges = [c * i // len(tops) for i in range(len(tops) + 1)]
            assert all(a < b for a, b in zip(edges, edges[1:])), f"Slice {name}: points {edges}"
            for t, a, b in zip(tops, edges, edges[1:]):
                self.blobs[t] = (b - a, h, w)
            return
        elif ltype in ("SoftmaxWithLoss", "SegAccuracy"):
            assert len(ins) == 2 and ins[1][0] == 1, f"{ltype} {name}: label must be 1 channel, got {ins}"
            out = None
        elif ltype == "ArgMax":
            # Consumed only by MatWrite in these nets; the fork's output layout is not
            # needed for any check, so it is recorded as not spatial.
            out = None
        else:
            raise Unsupported(f"unknown layer type {ltype!r}")
        assert len(tops) <= 1, f"{ltype} {name}: tops {tops}"
        for t in tops:
            self.blobs[t] = out


def interp_layers_in_text(text: str) -> int:
    """Interp layers in the (comment-stripped) text, counted independently of the parser."""
    stripped = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return len(re.findall(r'\btype\s*:\s*"Interp"', stripped))


_NAMES_CACHE: Dict[str, List[str]] = {}
_NET_CACHE: Dict[Path, Net] = {}  # nets that propagated (failures are re-raised every time)


def _load(path: Path) -> Net:
    if path in _NET_CACHE:
        return _NET_CACHE[path]
    sed = require_shared(*CONFIGS, "sub.sed")
    key = str(sed)
    if key not in _NAMES_CACHE:
        _NAMES_CACHE[key] = sed_placeholders(sed)
    net = _NET_CACHE[path] = Net(path, _NAMES_CACHE[key]).run()
    return net


# --------------------------------------------------------------------------
# Every config: the nets build with Caffe's equal-size requirements
# --------------------------------------------------------------------------

_PARAMS = (
    [pytest.param(p, id=_file_id(p)) for p in CONFIG_FILES]
    if CONFIG_FILES
    else [pytest.param(None, id="configs-absent")]
)


@pytest.mark.parametrize("path", _PARAMS)
def test_config_interp_sizes_match_caffe(path):
    root = require_shared(*CONFIGS)
    if path is None:
        pytest.fail(f"{root} exists but no train*/test*/deploy* prototxt was collected ({_COLLECT_ERROR})")
    net = _load(path)  # Unsupported / AssertionError fail the test with the layer named
    # The parser saw every Interp layer of the file.
    assert len(net.interps) + len(net.skipped_interps) == interp_layers_in_text(net.text)
    assert net.interps, f"{path}: no Interp layer"
    crop = net.data_crop if net.data_crop is not None else net.blobs["data"][1]
    assert crop in (321, 513, 641)
    if net.phase == "TRAIN":
        assert crop == 321  # README: train crop 321
    for name, (c, h, w), (c2, oh, ow), _ in net.interps:
        assert h == w and oh == ow and c == c2, (name, h, w, oh, ow)  # square crops stay square
    # Every net that fuses scales or computes a loss made at least one equal-size check.
    assert net.hw_checks > 0 or not any(
        one(lay, "type") in EQUAL_HW for lay in many(net.proto, "layer") if _phase_ok(lay, net.phase)
    )
    # Test nets end with Interp zoom 8 back to the crop size (65 -> 513, 81 -> 641).
    if net.phase == "TEST":
        assert net.blobs["fc8_interp"][1:] == (crop, crop)


def test_all_configs_inventory():
    """How many nets / Interp layers were checked; nothing could go unhandled."""
    root = require_shared(*CONFIGS)
    files = _config_files()
    n_interp = n_checks = 0
    failures = []
    for p in files:
        try:
            net = _load(p)
        except (Unsupported, AssertionError, ValueError) as exc:
            failures.append(f"{_file_id(p)}: {exc}")
            continue
        n_interp += len(net.interps)
        n_checks += net.hw_checks
    print(f"\n{len(files)} prototxts, {n_interp} Interp layers sized, {n_checks} equal-HxW checks")
    assert not failures, "\n".join(failures)
    n_text = sum(interp_layers_in_text(p.read_text()) for p in files)
    assert n_interp == n_text, f"{n_interp} Interp layers propagated, {n_text} in the files"
    assert len(files) >= 100, f"only {len(files)} prototxts found under {root}"


# --------------------------------------------------------------------------
# Known absolute sizes (README / paper), derived by hand:
#   321: VGG pools (k3 s2 p1) 321->161->81->41, pool4/5 (s1) and the dilated convs keep 41
#   0.5:  shrink 2: (321-1)//2+1 = 161 -> 81 -> 41 -> 21
#   0.75: shrink 4 zoom 3: (320//4+1)=81 -> 81+80*2 = 241 -> 121 -> 61 -> 31
#   back to 41: 21 zoom 2 = 41; 31 zoom 4 shrink 3: (30//3+1)=11 -> 11+10*3 = 41
#   labels: shrink 8: 320//8+1 = 41; shrink 16: 320//16+1 = 21
#   513: 257 / 385 inputs -> fc8 65 / 33 / 49; 33 zoom 2 = 65; 49: 48//3+1=17 -> 17+16*3 = 65;
#        65 zoom 8 = 65+64*7 = 513
#   641: 321 / 481 inputs -> fc8 81 / 41 / 61; 41 zoom 2 = 81; 61: 60//3+1=21 -> 21+20*3 = 81;
#        81 zoom 8 = 81+80*7 = 641
# --------------------------------------------------------------------------

def _attention_sizes(exp, data, half, threeq, fc8, fc8_half, fc8_threeq):
    return {
        "data": data, "shrink_data05": half, "shrink_data075": threeq,
        f"fc8_{exp}": fc8, f"fc8_{exp}_res05": fc8_half, f"fc8_{exp}_res075": fc8_threeq,
        "fc7": fc8, "fc7_res05": fc8_half, "fc7_res075": fc8_threeq,
        "fc7_res05_interp": fc8, "fc7_res075_interp": fc8,
        f"fc8_{exp}_res05_interp": fc8, f"fc8_{exp}_res075_interp": fc8,
        "pool1": (data + 1) // 2, "pool1_res05": (half + 1) // 2, "pool1_res075": (threeq + 1) // 2,
        "fc8_fusion": fc8,
    }


KNOWN = {
    "voc10_part/vgg128_noup_pool3_20M_largewin_attention47/train.prototxt": {
        **_attention_sizes("voc10_part", 321, 161, 241, 41, 21, 31),
        "label": 321, "label_shrink8": 41, "label_shrink16": 21,
    },
    "voc10_part/vgg128_noup_pool3_20M_largewin_attention47/test.prototxt": {
        **_attention_sizes("voc10_part", 513, 257, 385, 65, 33, 49), "fc8_interp": 513,
    },
    "coco/vgg128_noup_pool3_20M_largewin_attention12/test.prototxt": {
        **_attention_sizes("coco", 641, 321, 481, 81, 41, 61), "fc8_interp": 641,
    },
    "coco/vgg128_noup_pool3_20M_largewin_attention12/deploy.prototxt": {
        **_attention_sizes("coco", 641, 321, 481, 81, 41, 61), "fc8_interp": 641,
    },
    "coco/vgg128_noup_pool3_20M_largewin_attention12/train.prototxt": {
        **_attention_sizes("coco", 321, 161, 241, 41, 21, 31),
        "label_shrink8": 41, "label_shrink16": 21,
    },
    "voc12/vgg128_noup_pool3_20M_largewin/train.prototxt": {
        "data": 321, "label": 321, "pool1": 161, "pool2": 81, "pool3": 41, "pool4": 41,
        "pool5": 41, "fc6": 41, "fc8_voc12": 41, "label_shrink": 41,
    },
    "voc12/vgg128_noup_pool3_20M_largewin/test.prototxt": {
        "data": 513, "pool3": 65, "fc8_voc12": 65, "fc8_interp": 513,
    },
}


@pytest.mark.parametrize("rel", sorted(KNOWN))
def test_known_sizes(rel):
    path = require_shared(*CONFIGS, *rel.split("/"))
    net = _load(path)
    got = {}
    for blob, size in KNOWN[rel].items():
        assert blob in net.blobs, f"{rel}: no blob {blob!r}"
        got[blob] = net.blobs[blob][1:]
    assert got == {b: (s, s) for b, s in KNOWN[rel].items()}


def test_attention_logits_have_one_channel_per_scale():
    """Channel bookkeeping through Concat/Slice on the final model (3 scales)."""
    net = _load(require_shared(*CONFIGS, "voc10_part", "vgg128_noup_pool3_20M_largewin_attention47",
                               "train.prototxt"))
    assert net.blobs["fc7_concat"] == (3 * 1024, 41, 41)
    assert [net.blobs[f"attention{i}"] for i in (1, 2, 3)] == [(1, 41, 41)] * 3
    assert net.blobs["fc8_fusion"] == (7, 41, 41)


# --------------------------------------------------------------------------
# The propagator itself must catch a size mismatch (the check can fail)
# --------------------------------------------------------------------------

_TOY = """
# a two-scale toy net
layer { name: "data" type: "ImageSegData" top: "data" top: "label"
  image_data_param { label_type: PIXEL }
  transform_param { crop_size: 33 } include: { phase: TRAIN } }
layer { name: "half" type: "Interp" bottom: "data" top: "half" interp_param { shrink_factor: 2 } }
layer { name: "s1" type: "Convolution" bottom: "data" top: "s1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "s2" type: "Convolution" bottom: "half" top: "s2"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "up" type: "Interp" bottom: "s2" top: "up" interp_param { %s } }
layer { name: "sum" type: "Eltwise" bottom: "s1" bottom: "up" top: "sum" }
"""


def _toy(tmp_path, interp_param):
    d = tmp_path / "voc12" / "toy"
    d.mkdir(parents=True)
    p = d / "train.prototxt"
    p.write_text(_TOY % interp_param)
    return Net(p, ["EXP"]).run()


def test_propagator_accepts_matching_sizes(tmp_path):
    # 33 -> s1 17; half 17 -> s2 9 -> zoom 2 = 17
    net = _toy(tmp_path, "zoom_factor: 2")
    assert net.blobs["s1"] == (4, 17, 17) and net.blobs["up"] == (4, 17, 17)
    assert net.hw_checks == 1


def test_propagator_rejects_mismatched_sizes(tmp_path):
    # zoom 3: 9 + 8*2 = 25 != 17
    with pytest.raises(AssertionError, match="different H x W"):
        _toy(tmp_path, "zoom_factor: 3")


def test_propagator_rejects_unknown_layers(tmp_path):
    d = tmp_path / "coco" / "toy"
    d.mkdir(parents=True)
    p = d / "test.prototxt"
    p.write_text('input: "data" input_dim: 1 input_dim: 3 input_dim: 9 input_dim: 9\n'
                 'layer { name: "x" type: "Deconvolution" bottom: "data" top: "x" }')
    with pytest.raises(Unsupported, match="Deconvolution"):
        Net(p, []).run()


def test_parser_basics():
    msg = parse_prototxt(
        'name: "a # not a comment" # a comment\n'
        "layer { top: 'x' top: \"y\" p { k: 3 f: 0.5 e: MAX } include: { phase: TEST } }\n"
        'layer { s: "con" "cat" }'
    )
    assert one(msg, "name") == "a # not a comment" and isinstance(one(msg, "name"), Quoted)
    first, second = many(msg, "layer")
    assert many(first, "top") == ["x", "y"]
    assert one(first, "p") == {"k": [3], "f": [0.5], "e": ["MAX"]}
    assert one(one(first, "include"), "phase") == "TEST"
    assert one(second, "s") == "concat"
    with pytest.raises(ValueError):
        parse_prototxt("layer { a: 1 ")
    with pytest.raises(ValueError):
        parse_prototxt("a 1")


def test_caffe_rounding_helpers():
    # conv: (41 + 24 - (12*2+1))//1 + 1 = 41 (fc6 hole 12); (321+2-3)//2+1 = 161
    assert conv_out(41, 3, 12, 1, 12) == 41 and conv_out(321, 3, 1, 2, 1) == 161
    # pool k3 s2 p1: ceil(320/2)+1 = 161; 4 -> ceil(3/2)+1 = 3, (3-1)*2=4 < 5 keep 3
    assert pool_out(321, 3, 1, 2) == 161 and pool_out(4, 3, 1, 2) == 3
    # k2 s2 p1 on 4: ceil(4/2)+1 = 3, last window starts at (3-1)*2 = 4 >= 4+1? no -> 3
    assert pool_out(4, 2, 1, 2) == 3
    # k2 s2 p1 on 3: ceil(3/2)+1 = 3, last window starts at 4 >= 3+1 -> 2
    assert pool_out(3, 2, 1, 2) == 2
    # no padding: k3 s2 on 6: ceil(3/2)+1 = 3 (Caffe keeps the partial window)
    assert pool_out(6, 3, 0, 2) == 3


# --------------------------------------------------------------------------
# caffe_interp_size: every branch, hand-derived
# --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "hw, kw, expected",
    [
        # shrink only: (H_eff-1)//s + 1
        ((321, 321), dict(shrink_factor=2), (161, 161)),       # 320//2+1
        ((321, 200), dict(shrink_factor=8), (41, 25)),         # 320//8+1, 199//8+1 = 24+1
        ((10, 7), dict(shrink_factor=3), (4, 3)),              # 9//3+1, 6//3+1
        ((5, 5), dict(shrink_factor=1), (5, 5)),
        # zoom only: H_eff + (H_eff-1)(z-1)
        ((65, 65), dict(zoom_factor=8), (513, 513)),           # 65+64*7
        ((21, 10), dict(zoom_factor=2), (41, 19)),             # 21+20, 10+9
        ((1, 3), dict(zoom_factor=5), (1, 11)),                # 1+0, 3+2*4
        # explicit height / width (no factors)
        ((21, 21), dict(out_height=50, out_width=7), (50, 7)),
        # shrink then zoom
        ((321, 321), dict(shrink_factor=4, zoom_factor=3), (241, 241)),  # 81 -> 81+80*2
        ((31, 31), dict(shrink_factor=3, zoom_factor=4), (41, 41)),      # 11 -> 11+10*3
        ((49, 30), dict(shrink_factor=3, zoom_factor=4), (65, 37)),      # 17 -> 65; 29//3+1=10 -> 10+9*3
        # both factors and height/width: height/width win (branch order)
        ((31, 31), dict(shrink_factor=3, zoom_factor=4, out_height=9, out_width=8), (9, 8)),
        # one factor + height/width: the factor wins
        ((321, 321), dict(shrink_factor=2, out_height=9, out_width=8), (161, 161)),
        # negative pads crop first: H_eff = H + pad_beg + pad_end
        ((323, 323), dict(shrink_factor=2, pad_beg=-1, pad_end=-1), (161, 161)),  # 321 -> 161
        ((12, 9), dict(zoom_factor=2, pad_beg=-2, pad_end=0), (19, 13)),          # 10 -> 19, 7 -> 13
        ((14, 14), dict(shrink_factor=2, zoom_factor=3, pad_beg=0, pad_end=-3), (16, 16)),  # 11 -> 6 -> 16
        ((20, 20), dict(out_height=4, out_width=5, pad_beg=-3, pad_end=-3), (4, 5)),
    ],
)
def test_caffe_interp_size_branches(hw, kw, expected):
    assert ops.caffe_interp_size(*hw, **kw) == expected


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(shrink_factor=2, pad_beg=1), "pad"),
        (dict(zoom_factor=2, pad_end=2), "pad"),
        (dict(shrink_factor=0), "shrink_factor"),
        (dict(zoom_factor=0), "zoom_factor"),
        (dict(shrink_factor=2, zoom_factor=-1), "zoom_factor"),
        (dict(), "shrink_factor"),
        (dict(out_height=5), "out_height"),   # width missing
        (dict(out_width=5), "out_height"),
        (dict(shrink_factor=2, pad_beg=-5, pad_end=-5), "leaves nothing"),  # 10 - 10 = 0
        (dict(out_height=0, out_width=3), "not positive"),
    ],
)
def test_caffe_interp_size_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ops.caffe_interp_size(10, 10, **kw)
