"""Label maps in a dataset's palette, and blended over the image."""

from __future__ import annotations

import numpy as np


def colorize(label: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """H x W labels -> H x W x 3 uint8 colours (index 255: the ignore colour)."""
    return np.asarray(palette, np.uint8)[np.asarray(label, np.int64)]


def overlay(image_rgb: np.ndarray, label: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with the coloured labels blended in (background, label 0, left as it is)."""
    if image_rgb.shape[:2] != label.shape:
        raise ValueError(f"overlay: image {image_rgb.shape[:2]} and labels {label.shape} differ in size")
    colours = colorize(label, palette).astype(np.float32)
    out = image_rgb.astype(np.float32)
    fg = (label != 0)[..., None]
    out = np.where(fg, (1 - alpha) * out + alpha * colours, out)
    return out.round().clip(0, 255).astype(np.uint8)
