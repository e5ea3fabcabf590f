"""A procedurally generated multi-scale segmentation dataset for the built-in mini
reproduction (no downloads): objects of four classes whose sizes span about 5 % to
90 % of the image side, each class with its own shape and texture family, on a
cluttered textured background with distractor blobs. Deterministic for a seed; written
once to a folder in DeepLab's layout (PNG images and labels, ``list/train.txt``,
``list/val.txt``) and read by the same dataset class as the real data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

import numpy as np

from ..fileio import write_text_atomic
from .io import png_complete, write_label_png
from .registry import get_dataset_info

SIZE = 97  # 8 * 12 + 1: the slim LargeFOV's score grid is 13 x 13
FORMAT = 2


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def _pattern(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    """H x W pattern in [-1, 1] of a family (0 stripes, 1 checks, 2 dots, 3 blotches)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(3, 7)
    angle = rng.uniform(0, np.pi)
    if kind == 0:
        return np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    if kind == 1:
        return np.sign(np.sin(xx * np.pi / period) * np.sin(yy * np.pi / period))
    if kind == 2:
        return (np.cos(xx * 2 * np.pi / period) + np.cos(yy * 2 * np.pi / period)) / 2
    cells = rng.normal(0, 0.6, (size // 8 + 1, size // 8 + 1))
    return np.clip(np.repeat(np.repeat(cells, 8, 0), 8, 1)[:size, :size], -1, 1)


def _texture(rng: np.random.Generator, kind: int, colour: np.ndarray, amp: float) -> np.ndarray:
    return np.clip(colour[None, None, :] + amp * _pattern(rng, kind, SIZE)[..., None], 0, 255)


# Each class has a hue (with jitter) and a texture family: recognisable by local appearance,
# while its shape and size vary; background and clutter are desaturated.
_CLASS_HUE = {1: 0.0, 2: 0.33, 3: 0.62, 4: 0.15}


def _mask(rng: np.random.Generator, cls: int, cy: float, cx: float, r: float) -> np.ndarray:
    """Shape of class 1 disc, 2 square, 3 triangle, 4 ring, radius ``r``, centre (cy, cx)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    if cls == 1:
        return dx ** 2 + dy ** 2 <= r ** 2
    if cls == 2:
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if cls == 3:
        return (dy <= r * 0.7) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    d2 = dx ** 2 + dy ** 2
    return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)


def sample(seed: int, index: int) -> Tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 RGB image, H x W uint8 label) of sample ``index``."""
    rng = np.random.default_rng([seed, index])
    grey = _hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.15), rng.uniform(0.3, 0.7))
    image = _texture(rng, int(rng.integers(4)), grey, rng.uniform(10, 30))
    label = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(3, 7))):  # clutter: background-labelled desaturated blobs
        m = _mask(rng, int(rng.integers(1, 5)), rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(3, 12))
        shade = _hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.2), rng.uniform(0.2, 0.9))
        image[m] = _texture(rng, int(rng.integers(4)), shade, 20)[m]
    n_obj = int(rng.integers(2, 6))
    # object sizes from 5 % to 90 % of the side, log-uniform: small and large are equally common
    radii = sorted(np.exp(rng.uniform(np.log(0.025 * SIZE), np.log(0.45 * SIZE), n_obj)), reverse=True)
    for r in radii:  # largest first, so smaller objects stay visible on top
        cls = int(rng.integers(1, 5))
        cy, cx = rng.uniform(r * 0.5, SIZE - r * 0.5, 2)
        m = _mask(rng, cls, cy, cx, r)
        colour = _hsv_to_rgb(_CLASS_HUE[cls] + rng.uniform(-0.04, 0.04), rng.uniform(0.55, 0.9),
                             rng.uniform(0.45, 0.9))
        image[m] = _texture(rng, cls - 1, colour, rng.uniform(20, 40))[m]
        label[m] = cls
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), label


def generate(root: Path, *, seed: int = 0, train: int = 600, val: int = 150) -> Path:
    """Write the dataset under ``root`` (skipping files already there for the same seed and
    sizes); returns the root."""
    from PIL import Image

    from ..fileio import atomic_path

    root = Path(root)
    stamp = {"format": FORMAT, "seed": seed, "train": train, "val": val, "size": SIZE}
    meta = root / "mini.json"
    if meta.is_file() and json.loads(meta.read_text()) != stamp:
        raise ValueError(f"{root} holds a mini dataset made with other settings ({meta.read_text().strip()}); "
                         "choose another folder")
    info = get_dataset_info("mini")
    for sub in (info.image_dir, info.label_dir, "list"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    write_text_atomic(meta, json.dumps(stamp) + "\n")
    lists = {"train": [], "val": []}
    for split, start, n in (("train", 0, train), ("val", train, val)):
        for i in range(start, start + n):
            name = f"{split}_{i:05d}"
            img_path, lab_path = root / info.image_dir / f"{name}.png", root / info.label_dir / f"{name}.png"
            if not (png_complete(img_path) and png_complete(lab_path)):
                image, label = sample(seed, i)
                with atomic_path(img_path, durable=False) as tmp:
                    Image.fromarray(image).save(tmp, format="PNG")
                write_label_png(lab_path, label, info.palette())
            lists[split].append(f"/{info.image_dir}/{name}.png /{info.label_dir}/{name}.png")
    for split, lines in lists.items():
        write_text_atomic(root / "list" / f"{split}.txt", "".join(line + "\n" for line in lines))
    return root
