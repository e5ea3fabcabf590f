"""Read Caffe files: text prototxts (net and solver) and binary caffemodels.

Everything is parsed with the protobuf runtime against :mod:`.schema` and then
brought to one form, the way Caffe's own ``UpgradeNetAsNeeded`` does:

* legacy V1 ``layers { type: CONVOLUTION }`` become ``layer { type: "Convolution" }``
  (``blobs_lr``/``weight_decay`` become ``param { lr_mult decay_mult }``, and a
  V1 ``param: "name"`` becomes ``param { name }``);
* net-level ``input:`` + ``input_dim``/``input_shape`` become one ``Input``
  layer named ``"input"`` (Caffe's name for it);
* a BVLC ``Input`` layer read from a *binary* file has its ``input_param`` at
  field 143, where DeepLab's fork keeps ``interp_param``: it is re-read as an
  InputParameter.

Weights come out of :func:`caffemodel_blobs` as ``{layer: [np.ndarray, ...]}``
in Caffe's own shapes, from ``shape`` or the legacy num/channels/height/width,
float or double. Every failure raises :class:`CaffeFormatError` naming the file,
and the layer where there is one.

A field this schema does not know is an error naming it, its line and its layer;
``lenient=True`` drops those inside a data layer's data parameters (other forks'
reader options, which do not change the computation) with one warning that lists
them (:mod:`.lenient` finds them).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import lenient as _lenient
from . import schema

PathLike = Union[str, os.PathLike]

# A caffemodel holds little besides its weights; a shape that claims more
# elements than any real net has is a corrupted file, not a big model.
MAX_BLOB_ELEMENTS = 1 << 31


class CaffeFormatError(ValueError):
    """A Caffe file that cannot be read or does not fit its net."""


class LenientReadWarning(UserWarning):
    """Fields of a data layer that ``lenient=True`` reading dropped because this schema lacks them."""


#: Caffe's data / input layer types (V2 names; V1 enum names map to them by :func:`v1_type_name`).
DATA_LAYER_TYPES = ("Input", "Data", "ImageData", "ImageSegData", "HDF5Data", "MemoryData", "WindowData",
                    "DummyData")

#: The parameter messages of a data layer in which lenient reading drops unknown fields (at any depth).
DATA_PARAM_FIELDS = ("transform_param", "data_param", "image_data_param", "hdf5_data_param",
                     "memory_data_param", "window_data_param", "dummy_data_param", "input_param")


# --------------------------------------------------------------------------
# Placeholders of the DeepLab run scripts
# --------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def placeholders(text: str, *, code_only: bool = False) -> List[str]:
    """The ``${NAME}`` placeholders left in ``text``, sorted (``code_only``: not in comments)."""
    if code_only:
        text = _code_only(text, keep_strings=True)
    return sorted(set(_PLACEHOLDER.findall(text)))


def _code_only(text: str, keep_strings: bool = False) -> str:
    """``text`` without its ``#`` comments and (unless ``keep_strings``) its quoted strings."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            if keep_strings:
                out.append(text[i:j + 1])
            i = j + 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def substitute(text: str, values: Mapping[str, object], *, source: str = "<text>",
               strict: Union[bool, str] = True) -> str:
    """Replace ``${NAME}`` as the DeepLab scripts' ``sub.sed`` did.

    ``strict=True``: a placeholder without a value outside ``#`` comments (quoted
    strings included) is an error that lists them; one in a comment needs no value.
    ``strict="unquoted"``: only those outside quoted strings and comments are
    (``num_output: ${NUM_LABELS}`` cannot parse; ``source: "${DATA_ROOT}/x"`` can,
    and stays literal). Placeholders without a value are left as they are;
    those with one are replaced everywhere, comments included, as sed did.
    """
    found = _PLACEHOLDER.findall(_code_only(text, keep_strings=strict != "unquoted"))
    missing = sorted({m for m in found if m not in values})
    if missing and strict:
        raise CaffeFormatError(
            f"{source}: placeholders without a value: {', '.join('${' + m + '}' for m in missing)} "
            f"(pass them as values={{...}}, e.g. NUM_LABELS=21)"
        )
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text)


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

def read_text(path: PathLike) -> str:
    """A prototxt's text; a missing file or binary content is a CaffeFormatError naming it."""
    p = Path(path)
    data = _read_bytes(p)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaffeFormatError(f"{p}: not a text prototxt (byte {exc.start} is not UTF-8); "
                               "is this a binary .caffemodel?") from exc


