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

from .. import ops
from . import layers as L
from . import reader, schema
from .reader import CaffeFormatError

PathLike = Union[str, os.PathLike]


@dataclass
class FusedMerge:
    """One scale_merge call standing in for several layers."""

    mode: str
    scores: List[str]
    top: str
    layers: List[str]
    logits: Optional[str] = None
    avg_weight: Optional[float] = None


@dataclass
class LoadReport:
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # net layers with params but no blobs in the file
    unexpected: List[str] = field(default_factory=list)  # file layers with blobs that the net lacks


def _module_key(name: str) -> str:
    return name.replace(".", "\u2024")  # nn.Module names cannot hold '.'; ONE DOT LEADER keeps them readable


def _data_layer_shapes(lp, source: str) -> Optional[List[Tuple[int, ...]]]:
    """Shapes of a data layer's tops from its batch size and crop (None when they are not fixed)."""
    t = lp.transform_param
    if lp.type in ("ImageData", "ImageSegData"):
        p = lp.image_data_param
        batch = int(p.batch_size)
        channels = 3 if p.is_color else 1
        if t.crop_size:
            h = w = int(t.crop_size)
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
    """A Caffe net (upgraded NetParameter) as a module; see the module docstring."""

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
    ):
        super().__init__()
        self.source = source
        self.net_name = net_param.name
        self.phase = phase.upper()
        self.layers = nn.ModuleDict()
        self.order: List[str] = []  # layer names in execution order
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
        input_shapes = {k: tuple(v) for k, v in (input_shapes or {}).items()}

        meta: Dict[str, torch.Tensor] = {}
        dropped_blobs: set = set()
        for lp in reader.filter_phase(net_param, self.phase, source=source):
            where = f"{source}: layer {lp.name!r} ({lp.type})"
            if lp.name in self.layers or lp.name in self.order:
                raise CaffeFormatError(f"{where}: a second layer with this name")
            if lp.type in skip_types or any(b in dropped_blobs for b in lp.bottom):
                # Dropped on request, with everything that depends on it.
                self.skipped.append(lp.name)
                dropped_blobs.update(t for t in lp.top if t not in lp.bottom or lp.type in skip_types)
                continue
            if not lp.top and lp.type.endswith("Loss"):
                # Caffe gives a loss layer without a top an anonymous one (AutoTopBlobs); name it after the
                # layer, on a copy (the caller's NetParameter stays as it was).
                lp = _copied(lp)
                lp.top.append(lp.name if lp.name not in meta else f"{lp.name}(automatic)")
            if lp.type.endswith("Loss") and not lp.loss_weight and len(lp.top) > 1:
                raise CaffeFormatError(f"{where}: a loss layer with {len(lp.top)} tops needs one loss_weight per top "
                                       "(Caffe's SetLossWeights refuses the single default weight)")
            missing = [b for b in lp.bottom if b not in meta]
            if missing:
                raise CaffeFormatError(
                    f"{where}: bottom blob(s) {missing} are produced by no earlier layer in phase {self.phase}"
                )
            try:
                layer = self._make_layer(lp, [tuple(meta[b].shape) for b in lp.bottom], input_shapes, source)
                if isinstance(layer, L.InputLayer):
                    tops = [torch.empty(s, device="meta") for s in layer.shapes]
                    self.inputs.extend(layer.top_names)
                else:
                    tops = layer(*[meta[b] for b in lp.bottom])
            except L.LayerError as exc:
                raise CaffeFormatError(f"{source}: {exc}") from None
            except Exception as exc:  # whatever a malformed layer trips over, report the layer
                raise CaffeFormatError(f"{where}: cannot run on bottoms "
                                       f"{[tuple(meta[b].shape) for b in lp.bottom]}: "
                                       f"{type(exc).__name__}: {exc}") from None
            if layer.n_tops is not None and len(lp.top) != len(tops):
                raise CaffeFormatError(f"{where}: has {len(lp.top)} top(s), the layer produces {len(tops)}")
            self._share_params(lp, layer, where)
            self.layers[_module_key(lp.name)] = layer
            self.order.append(lp.name)
            self.tops[lp.name] = list(lp.top)
            self.bottoms[lp.name] = list(lp.bottom)
            self.types[lp.name] = lp.type
            self.param_specs[lp.name] = list(lp.param)
            for i, t in enumerate(lp.top):
                meta[t] = tops[i]
                self.blob_shapes[t] = tuple(tops[i].shape)
                w = lp.loss_weight[i] if i < len(lp.loss_weight) else (1.0 if lp.type.endswith("Loss") and i == 0 else 0.0)
                if w:
                    self.loss_weights[t] = float(w)
        if not self.order:
            raise CaffeFormatError(f"{source}: no layer is part of phase {self.phase}")
        self.plan = self._fusion_plan() if fuse else [(n,) for n in self.order]
        self.train(self.phase == "TRAIN")
        self.to_empty(device=device)
        if dtype != torch.float32:
            self.to(dtype)
        self.reset_parameters(seed)
        for lay in self.layers.values():  # buffers come out of to_empty uninitialised
            if isinstance(lay, L.SegAccuracy):
                lay.reset_confusion()

    # ------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------
    @classmethod
    def from_prototxt(cls, path: PathLike, phase: str = "TEST", *, values=None, strict=True, **kw) -> "CaffeNet":
        """Build from a net ``.prototxt``; ``values`` fill ``${NAME}`` placeholders
        (``strict="unquoted"`` lets those inside strings, such as data paths, stay)."""
        return cls(reader.read_net_prototxt(path, values, strict=strict), phase, source=str(path), **kw)

    def _make_layer(self, lp, bottom_shapes, input_shapes, source) -> L.CaffeLayer:
        if lp.type in L.INPUT_TYPES:
            if lp.bottom:
                raise L.LayerError(f"layer {lp.name!r} ({lp.type}): input layers take no bottoms")
            shapes = [input_shapes.get(t) for t in lp.top]
            if any(s is None for s in shapes):
                if lp.type == "Input":
                    declared = [tuple(int(d) for d in s.dim) for s in lp.input_param.shape]
                    if len(declared) == 1:
                        declared = declared * len(lp.top)
                    if len(declared) != len(lp.top):
                        raise L.LayerError(f"layer {lp.name!r} (Input): {len(lp.top)} tops but "
                                           f"{len(declared)} input_param shapes")
                else:
                    declared = _data_layer_shapes(lp, source)
                if declared is None:
                    raise L.LayerError(
                        f"layer {lp.name!r} ({lp.type}): its top shapes are not fixed by the prototxt; "
                        f"pass input_shapes={{{', '.join(repr(t) + ': (N, C, H, W)' for t in lp.top)}}}"
                    )
                shapes = [s if s is not None else d for s, d in zip(shapes, declared)]
            return L.InputLayer(lp, bottom_shapes, shapes)
        if lp.type in L.SINK_TYPES:
            return L.Sink(lp, bottom_shapes)
        cls = L.LAYER_TYPES.get(lp.type)
        if cls is None:
            raise L.LayerError(
                f"layer {lp.name!r}: type {lp.type!r} is not supported; supported types: "
                f"{', '.join(L.supported_types())}"
            )
        return cls(lp, bottom_shapes)

    def _share_params(self, lp, layer: L.CaffeLayer, where: str) -> None:
        for i, name in enumerate(layer.blob_names):
            spec = lp.param[i] if i < len(lp.param) else None
            if spec is None or not spec.name:
                continue
            if spec.name not in self._owner:
                self._owner[spec.name] = (lp.name, i)
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

    def _consumers(self) -> Counter:
        c: Counter = Counter()
        for n in self.order:
            for b in self.bottoms[n]:
                c[b] += 1
        return c

    def _fusion_plan(self) -> List[tuple]:
        """Execution steps: ``(layer,)`` or ``(FusedMerge,)`` replacing a merge pattern."""
        uses = self._consumers()
        producer = {t: n for n in self.order for t in self.tops[n]}
        fused: Dict[str, FusedMerge] = {}  # keyed by the last layer of the pattern

        def only_use(blob: str) -> bool:
            return uses[blob] == 1 and blob not in self.loss_weights

        for name in self.order:
            if self.types[name] != "Eltwise":
                continue
            layer = self.layers[_module_key(name)]
            bots, top = self.bottoms[name], self.tops[name][0]
            if layer.op != "SUM" or layer.coeff or len(set(bots)) != len(bots) or top in bots:
                continue
            # attention: Softmax(axis 1) -> Slice(axis 1, one channel each) -> SpatialProduct -> SUM
            prods = [producer.get(b) for b in bots]
            if all(p is not None and self.types[p] == "SpatialProduct" and only_use(b) for p, b in zip(prods, bots)):
                atts = [self.bottoms[p][1] for p in prods]
                scores = [self.bottoms[p][0] for p in prods]
                slicer = producer.get(atts[0])
                if (slicer is not None and self.types[slicer] == "Slice" and self.tops[slicer] == atts
                        and all(only_use(a) for a in atts)
                        and self.layers[_module_key(slicer)].axis == 1
                        and all(s == 1 for s in self.layers[_module_key(slicer)].sizes)):
                    soft_blob = self.bottoms[slicer][0]
                    soft = producer.get(soft_blob)
                    if (soft is not None and self.types[soft] == "Softmax" and only_use(soft_blob)
                            and self.layers[_module_key(soft)].axis == 1
                            and self.tops[soft][0] != self.bottoms[soft][0]):
                        fused[name] = FusedMerge("attention", scores, top, [soft, slicer] + prods + [name],
                                                 logits=self.bottoms[soft][0])
                continue
            # average: SUM -> Power(scale a, shift 0, power 1)
            nxt = [n for n in self.order if self.bottoms[n] == [top]]
            if len(nxt) == 1 and only_use(top) and self.types[nxt[0]] == "Power":
                pw = self.layers[_module_key(nxt[0])]
                if pw.power == 1.0 and pw.shift == 0.0:
                    fused[nxt[0]] = FusedMerge("avg", list(bots), self.tops[nxt[0]][0], [name, nxt[0]],
                                               avg_weight=pw.scale)
        # The fused call reads its inputs where the pattern ends: refuse when anything inside the
        # pattern's span (an in-place ReLU on a score map, say) writes to one of them first.
        pos = {n: i for i, n in enumerate(self.order)}
        for key, f in list(fused.items()):
            inputs = set(f.scores) | ({f.logits} if f.logits else set())
            for reader_layer in f.layers:
                for b in inputs & set(self.bottoms[reader_layer]):
                    later = self.order[pos[reader_layer] + 1: pos[key] + 1]
                    if any(b in self.tops[n] for n in later):
                        fused.pop(key, None)
        absorbed = {n for f in fused.values() for n in f.layers}
        plan: List[tuple] = []
        for n in self.order:
            if n in fused:
                plan.append((fused[n],))
            elif n not in absorbed:
                plan.append((n,))
        return plan

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
        by_name = set(self.order)
        loaded_params: Dict[int, torch.Tensor] = {}
        loaded_from: Dict[int, str] = {}
        for lname, arrays in blobs.items():
            if lname not in by_name or not self.layer(lname).blob_names:
                report.unexpected.append(lname)
                continue
            lay = self.layer(lname)
            if len(arrays) != len(lay.blob_names):
                raise CaffeFormatError(
                    f"{source}: layer {lname!r} has {len(arrays)} blobs in the file, the net's "
                    f"{self.types[lname]} layer needs {len(lay.blob_names)} ({', '.join(lay.blob_names)})"
                )
            for i, (pname, arr) in enumerate(zip(lay.blob_names, arrays)):
                p = getattr(lay, pname)
                legacy = isinstance(arr, reader.LegacyShapeArray)
                arr = np.asarray(arr)
                if not _caffe_shape_matches(tuple(arr.shape), tuple(p.shape), legacy):
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
        report.missing = [n for n in self.param_layers() if n not in blobs]
        if strict and (report.missing or report.unexpected):
            raise CaffeFormatError(
                f"{source}: weights do not fit the net: layers without weights in the file {report.missing}; "
                f"weights for layers the net lacks {report.unexpected} (strict=False loads like Caffe: by name)"
            )
        return report

    def load_caffemodel(self, path: PathLike, *, strict: bool = True) -> LoadReport:
        return self.load_blobs(reader.load_caffemodel_blobs(path), strict=strict, source=str(path))

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
                blobs[item.top] = self._run_fused(item, blobs)
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

    def _run_fused(self, f: FusedMerge, blobs) -> torch.Tensor:
        scores = [blobs[s] for s in f.scores]
        size = scores[0].shape[-2:]
        for s, t in zip(f.scores, scores):
            if t.shape != scores[0].shape:
                raise ValueError(f"{self.source}: merge {f.top!r}: score {s!r} has shape {tuple(t.shape)}, "
                                 f"{f.scores[0]!r} has {tuple(scores[0].shape)}")
        if f.mode == "attention":
            logits = blobs[f.logits]
            if logits.shape[1] != len(scores):
                raise ValueError(f"{self.source}: merge {f.top!r}: {logits.shape[1]} attention channels for "
                                 f"{len(scores)} scales")
            return ops.scale_merge(scores, size, mode="attention", logits=logits)
        return ops.scale_merge(scores, size, mode="avg", avg_weight=f.avg_weight)

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


