"""Options of the hand-written models read off a caffemodel's blobs and its prototxt.

Widths and class counts come from the blobs; the scale merge of
``attention_to_scale`` from the prototxt: attention (SpatialProduct-weighted maps
summed), max (Eltwise MAX) or average (Eltwise SUM then Power, whose ``scale`` --
0.33333 in the authors' nets, not 1/3 -- becomes ``avg_weight``), and the scales
from the towers' suffixes. An explicit option that contradicts the files is an error.
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import reader, schema
from .errors import CaffeFormatError

#: a share-net tower copy of a layer: conv1_1_res05, fc8_voc12_res075 ...
TOWER = re.compile(r"^(?P<base>.+?)_res\d+$")

# --------------------------------------------------------------------------
# Model options read off the blobs and the prototxt
# --------------------------------------------------------------------------

def owner_layer(blobs: Mapping[str, list], module: str) -> str:
    """The Caffe layer holding the weights of model module ``module`` (``fc8``: the one fc8* that is
    not a tower copy)."""
    if module in blobs:
        return module
    if module == "fc8":
        cands = [k for k in blobs if re.fullmatch(r"fc8(_.+)?", k) and not TOWER.match(k)]
        if len(cands) == 1:
            return cands[0]
        if cands:
            raise CaffeFormatError(f"several candidate fc8 layers {sorted(cands)}; the model has one")
    raise CaffeFormatError(f"no Caffe layer with weights for module {module!r}")



# Known scale counts of the authors' pyramids, for when only the count is known (att_fc's outputs).
_DEFAULT_SCALES = {2: (1.0, 0.5), 3: (1.0, 0.75, 0.5)}
_Fixed = Dict[str, Tuple[object, str]]  # option -> (value, where in the files it was read)


def _score_source(blob: str, producer: Mapping[str, object]) -> Optional[Tuple[str, object]]:
    """``(fc8 layer, SpatialProduct layer or None)`` when ``blob`` is one scale's score map: an
    ``fc8*`` convolution's output, resized by Interp, and (attention merge) weighted by a SpatialProduct."""
    product, seen = None, set()
    while blob in producer and blob not in seen:
        seen.add(blob)
        lp = producer[blob]
        if lp.type == "Convolution" and re.fullmatch(r"fc8(_.+)?", lp.name):
            return lp.name, product
        if lp.type == "SpatialProduct" and product is None:
            product = lp
        elif lp.type != "Interp":
            return None
        blob = lp.bottom[0]
    return None


def _tower_scale(fc8_layer: str) -> Optional[float]:
    """The pyramid scale of a tower's fc8 layer by the authors' names (``fc8_x_res075`` -> 0.75)."""
    from ..models.multiscale import SUFFIX

    for scale, suffix in SUFFIX.items():
        if suffix and fc8_layer.endswith(suffix):
            return scale
    return None if TOWER.match(fc8_layer) else 1.0


def _find_merge(layers: Sequence, source: str):
    """``(eltwise layer, [(fc8 layer, product)], producer map)`` of the one Eltwise that merges the
    scales' score maps, or None when the net has none (a single-scale net)."""
    producer = {t: lp for lp in layers for t in lp.top}
    found = []
    for lp in layers:
        if lp.type != "Eltwise" or len(lp.bottom) < 2:
            continue
        srcs = [_score_source(b, producer) for b in lp.bottom]
        if all(srcs):
            found.append((lp, srcs))
    if len(found) > 1:
        raise CaffeFormatError(f"{source}: several Eltwise layers merge the fc8 score maps "
                               f"({[lp.name for lp, _ in found]}); the model has one merge")
    return (found[0][0], found[0][1], producer) if found else None


