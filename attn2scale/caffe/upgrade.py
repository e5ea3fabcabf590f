"""Bring a parsed NetParameter to one form, as Caffe's ``UpgradeNetAsNeeded`` does.

Legacy V1 ``layers`` become V2 ``layer`` s, net-level inputs one ``Input`` layer,
and parameter messages that a binary from another Caffe stored at its own field
number are moved to this schema's field (BVLC's Input at 143, the authors'
fork's 137-148, DeepLab v2's 144-151).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from . import schema
from .errors import CaffeFormatError


# V1 enum names whose V2 type string is not the CamelCase of the words.
_V1_TYPE_IRREGULAR = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "IM2COL": "Im2col",
    "LRN": "LRN",
    "MVN": "MVN",
    "PRELU": "PReLU",
    "RELU": "ReLU",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "TANH": "TanH",
    "DENSE_CRF": "DenseCRF",
}


def v1_type_name(enum_name: str) -> str:
    """The V2 type string of a V1 LayerType enum name (CONVOLUTION -> "Convolution")."""
    if enum_name in _V1_TYPE_IRREGULAR:
        return _V1_TYPE_IRREGULAR[enum_name]
    return "".join(w.capitalize() for w in enum_name.split("_"))


def v1_layer_type(v1) -> str:
    """The V2 type string of a V1 layer."""
    name = v1_type_name(schema.V1LayerParameter.LayerType.Name(v1.type))
    if name == "ImageSegData" and (v1.bottom or v1.HasField("convolution_param")):
        return "Deconvolution"  # V1 value 39 is DeepLab's IMAGE_SEG_DATA and BVLC's DECONVOLUTION
    return name


def _v1_to_v2(v1, index: int, source: str):
    layer = schema.LayerParameter()
    if v1.HasField("layer"):
        raise CaffeFormatError(
            f"{source}: layer #{index} is in the V0 format (layers {{ layer {{ ... }} }}); "
            "only its weights can be read (caffemodel_blobs), not its topology"
        )
    layer.name = v1.name
    layer.type = v1_layer_type(v1)
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.loss_weight.extend(v1.loss_weight)
    layer.blobs.extend(v1.blobs)
    for rule_src, rule_dst in ((v1.include, layer.include), (v1.exclude, layer.exclude)):
        for r in rule_src:
            rule_dst.add().CopyFrom(r)
    n_param = max(len(v1.param), len(v1.blobs_lr), len(v1.weight_decay), len(v1.blob_share_mode))
    for i in range(n_param):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
    # Per-type parameter messages carry the same names in V1 and V2.
    v2_fields = schema.LayerParameter.DESCRIPTOR.fields_by_name
    for fd, value in v1.ListFields():
        if fd.name.endswith("_param") and fd.name in v2_fields:
            getattr(layer, fd.name).CopyFrom(value)
    if v1.HasField("softmaxloss_param"):
        # DeepLab v1's SoftmaxWithLoss options: the ignore label is the later loss_param's.
        layer.softmax_loss_param.CopyFrom(v1.softmaxloss_param)
        ignore = list(v1.softmaxloss_param.ignore_label)
        if len(ignore) == 1 and not layer.loss_param.HasField("ignore_label"):
            layer.loss_param.ignore_label = ignore[0]
            layer.softmax_loss_param.ClearField("ignore_label")
    return layer


def _net_inputs_to_layer(net, source: str):
    """Net-level ``input`` + ``input_dim``/``input_shape`` as one Input layer (Caffe's UpgradeNetInput)."""
    names = list(net.input)
    layer = schema.LayerParameter(name="input", type="Input")
    layer.top.extend(names)
    if net.input_shape:
        if len(net.input_shape) not in (1, len(names)):
            raise CaffeFormatError(f"{source}: {len(names)} net inputs but {len(net.input_shape)} input_shape entries")
        shapes = [net.input_shape[i if len(net.input_shape) > 1 else 0] for i in range(len(names))]
        for s in shapes:
            layer.input_param.shape.add().CopyFrom(s)
    elif net.input_dim:
        if len(net.input_dim) != 4 * len(names):
            raise CaffeFormatError(
                f"{source}: {len(names)} net inputs need {4 * len(names)} input_dim values, got {len(net.input_dim)}"
            )
        for i in range(len(names)):
            layer.input_param.shape.add().dim.extend(net.input_dim[4 * i: 4 * i + 4])
    return layer


def _is_repeated(fd) -> bool:
    flag = getattr(fd, "is_repeated", None)  # protobuf >= 5.x; older ones have only ``label``
    return bool(flag) if flag is not None else fd.label == fd.LABEL_REPEATED


def _copy_fields(src, dst, skip: Sequence[str] = ("blobs",)) -> None:
    """``dst.CopyFrom(src)`` without the fields ``skip`` (weights need not be copied twice)."""
    for fd, value in src.ListFields():
        if fd.name in skip:
            continue
        if _is_repeated(fd):
            target = getattr(dst, fd.name)
            if fd.type == fd.TYPE_MESSAGE:
                for v in value:
                    target.add().CopyFrom(v)
            else:
                target.extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def upgrade_net(net, *, source: str = "<net>", keep_blobs: bool = True):
    """Return a NetParameter with only V2 ``layer`` entries (a new message; ``net`` is not changed).

    ``keep_blobs=False`` leaves the weights out (the topology of a caffemodel whose
    weights are read separately with :func:`caffemodel_blobs`).
    """
    if net.layers and net.layer:
        raise CaffeFormatError(f"{source}: mixes V1 'layers' and V2 'layer' entries; Caffe refuses such nets")
    out = schema.NetParameter()
    _copy_fields(net, out, skip=("layer", "layers", "input", "input_dim", "input_shape"))
    if net.input and (net.input_dim or net.input_shape):
        out.layer.add().CopyFrom(_net_inputs_to_layer(net, source))
    elif net.input_dim or net.input_shape:
        raise CaffeFormatError(f"{source}: input_dim/input_shape given without 'input' names")
    # ``input`` names alone (old caffemodels keep them): Caffe's UpgradeNetInput just drops them.
    for i, v1 in enumerate(net.layers):
        layer = _v1_to_v2(v1, i, source)
        if not keep_blobs:
            del layer.blobs[:]
        out.layer.add().CopyFrom(layer)
    for layer in net.layer:
        new = out.layer.add()
        if keep_blobs:
            new.CopyFrom(layer)
        else:
            _copy_fields(layer, new)
        _renumber_binary_fields(new, source)
    return out


def _field_at(number: int) -> Optional[str]:
    fd = schema.LayerParameter.DESCRIPTOR.fields_by_number.get(number)
    return fd.name if fd is not None else None


def _homes() -> Dict[str, tuple]:
    numbers: Dict[str, List[int]] = {}
    for table in (schema.AUTHORS_FORK_NUMBERS, schema.DEEPLAB_V2_NUMBERS):
        for key, number in table.items():
            message, field = key.split(".")
            if message == "LayerParameter":
                numbers.setdefault(field, []).append(number)
    types = {"Interp": "interp_param", "SegAccuracy": "seg_accuracy_param", "MatWrite": "mat_write_param",
             "DenseCRF": "dense_crf_param", "SoftmaxWithLoss": "softmax_loss_param", "MatRead": "mat_read_param",
             "BiasChannel": "bias_channel_param", "AdaptiveBiasChannel": "adaptive_bias_channel_param",
             "DomainTransform": "domain_transform_param", "DomainTransformForwardOnly": "domain_transform_param"}
    return {"Input": ("input_param", [143]), "Parameter": ("parameter_param", [145]),
            **{t: (f, numbers[f]) for t, f in types.items()}}


# Layer type -> (the parameter field it needs, the numbers other Caffes store it at): BVLC's
# Input at 143; the authors' fork's own numbers 137-148 (interp_param at 138); DeepLab v2's 144-151.
_BINARY_HOMES = _homes()


def _renumber_binary_fields(layer, source: str = "<caffemodel>") -> None:
    """Move a parameter message that a binary file stored at another Caffe's number to its field here.

    The layer type says which parameter it needs; when that field is empty and the
    field at the other number is set, its bytes (unknown fields included) are re-read
    as the right message. Text files never need this (they name their fields).
    """
    home = _BINARY_HOMES.get(layer.type)
    if home is None:
        return
    target, numbers = home
    if layer.HasField(target):
        return
    for number in numbers:
        occupant = _field_at(number)
        if occupant is None or occupant == target or not layer.HasField(occupant):
            continue
        from google.protobuf.message import DecodeError

        raw = getattr(layer, occupant).SerializePartialToString()  # the occupant's required fields may be absent
        layer.ClearField(occupant)
        try:
            getattr(layer, target).ParseFromString(raw)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise CaffeFormatError(f"{source}: layer {layer.name!r} ({layer.type}): its {target} (stored at field "
                                   f"{number}) cannot be read: {exc}") from None
        return
