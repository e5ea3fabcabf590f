"""Build a runnable ``nn.Module`` from a Caffe net definition.

    net = CaffeNet.from_prototxt("test.prototxt", phase="TEST", values={"NUM_LABELS": 21})
    net.load_caffemodel("train_iter_6000.caffemodel")
    blobs = net({"data": image})          # every blob, by its Caffe name
    net.objective(blobs)                  # sum of loss_weight * loss tops (train nets)

Layers run in the prototxt's order on a dictionary of blobs, exactly as Caffe
runs them: in-place layers overwrite their blob, ``param { name }`` shares one
``nn.Parameter`` between layers (so gradients of shared towers add up as in
Caffe's Net::Update). Parameter shapes come from the bottoms' shapes, which the
net propagates at build time on meta tensors from the input shapes (an Input
layer's, a data layer's batch x crop, or ``input_shapes``); ``blob_shapes`` keeps
the result, so building on ``device="meta"`` is a cheap, exact size check.

With ``fuse=True`` (the default) the attention merge of the authors' nets
(Softmax over scale logits -> Slice -> SpatialProduct per scale -> Eltwise SUM)
and the average merge (Eltwise SUM -> Power scale) run as one
:func:`attn2scale.ops.scale_merge` call when their intermediate blobs feed
nothing else; ``fuse=False`` runs them layer by layer and keeps every blob.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from . import layers as L
from .blobs import LegacyShapeArray, load_caffemodel_blobs
from . import reader, schema
from .fillers import fill
from .fusion import FusedMerge, fusion_plan, run_fused
from .errors import CaffeFormatError

PathLike = Union[str, os.PathLike]


@dataclass
class LoadReport:
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # net layers with params but no blobs in the file
    unexpected: List[str] = field(default_factory=list)  # file layers with blobs that the net lacks


def _module_key(name: str) -> str:
    return name.replace(".", "\u2024")  # nn.Module names cannot hold '.'; ONE DOT LEADER keeps them readable


def _data_layer_shapes(lp) -> Optional[List[Tuple[int, ...]]]:
    """Shapes of a data layer's tops from its batch size and crop (None when they are not fixed)."""
    t = lp.transform_param
    if lp.type in ("ImageData", "ImageSegData"):
        p = lp.image_data_param
        batch = int(p.batch_size)
        channels = 3 if p.is_color else 1
        if t.HasField("crop_size") and (t.HasField("crop_height") or t.HasField("crop_width")):
            raise L.LayerError(f"layer {lp.name!r} ({lp.type}): give crop_size or crop_height + crop_width, "
                               "not both (DeepLab v2's rule)")
        if t.crop_size:
            h = w = int(t.crop_size)
        elif t.HasField("crop_height") or t.HasField("crop_width"):
            if not (t.HasField("crop_height") and t.HasField("crop_width")):
                raise L.LayerError(f"layer {lp.name!r} ({lp.type}): crop_height and crop_width go together")
            h, w = int(t.crop_height), int(t.crop_width)
        elif p.new_height and p.new_width:
            h, w = int(p.new_height), int(p.new_width)
        else:
            return None
    elif lp.type == "Data":
        return None
    elif lp.type == "MemoryData":
        p = lp.memory_data_param
        batch, channels, h, w = int(p.batch_size), int(p.channels), int(p.height), int(p.width)
    elif lp.type == "DummyData":
        return [tuple(int(d) for d in s.dim) for s in lp.dummy_data_param.shape] or None
    else:
        return None
    shapes = [(batch, channels, h, w)]
    if len(lp.top) > 1:
        # ImageSegData's label is a map; ImageData / MemoryData give one label per image.
        shapes.append((batch, 1, h, w) if lp.type == "ImageSegData" else (batch,))
    if len(lp.top) > 2 and lp.type == "ImageSegData":
        shapes.append((batch, 1, 1, 2))  # data_dim: the image's height and width
    if len(lp.top) > len(shapes):
        return None
    return shapes