def _avg_weight(eltwise, layers: Sequence, source: str) -> Tuple[float, str]:
    """``(weight, where)`` of an average merge: the Eltwise SUM's ``coeff`` (equal ones, default 1)
    times the ``scale`` of the Power layer that reads the sum (the authors' ``fc_fusion`` ->
    ``fc8_fusion``, 0.33333 or 0.5). Without a Power layer the net merges by a plain sum (weight 1)."""
    where = f"{source}: layer {eltwise.name!r}"
    coeff = [float(c) for c in eltwise.eltwise_param.coeff]
    if coeff and (len(coeff) != len(eltwise.bottom) or len(set(coeff)) > 1):
        raise CaffeFormatError(f"{where} sums the score maps with coefficients {coeff}; the average merge "
                               f"weights all {len(eltwise.bottom)} scales alike")
    weight = coeff[0] if coeff else 1.0
    readers = _readers(eltwise.top[0], layers, where)
    powers = [lp for lp in readers if lp.type == "Power"]
    if not powers:
        return weight, f"{where} (Eltwise SUM, coeff {weight:g}, no Power layer after it)"
    if len(readers) > 1:
        raise CaffeFormatError(f"{where}: its sum feeds {[lp.name for lp in readers]}; the average's Power "
                               "layer must be the only one that reads it")
    pw, pp = powers[0], powers[0].power_param
    again = [lp.name for lp in _readers(pw.top[0], layers, where) if lp.type in ("Power", "Scale")]
    if again:
        raise CaffeFormatError(f"{source}: layers {again} scale the average of Power layer {pw.name!r} again; "
                               "the model's average merge has one weight")
    if pp.power != 1.0 or pp.shift != 0.0:
        raise CaffeFormatError(f"{source}: Power layer {pw.name!r} after the average merge {eltwise.name!r} has "
                               f"power {pp.power:g} and shift {pp.shift:g}; an average needs power 1 and shift 0 "
                               "(a scale only)")
    # Caffe holds the scale as a float: keep the shortest decimal of that float (0.33333, not 0.33333000540...)
    return float(str(np.float32(weight * pp.scale))), f"{source}: Power layer {pw.name!r} (scale {pp.scale:g})"


def _readers(blob: str, layers: Sequence, where: str) -> List:
    """The layers that read ``blob`` (through Split layers); a layer rewriting it in place is an error,
    since the model's merge output cannot hold that change."""
    out = []
    for lp in layers:
        if blob not in lp.bottom:
            continue
        if blob in lp.top:
            raise CaffeFormatError(f"{where}: layer {lp.name!r} ({lp.type}) rewrites the merged blob {blob!r} in "
                                   "place; the model's merge cannot hold that")
        if lp.type == "Split":
            out += [r for t in lp.top for r in _readers(t, layers, where)]
        else:
            out.append(lp)
    return out


def _slice_index(product, producer: Mapping[str, object], default: int) -> int:
    """Which channel of the attention Softmax weights this SpatialProduct (its Slice top's index)."""
    att = product.bottom[1] if len(product.bottom) > 1 else None
    sl = producer.get(att)
    return list(sl.top).index(att) if sl is not None and sl.type == "Slice" else default


def _merge_from_net(layers: Sequence, source: str) -> _Fixed:
    """The merge, its weight (avg) and the scales the prototxt wires; empty for a single-scale net."""
    hit = _find_merge(layers, source)
    if hit is None:
        return {}
    lp, srcs, producer = hit
    where = f"{source}: layer {lp.name!r}"
    op = schema.EltwiseParameter.EltwiseOp.Name(lp.eltwise_param.operation)
    products = [prod for _, prod in srcs]
    fixed: _Fixed = {}
    if any(products):
        if not all(products) or op != "SUM":
            raise CaffeFormatError(f"{where} merges SpatialProduct-weighted score maps by {op} or with "
                                   "unweighted ones; the attention merge sums weighted maps only")
        order = [_slice_index(prod, producer, k) for k, prod in enumerate(products)]
        srcs = [srcs[k] for k in sorted(range(len(srcs)), key=order.__getitem__)]  # att_fc channel order
        fixed["merge"] = ("attention", f"{where} (Eltwise SUM of SpatialProduct-weighted score maps)")
    elif op == "MAX":
        fixed["merge"] = ("max", f"{where} (Eltwise MAX)")
    elif op == "SUM":
        fixed["merge"] = ("avg", f"{where} (Eltwise SUM)")
        fixed["avg_weight"] = _avg_weight(lp, layers, source)
    else:
        raise CaffeFormatError(f"{where} merges the score maps by Eltwise {op}; the model merges by avg "
                               "(SUM + Power), max (MAX) or attention")
    names = [name for name, _ in srcs]
    scales = [_tower_scale(n) for n in names]
    if None in scales or len(set(scales)) != len(scales):
        fixed["_num_scales"] = (len(names), f"{where} ({len(names)} score maps: {names})")
    else:
        if fixed["merge"][0] != "attention":  # avg and max do not depend on the order: finest first
            scales = sorted(scales, reverse=True)
        fixed["scales"] = (tuple(scales), f"{where} (score maps of {names})")
    return fixed


def _same_option(key: str, want, value) -> bool:
    if key == "avg_weight":  # Caffe holds the Power scale as a float
        return np.float32(want) == np.float32(value)
    if key == "scales":
        return tuple(float(s) for s in want) == tuple(value)
    if key == "_num_scales":
        return len(tuple(want)) == value
    return want == value


