"""Caffe weights -> safetensors + a JSON sidecar, for builder nets and the project's models.

The targets are :data:`TARGETS`, each described in :data:`TARGET_HELP` (the command line's
``--model`` choices and help come from there): the prototxt's own net as
:class:`~attn2scale.caffe.net.CaffeNet`, or one of the hand-written models.

For the hand-written models a parameter ``conv1_1.weight`` (or
``backbone.conv1_1.weight``) takes blob 0 of Caffe layer ``conv1_1``; ``fc8``
takes the one ``fc8*`` layer that is not a tower copy (``fc8_voc12`` in the
DeepLab releases). Tower copies that a Caffe-saved share-net stores again
(``conv1_1_res05``...) must equal their owner. Widths and class counts are read
off the blobs, so slim test nets convert as well as the originals. The scale
merge of ``attention_to_scale`` is read off the prototxt when one is given:
attention (SpatialProduct-weighted maps summed), max (Eltwise MAX) or average
(Eltwise SUM then Power, whose ``scale`` -- 0.33333 in the authors' nets, not
1/3 -- becomes ``avg_weight``); an explicit option that contradicts it is an
error.

The sidecar's ``provenance`` maps every converted tensor to the Caffe layer and
blob it holds, the blob's shape in the file, whether that shape was the legacy
num/channels/height/width, and the transforms applied (:func:`provenance_entry`).

Files are written to a temporary name in the target folder and renamed, so a
failed run never leaves half a file; an existing output is refused unless
``force``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..fileio import fsync_file, temp_beside
from . import reader
from .blobs import LegacyShapeArray, read_caffemodel_weights
from .model_options import TOWER, infer_model_options, owner_layer
from .net import CaffeNet, caffe_shape_matches
from .errors import CaffeFormatError
from .verify import VerifyReport, compare_blobs, read_reference

PathLike = Union[str, os.PathLike]
# The conversion targets, listed once: the CLI's choices and help text are made from this.
TARGET_HELP: Dict[str, str] = {
    "builder": "the prototxt's net (CaffeNet); keys <layer>.<weight|bias>",
    "deeplab_largefov": "attn2scale.models.DeepLabLargeFOV (pool5a from the prototxt)",
    "attention_to_scale": "attn2scale.models.MultiScaleNet over LargeFOV (merge, average weight and "
                          "scales from the prototxt)",
}
TARGETS: Tuple[str, ...] = tuple(TARGET_HELP)


# --------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------

def file_digest(path: PathLike) -> Dict[str, object]:
    p = Path(path)
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"file": p.name, "path": str(p), "bytes": p.stat().st_size, "sha256": h.hexdigest()}


def guess_training_split(net_param) -> Optional[str]:
    """The list a TRAIN-phase data layer reads (``list/train_aug.txt`` -> ``train_aug``), if the prototxt says."""
    for lp in reader.filter_phase(net_param, "TRAIN"):
        for field_name in ("image_data_param", "data_param", "hdf5_data_param", "window_data_param"):
            if lp.HasField(field_name):
                src = getattr(lp, field_name).source
                if src and "${" not in src:
                    return Path(src).stem
    return None


def split_contains(train_split: Optional[str], eval_split: str) -> bool:
    """Whether a model trained on ``train_split`` has seen ``eval_split`` (e.g. trainval_aug vs val)."""
    if not train_split:
        return False
    t, e = train_split.lower(), eval_split.lower()
    if t == e:
        return True
    parts = set(re.split(r"[_\-+]", t))
    return e in parts or (e == "val" and "trainval" in t)


def eval_split_warning(meta: Mapping, eval_split: str) -> Optional[str]:
    """A warning text when a converted model (its sidecar ``meta``) is evaluated on data it was trained on."""
    train = (meta.get("training") or {}).get("split")
    if split_contains(train, eval_split):
        return (f"{meta.get('source', {}).get('file', 'this model')} was trained on {train!r}, which contains "
                f"{eval_split!r}: evaluating on it overstates accuracy")
    return None


# --------------------------------------------------------------------------
# Where each converted tensor came from
# --------------------------------------------------------------------------

def provenance_entry(layer: str, idx: int, arr: np.ndarray, shape: Sequence[int], dtype: torch.dtype,
                     shared: Optional[Mapping[str, object]] = None) -> Dict[str, object]:
    """The sidecar's record of one saved tensor: the Caffe blob it holds and what was done to it.

    ``transforms`` lists every change between the blob in the file and the tensor, in order:
    ``reshape`` (a legacy 1x1x1xN bias into N, say), ``cast`` (a double_data blob) and ``shared``
    (one tensor standing for several Caffe layers: which use it, which store it, and how the
    stored copies were reconciled). An empty list: copied as it is.
    """
    file_shape = [int(d) for d in arr.shape]
    out_shape = [int(d) for d in shape]
    transforms: List[dict] = []
    if file_shape != out_shape:
        transforms.append({"op": "reshape", "from": file_shape, "to": out_shape})
    src_dtype, out_dtype = np.dtype(arr.dtype).name, str(dtype).replace("torch.", "")
    if src_dtype != out_dtype:
        transforms.append({"op": "cast", "from": src_dtype, "to": out_dtype})
    if shared:
        transforms.append({"op": "shared", **shared})
    return {"layer": layer, "blob": int(idx), "file_shape": file_shape,
            "legacy_shape": isinstance(arr, LegacyShapeArray), "transforms": transforms}


def builder_provenance(net: CaffeNet, blobs: Mapping[str, List[np.ndarray]],
                       state: Mapping[str, torch.Tensor]) -> Dict[str, dict]:
    """Provenance of a builder net's tensors (``<owner layer>.<weight|bias>``).

    A parameter shared by name (``param { name: "conv1_1_w" }``) is one tensor under the layer
    that first declares it; Caffe copies every stored copy into it in file order, so the values
    are those of the last layer in the file that stores it, and that layer is the one recorded.
    """
    key_of: Dict[Tuple[str, int], Tuple[str, int]] = {}  # (layer, blob) -> (owner layer, blob)
    owner_of_name: Dict[str, Tuple[str, int]] = {}
    users: Dict[Tuple[str, int], List[str]] = {}
    param_name: Dict[Tuple[str, int], str] = {}
    for n in net.order:
        specs = net.param_specs[n]
        for i in range(len(net.layer(n).blob_names)):
            name = specs[i].name if i < len(specs) else ""
            key = owner_of_name.setdefault(name, (n, i)) if name else (n, i)
            key_of[(n, i)] = key
            users.setdefault(key, []).append(n)
            if name:
                param_name[key] = name
    stored: Dict[Tuple[str, int], List[str]] = {}
    for lname, arrays in blobs.items():
        for i in range(len(arrays)):
            if (lname, i) in key_of:
                stored.setdefault(key_of[(lname, i)], []).append(lname)
    out: Dict[str, dict] = {}
    for (n, i), layers in stored.items():
        tkey = f"{n}.{net.layer(n).blob_names[i]}"
        if tkey not in state:
            continue
        shared = None
        if len(users[(n, i)]) > 1 or len(layers) > 1:
            shared = {"param": param_name.get((n, i)), "layers": users[(n, i)], "stored_in": layers,
                      "rule": "Caffe: each stored copy is loaded in file order, the last one is kept"}
        out[tkey] = provenance_entry(layers[-1], i, blobs[layers[-1]][i], tuple(state[tkey].shape),
                                     state[tkey].dtype, shared)
    return out


# --------------------------------------------------------------------------
# Mapping blobs onto hand-written models
# --------------------------------------------------------------------------

def _tower_copies(blobs: Mapping[str, List[np.ndarray]], used: set, *, source: str,
                  allow_unused: bool) -> Dict[str, List[str]]:
    """``{owner: [tower copies]}``: layers a Caffe-saved share-net stores again (``conv1_1_res05``),
    each checked equal to its owner; any other layer the model did not take is an error unless
    ``allow_unused``."""
    copies: Dict[str, List[str]] = {}
    for layer, arrays in blobs.items():
        if layer in used:
            continue
        m = TOWER.match(layer)
        owner = m.group("base") if m else None
        if owner in used:
            same = len(arrays) == len(blobs[owner]) and all(
                a.shape == b.shape and np.array_equal(a, b) for a, b in zip(arrays, blobs[owner]))
            if not same:
                raise CaffeFormatError(f"{source}: tower copy {layer!r} stores weights that differ from "
                                       f"{owner!r}; the share-net has one set")
            copies.setdefault(owner, []).append(layer)
            continue
        if not allow_unused:
            raise CaffeFormatError(f"{source}: layer {layer!r} has weights the model has no place for "
                                   f"(allow_unused=True drops them)")
    return copies


def _tower_suffixes(model: torch.nn.Module) -> List[str]:
    """Caffe name suffixes of the towers that reuse a share-net's backbone (``_res075``...)."""
    from ..models.multiscale import SUFFIX, MultiScaleNet

    return [SUFFIX[s] for s in model.scales[1:]] if isinstance(model, MultiScaleNet) else []