class CaffeNet(nn.Module):
    """A Caffe net (upgraded NetParameter) as a module; see the module docstring.

    Layers are keyed by their Caffe name; a repeated name (Caffe accepts them) keys
    the later layers as ``name#2``, ``name#3``... and weights go to the first layer of
    the name, as Caffe's ``CopyTrainedLayersFrom`` does.
    """

    def __init__(
        self,
        net_param,
        phase: str = "TEST",
        *,
        input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
        skip_types: Sequence[str] = (),
        fuse: bool = True,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        source: str = "<net>",
        crf_solver: Optional[L.CRFSolver] = None,
    ):
        super().__init__()
        self.source = source
        self.net_name = net_param.name
        self.phase = phase.upper()
        self.layers = nn.ModuleDict()
        self.order: List[str] = []  # layer keys in execution order (the Caffe name, or name#k for repeats)
        self.caffe_names: Dict[str, str] = {}  # layer key -> Caffe name
        self.tops: Dict[str, List[str]] = {}
        self.bottoms: Dict[str, List[str]] = {}
        self.types: Dict[str, str] = {}
        self.param_specs: Dict[str, List] = {}
        self.loss_weights: Dict[str, float] = {}  # top blob -> weight in the objective
        self.inputs: List[str] = []
        self.skipped: List[str] = []
        self.blob_shapes: Dict[str, Tuple[int, ...]] = {}
        self._owner: Dict[str, Tuple[str, int]] = {}  # shared param name -> (layer, blob index)
        self._ties: List[tuple] = []  # (layer module, attr, owner module, owner attr)
        self._build(net_param, {k: tuple(v) for k, v in (input_shapes or {}).items()}, tuple(skip_types))
        self._warn_repeated_names()
        self.plan = fusion_plan(self) if fuse else [(n,) for n in self.order]
        self.train(self.phase == "TRAIN")
        self.to_empty(device=device)
        if dtype != torch.float32:
            self.to(dtype)
        self.reset_parameters(seed)
        for lay in self.layers.values():
            lay.reset_state()  # buffers come out of to_empty uninitialised
            if isinstance(lay, L.DenseCRF):
                lay.solver = crf_solver

    # ------------------------------------------------------------------
    # construction, step by step
    # ------------------------------------------------------------------
    def _build(self, net_param, input_shapes, skip_types) -> None:
        """Build every layer of the phase in order, propagating shapes on meta tensors."""
        meta: Dict[str, torch.Tensor] = {}
        dropped_blobs: set = set()
        for lp in reader.filter_phase(net_param, self.phase, source=self.source):
            if lp.type in skip_types or any(b in dropped_blobs for b in lp.bottom):
                # Dropped on request, with everything that depends on it.
                self.skipped.append(lp.name)
                dropped_blobs.update(t for t in lp.top if t not in lp.bottom or lp.type in skip_types)
                continue
            lp = self._with_loss_tops(lp, meta)
            self._add_layer(lp, meta, input_shapes)
        if not self.order:
            raise CaffeFormatError(f"{self.source}: no layer is part of phase {self.phase}")

    def _with_loss_tops(self, lp, meta):
        """Caffe's loss-layer rules: an anonymous top when none is named (AutoTopBlobs), named after
        the layer on a copy (the caller's NetParameter stays as it was); one loss_weight per top."""
        where = f"{self.source}: layer {lp.name!r} ({lp.type})"
        if not lp.top and lp.type.endswith("Loss"):
            lp = _copied(lp)
            lp.top.append(lp.name if lp.name not in meta else f"{lp.name}(automatic)")
        if lp.type.endswith("Loss") and not lp.loss_weight and len(lp.top) > 1:
            raise CaffeFormatError(f"{where}: a loss layer with {len(lp.top)} tops needs one loss_weight per top "
                                   "(Caffe's SetLossWeights refuses the single default weight)")
        return lp

    def _layer_key(self, name: str) -> str:
        key, k = name, 1
        while key in self.caffe_names:
            k += 1
            key = f"{name}#{k}"
        return key

    def _add_layer(self, lp, meta: Dict[str, torch.Tensor], input_shapes) -> None:
        where = f"{self.source}: layer {lp.name!r} ({lp.type})"
        missing = [b for b in lp.bottom if b not in meta]
        if missing:
            raise CaffeFormatError(f"{where}: bottom blob(s) {missing} are produced by no earlier layer "
                                   f"in phase {self.phase}")
        shapes = [tuple(meta[b].shape) for b in lp.bottom]
        try:
            layer = self._make_layer(lp, shapes, input_shapes)
            layer.phase = self.phase
            if isinstance(layer, L.InputLayer):
                tops = [torch.empty(s, device="meta") for s in layer.shapes]
                self.inputs.extend(layer.top_names)
            else:
                tops = layer(*[meta[b] for b in lp.bottom])
        except L.LayerError as exc:
            raise CaffeFormatError(f"{self.source}: {exc}") from None
        except Exception as exc:  # whatever a malformed layer trips over, report the layer
            raise CaffeFormatError(f"{where}: cannot run on bottoms {shapes}: {type(exc).__name__}: {exc}") from None
        if layer.n_tops is not None and len(lp.top) != len(tops):
            raise CaffeFormatError(f"{where}: has {len(lp.top)} top(s), the layer produces {len(tops)}")
        key = self._layer_key(lp.name)
        self.caffe_names[key] = lp.name
        self._share_params(lp, key, layer, where)
        self.layers[_module_key(key)] = layer
        self.order.append(key)
        self.tops[key], self.bottoms[key] = list(lp.top), list(lp.bottom)
        self.types[key], self.param_specs[key] = lp.type, list(lp.param)
        for i, t in enumerate(lp.top):
            meta[t] = tops[i]
            self.blob_shapes[t] = tuple(tops[i].shape)
            w = lp.loss_weight[i] if i < len(lp.loss_weight) else (1.0 if lp.type.endswith("Loss") and i == 0 else 0.0)
            if w:
                self.loss_weights[t] = float(w)

    def _first_keys(self) -> Dict[str, str]:
        """Caffe name -> the key of the first layer of that name (where Caffe loads its weights)."""
        first: Dict[str, str] = {}
        for key in self.order:
            first.setdefault(self.caffe_names[key], key)
        return first

    def _warn_repeated_names(self) -> None:
        counts = Counter(self.caffe_names.values())
        repeated = sorted(n for n, c in counts.items() if c > 1)
        if repeated:
            keys = {n: [k for k, m in self.caffe_names.items() if m == n] for n in repeated}
            warnings.warn(f"{self.source}: repeated layer names {repeated} (Caffe accepts them): the later layers "
                          f"are keyed {', '.join(k for n in repeated for k in keys[n][1:])}, and weights are "
                          "loaded into the first layer of each name, as Caffe does", stacklevel=3)

    @classmethod
    def from_prototxt(cls, path: PathLike, phase: str = "TEST", *, values=None, strict=True, lenient=False,
                      **kw) -> "CaffeNet":
        """Build from a net ``.prototxt``; ``values`` fill ``${NAME}`` placeholders
        (``strict="unquoted"`` lets those inside strings, such as data paths, stay); ``lenient``
        drops other forks' unknown data-layer fields with a warning (see :mod:`.lenient`)."""
        net_param = reader.read_net_prototxt(path, values, strict=strict, lenient=lenient)
        return cls(net_param, phase, source=str(path), **kw)

    def _make_layer(self, lp, bottom_shapes, input_shapes) -> L.CaffeLayer:
        cls = L.LAYER_TYPES.get(lp.type)
        if cls is None:
            if lp.type in L.NOT_IMPLEMENTED:
                raise L.LayerError(f"layer {lp.name!r}: the DeepLab type {lp.type!r} ({L.NOT_IMPLEMENTED[lp.type]}) "
                                   f"is not implemented; build with skip_types=({lp.type!r},) to drop it and what "
                                   "depends on it")
            raise L.LayerError(f"layer {lp.name!r}: type {lp.type!r} is not supported; supported types: "
                               f"{', '.join(L.supported_types())}")
        if issubclass(cls, L.InputLayer):
            return cls(lp, bottom_shapes, self._input_shapes(lp, input_shapes))
        return cls(lp, bottom_shapes)

    def _input_shapes(self, lp, input_shapes) -> List[Tuple[int, ...]]:
        """An input layer's top shapes: given by the caller, else declared by the prototxt."""
        if lp.bottom:
            raise L.LayerError(f"layer {lp.name!r} ({lp.type}): input layers take no bottoms")
        shapes = [input_shapes.get(t) for t in lp.top]
        if all(s is not None for s in shapes):
            return shapes
        if lp.type == "Input":
            declared = [tuple(int(d) for d in s.dim) for s in lp.input_param.shape]
            if len(declared) == 1:
                declared = declared * len(lp.top)
            if len(declared) != len(lp.top):
                raise L.LayerError(f"layer {lp.name!r} (Input): {len(lp.top)} tops but "
                                   f"{len(declared)} input_param shapes")
        else:
            declared = _data_layer_shapes(lp)
        if declared is None:
            raise L.LayerError(
                f"layer {lp.name!r} ({lp.type}): its top shapes are not fixed by the prototxt; "
                f"pass input_shapes={{{', '.join(repr(t) + ': (N, C, H, W)' for t in lp.top)}}}"
            )
        return [s if s is not None else d for s, d in zip(shapes, declared)]

    def _share_params(self, lp, key: str, layer: L.CaffeLayer, where: str) -> None:
        for i, name in enumerate(layer.blob_names):
            spec = lp.param[i] if i < len(lp.param) else None
            if spec is None or not spec.name:
                continue
            if spec.name not in self._owner:
                self._owner[spec.name] = (key, i)
                continue
            owner_layer, owner_idx = self._owner[spec.name]
            owner = self.layers[_module_key(owner_layer)]
            p_owner = owner.blobs()[owner_idx]
            mine = getattr(layer, name)
            strict = spec.share_mode == schema.ParamSpec.DimCheckMode.Value("STRICT")
            if tuple(p_owner.shape) != tuple(mine.shape) and (strict or p_owner.numel() != mine.numel()):
                raise CaffeFormatError(
                    f"{where}: shares param {spec.name!r} with layer {owner_layer!r} but its shape "
                    f"{tuple(mine.shape)} differs from {tuple(p_owner.shape)}"
                )
            if tuple(p_owner.shape) != tuple(mine.shape):
                raise CaffeFormatError(f"{where}: PERMISSIVE sharing of {spec.name!r} with a different shape "
                                       "is not supported")
            setattr(layer, name, p_owner)
            self._ties.append((layer, name, owner, owner.blob_names[owner_idx]))

    def _apply(self, fn, recurse=True):
        # Module._apply may replace each module's Parameter separately (meta -> cpu does),
        # which would untie shared Caffe params: tie them again afterwards.
        out = super()._apply(fn, recurse)
        for layer, name, owner, owner_name in getattr(self, "_ties", ()):
            setattr(layer, name, getattr(owner, owner_name))
        return out

    # ------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------
    def layer(self, name: str) -> L.CaffeLayer:
        return self.layers[_module_key(name)]

    def param_layers(self) -> List[str]:
        """Layers that own at least one parameter (not counting layers that only share)."""
        out = []
        for n in self.order:
            lay = self.layer(n)
            if lay.blob_names and not all(self._shared_from_elsewhere(n, i) for i in range(len(lay.blob_names))):
                out.append(n)
        return out

    def _shared_from_elsewhere(self, layer: str, i: int) -> bool:
        specs = self.param_specs[layer]
        if i < len(specs) and specs[i].name:
            return self._owner[specs[i].name] != (layer, i)
        return False

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Fill every parameter from its prototxt filler (Caffe's filler rules; not Caffe's random stream)."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        for n in self.order:
            lay = self.layer(n)
            for i, (pname, filler) in enumerate(zip(lay.blob_names, lay.fillers)):
                if self._shared_from_elsewhere(n, i):
                    continue
                p = getattr(lay, pname)
                if p.device.type == "meta":
                    continue
                p.copy_(fill(filler, tuple(p.shape), gen, where=f"layer {n!r} blob {i}").to(p))

    def caffe_param_groups(self) -> List[dict]:
        """One entry per distinct parameter with its Caffe lr_mult and decay_mult.

        As Caffe's Net::AppendParam: a shared parameter takes each multiplier from the
        first layer that sets it (default 1), and layers that both set it must agree.
        """
        groups: Dict[int, dict] = {}
        for n in self.order:
            lay = self.layer(n)
            specs = self.param_specs[n]
            for i, pname in enumerate(lay.blob_names):
                p = getattr(lay, pname)
                g = groups.setdefault(id(p), {"params": [p], "name": f"{n}.{pname}", "lr_mult": None,
                                              "decay_mult": None})
                spec = specs[i] if i < len(specs) else None
                for field_name in ("lr_mult", "decay_mult"):
                    if spec is None or not spec.HasField(field_name):
                        continue
                    value = float(getattr(spec, field_name))
                    if g[field_name] is None:
                        g[field_name] = value
                    elif g[field_name] != value:
                        raise CaffeFormatError(
                            f"{self.source}: layer {n!r} sets {field_name} {value} for a parameter shared with "
                            f"{g['name']!r}, which has {g[field_name]}; Caffe refuses such nets")
        out = list(groups.values())
        for g in out:
            for field_name in ("lr_mult", "decay_mult"):
                if g[field_name] is None:
                    g[field_name] = 1.0
        return out

    def caffe_state_dict(self) -> Dict[str, torch.Tensor]:
        """``{"<layer>.<weight|bias>": tensor}`` for owned parameters (shared ones once, under the owner)."""
        out = {}
        for n in self.param_layers():
            lay = self.layer(n)
            for i, pname in enumerate(lay.blob_names):
                if not self._shared_from_elsewhere(n, i):
                    out[f"{n}.{pname}"] = getattr(lay, pname).detach()
        return out

    @torch.no_grad()
    def load_blobs(self, blobs: Mapping[str, Sequence[np.ndarray]], *, strict: bool = True,
                   source: str = "<weights>") -> LoadReport:
        """Copy Caffe blobs ``{layer: [arrays]}`` into the net, checking every shape as Caffe does.

        Caffe (CopyTrainedLayersFrom) copies layers found in both and leaves the
        rest at their fillers; ``strict`` additionally refuses missing or extra layers.
        """
        report = LoadReport()
        first = self._first_keys()  # a file layer loads into the first net layer of its name, as in Caffe
        loaded_params: Dict[int, torch.Tensor] = {}
        loaded_from: Dict[int, str] = {}
        for lname, arrays in blobs.items():
            key = first.get(lname)
            if key is None or not self.layer(key).blob_names:
                report.unexpected.append(lname)
                continue
            lay = self.layer(key)
            if len(arrays) != len(lay.blob_names):
                raise CaffeFormatError(
                    f"{source}: layer {lname!r} has {len(arrays)} blobs in the file, the net's "
                    f"{self.types[key]} layer needs {len(lay.blob_names)} ({', '.join(lay.blob_names)})"
                )
            for i, (pname, arr) in enumerate(zip(lay.blob_names, arrays)):
                p = getattr(lay, pname)
                legacy = isinstance(arr, LegacyShapeArray)
                arr = np.asarray(arr)
                if not caffe_shape_matches(tuple(arr.shape), tuple(p.shape), legacy):
                    raise CaffeFormatError(
                        f"{source}: layer {lname!r} blob {i} ({pname}) has shape {tuple(arr.shape)} in the file, "
                        f"the net needs {tuple(p.shape)}"
                    )
                t = torch.from_numpy(np.ascontiguousarray(arr)).reshape(p.shape)
                key = id(p)
                if key in loaded_params and not torch.equal(loaded_params[key], t):
                    # Caffe copies every layer's blobs into the shared blob, so the last one in the file wins.
                    warnings.warn(f"{source}: layers {loaded_from[key]!r} and {lname!r} store different values for "
                                  f"one shared parameter; the later one ({lname!r}) is kept, as Caffe does",
                                  stacklevel=2)
                loaded_params[key], loaded_from[key] = t, lname
                p.copy_(t.to(p))
            report.loaded.append(lname)
        report.missing = [k for k in self.param_layers()
                          if first[self.caffe_names[k]] != k or self.caffe_names[k] not in blobs]
        if strict and (report.missing or report.unexpected):
            later = [k for k in report.missing if first[self.caffe_names[k]] != k]
            why = (f"; {later} repeat an earlier layer's name, and Caffe leaves such layers at their fillers"
                   if later else "")
            raise CaffeFormatError(
                f"{source}: weights do not fit the net: layers without weights in the file {report.missing}; "
                f"weights for layers the net lacks {report.unexpected}{why} (strict=False loads like Caffe: by name)"
            )
        return report

    def load_caffemodel(self, path: PathLike, *, strict: bool = True) -> LoadReport:
        return self.load_blobs(load_caffemodel_blobs(path), strict=strict, source=str(path))

    # ------------------------------------------------------------------
    # running
    # ------------------------------------------------------------------
    def forward(self, inputs: Union[torch.Tensor, Mapping[str, torch.Tensor]], end: Optional[str] = None
                ) -> Dict[str, torch.Tensor]:
        """Run the net; ``inputs`` maps input blob names to tensors (a tensor feeds the only
        input / the first one named ``data``). Stops after layer ``end`` if given.
        Returns every blob by name (in-place layers leave their last value)."""
        if isinstance(inputs, torch.Tensor):
            if len(self.inputs) == 1 or "data" in self.inputs:
                inputs = {self.inputs[0] if len(self.inputs) == 1 else "data": inputs}
            else:
                raise ValueError(f"{self.source}: the net has inputs {self.inputs}; pass a dict")
        if end is not None and end not in self.tops:
            raise KeyError(f"{self.source}: no layer named {end!r} in phase {self.phase}")
        blobs: Dict[str, torch.Tensor] = {}
        for step in (self.plan if end is None else [(n,) for n in self.order]):
            item = step[0]
            if isinstance(item, FusedMerge):
                blobs[item.top] = run_fused(item, blobs, lambda msg: ValueError(f"{self.source}: {msg}"))
                continue
            lay = self.layer(item)
            if isinstance(lay, L.InputLayer):
                for t in lay.top_names:
                    if t not in inputs:
                        raise KeyError(f"{self.source}: input blob {t!r} (layer {item!r}) not given; "
                                       f"the net's inputs are {self.inputs}")
                    blobs[t] = inputs[t]
            else:
                try:
                    outs = lay(*[blobs[b] for b in self.bottoms[item]])
                except L.LayerError as exc:
                    raise ValueError(f"{self.source}: {exc}") from None
                except RuntimeError as exc:
                    shapes = [tuple(blobs[b].shape) for b in self.bottoms[item]]
                    raise RuntimeError(f"{self.source}: layer {item!r} ({self.types[item]}) failed on bottoms "
                                       f"{shapes}: {exc}") from exc
                for t, v in zip(self.tops[item], outs):
                    blobs[t] = v
            if item == end:
                break
        return blobs

    def losses(self, blobs: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The loss tops present in ``blobs`` (unweighted, as Caffe's top blobs hold them)."""
        return {t: blobs[t] for t in self.loss_weights if t in blobs}

    def objective(self, blobs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Caffe's objective: the sum of ``loss_weight * top`` over loss tops."""
        terms = [self.loss_weights[t] * v.sum() for t, v in self.losses(blobs).items()]
        if not terms:
            raise ValueError(f"{self.source}: the net has no loss layers in phase {self.phase}")
        return torch.stack(terms).sum()

    def fused_merges(self) -> List[FusedMerge]:
        return [s[0] for s in self.plan if isinstance(s[0], FusedMerge)]

    def extra_repr(self) -> str:
        return f"name={self.net_name!r}, phase={self.phase}, layers={len(self.order)}, fused={len(self.fused_merges())}"


def caffe_shape_matches(file_shape: Tuple[int, ...], net_shape: Tuple[int, ...], legacy: bool) -> bool:
    """Caffe's ``Blob::ShapeEquals``: equal shapes; a blob stored with the legacy
    num/channels/height/width fits when the net's shape padded with leading 1s equals it."""
    if file_shape == net_shape:
        return True
    if legacy and len(file_shape) == 4 and len(net_shape) <= 4:
        return file_shape == (1,) * (4 - len(net_shape)) + net_shape
    return False


def _copied(lp):
    out = schema.LayerParameter()
    out.CopyFrom(lp)
    return out