def parse_net_text(text: str, *, source: str = "<text>", values: Optional[Mapping[str, object]] = None,
                   strict: Union[bool, str] = True, lenient: bool = False):
    """A NetParameter from prototxt text, placeholders substituted (see :func:`substitute`), upgraded to V2.

    An unknown field is a CaffeFormatError naming it, its line and its layer.
    ``lenient=True`` drops, with one :class:`LenientReadWarning` listing them, the
    unknown fields inside a data layer's (:data:`DATA_LAYER_TYPES`) transform_param
    and data parameters (:data:`DATA_PARAM_FIELDS`); any other is still an error.
    """
    if values is not None or placeholders(text):
        text = substitute(text, values or {}, source=source, strict=strict)
    raw, dropped = _parse_net(text, source, lenient)
    net = upgrade_net(raw, source=source)
    if dropped:
        warnings.warn(f"{source}: lenient reading dropped {len(dropped)} unknown field(s) of data layers:\n  "
                      + "\n  ".join(dropped), LenientReadWarning, stacklevel=2)
    return net


def read_net_prototxt(path: PathLike, values: Optional[Mapping[str, object]] = None, *,
                      strict: Union[bool, str] = True, lenient: bool = False):
    """Read a net ``.prototxt`` (V2, V1; DeepLab extensions) into an upgraded NetParameter."""
    return parse_net_text(read_text(path), source=str(path), values=values, strict=strict, lenient=lenient)


def _try_parse_net(text: str):
    """``(NetParameter, None)``, or ``(None, ParseError)``."""
    from google.protobuf import text_format

    net = schema.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as exc:
        return None, exc
    return net, None


def _parse_net(text: str, source: str, lenient: bool):
    """``(raw NetParameter, [each dropped field described])``: unknown fields refused, or dropped (lenient)."""
    net, error = _try_parse_net(text)
    if error is None:
        return net, []
    try:
        unknown = _lenient.unknown_fields(text, schema.NetParameter.DESCRIPTOR)
    except _lenient.UnreadableText:
        unknown = []  # malformed: protobuf's error says where
    net, blanked_error = _try_parse_net(_lenient.blank(text, unknown)) if unknown else (None, error)
    if net is None:
        # Strict: the first problem in the file. Lenient: the first one not dropped.
        first = blanked_error if lenient else error
        raise CaffeFormatError(f"{source}: not a valid net prototxt: {first}") from first
    places = [(u, _unknown_layer(net, u)) for u in unknown]
    if not lenient:
        at = _lenient.offset(text, error.GetLine(), error.GetColumn())
        here = [_in_layer(u, layer) for u, layer in places if u.start <= at < u.end and layer is not None]
        raise CaffeFormatError(f"{source}: not a valid net prototxt: {error}"
                               + (f" ({here[0]})" if here else "")) from error
    refused = [_describe(source, u, layer, column=True) for u, layer in places if not _droppable(u, layer)]
    if refused:
        raise CaffeFormatError(f"{source}: unknown fields (lenient reading drops only those inside a data "
                               "layer's transform_param or *_data_param/input_param):\n  " + "\n  ".join(refused))
    return net, [_describe(source, u, layer) for u, layer in places]


def _unknown_layer(net, unknown) -> Optional[tuple]:
    """``(name, V2 type)`` of the layer (V2 or V1) that holds ``unknown``, or None (a net-level field)."""
    path = unknown.path
    if len(path) < 3 or path[0] not in ("layer", "layers") or not isinstance(path[1], int):
        return None
    layers = getattr(net, path[0])
    if path[1] >= len(layers):
        return None
    layer = layers[path[1]]
    return layer.name, (layer.type if path[0] == "layer" else _v1_layer_type(layer))


def _droppable(unknown, layer: Optional[tuple]) -> bool:
    """In a data layer's transform_param or data parameters (the layer body itself does not count)."""
    return (layer is not None and layer[1] in DATA_LAYER_TYPES and len(unknown.path) > 3
            and unknown.path[2] in DATA_PARAM_FIELDS)


def _in_layer(unknown, layer: Optional[tuple]) -> str:
    """``layer 'NAME' (TYPE): path.in.layer``, or ``net: path`` for a field outside the layers."""
    if layer is None:
        return f"net: {_lenient.format_path(unknown.path)}"
    return f"layer {layer[0]!r} ({layer[1]}): {_lenient.format_path(unknown.path[2:])}"