def map_blobs_to_model(blobs: Mapping[str, List[np.ndarray]], model: torch.nn.Module, *, source: str = "<weights>",
                       allow_unused: bool = False, allow_missing: bool = False,
                       missing: Optional[List[str]] = None, provenance: Optional[Dict[str, dict]] = None
                       ) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """``(state_dict, name_map)`` for ``model`` from Caffe blobs; ``name_map`` is ``"layer/i" -> torch key``.

    ``allow_missing`` (an ImageNet init such as DeepLab's ``vgg16_20M``): a parameter
    whose layer is absent, or whose blob does not fit (ImageNet's 1000-way fc8), keeps
    the model's own initialisation and is appended to ``missing`` with the reason.
    ``provenance`` (a dict) receives a :func:`provenance_entry` per converted parameter.
    """
    state: Dict[str, torch.Tensor] = {}
    name_map: Dict[str, str] = {}
    taken: Dict[str, Tuple[str, int]] = {}
    used = set()
    missing = missing if missing is not None else []
    for key, p in model.state_dict().items():
        parts = key.split(".")
        module, kind = parts[-2], parts[-1]
        idx = {"weight": 0, "bias": 1}.get(kind)
        if idx is None:
            raise CaffeFormatError(f"{source}: model parameter {key!r} has no Caffe counterpart")
        try:
            layer = owner_layer(blobs, module)
        except CaffeFormatError as exc:
            if allow_missing:
                missing.append(f"{key}: {exc}")
                continue
            raise CaffeFormatError(f"{source}: {exc} (model parameter {key!r})") from None
        arrays = blobs[layer]
        if idx >= len(arrays):
            raise CaffeFormatError(f"{source}: layer {layer!r} has {len(arrays)} blob(s); {key!r} needs blob {idx}")
        arr = arrays[idx]
        used.add(layer)
        if not caffe_shape_matches(tuple(arr.shape), tuple(p.shape), isinstance(arr, LegacyShapeArray)):
            msg = (f"layer {layer!r} blob {idx} has shape {tuple(arr.shape)}, "
                   f"model parameter {key!r} needs {tuple(p.shape)}")
            if allow_missing:
                missing.append(f"{key}: {msg}")
                continue
            raise CaffeFormatError(f"{source}: {msg}")
        state[key] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(p.shape)
        name_map[f"{layer}/{idx}"] = key
        taken[key] = (layer, idx)
    copies = _tower_copies(blobs, used, source=source, allow_unused=allow_unused)
    if provenance is not None:
        towers = _tower_suffixes(model)
        for key, (layer, idx) in taken.items():
            shared = None
            if towers and key.startswith("backbone."):  # one backbone runs every scale's tower
                shared = {"param": None, "layers": [layer] + [layer + t for t in towers],
                          "stored_in": [layer] + copies.get(layer, []),
                          "rule": "one tensor for every tower; copies stored in the file must equal it"}
            provenance[key] = provenance_entry(layer, idx, blobs[layer][idx], tuple(state[key].shape),
                                               state[key].dtype, shared)
    return state, name_map


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def save_converted(state: Mapping[str, torch.Tensor], meta: Mapping, out: PathLike, *, force: bool = False) -> Path:
    """Write ``out`` (.safetensors) and ``out`` with ``.json``.

    Both are written in full to temporary files beside them, flushed to disk, and only
    then renamed into place, weights first; a failure before the renames leaves the
    folder as it was.
    """
    from safetensors.torch import save_file

    out = Path(out)
    side = out.with_suffix(".json")
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: the output must end in .safetensors")
    if not force:
        for p in (out, side):
            if p.exists():
                raise FileExistsError(f"{p} exists; pass force=True (--force) to overwrite")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: the output folder does not exist")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    str_meta = {"format": "pt", "attn2scale": "caffe-conversion", "sidecar": side.name}
    text = json.dumps(meta, indent=2) + "\n"
    temps = []
    try:
        tmp_w = temp_beside(out)
        temps.append(tmp_w)
        save_file(tensors, tmp_w, metadata=str_meta)
        tmp_j = temp_beside(side)
        temps.append(tmp_j)
        Path(tmp_j).write_text(text)
        for t in temps:
            fsync_file(t)
        os.replace(tmp_w, out)
        os.replace(tmp_j, side)
    finally:
        for t in temps:
            if os.path.exists(t):
                os.unlink(t)
    return out


