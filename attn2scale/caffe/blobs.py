"""Caffe blobs as numpy arrays, and the weights of a caffemodel by layer name.

Shapes are Caffe's own, from ``shape`` or the legacy num/channels/height/width
(kept visible as :class:`LegacyShapeArray`), float or double.
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, Iterable, List, Union

import numpy as np

from .errors import CaffeFormatError
from .reader import not_utf8, parse_binary, read_bytes, upgrade_binary

PathLike = Union[str, os.PathLike]

# A caffemodel holds little besides its weights; a shape that claims more
# elements than any real net has is a corrupted file, not a big model.
MAX_BLOB_ELEMENTS = 1 << 31


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
    # Caffe writes no shape for a 0-axis blob (a scalar Scale/PReLU weight) and reads it back as
    # shape (); a larger blob without any shape is another writer's, kept flat.
    return () if n == 1 else (n,)


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
            del out[name]  # re-inserted at its later place: shared parameters load in file order
        out[name] = [blob_to_array(b, where=f"{source}: layer {name!r} blob {i}") for i, b in enumerate(blobs)]

    try:
        _add_all(net, add)
    except UnicodeDecodeError as exc:
        raise not_utf8(source, exc) from None
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
    raw = parse_binary(read_bytes(path), source)
    blobs = caffemodel_blobs(raw, source=source)
    if not blobs:
        raise CaffeFormatError(f"{source}: holds no weights (no layer has blobs); not a trained caffemodel?")
    return blobs, (upgrade_binary(raw, source, keep_blobs=False) if with_net else None)


def load_caffemodel_blobs(path: PathLike) -> Dict[str, List[np.ndarray]]:
    """Read a caffemodel (V2, V1 or V0) and return its weights as ``{layer: [arrays]}``."""
    return read_caffemodel_weights(path)[0]
