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

Upgrading is :mod:`.upgrade`; weights come out of :func:`.blobs.caffemodel_blobs` as ``{layer: [np.ndarray, ...]}``
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
from typing import List, Mapping, Optional, Sequence, Union

from . import lenient as _lenient
from . import schema
from .errors import CaffeFormatError, LenientReadWarning
from .upgrade import upgrade_net, v1_layer_type

PathLike = Union[str, os.PathLike]

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
    data = read_bytes(p)
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
    return layer.name, (layer.type if path[0] == "layer" else v1_layer_type(layer))


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


def parse_binary(data: bytes, source: str):
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


def read_bytes(path: PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CaffeFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def not_utf8(source: str, exc: UnicodeDecodeError) -> CaffeFormatError:
    # upb accepts a proto2 string that is not UTF-8 and fails only when it is read.
    return CaffeFormatError(f"{source}: a name or string in the file is not valid UTF-8 (corrupted?): {exc}")


def upgrade_binary(raw, source: str, keep_blobs: bool):
    try:
        return upgrade_net(raw, source=source, keep_blobs=keep_blobs)
    except UnicodeDecodeError as exc:
        raise not_utf8(source, exc) from None


def parse_caffemodel_bytes(data: bytes, *, source: str = "<bytes>", keep_blobs: bool = True):
    """A NetParameter from the bytes of a binary ``.caffemodel``, upgraded to V2 layers."""
    return upgrade_binary(parse_binary(data, source), source, keep_blobs)


def read_caffemodel(path: PathLike):
    """Read a binary ``.caffemodel`` (V2 ``layer``, V1 ``layers``) into an upgraded NetParameter."""
    return parse_caffemodel_bytes(read_bytes(path), source=str(path))


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
