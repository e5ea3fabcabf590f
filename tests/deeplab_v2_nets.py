"""DeepLab v2 nets as prototxt text, generated in the test (V2 ``layer {}`` syntax).

Two nets of the DeepLab v2 releases (see ``tests/data/README.md`` for which
releases and why they are generated here rather than committed):

* :func:`resnet101_msc` -- DeepLab-v2 ResNet-101 with multi-scale inputs (MSC):
  the image at scales 1, 0.75 and 0.5 (``Interp`` on the data: 0.75 is
  ``shrink_factor 4`` then ``zoom_factor 3``, 0.5 is ``shrink_factor 2``) goes
  through three towers that share every parameter by ``param { name }``; each
  tower is conv1 7x7/2 + BatchNorm + Scale + ReLU, pool1 3x3/2 (pad 1), the
  bottleneck stages res2..res5 (res3 strided, res4 dilation 2, res5 dilation 4,
  stride 8 overall) and the ASPP classifier ``fc1`` (four 3x3 convolutions,
  dilation 6/12/18/24, summed by Eltwise). The smaller towers' ``fc1`` are
  resized to the largest by Interp and the three are fused by Eltwise MAX.
  TRAIN: ImageSegData (crop 321), the label shrunk by Interp, one
  SoftmaxWithLoss per scale plus one on the fused scores (ignore_label 255).
  TEST: Input or ImageSegData (crop 513), Interp zoom 8 on the fused scores,
  optionally an ArgMax.
* :func:`vgg16_aspp` -- DeepLab-v2 VGG-16 ASPP: VGG-16 conv1..conv5 with the
  DeepLab pooling (pool1-3 3x3/2 pad 1; pool4, pool5 3x3/1 pad 1; conv5
  dilation 2), four branches fc6_k (3x3, dilation 6/12/18/24, 1024 channels) ->
  fc7_k (1x1) -> fc8_k summed by Eltwise SUM.

Naming follows the releases: ``res4b22_branch2b``, ``bn4b22_branch2b``,
``scale4b22_branch2b`` (stages 2 and 5 count blocks a, b, c; stages 3 and 4 a,
b1, b2, ...); tower copies carry the suffix ``_res075`` / ``_res05`` and share
the parameters of the full-resolution layer (``param { name: "<layer>_<i>" }``).
BatchNorm and Scale have ``lr_mult: 0`` on every blob and BatchNorm has
``use_global_stats: true``, as in the releases.

Depth (blocks per stage), channel width, class count, crop and batch are
arguments, so tests can build small versions quickly. Every function returns
text; :data:`NETS` maps ``(net, phase)`` to a generator. :func:`random_blobs`
draws weights for a built net and :func:`write_caffemodel` writes them (each
layer with its real type) as a caffemodel.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from attn2scale.caffe import schema

#: BGR means of the DeepLab releases' transform_param
MEAN_BGR = (104.008, 116.669, 122.675)
#: ResNet-101: bottleneck blocks per stage res2..res5
RESNET101_BLOCKS = (3, 4, 23, 3)
#: (suffix, Interp parameters of the data) for the MSC towers, largest first
MSC_SCALES = (("", None), ("_res075", {"shrink_factor": 4, "zoom_factor": 3}), ("_res05", {"shrink_factor": 2}))
#: how each smaller tower's fc1 is brought to the largest tower's size
MSC_UPSAMPLE = {"_res075": {"shrink_factor": 3, "zoom_factor": 4}, "_res05": {"zoom_factor": 2}}
ASPP_DILATIONS = (6, 12, 18, 24)
#: a moving-average factor as a trained Caffe BatchNorm stores it in blob 2
FACTOR = 999.98


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------

def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v if v.isupper() and v.replace("_", "").isalpha() else f'"{v}"'  # enum values stay bare
    return repr(v) if isinstance(v, float) else str(v)


def _fields(d: dict, indent: str) -> List[str]:
    out = []
    for key, v in d.items():
        values = v if isinstance(v, (list, tuple)) else [v]
        for item in values:
            if isinstance(item, dict):
                out.append(f"{indent}{key} {{")
                out.extend(_fields(item, indent + "  "))
                out.append(f"{indent}}}")
            else:
                out.append(f"{indent}{key}: {_value(item)}")
    return out


def layer(name: str, type_: str, bottoms: Iterable[str] = (), tops: Iterable[str] = (), **params) -> str:
    """One ``layer { }`` block; keyword arguments are its fields (dicts nest, lists repeat)."""
    lines = ["layer {", f'  name: "{name}"', f'  type: "{type_}"']
    lines += [f'  bottom: "{b}"' for b in bottoms]
    lines += [f'  top: "{t}"' for t in tops]
    lines += _fields(params, "  ")
    lines.append("}")
    return "\n".join(lines)


def _shared(prefix: str, specs: Sequence[dict]) -> List[dict]:
    """``param`` specs named ``<prefix>_<i>`` (the releases' names), so tower copies share them."""
    return [dict({"name": f"{prefix}_{i}"}, **s) for i, s in enumerate(specs)]


def _interp(name: str, bottom: str, top: str, p: dict) -> str:
    return layer(name, "Interp", [bottom], [top], interp_param=dict(p, pad_beg=0, pad_end=0))


# --------------------------------------------------------------------------
# Data layers
# --------------------------------------------------------------------------

def _seg_data(phase: str, crop: int, batch_size: int, data_dim: bool, *, mirror: bool, shuffle: bool,
              source: str, root_folder: str, scale_factors: Optional[Sequence[float]]) -> str:
    tops = ["data", "label"] + (["data_dim"] if data_dim else [])
    transform = {"mirror": mirror, "crop_size": crop, "mean_value": list(MEAN_BGR)}
    if scale_factors:  # DeepLab v2's transform_param field 8 (random rescaling)
        transform["scale_factors"] = [float(s) for s in scale_factors]
    image = {"root_folder": root_folder, "source": source, "batch_size": batch_size}
    if shuffle:
        image["shuffle"] = True
    image["label_type"] = "PIXEL"
    return layer("data", "ImageSegData", [], tops, include={"phase": phase}, transform_param=transform,
                 image_data_param=image)


def _input(crop: int, batch_size: int) -> str:
    return layer("data", "Input", [], ["data"], input_param={"shape": {"dim": [batch_size, 3, crop, crop]}})


# --------------------------------------------------------------------------
# ResNet-101 MSC
# --------------------------------------------------------------------------

def _block_ids(stage: int, n: int) -> List[str]:
    """Block names of a stage as in the releases: a, b, c... (stages 2, 5) or a, b1, b2... (3, 4)."""
    if stage in (2, 5):
        if n > 26:
            raise ValueError(f"stage res{stage} names its blocks by letters; {n} blocks is too many")
        return [chr(ord("a") + i) for i in range(n)]
    return ["a"] + [f"b{i}" for i in range(1, n)]


class _Tower:
    """Writes one ResNet tower; ``suffix`` is appended to layer and blob names, parameters are shared."""

    def __init__(self, out: List[str], suffix: str, update_global_stats: Optional[bool]):
        self.out, self.sfx, self.ugs = out, suffix, update_global_stats

    def conv(self, name: str, bottom: str, top: str, num_output: int, kernel: int, stride: int = 1,
             pad: int = 0, dilation: int = 1) -> None:
        cp = {"num_output": num_output, "kernel_size": kernel, "pad": pad}
        if dilation != 1:
            cp["dilation"] = dilation
        cp.update(stride=stride, bias_term=False)
        self.out.append(layer(name + self.sfx, "Convolution", [bottom + self.sfx], [top + self.sfx],
                              param=_shared(name, [{"lr_mult": 1, "decay_mult": 1}]), convolution_param=cp))

    def bn_scale(self, bn: str, scale: str, blob: str) -> None:
        bp = {"use_global_stats": True}
        if self.ugs is not None:  # DeepLab v2's batch_norm_param field 4
            bp["update_global_stats"] = self.ugs
        self.out.append(layer(bn + self.sfx, "BatchNorm", [blob + self.sfx], [blob + self.sfx],
                              batch_norm_param=bp, param=_shared(bn, [{"lr_mult": 0}] * 3)))
        self.out.append(layer(scale + self.sfx, "Scale", [blob + self.sfx], [blob + self.sfx],
                              scale_param={"bias_term": True}, param=_shared(scale, [{"lr_mult": 0}] * 2)))

    def relu(self, name: str, blob: str) -> None:
        self.out.append(layer(name + self.sfx, "ReLU", [blob + self.sfx], [blob + self.sfx]))

    def conv_bn(self, conv: str, bottom: str, num_output: int, kernel: int, stride: int = 1, pad: int = 0,
                dilation: int = 1, relu: bool = False, bn: Optional[str] = None, scale: Optional[str] = None) -> None:
        self.conv(conv, bottom, conv, num_output, kernel, stride, pad, dilation)
        self.bn_scale(bn, scale, conv)
        if relu:
            self.relu(conv + "_relu", conv)

    def stem(self, bottom: str, width: int) -> str:
        self.conv("conv1", bottom, "conv1", width, 7, stride=2, pad=3)
        self.bn_scale("bn_conv1", "scale_conv1", "conv1")
        self.relu("conv1_relu", "conv1")
        self.out.append(layer("pool1" + self.sfx, "Pooling", ["conv1" + self.sfx], ["pool1" + self.sfx],
                              pooling_param={"kernel_size": 3, "stride": 2, "pad": 1, "pool": "MAX"}))
        return "pool1"

    def bottleneck(self, stage: int, block: str, bottom: str, inner: int, out_ch: int, stride: int,
                   dilation: int, project: bool) -> str:
        base = f"{stage}{block}"
        res = f"res{base}"
        if project:
            self.conv_bn(f"{res}_branch1", bottom, out_ch, 1, stride=stride,
                         bn=f"bn{base}_branch1", scale=f"scale{base}_branch1")
        self.conv_bn(f"{res}_branch2a", bottom, inner, 1, stride=stride, relu=True,
                     bn=f"bn{base}_branch2a", scale=f"scale{base}_branch2a")
        self.conv_bn(f"{res}_branch2b", f"{res}_branch2a", inner, 3, pad=dilation, dilation=dilation, relu=True,
                     bn=f"bn{base}_branch2b", scale=f"scale{base}_branch2b")
        self.conv_bn(f"{res}_branch2c", f"{res}_branch2b", out_ch, 1,
                     bn=f"bn{base}_branch2c", scale=f"scale{base}_branch2c")
        shortcut = f"{res}_branch1" if project else bottom
        self.out.append(layer(res + self.sfx, "Eltwise", [shortcut + self.sfx, f"{res}_branch2c" + self.sfx],
                              [res + self.sfx]))
        self.relu(f"{res}_relu", res)
        return res

    def body(self, bottom: str, blocks: Sequence[int], width: int) -> str:
        blob = self.stem(bottom, width)
        # (stage, inner width, stride of the first block, dilation)
        plan = ((2, width, 1, 1), (3, 2 * width, 2, 1), (4, 4 * width, 1, 2), (5, 8 * width, 1, 4))
        for (stage, inner, stride, dilation), n in zip(plan, blocks):
            for i, block in enumerate(_block_ids(stage, n)):
                blob = self.bottleneck(stage, block, blob, inner, 4 * inner, stride if i == 0 else 1, dilation,
                                       project=i == 0)
        return blob

    def aspp(self, bottom: str, exp: str, num_labels: int, train: bool) -> str:
        name = f"fc1_{exp}"
        branches = []
        for k, d in enumerate(ASPP_DILATIONS):
            branch = f"{name}_c{k}"
            specs = [{"lr_mult": 10, "decay_mult": 1}, {"lr_mult": 20, "decay_mult": 0}] if train else [{}, {}]
            params = [dict({"name": f"{branch}_{w}"}, **s) for w, s in zip("wb", specs)]
            cp = {"num_output": num_labels, "kernel_size": 3, "pad": d, "dilation": d}
            if train:
                cp.update(weight_filler={"type": "gaussian", "std": 0.01}, bias_filler={"type": "constant", "value": 0})
            top = f"{name}{self.sfx}_c{k}"
            self.out.append(layer(top, "Convolution", [bottom + self.sfx], [top], param=params, convolution_param=cp))
            branches.append(top)
        self.out.append(layer(name + self.sfx, "Eltwise", branches, [name + self.sfx],
                              eltwise_param={"operation": "SUM"}))
        return name + self.sfx


def _net_head(name: str, phase: str, crop: Optional[int], batch_size: Optional[int], data_dim: bool,
              input_layer: bool, source: Optional[str], root_folder: str,
              scale_factors: Optional[Sequence[float]]) -> Tuple[str, bool, int, List[str]]:
    """``(PHASE, is_train, crop, lines)``: the net's name and its data layer (ImageSegData, or an
    Input layer for a TEST net with ``input_layer``); crop 321 / 513 and batch 10 / 1 by default."""
    phase = phase.upper()
    if phase not in ("TRAIN", "TEST"):
        raise ValueError(f"phase must be TRAIN or TEST, got {phase!r}")
    train = phase == "TRAIN"
    crop = crop or (321 if train else 513)
    batch_size = batch_size or (10 if train else 1)
    out = [f'name: "{name}_{phase.lower()}"']
    if train or not input_layer:
        out.append(_seg_data(phase, crop, batch_size, data_dim, mirror=train, shuffle=train,
                             source=source or f"list/{'train_aug' if train else 'val'}.txt",
                             root_folder=root_folder, scale_factors=scale_factors))
    else:
        out.append(_input(crop, batch_size))
    return phase, train, crop, out


def resnet101_msc(phase: str = "TRAIN", *, blocks: Sequence[int] = RESNET101_BLOCKS, width: int = 64,
                  num_labels: int = 21, crop: Optional[int] = None, batch_size: Optional[int] = None,
                  msc: bool = True, data_dim: bool = True, input_layer: bool = False, argmax: bool = False,
                  exp: str = "voc12", scale_factors: Optional[Sequence[float]] = None,
                  update_global_stats: Optional[bool] = None, label_per_scale: bool = False,
                  source: Optional[str] = None, root_folder: str = "data/VOCdevkit/VOC2012") -> str:
    """DeepLab-v2 ResNet-101 (MSC) train or test net.

    ``blocks``: bottleneck blocks per stage res2..res5 (ResNet-101: 3, 4, 23, 3);
    ``width``: conv1's channels (64), every other width scales with it;
    ``crop``: 321 (TRAIN) / 513 (TEST) by default; ``batch_size``: 10 / 1;
    ``msc=False`` keeps only the full-resolution tower; ``data_dim``: give the
    ImageSegData layer its third top (N x 1 x 1 x 2); ``input_layer`` (TEST): an
    Input layer instead of ImageSegData; ``argmax`` (TEST): add an ArgMax over the
    classes; ``scale_factors`` / ``update_global_stats``: emit DeepLab v2's
    transform_param.scale_factors / batch_norm_param.update_global_stats.

    TRAIN losses (names ``loss_res1``, ``loss_res075``, ``loss_res05`` and ``loss``
    for the fused scores, all against ``label_shrink`` = the label through Interp
    shrink 8): by default each tower's scores are taken at the largest size (after
    the Interp that feeds the fusion). ``label_per_scale=True`` instead puts each
    tower's loss at its own size, with ``label_shrink075`` / ``label_shrink05``
    made from ``label_shrink`` by the data's Interp factors. Which of the two the
    release's train.prototxt does could not be read (see tests/data/README.md).
    """
    if len(blocks) != 4 or min(blocks) < 1:
        raise ValueError(f"blocks needs 4 positive counts (res2..res5), got {tuple(blocks)}")
    phase, train, crop, out = _net_head(f"deeplab_v2_resnet101{'_msc' if msc else ''}", phase, crop, batch_size,
                                        data_dim, input_layer, source, root_folder, scale_factors)
    scales = MSC_SCALES if msc else MSC_SCALES[:1]
    for suffix, p in scales[1:]:
        out.append(_interp("data" + suffix, "data", "data" + suffix, p))
    scores = []
    for suffix, _ in scales:
        tower = _Tower(out, suffix, update_global_stats)
        top = tower.body("data", blocks, width)
        scores.append(tower.aspp(top, exp, num_labels, train))
    if msc:
        resized = [scores[0]]
        for (suffix, _), s in zip(scales[1:], scores[1:]):
            out.append(_interp(f"{s}_interp", s, f"{s}_interp", MSC_UPSAMPLE[suffix]))
            resized.append(f"{s}_interp")
        out.append(layer("fc_fusion", "Eltwise", resized, ["fc_fusion"], eltwise_param={"operation": "MAX"}))
        fused = "fc_fusion"
    else:
        fused, resized = scores[0], scores[:1]
    if train:
        out.append(_interp("label_shrink", "label", "label_shrink", {"shrink_factor": 8}))
        loss = {"ignore_label": 255}
        if msc:
            if label_per_scale:
                # Each tower's scores at their own size, against the label brought there by the data's Interp.
                # Bilinear Interp mixes label values where 0.75's grid falls between pixels, as Caffe's would.
                pairs = [(scores[0], "label_shrink", "loss_res1")]
                for (suffix, p), s in zip(scales[1:], scores[1:]):
                    lab = f"label_shrink{suffix[4:]}"
                    out.append(_interp(lab, "label_shrink", lab, p))
                    pairs.append((s, lab, f"loss{suffix}"))
            else:
                # Each tower's scores at the largest size (after the Interp that feeds the fusion).
                pairs = [(s, "label_shrink", f"loss{suffix or '_res1'}") for (suffix, _), s in zip(scales, resized)]
            for s, lab, name in pairs:
                out.append(layer(name, "SoftmaxWithLoss", [s, lab], [name], include={"phase": "TRAIN"},
                                 loss_param=loss))
        out.append(layer("loss", "SoftmaxWithLoss", [fused, "label_shrink"], ["loss"], include={"phase": "TRAIN"},
                         loss_param=loss))
        if data_dim:
            out.append(layer("silence", "Silence", ["data_dim"]))
    else:
        out.append(layer("fc1_interp", "Interp", [fused], ["fc1_interp"], interp_param={"zoom_factor": 8}))
        if argmax:
            out.append(layer("fc1_interp_argmax", "ArgMax", ["fc1_interp"], ["fc1_interp_argmax"],
                             argmax_param={"axis": 1}))
        if not input_layer:  # an ImageSegData layer fed the label
            out.append(layer("silence", "Silence", ["label"] + (["data_dim"] if data_dim else [])))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# VGG-16 ASPP
# --------------------------------------------------------------------------

def vgg16_aspp(phase: str = "TRAIN", *, num_labels: int = 21, crop: Optional[int] = None,
               batch_size: Optional[int] = None, width: int = 64, fc_width: int = 1024, data_dim: bool = True,
               input_layer: bool = False, argmax: bool = False, exp: str = "voc12",
               scale_factors: Optional[Sequence[float]] = None, source: Optional[str] = None,
               root_folder: str = "data/VOCdevkit/VOC2012") -> str:
    """DeepLab-v2 VGG-16 ASPP train or test net (``width``: conv1's channels, 64; ``fc_width``: fc6/fc7, 1024)."""
    phase, train, crop, out = _net_head("deeplab_v2_vgg16_aspp", phase, crop, batch_size, data_dim, input_layer,
                                        source, root_folder, scale_factors)
    wb = [{"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 2, "decay_mult": 0}]
    blob = "data"
    # (stage, convolutions, channels, pooling stride, dilation of the convolutions)
    plan = ((1, 2, width, 2, 1), (2, 2, 2 * width, 2, 1), (3, 3, 4 * width, 2, 1), (4, 3, 8 * width, 1, 1),
            (5, 3, 8 * width, 1, 2))
    for stage, n, ch, pool_stride, dil in plan:
        for i in range(1, n + 1):
            name = f"conv{stage}_{i}"
            cp = {"num_output": ch, "pad": dil, "kernel_size": 3}
            if dil != 1:
                cp["dilation"] = dil
            out.append(layer(name, "Convolution", [blob], [name], param=wb, convolution_param=cp))
            out.append(layer(f"relu{stage}_{i}", "ReLU", [name], [name]))
            blob = name
        out.append(layer(f"pool{stage}", "Pooling", [blob], [f"pool{stage}"],
                         pooling_param={"pool": "MAX", "kernel_size": 3, "stride": pool_stride, "pad": 1}))
        blob = f"pool{stage}"
    branches = []
    for k, d in enumerate(ASPP_DILATIONS, 1):
        fc6, fc7, fc8 = f"fc6_{k}", f"fc7_{k}", f"fc8_{exp}_{k}"
        out.append(layer(fc6, "Convolution", [blob], [fc6], param=wb,
                         convolution_param={"num_output": fc_width, "pad": d, "kernel_size": 3, "dilation": d}))
        out.append(layer(f"relu6_{k}", "ReLU", [fc6], [fc6]))
        out.append(layer(f"drop6_{k}", "Dropout", [fc6], [fc6], dropout_param={"dropout_ratio": 0.5}))
        out.append(layer(fc7, "Convolution", [fc6], [fc7], param=wb,
                         convolution_param={"num_output": fc_width, "kernel_size": 1}))
        out.append(layer(f"relu7_{k}", "ReLU", [fc7], [fc7]))
        out.append(layer(f"drop7_{k}", "Dropout", [fc7], [fc7], dropout_param={"dropout_ratio": 0.5}))
        cp = {"num_output": num_labels, "kernel_size": 1}
        if train:
            cp.update(weight_filler={"type": "gaussian", "std": 0.01}, bias_filler={"type": "constant", "value": 0})
        out.append(layer(fc8, "Convolution", [fc7], [fc8],
                         param=[{"lr_mult": 10, "decay_mult": 1}, {"lr_mult": 20, "decay_mult": 0}],
                         convolution_param=cp))
        branches.append(fc8)
    fused = f"fc8_{exp}"
    out.append(layer(fused, "Eltwise", branches, [fused], eltwise_param={"operation": "SUM"}))
    if train:
        out.append(_interp("label_shrink", "label", "label_shrink", {"shrink_factor": 8}))
        out.append(layer("loss", "SoftmaxWithLoss", [fused, "label_shrink"], ["loss"], include={"phase": "TRAIN"},
                         loss_param={"ignore_label": 255}))
        if data_dim:
            out.append(layer("silence", "Silence", ["data_dim"]))
    else:
        out.append(layer("fc8_interp", "Interp", [fused], ["fc8_interp"], interp_param={"zoom_factor": 8}))
        if argmax:
            out.append(layer("fc8_interp_argmax", "ArgMax", ["fc8_interp"], ["fc8_interp_argmax"],
                             argmax_param={"axis": 1}))
        if not input_layer:  # an ImageSegData layer fed the label
            out.append(layer("silence", "Silence", ["label"] + (["data_dim"] if data_dim else [])))
    return "\n".join(out) + "\n"


#: ``(net, phase)`` -> generator of the prototxt text (keyword arguments as above)
NETS: Dict[Tuple[str, str], Callable[..., str]] = {
    ("resnet101_msc", "TRAIN"): partial(resnet101_msc, "TRAIN"),
    ("resnet101_msc", "TEST"): partial(resnet101_msc, "TEST"),
    ("vgg16_aspp", "TRAIN"): partial(vgg16_aspp, "TRAIN"),
    ("vgg16_aspp", "TEST"): partial(vgg16_aspp, "TEST"),
}


# --------------------------------------------------------------------------
# caffemodel writer
# --------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


_DATA_TAG = bytes([schema.BlobProto.DESCRIPTOR.fields_by_name["data"].number << 3 | 2])  # packed repeated float


def write_caffemodel(path: Union[str, Path], layers: Mapping[str, Tuple[str, Sequence[np.ndarray]]]) -> Path:
    """A V2 caffemodel holding ``{layer: (type, [arrays])}``: ``shape`` blobs of float32 ``data``.

    The data go in as one packed field per blob (what Caffe writes), merged into
    the message, so multi-million-value nets are written in well under a second.
    """
    net = schema.NetParameter(name="written-by-test")
    for name, (type_, arrays) in layers.items():
        lp = net.layer.add()
        lp.name, lp.type = name, type_
        for a in arrays:
            a = np.ascontiguousarray(a, dtype="<f4")
            b = lp.blobs.add()
            b.shape.dim.extend(a.shape)
            if a.size:
                b.MergeFromString(_DATA_TAG + _varint(a.nbytes) + a.tobytes())
    path = Path(path)
    path.write_bytes(net.SerializeToString())
    return path


def random_blobs(net, seed: int = 0) -> Dict[str, Tuple[str, List[np.ndarray]]]:
    """``{layer: (type, [arrays])}`` for every parameter layer of a built CaffeNet ``net`` (on the meta
    device is enough) and for each tower copy, which gets its owner's arrays (a Caffe snapshot stores the
    shared blobs again under every layer that uses them). BatchNorm stores running sums and the factor
    :data:`FACTOR` in blob 2, with positive variances; convolutions are scaled by 1/sqrt(fan-in)."""
    g = np.random.default_rng(seed)
    out = {}
    owners = net.param_layers()
    owner_of = {id(net.layer(n).blobs()[0]): n for n in owners}
    for n in owners:
        shapes = [tuple(p.shape) for p in net.layer(n).blobs()]
        kind = net.types[n]
        if kind == "BatchNorm":
            (c,), _, _ = shapes
            mean = g.normal(0.0, 0.5, c) * FACTOR                   # Caffe stores the running sums
            var = g.uniform(0.5, 2.0, c) * FACTOR
            arrays = [mean, var, np.array([FACTOR])]
        elif kind == "Scale":
            arrays = [g.uniform(0.5, 1.5, shapes[0]), g.normal(0.0, 0.1, shapes[1])]
        elif kind == "Convolution":
            w = shapes[0]
            arrays = [g.normal(0.0, np.sqrt(1.0 / np.prod(w[1:])), w)] + [g.normal(0.0, 0.1, s) for s in shapes[1:]]
        else:
            raise AssertionError(f"unexpected parameter layer {n} ({kind})")
        out[n] = (kind, [a.astype(np.float32) for a in arrays])
    for n in net.order:
        if n not in out and net.layer(n).blob_names:  # tower copies: the owner's arrays
            out[n] = out[owner_of[id(net.layer(n).blobs()[0])]]
    return out
