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
    return read_label_any(path, None, where=where)


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


def read_label_any(path: PathLike, palette: Optional[np.ndarray], *, where: str = "") -> np.ndarray:
    """H x W label values of a palette or grey PNG, or of an RGB colour-coded PNG decoded
    with ``palette`` (colour k -> label k; VOC's boundary colour is index 255). A colour
    that is not in the palette is an error naming it and the file; without a palette an
    RGB label is refused."""
    from PIL import Image, UnidentifiedImageError

    ctx = f" (listed at {where})" if where else ""
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "L"):
                return np.ascontiguousarray(np.asarray(im), dtype=np.uint8)
            if im.mode in ("I;16", "I;16B", "I", "LA"):  # grey with more bits, or with alpha
                values = np.asarray(im.getchannel("L") if im.mode == "LA" else im)
                if values.min() < 0 or values.max() > 255:
                    raise DataError(f"{path}: grey label values {int(values.min())}..{int(values.max())} do not "
                                    f"fit 0..255{ctx}")
                return values.astype(np.uint8)
            if palette is None:
                raise DataError(f"{path}: label image has mode {im.mode!r}; expected a palette ('P') or grey "
                                f"('L') PNG whose values are the labels{ctx}")
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: label not found{ctx}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode the label{ctx}: {exc}") from None
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal = np.asarray(palette, np.int64)
    pal_codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    # the first index of each colour wins (the VOC map repeats black for no class)
    lookup = {}
    for k, c in enumerate(pal_codes.tolist()):
        lookup.setdefault(c, k)
    uniq, inverse = np.unique(codes, return_inverse=True)
    labels = np.empty(len(uniq), np.int64)
    for i, c in enumerate(uniq.tolist()):
        if c not in lookup:
            raise DataError(f"{path}: colour {((c >> 16) & 255, (c >> 8) & 255, c & 255)} is not in the palette")
        labels[i] = lookup[c]
    out = labels[inverse].reshape(codes.shape)
    if (out > 255).any():
        raise DataError(f"{path}: decoded labels exceed 255")
    return out.astype(np.uint8)


def png_complete(path: PathLike) -> bool:
    """Whether ``path`` is a whole PNG (every chunk's CRC checked). Outputs are renamed into
    place only when written, but without an fsync a crash can still leave an empty file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:  # missing, empty, truncated or damaged: all mean "redo"
        return False


def read_names(path: PathLike, what: str = "the list", *, allow_empty: bool = False) -> List[str]:
    """Image names of an id list (one per line, as VOC's ImageSets) or a DeepLab list (the
    image's file stem); a malformed line is an error naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read {what}: {exc}") from None
    names = []
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            raise DataError(f"{path}:{no}: expected an image id or a DeepLab list line, got {line!r}")
        names.append(Path(parts[0]).stem)
    if not names and not allow_empty:
        raise DataError(f"{path}: {what} is empty")
    return names
