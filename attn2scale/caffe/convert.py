"""Caffe weights -> safetensors + a JSON sidecar, for builder nets and the project's models.

Targets:

``builder``            the net of the prototxt (or of the caffemodel itself), as
                       :class:`~attn2scale.caffe.net.CaffeNet`; keys ``<layer>.<weight|bias>``.
``deeplab_largefov``   :class:`attn2scale.models.DeepLabLargeFOV`.
``attention_to_scale`` :class:`attn2scale.models.MultiScaleNet` over LargeFOV.

For the hand-written models a parameter ``conv1_1.weight`` (or
``backbone.conv1_1.weight``) takes blob 0 of Caffe layer ``conv1_1``; ``fc8``
takes the one ``fc8*`` layer that is not a tower copy (``fc8_voc12`` in the
DeepLab releases). Tower copies that a Caffe-saved share-net stores again
(``conv1_1_res05``...) must equal their owner. Widths and class counts are read
off the blobs, so slim test nets convert as well as the originals.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..fileio import fsync_file, temp_beside
from . import reader
from .net import CaffeNet, caffe_shape_matches
from .reader import CaffeFormatError

PathLike = Union[str, os.PathLike]
TARGETS = ("builder", "deeplab_largefov", "attention_to_scale")
_TOWER = re.compile(r"^(?P<base>.+?)_res\d+$")


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
# Mapping blobs onto hand-written models
# --------------------------------------------------------------------------

def _owner_layer(blobs: Mapping[str, list], module: str) -> str:
    if module in blobs:
        return module
    if module == "fc8":
        cands = [k for k in blobs if re.fullmatch(r"fc8(_.+)?", k) and not _TOWER.match(k)]
        if len(cands) == 1:
            return cands[0]
        if cands:
            raise CaffeFormatError(f"several candidate fc8 layers {sorted(cands)}; the model has one")
    raise CaffeFormatError(f"no Caffe layer with weights for module {module!r}")


def map_blobs_to_model(blobs: Mapping[str, List[np.ndarray]], model: torch.nn.Module, *, source: str = "<weights>",
                       allow_unused: bool = False, allow_missing: bool = False,
                       missing: Optional[List[str]] = None) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """``(state_dict, name_map)`` for ``model`` from Caffe blobs; ``name_map`` is ``"layer/i" -> torch key``.

    ``allow_missing`` (an ImageNet init such as DeepLab's ``vgg16_20M``): a parameter
    whose layer is absent, or whose blob does not fit (ImageNet's 1000-way fc8), keeps
    the model's own initialisation and is appended to ``missing`` with the reason.
    """
    state: Dict[str, torch.Tensor] = {}
    name_map: Dict[str, str] = {}
    used = set()
    missing = missing if missing is not None else []
    for key, p in model.state_dict().items():
        parts = key.split(".")
        module, kind = parts[-2], parts[-1]
        idx = {"weight": 0, "bias": 1}.get(kind)
        if idx is None:
            raise CaffeFormatError(f"{source}: model parameter {key!r} has no Caffe counterpart")
        try:
            layer = _owner_layer(blobs, module)
        except CaffeFormatError as exc:
            if allow_missing:
                missing.append(f"{key}: {exc}")
                continue
            raise CaffeFormatError(f"{source}: {exc} (model parameter {key!r})") from None
        arrays = blobs[layer]
        if idx >= len(arrays):
            raise CaffeFormatError(f"{source}: layer {layer!r} has {len(arrays)} blob(s); {key!r} needs blob {idx}")
        arr = arrays[idx]
        if not caffe_shape_matches(tuple(arr.shape), tuple(p.shape), isinstance(arr, reader.LegacyShapeArray)):
            msg = (f"layer {layer!r} blob {idx} has shape {tuple(arr.shape)}, "
                   f"model parameter {key!r} needs {tuple(p.shape)}")
            if allow_missing:
                missing.append(f"{key}: {msg}")
                used.add(layer)
                continue
            raise CaffeFormatError(f"{source}: {msg}")
        state[key] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(p.shape)
        name_map[f"{layer}/{idx}"] = key
        used.add(layer)
    for layer, arrays in blobs.items():
        if layer in used:
            continue
        m = _TOWER.match(layer)
        owner = m.group("base") if m else None
        if owner in used:
            same = len(arrays) == len(blobs[owner]) and all(
                a.shape == b.shape and np.array_equal(a, b) for a, b in zip(arrays, blobs[owner]))
            if not same:
                raise CaffeFormatError(f"{source}: tower copy {layer!r} stores weights that differ from "
                                       f"{owner!r}; the share-net has one set")
            continue
        if not allow_unused:
            raise CaffeFormatError(f"{source}: layer {layer!r} has weights the model has no place for "
                                   f"(allow_unused=True drops them)")
    return state, name_map


def infer_model_options(blobs: Mapping[str, List[np.ndarray]], target: str, net_param=None) -> Dict[str, object]:
    """Options for ``build_model(target, ...)`` read off the blobs (widths, classes, scales) and prototxt."""
    if "conv1_1" not in blobs:
        raise CaffeFormatError("no conv1_1 layer: not a VGG-16 / DeepLab-LargeFOV caffemodel")
    w0 = blobs["conv1_1"][0]
    width = int(w0.shape[0]) if w0.ndim == 4 else 0
    if width <= 0 or 64 % width:
        raise CaffeFormatError(f"conv1_1 has {width} filters; LargeFOV widths are 64 / k")
    opts: Dict[str, object] = {"width_div": 64 // width}
    try:
        opts["num_classes"] = int(blobs[_owner_layer(blobs, "fc8")][0].shape[0])
    except CaffeFormatError:
        pass  # an init model without a classifier: the caller's num_classes (or the default) decides
    names = [lp.name for lp in net_param.layer] if net_param is not None else []
    if target == "deeplab_largefov":
        opts["pool5a"] = "pool5a" in names
    elif target == "attention_to_scale":
        if "att_fc" in blobs:
            opts["merge"] = "attention"
            s = blobs["att_fc"][0].shape[0]
            opts["scales"] = {2: (1.0, 0.5), 3: (1.0, 0.75, 0.5)}.get(s)
            if opts["scales"] is None:
                raise CaffeFormatError(f"att_fc has {s} outputs; give the scales explicitly")
    return opts


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
# Verification against reference blobs
# --------------------------------------------------------------------------

@dataclass
class BlobError:
    blob: str
    shape: Tuple[int, ...]
    max_abs_err: float
    max_abs_ref: float

    @property
    def rel(self) -> float:
        return self.max_abs_err / max(self.max_abs_ref, 1e-30)


@dataclass
class VerifyReport:
    reference: str
    errors: List[BlobError] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # reference blobs the model should have produced
    not_compared: List[str] = field(default_factory=list)  # reference blobs outside a hand-written model
    tolerance: float = 1e-5

    @property
    def ok(self) -> bool:
        return bool(self.errors) and not self.missing and all(e.rel <= self.tolerance for e in self.errors)

    def lines(self) -> List[str]:
        out = [f"{'blob':32s} {'shape':>22s} {'max|err|':>11s} {'max|ref|':>11s} {'rel':>10s}"]
        for e in self.errors:
            flag = "" if e.rel <= self.tolerance else "  FAIL"
            out.append(f"{e.blob:32s} {str(e.shape):>22s} {e.max_abs_err:11.3e} {e.max_abs_ref:11.3e} {e.rel:10.2e}{flag}")
        for m in self.missing:
            out.append(f"{m:32s} not produced by the converted model  FAIL")
        if self.not_compared:
            out.append(f"not compared (the hand-written model has no such blob): {', '.join(self.not_compared)}")
        out.append(f"{'PASS' if self.ok else 'FAIL'}: {len(self.errors)} blobs, worst relative error "
                   f"{max((e.rel for e in self.errors), default=0.0):.3g} (tolerance {self.tolerance:g})")
        return out

    def to_json(self) -> dict:
        return {"reference": self.reference, "ok": self.ok, "tolerance": self.tolerance, "missing": self.missing,
                "not_compared": self.not_compared,
                "blobs": [{"blob": e.blob, "shape": list(e.shape), "max_abs_err": e.max_abs_err,
                           "max_abs_ref": e.max_abs_ref, "rel": e.rel} for e in self.errors]}


def read_reference(spec: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """``(inputs, blobs)`` from ``FILE.h5[:GROUP]``: ``GROUP/input`` (or ``GROUP/inputs/<blob>``) and ``GROUP/blobs/<blob>``."""
    import h5py

    path, _, group = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CaffeFormatError(f"{path}: cannot open the reference HDF5 file: {exc}") from None
    with f:
        g = f[group] if group else f
        if "blobs" not in g:
            raise CaffeFormatError(f"{spec}: no 'blobs' group (expected GROUP/blobs/<name> datasets)")
        blobs = {k: torch.from_numpy(v[()]) for k, v in g["blobs"].items()}
        if "inputs" in g:
            inputs = {k: torch.from_numpy(v[()]) for k, v in g["inputs"].items()}
        elif "input" in g:
            inputs = {"data": torch.from_numpy(g["input"][()])}
        else:
            raise CaffeFormatError(f"{spec}: no 'input' dataset or 'inputs' group")
    return inputs, blobs


def compare_blobs(ours: Mapping[str, torch.Tensor], refs: Mapping[str, torch.Tensor], *, reference: str,
                  skip: Sequence[str] = (), tolerance: float = 1e-5, partial: bool = False) -> VerifyReport:
    """Per-blob errors; with ``partial`` (a hand-written model) blobs it lacks are listed, not failed."""
    rep = VerifyReport(reference=reference, tolerance=tolerance)
    for name, ref in refs.items():
        if name in skip:
            continue
        if name not in ours:
            (rep.not_compared if partial else rep.missing).append(name)
            continue
        o = ours[name].detach().to("cpu", torch.float64)
        r = ref.to(torch.float64)
        if tuple(o.shape) != tuple(r.shape):
            rep.errors.append(BlobError(name, tuple(r.shape), float("inf"), float(r.abs().max())))
            continue
        rep.errors.append(BlobError(name, tuple(r.shape), float((o - r).abs().max()), float(r.abs().max())))
    return rep


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
                 allow_unused: bool = False, allow_missing: bool = False, missing: Optional[List[str]] = None):
    """``(model, state, name_map, options)`` with the converted weights loaded."""
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
        state = net.caffe_state_dict()
        name_map = {}
        for n in net.param_layers():
            for i, pname in enumerate(net.layer(n).blob_names):
                name_map[f"{n}/{i}"] = f"{n}.{pname}"
        return net, state, name_map, dict(options)
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; one of {TARGETS}")
    from ..models import build_model

    opts = infer_model_options(blobs, target, net_param)
    opts.update({k: v for k, v in options.items() if v is not None})
    model = build_model(target, **opts)
    state, name_map = map_blobs_to_model(blobs, model, source=source, allow_unused=allow_unused,
                                         allow_missing=allow_missing, missing=missing)
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
) -> Conversion:
    """Convert; write ``out`` (+ ``.json``) when given; run ``verify`` (``FILE.h5[:GROUP]``) when given.

    ``verify`` runs before anything is written, so a failing check writes nothing.
    """
    source = str(caffemodel)
    # The caffemodel's own layers are the topology only for a builder target without a prototxt.
    blobs, net_param = reader.read_caffemodel_weights(caffemodel, with_net=prototxt is None and target == "builder")
    unresolved: List[str] = []
    if prototxt is not None:
        # Placeholders inside strings (data paths, MatWrite prefixes) may stay; bare ones must be given.
        text = reader.read_text(prototxt)
        net_param = reader.parse_net_text(text, source=str(prototxt), values=values, strict="unquoted")
        unresolved = [n for n in reader.placeholders(text, code_only=True) if n not in (values or {})]
    missing: List[str] = []
    model, state, name_map, opts = build_target(target, blobs, net_param, phase=phase, options=options or {},
                                                source=source, allow_unused=allow_unused,
                                                allow_missing=allow_missing, missing=missing)
    train_split = split or (guess_training_split(net_param) if net_param is not None else None)
    meta = {
        "format_version": 1,
        "source": file_digest(caffemodel),
        "prototxt": (dict(file_digest(prototxt), values=dict(values or {}), unresolved_placeholders=unresolved)
                     if prototxt is not None else None),
        "target": target,
        "model_options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()
                          if isinstance(v, (int, float, str, bool, tuple, list, type(None)))},
        "phase": phase.upper(),
        "name_map": name_map,
        "not_converted": missing,  # parameters left at the model's initialisation (allow_missing)
        "training": {
            "split": train_split,
            "note": ("a model trained on a split that contains the evaluation split must not be evaluated on it; "
                     "load_converted(..., eval_split=...) warns"),
        },
    }
    result = Conversion(model=model, state=state, meta=meta)
    if verify is not None:
        inputs, refs = read_reference(verify)
        fc8 = None
        if target != "builder":
            fc8 = _owner_layer(blobs, "fc8")
        with torch.no_grad():
            ours = _model_blobs(model, target, inputs, fc8)
        result.verify = compare_blobs(ours, refs, reference=verify, skip=list(inputs), tolerance=tolerance,
                                      partial=target != "builder")
        meta["verify"] = result.verify.to_json()
        if not result.verify.ok:
            return result
    if out is not None:
        save_converted(state, meta, out, force=force)
    return result