def load_converted(path: PathLike, *, eval_split: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], dict]:
    """``(state_dict, sidecar)`` of a converted file; warns when ``eval_split`` was part of its training data."""
    from safetensors.torch import load_file

    path = Path(path)
    side = path.with_suffix(".json")
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{side}: the sidecar of {path.name} is missing") from None
    state = load_file(str(path))
    if eval_split is not None:
        msg = eval_split_warning(meta, eval_split)
        if msg:
            warnings.warn(msg, stacklevel=2)
    return state, meta


# --------------------------------------------------------------------------
# The conversion
# --------------------------------------------------------------------------

@dataclass
class Conversion:
    model: torch.nn.Module
    state: Dict[str, torch.Tensor]
    meta: dict
    verify: Optional[VerifyReport] = None


def build_target(target: str, blobs, net_param, *, phase: str, options: Mapping[str, object], source: str,
                 allow_unused: bool = False, allow_missing: bool = False, missing: Optional[List[str]] = None,
                 provenance: Optional[Dict[str, dict]] = None, net_source: Optional[str] = None):
    """``(model, state, name_map, options)`` with the converted weights loaded.

    ``source`` names the caffemodel, ``net_source`` the prototxt (default ``source``) in errors;
    ``provenance`` (a dict) receives each converted tensor's origin.
    """
    if target == "builder":
        if net_param is None:
            raise CaffeFormatError(f"{source}: the builder target needs a prototxt (or a caffemodel with its layers)")
        kw = dict(options)
        # First on the meta device: every blob shape is checked against the net before anything
        # is allocated, so a corrupted file cannot ask for more memory than its weights take.
        CaffeNet(net_param, phase, source=source, **dict(kw, device="meta")).load_blobs(
            blobs, strict=not (allow_unused or allow_missing), source=source)
        net = CaffeNet(net_param, phase, source=source, **kw)
        report = net.load_blobs(blobs, strict=not (allow_unused or allow_missing), source=source)
        if report.missing and not allow_missing:
            raise CaffeFormatError(f"{source}: no weights in the file for layers {report.missing}")
        if report.unexpected and not allow_unused:
            raise CaffeFormatError(f"{source}: weights for layers the net lacks: {report.unexpected}")
        if missing is not None:
            missing.extend(f"{n}: not in the caffemodel" for n in report.missing)
        # A copy: a verification forward may update BatchNorm statistics in place (Caffe does so whenever
        # batch statistics are used); the file gets the caffemodel's values.
        state = {k: v.clone() for k, v in net.caffe_state_dict().items()}
        name_map = {}
        for n in net.param_layers():
            for i, pname in enumerate(net.layer(n).blob_names):
                name_map[f"{n}/{i}"] = f"{n}.{pname}"
        if provenance is not None:
            provenance.update(builder_provenance(net, blobs, state))
        return net, state, name_map, dict(options)
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; one of {TARGETS}")
    from ..models import build_model

    opts = infer_model_options(blobs, target, net_param, requested=options, phase=phase,
                               source=net_source or source)
    opts.update({k: v for k, v in options.items() if v is not None})
    model = build_model(target, **opts)
    state, name_map = map_blobs_to_model(blobs, model, source=source, allow_unused=allow_unused,
                                         allow_missing=allow_missing, missing=missing, provenance=provenance)
    model.load_state_dict(state, strict=not allow_missing)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return model.eval(), state, name_map, opts


