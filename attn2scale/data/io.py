"""Reading DeepLab lists, images and label maps, and writing label PNGs.

Every failure is a :class:`DataError` naming the file (and the list line the
file came from): nothing is skipped or guessed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from ..fileio import atomic_path

PathLike = Union[str, os.PathLike]


class DataError(ValueError):
    """A dataset file that cannot be used, named with where it came from."""


@dataclass(frozen=True)
class ListEntry:
    """One line of a DeepLab list: ``/JPEGImages/x.jpg [/Labels/x.png]``, paths relative to the root."""

    image: str
    label: Optional[str]
    where: str  # "LIST:LINE", for error messages

    @property
    def name(self) -> str:
        return Path(self.image).stem


def read_list(path: PathLike, *, need_labels: bool) -> List[ListEntry]:
    """Parse a DeepLab list. Lines hold one (image) or two (image, label) paths;
    blank lines are allowed at the end only; anything else is an error naming the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise DataError(f"{path}: list file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the list ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    entries = []
    for no, line in enumerate(lines, 1):
        where = f"{path}:{no}"
        parts = line.split()
        if len(parts) not in (1, 2):
            raise DataError(f"{where}: expected 'IMAGE [LABEL]' (1 or 2 paths), got {line!r}")
        if need_labels and len(parts) != 2:
            raise DataError(f"{where}: this split needs labels but the line names only {parts[0]!r}")
        entries.append(ListEntry(parts[0], parts[1] if len(parts) == 2 else None, where))
    if not entries:
        raise DataError(f"{path}: the list is empty")
    return entries


def under_root(root: PathLike, rel: str) -> Path:
    """A list path joined to the root: DeepLab writes them with a leading '/'."""
    return Path(root) / rel.lstrip("/")


def read_image_bgr(path: PathLike, where: str = "") -> np.ndarray:
    """H x W x 3 uint8 in BGR order, as Caffe's ``ReadImageToCVMat(..., is_color=true)``
    (grey images are repeated over the three channels)."""
    from PIL import Image, UnidentifiedImageError

    ctx = f" (listed at {where})" if where else ""
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image not found{ctx}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode the image{ctx}: {exc}") from None
    return np.ascontiguousarray(rgb[..., ::-1])


def read_label_raw(path: PathLike, where: str = "") -> np.ndarray:
    """H x W uint8 label values as stored: the index of a palette PNG, or the
    value of a grey PNG. RGB label images are refused (their colours are not labels)."""
    from PIL import Image, UnidentifiedImageError

    ctx = f" (listed at {where})" if where else ""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise DataError(f"{path}: label image has mode {im.mode!r}; expected a palette ('P') or grey "
                                f"('L') PNG whose values are the labels{ctx}")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: label not found{ctx}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode the label{ctx}: {exc}") from None
    return np.ascontiguousarray(arr, dtype=np.uint8)


def map_labels(raw: np.ndarray, lut: np.ndarray, path: PathLike, num_labels: int, where: str = "") -> np.ndarray:
    """Raw label values -> training ids through ``lut`` (256 entries, -1 = not allowed);
    a value the table refuses is an error naming the value, the file and its count."""
    mapped = lut[raw]
    if (mapped < 0).any():
        bad = np.unique(raw[mapped < 0])
        ctx = f" (listed at {where})" if where else ""
        raise DataError(f"{path}: label values {bad.tolist()} are outside [0, {num_labels}) and the ignore "
                        f"label{ctx}; {int((mapped < 0).sum())} pixels")
    return mapped.astype(np.uint8)


def write_label_png(path: PathLike, label: np.ndarray, palette: Optional[np.ndarray] = None) -> None:
    """Write an H x W uint8 label map as a palette PNG (a grey PNG when ``palette`` is None),
    atomically: the file appears complete or not at all."""
    from PIL import Image

    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"{path}: label must be a 2-D uint8 array, got {label.dtype} {label.shape}")
    h, w = label.shape
    im = Image.frombytes("L" if palette is None else "P", (w, h), np.ascontiguousarray(label).tobytes())
    if palette is not None:
        im.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())
    with atomic_path(path, durable=False) as tmp:
        im.save(tmp, format="PNG")


def check_same_size(image: np.ndarray, label: np.ndarray, image_path, label_path, where: str = "") -> None:
    if image.shape[:2] != label.shape[:2]:
        ctx = f" (listed at {where})" if where else ""
        raise DataError(f"{label_path}: label size {label.shape[1]}x{label.shape[0]} (WxH) differs from its image "
                        f"{image_path} {image.shape[1]}x{image.shape[0]}{ctx}")


def write_list(path: PathLike, lines: Sequence[str]) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(line + "\n" for line in lines))