def _describe(source: str, unknown, layer: Optional[tuple], column: bool = False) -> str:
    """``file:line[:column] layer 'NAME' (TYPE): path.in.layer``."""
    return f"{source}:{unknown.line}" + (f":{unknown.column}" if column else "") + " " + _in_layer(unknown, layer)


def read_solver_prototxt(path: PathLike, values: Optional[Mapping[str, object]] = None):
    """Read a ``solver.prototxt`` into a SolverParameter."""
    from google.protobuf import text_format

    text = read_text(path)
    if values is not None or placeholders(text):
        text = substitute(text, values or {}, source=str(path))
    solver = schema.SolverParameter()
    try:
        text_format.Parse(text, solver)
    except text_format.ParseError as exc:
        raise CaffeFormatError(f"{path}: not a valid solver prototxt: {exc}") from exc
    return solver


def _parse_binary(data: bytes, source: str):
    from google.protobuf.message import DecodeError

    if not data:
        raise CaffeFormatError(f"{source}: empty file, not a caffemodel")
    net = schema.NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise CaffeFormatError(
            f"{source}: not a valid binary caffemodel ({len(data)} bytes; truncated or corrupted?): {exc}"
        ) from exc
    if not net.layer and not net.layers:
        raise CaffeFormatError(f"{source}: parsed as a NetParameter but holds no layers; not a caffemodel?")
    return net