def _caffe_shape_matches(file_shape: Tuple[int, ...], net_shape: Tuple[int, ...], legacy: bool) -> bool:
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


# --------------------------------------------------------------------------
# Fillers
# --------------------------------------------------------------------------

def fill(filler, shape: Tuple[int, ...], gen: torch.Generator, *, where: str = "filler") -> torch.Tensor:
    """A tensor drawn as Caffe's filler ``filler`` describes (same law, not Caffe's random numbers)."""
    kind = filler.type if filler is not None else "constant"
    numel = int(np.prod(shape)) if shape else 1
    # Caffe: fan_in = count / shape(0), fan_out = count / shape(1) (count for a 1-D blob)
    fan_in = numel // shape[0] if shape else 1
    fan_out = numel // shape[1] if len(shape) > 1 else numel
    norms = schema.FillerParameter.VarianceNorm
    norm = norms.Name(filler.variance_norm) if filler is not None else "FAN_IN"
    n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2.0}[norm]
    if kind == "constant":
        return torch.full(shape, float(filler.value) if filler is not None else 0.0)
    if kind == "uniform":
        return torch.empty(shape).uniform_(float(filler.min), float(filler.max), generator=gen)
    if kind == "gaussian":
        out = torch.empty(shape).normal_(float(filler.mean), float(filler.std), generator=gen)
        if filler.sparse >= 0:
            if len(shape) < 1:
                raise CaffeFormatError(f"{where}: a sparse gaussian filler needs a blob with an axis, got {shape}")
            # Caffe: each weight is kept with probability sparse / shape(0) (the outputs).
            keep = torch.rand(shape, generator=gen) < filler.sparse / shape[0]
            out = out * keep
        return out
    if kind == "xavier":
        a = float(np.sqrt(3.0 / n))
        return torch.empty(shape).uniform_(-a, a, generator=gen)
    if kind == "msra":
        return torch.empty(shape).normal_(0.0, float(np.sqrt(2.0 / n)), generator=gen)
    if kind == "positive_unitball":
        out = torch.rand(shape, generator=gen)
        return out / out.reshape(shape[0], -1).sum(1).reshape((shape[0],) + (1,) * (len(shape) - 1))
    if kind == "bilinear":
        if len(shape) != 4 or shape[2] != shape[3]:
            raise CaffeFormatError(f"{where}: the bilinear filler needs a square 4-D kernel, got {shape}")
        k = shape[3]
        f = int(np.ceil(k / 2.0))
        c = (2 * f - 1 - f % 2) / (2.0 * f)
        x = np.arange(k, dtype=np.float64)
        w1 = 1 - np.abs(x / f - c)
        kern = torch.from_numpy(np.outer(w1, w1).astype(np.float32))
        return kern.expand(shape).clone()
    raise CaffeFormatError(f"{where}: filler type {kind!r} is not supported "
                           "(constant, uniform, gaussian, xavier, msra, positive_unitball, bilinear)")