def _model_blobs(model, target: str, inputs: Mapping[str, torch.Tensor], fc8_name: Optional[str]) -> Dict[str, torch.Tensor]:
    if target == "builder":
        return model(dict(inputs))
    blobs: Dict[str, torch.Tensor] = {}
    model(inputs["data"], blobs=blobs)
    if fc8_name and fc8_name != "fc8":  # our module is fc8; the release's layer fc8_<exp>
        blobs = {(fc8_name + k[3:] if k.startswith("fc8") else k): v for k, v in blobs.items()}
    if "fusion" in blobs:  # the authors' nets call the merged scores fc8_fusion
        blobs["fc8_fusion"] = blobs.pop("fusion")
    return blobs


def _read_prototxt(prototxt: PathLike, values: Optional[Mapping[str, object]], lenient: bool = False):
    """``(net_param, unresolved placeholders)``: placeholders inside strings (data paths, MatWrite
    prefixes) may stay; bare ones must be given. ``lenient``: see :mod:`.lenient`."""
    text = reader.read_text(prototxt)
    net_param = reader.parse_net_text(text, source=str(prototxt), values=values, strict="unquoted", lenient=lenient)
    return net_param, [n for n in reader.placeholders(text, code_only=True) if n not in (values or {})]


def _run_verify(model, target: str, blobs, verify: str, tolerance: float) -> VerifyReport:
    """The converted model's blobs on the reference input against the reference blobs."""
    inputs, refs = read_reference(verify)
    fc8 = owner_layer(blobs, "fc8") if target != "builder" else None
    with torch.no_grad():
        ours = _model_blobs(model, target, inputs, fc8)
    return compare_blobs(ours, refs, reference=verify, skip=list(inputs), tolerance=tolerance,
                         partial=target != "builder")