def _read_bytes(path: PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CaffeFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _not_utf8(source: str, exc: UnicodeDecodeError) -> CaffeFormatError:
    # upb accepts a proto2 string that is not UTF-8 and fails only when it is read.
    return CaffeFormatError(f"{source}: a name or string in the file is not valid UTF-8 (corrupted?): {exc}")


def _upgrade_binary(raw, source: str, keep_blobs: bool):
    try:
        return upgrade_net(raw, source=source, keep_blobs=keep_blobs)
    except UnicodeDecodeError as exc:
        raise _not_utf8(source, exc) from None


def parse_caffemodel_bytes(data: bytes, *, source: str = "<bytes>", keep_blobs: bool = True):
    """A NetParameter from the bytes of a binary ``.caffemodel``, upgraded to V2 layers."""
    return _upgrade_binary(_parse_binary(data, source), source, keep_blobs)


def read_caffemodel(path: PathLike):
    """Read a binary ``.caffemodel`` (V2 ``layer``, V1 ``layers``) into an upgraded NetParameter."""
    return parse_caffemodel_bytes(_read_bytes(path), source=str(path))


# --------------------------------------------------------------------------
# Upgrading V1 / net-level inputs to the V2 form
# --------------------------------------------------------------------------

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


def _v1_layer_type(v1) -> str:
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
    layer.type = _v1_layer_type(v1)
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
    return {"Input": ("input_param", [143]), **{t: (f, numbers[f]) for t, f in types.items()}}


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


# --------------------------------------------------------------------------
# Phase / state rules (Caffe's Net::FilterNet)
# --------------------------------------------------------------------------

def _phase_value(phase: Union[str, int]) -> int:
    if isinstance(phase, str):
        try:
            return schema.Phase.Value(phase.upper())
        except ValueError:
            raise ValueError(f"phase must be 'TRAIN' or 'TEST', got {phase!r}") from None
    return int(phase)


def _rule_matches(rule, phase: int, level: int, stages: Sequence[str]) -> bool:
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def layer_included(layer, phase: Union[str, int], level: int = 0, stages: Sequence[str] = (), *,
                   source: str = "<net>") -> bool:
    """Whether ``layer`` is part of the net in ``phase`` (include/exclude rules as Caffe applies them)."""
    ph = _phase_value(phase)
    if layer.include and layer.exclude:
        raise CaffeFormatError(f"{source}: layer {layer.name!r} has both include and exclude rules; Caffe refuses that")
    if layer.include:
        return any(_rule_matches(r, ph, level, stages) for r in layer.include)
    return not any(_rule_matches(r, ph, level, stages) for r in layer.exclude)


def filter_phase(net, phase: Union[str, int], level: int = 0, stages: Sequence[str] = (), *,
                 source: str = "<net>") -> List:
    """The layers of an upgraded ``net`` that run in ``phase``, in order."""
    return [layer for layer in net.layer if layer_included(layer, phase, level, stages, source=source)]


# --------------------------------------------------------------------------
# Blobs
# --------------------------------------------------------------------------

class LegacyShapeArray(np.ndarray):
    """The array of a blob stored with the legacy num/channels/height/width fields.

    Caffe's ``Blob::ShapeEquals`` lets such a 4-D blob fit any blob of at most 4
    axes whose shape, padded with leading 1s, is the same (a 1x1x1xN bias for an N
    bias); a blob stored with ``shape`` must match exactly.
    """


def is_legacy_blob(blob) -> bool:
    return any(blob.HasField(f) for f in ("num", "channels", "height", "width"))


def blob_shape(blob) -> tuple:
    """The shape a BlobProto declares: the legacy 4-D num/channels/height/width when any is
    set (Caffe's ``Blob::FromProto`` reads those first), else ``shape.dim``."""
    if is_legacy_blob(blob):
        return (int(blob.num), int(blob.channels), int(blob.height), int(blob.width))
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    n = len(blob.data) or len(blob.double_data)
    return (n,)


def blob_to_array(blob, *, where: str = "blob") -> np.ndarray:
    """A BlobProto's data as a numpy array in its declared shape (float32 or float64)."""
    shape = blob_shape(blob)
    if any(d < 0 for d in shape):
        raise CaffeFormatError(f"{where}: negative dimension in shape {shape}")
    count = 1
    for d in shape:
        count *= d
        if count > MAX_BLOB_ELEMENTS:
            raise CaffeFormatError(f"{where}: shape {shape} claims more than {MAX_BLOB_ELEMENTS} elements")
    if len(blob.double_data):
        if len(blob.data):
            raise CaffeFormatError(f"{where}: holds both float data and double_data")
        values, dtype = blob.double_data, np.float64
    else:
        values, dtype = blob.data, np.float32
    if len(values) != count:
        raise CaffeFormatError(
            f"{where}: shape {shape} needs {count} values, the file holds {len(values)}"
        )
    out = np.asarray(values, dtype=dtype).reshape(shape)
    return out.view(LegacyShapeArray) if is_legacy_blob(blob) else out


def caffemodel_blobs(net, *, source: str = "<caffemodel>") -> Dict[str, List[np.ndarray]]:
    """``{layer name: [arrays]}`` for every layer of ``net`` that stores blobs.

    ``net`` is a NetParameter as read by :func:`read_caffemodel` (or a raw one:
    V1 and V0 layers are read here too, so V0 weights load though V0 nets do not build).
    """
    out: Dict[str, List[np.ndarray]] = {}

    def add(name: str, blobs: Iterable) -> None:
        blobs = list(blobs)
        if not blobs:
            return
        if name in out:
            # Caffe's CopyTrainedLayersFrom copies every file layer into the first net layer of its
            # name, in file order: the later one's weights are what that layer ends up with.
            warnings.warn(f"{source}: two layers named {name!r} store weights; the later one's are kept, "
                          "as Caffe loads them", stacklevel=3)
        out[name] = [blob_to_array(b, where=f"{source}: layer {name!r} blob {i}") for i, b in enumerate(blobs)]

    try:
        _add_all(net, add)
    except UnicodeDecodeError as exc:
        raise _not_utf8(source, exc) from None
    return out


def _add_all(net, add) -> None:
    for layer in net.layer:
        add(layer.name, layer.blobs)
    for v1 in net.layers:
        if v1.HasField("layer"):
            add(v1.layer.name, v1.layer.blobs)
        else:
            add(v1.name, v1.blobs)


def read_caffemodel_weights(path: PathLike, *, with_net: bool = False):
    """``(weights, net)`` of a caffemodel (V2, V1 or V0), parsed once: the weights as
    ``{layer: [arrays]}`` and, with ``with_net``, its layers upgraded to V2 without their
    blobs (else None)."""
    source = str(path)
    raw = _parse_binary(_read_bytes(path), source)
    blobs = caffemodel_blobs(raw, source=source)
    if not blobs:
        raise CaffeFormatError(f"{source}: holds no weights (no layer has blobs); not a trained caffemodel?")
    return blobs, (_upgrade_binary(raw, source, keep_blobs=False) if with_net else None)


def load_caffemodel_blobs(path: PathLike) -> Dict[str, List[np.ndarray]]:
    """Read a caffemodel (V2, V1 or V0) and return its weights as ``{layer: [arrays]}``."""
    return read_caffemodel_weights(path)[0]