def _check_requested(fixed: _Fixed, requested: Mapping[str, object]) -> None:
    """A CaffeFormatError when an explicitly requested option contradicts what the files fix."""
    for key, (value, where) in fixed.items():
        asked = "scales" if key == "_num_scales" else key
        want = requested.get(asked)
        if want is None or _same_option(key, want, value):
            continue
        said = f"{value} scales" if key == "_num_scales" else f"{key}={value!r}"
        raise CaffeFormatError(f"{asked}={want!r} was requested, but {where} gives {said}")


def _blob_options(blobs: Mapping[str, List[np.ndarray]]) -> Dict[str, object]:
    """Width divisor and class count read off conv1_1 and fc8."""
    if "conv1_1" not in blobs:
        raise CaffeFormatError("no conv1_1 layer: not a VGG-16 / DeepLab-LargeFOV caffemodel")
    w0 = blobs["conv1_1"][0]
    width = int(w0.shape[0]) if w0.ndim == 4 else 0
    if width <= 0 or 64 % width:
        raise CaffeFormatError(f"conv1_1 has {width} filters; LargeFOV widths are 64 / k")
    opts: Dict[str, object] = {"width_div": 64 // width}
    try:
        opts["num_classes"] = int(blobs[owner_layer(blobs, "fc8")][0].shape[0])
    except CaffeFormatError:
        pass  # an init model without a classifier: the caller's num_classes (or the default) decides
    return opts


def _fixed_count(fixed: _Fixed) -> Optional[Tuple[int, str]]:
    """``(number of scales, where)`` when the files fix it."""
    if "scales" in fixed:
        return len(fixed["scales"][0]), fixed["scales"][1]
    return fixed.get("_num_scales")


def _share_net_scales(blobs, fixed: _Fixed, opts: Dict[str, object], requested: Mapping[str, object]) -> None:
    """The pyramid: the prototxt's towers, else att_fc's output count (one per scale) when the net is
    an attention net; a count alone gives the authors' pyramid of that size unless scales are requested."""
    merge = fixed.get("merge", (requested.get("merge") or opts.get("merge"),))[0]
    if merge == "attention" and "att_fc" in blobs:
        n = int(blobs["att_fc"][0].shape[0])
        known = _fixed_count(fixed)
        if known is not None and known[0] != n:
            raise CaffeFormatError(f"att_fc has {n} outputs (one per scale), but {known[1]} merges {known[0]}")
        fixed.setdefault("_num_scales", (n, f"att_fc ({n} outputs, one per scale)"))
    if "scales" in fixed or "_num_scales" not in fixed or requested.get("scales") is not None:
        return
    n, where = fixed["_num_scales"]
    if n not in _DEFAULT_SCALES:
        raise CaffeFormatError(f"{where}: {n} scales, not a pyramid the authors used; give the scales "
                               "explicitly (--scales)")
    opts["scales"] = _DEFAULT_SCALES[n]


def infer_model_options(blobs: Mapping[str, List[np.ndarray]], target: str, net_param=None, *,
                        requested: Optional[Mapping[str, object]] = None, phase: str = "TEST",
                        source: str = "<prototxt>") -> Dict[str, object]:
    """Options for ``build_model(target, ...)``: width and classes read off the blobs; pool5a, the
    scale merge (attention; max = Eltwise MAX; avg = Eltwise SUM + Power, whose ``scale`` becomes
    ``avg_weight``) and the scales read off the prototxt ``net_param`` (``source`` names it).

    What the prototxt fixes must agree with ``requested`` (the caller's explicit options): a
    contradiction is a CaffeFormatError naming the layer. Values read off the blobs are defaults
    only (an ImageNet init's 1000-way fc8 converted for 21 classes, say).
    """
    requested = {k: v for k, v in (requested or {}).items() if v is not None}
    opts = _blob_options(blobs)
    layers = reader.filter_phase(net_param, phase, source=source) if net_param is not None else None
    fixed: _Fixed = {}
    if target == "deeplab_largefov":
        opts["pool5a"] = False
        if layers is not None:
            has = any(lp.name == "pool5a" for lp in layers)
            fixed["pool5a"] = (has, f"{source} (layer 'pool5a' {'present' if has else 'absent'})")
    elif target == "attention_to_scale":
        if layers is not None:
            fixed = _merge_from_net(layers, source)
        if "merge" not in fixed and "att_fc" in blobs:
            opts["merge"] = "attention"  # no merge in a prototxt: attention weights say which
        _share_net_scales(blobs, fixed, opts, requested)
    _check_requested(fixed, requested)
    opts.update({k: v for k, (v, _) in fixed.items() if not k.startswith("_")})
    return opts