def convert_caffe(
    caffemodel: PathLike,
    *,
    prototxt: Optional[PathLike] = None,
    target: str = "builder",
    values: Optional[Mapping[str, object]] = None,
    phase: str = "TEST",
    options: Optional[Mapping[str, object]] = None,
    split: Optional[str] = None,
    out: Optional[PathLike] = None,
    force: bool = False,
    verify: Optional[str] = None,
    allow_unused: bool = False,
    allow_missing: bool = False,
    tolerance: float = 1e-5,
    lenient: bool = False,
) -> Conversion:
    """Convert; write ``out`` (+ ``.json``) when given; run ``verify`` (``FILE.h5[:GROUP]``) when given.

    ``verify`` runs before anything is written, so a failing check writes nothing. ``lenient``
    reads a prototxt with other forks' unknown data-layer fields, dropping them with a warning.
    """
    source = str(caffemodel)
    # The caffemodel's own layers are the topology only for a builder target without a prototxt.
    blobs, net_param = read_caffemodel_weights(caffemodel, with_net=prototxt is None and target == "builder")
    unresolved: List[str] = []
    if prototxt is not None:
        net_param, unresolved = _read_prototxt(prototxt, values, lenient)
    missing: List[str] = []
    provenance: Dict[str, dict] = {}
    model, state, name_map, opts = build_target(target, blobs, net_param, phase=phase, options=options or {},
                                                source=source, allow_unused=allow_unused,
                                                allow_missing=allow_missing, missing=missing,
                                                provenance=provenance,
                                                net_source=str(prototxt) if prototxt is not None else None)
    train_split = split or (guess_training_split(net_param) if net_param is not None else None)
    meta = {
        "format_version": 1,
        "source": file_digest(caffemodel),
        "prototxt": (dict(file_digest(prototxt), values=dict(values or {}), unresolved_placeholders=unresolved,
                          lenient=lenient)
                     if prototxt is not None else None),
        "target": target,
        "model_options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()
                          if isinstance(v, (int, float, str, bool, tuple, list, type(None)))},
        "phase": phase.upper(),
        "name_map": name_map,
        # torch key -> {layer, blob, file_shape, legacy_shape, transforms}: see provenance_entry
        "provenance": provenance,
        "not_converted": missing,  # parameters left at the model's initialisation (allow_missing)
        "training": {
            "split": train_split,
            "note": ("a model trained on a split that contains the evaluation split must not be evaluated on it; "
                     "load_converted(..., eval_split=...) warns"),
        },
    }
    result = Conversion(model=model, state=state, meta=meta)
    if verify is not None:
        result.verify = _run_verify(model, target, blobs, verify, tolerance)
        meta["verify"] = result.verify.to_json()
        if not result.verify.ok:
            return result
    if out is not None:
        save_converted(state, meta, out, force=force)
    return result
