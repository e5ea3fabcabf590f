"""MATLAB ``.mat`` files as plain Python: dicts for structs, lists for struct and
cell arrays, numpy arrays for matrices, str for char arrays.

Files up to v7 are read with ``scipy.io.loadmat(simplify_cells=True)``; v7.3
files (HDF5) with h5py, converted to the same shapes (MATLAB stores arrays
column-major, so h5py's arrays are transposed back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import numpy as np

from ..io import DataError


def load_mat(path) -> dict:
    """The top-level variables of a .mat file (v4 to v7.3)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: .mat file not found")
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return {k: _h5_value(f[k], f) for k in f.keys() if not k.startswith("#")}
        import scipy.io

        data = scipy.io.loadmat(str(path), simplify_cells=True)
    except DataError:
        raise
    except Exception as exc:  # scipy/h5py raise many types for damaged files
        raise DataError(f"{path}: cannot read the .mat file: {type(exc).__name__}: {exc}") from None
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _matlab_class(obj) -> str:
    cls = obj.attrs.get("MATLAB_class", b"")
    return cls.decode() if isinstance(cls, bytes) else str(cls)


def _h5_value(obj, f) -> Any:
    import h5py

    if isinstance(obj, h5py.Group):
        fields = {k: obj[k] for k in obj.keys()}
        # A 1 x N struct array is one group whose fields are datasets of N references (a
        # field holding a cell array is marked MATLAB_class "cell" instead).
        if fields and all(isinstance(d, h5py.Dataset) and d.dtype == h5py.ref_dtype and _matlab_class(d) != "cell"
                          for d in fields.values()):
            refs = {k: np.asarray(d[()]).T.reshape(-1) for k, d in fields.items()}
            n = {len(r) for r in refs.values()}
            if len(n) != 1:
                raise ValueError(f"struct array {obj.name}: fields of different lengths {sorted(n)}")
            items = [{k: _h5_value(f[r[i]], f) for k, r in refs.items()} for i in range(n.pop())]
            return items[0] if len(items) == 1 else items
        return {k: _h5_value(d, f) for k, d in fields.items()}
    cls = _matlab_class(obj)
    if obj.attrs.get("MATLAB_empty", 0):  # stored as its size, not its (absent) content
        return "" if cls == "char" else []
    data = obj[()]
    if obj.dtype == h5py.ref_dtype:  # cell array: each element is a reference
        items = [_h5_value(f[ref], f) for ref in np.asarray(data).T.reshape(-1)]
        return items[0] if len(items) == 1 else items
    if cls == "char":
        return "".join(chr(c) for c in np.asarray(data).T.reshape(-1))
    arr = np.asarray(data).T
    if arr.size == 1:
        return arr.reshape(()).item() if cls != "logical" else bool(arr.reshape(()).item())
    return np.ascontiguousarray(arr)


def as_list(value) -> List:
    """A struct/cell array as a list: a single element (collapsed by simplification)
    becomes a one-item list, an empty array an empty list."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, np.ndarray):
        return [] if value.size == 0 else list(value.reshape(-1))
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def field(struct, name: str, path, what: str):
    """``struct[name]``, or an error naming the file and the missing field."""
    if not isinstance(struct, dict) or name not in struct:
        have = sorted(struct) if isinstance(struct, dict) else type(struct).__name__
        raise DataError(f"{path}: {what} has no field {name!r} (has {have})")
    return struct[name]
