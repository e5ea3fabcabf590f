"""The paper's diagnostic figure: which scale each pixel attends to.

Panels: the image, the prediction, each scale's attention weight on one colour
scale [0, 1], the winning scale (arg-max of the weights), and for the follow-up
model the recalibration gate of the predicted class. The arrays behind the
panels are saved beside the PNG (``.npz``) so that they can be checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from ..fileio import atomic_path
from .overlay import colorize


class MatplotlibUnavailable(RuntimeError):
    """matplotlib (the [viz] extra) is not installed."""


def attention_figure(path: Path, image_rgb: np.ndarray, prediction: np.ndarray, palette: np.ndarray,
                     arrays: Dict[str, np.ndarray], scales: Sequence[float], title: str = "") -> None:
    """Write the figure to ``path`` (PNG) and its arrays to ``path`` with ``.npz``."""
    try:
        import matplotlib
    except ImportError:
        raise MatplotlibUnavailable("the attention figure needs matplotlib: pip install -e .[viz]") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights: Optional[np.ndarray] = arrays.get("attention")
    panels = 2 + (len(scales) + 1 if weights is not None else 0) + ("winner" in arrays and weights is None) + \
        ("gate" in arrays)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.4), squeeze=False)
    axes = list(axes[0])
    axes[0].imshow(image_rgb)
    axes[0].set_title("image")
    axes[1].imshow(colorize(prediction, palette))
    axes[1].set_title("prediction")
    k = 2
    if weights is not None:
        for s, w in zip(scales, weights):
            im = axes[k].imshow(w, vmin=0.0, vmax=1.0, cmap="viridis")
            axes[k].set_title(f"attention to scale {s:g}")
            k += 1
        fig.colorbar(im, ax=axes[2:k], fraction=0.02, pad=0.01)
    if "winner" in arrays:
        axes[k].imshow(arrays["winner"], vmin=0, vmax=len(scales) - 1, cmap="tab10", interpolation="nearest")
        axes[k].set_title("winning scale\n(" + ", ".join(f"{i}: {s:g}" for i, s in enumerate(scales)) + ")", fontsize=9)
        k += 1
    if "gate" in arrays:
        im = axes[k].imshow(arrays["gate"], vmin=0.0, vmax=1.0, cmap="magma")
        axes[k].set_title("recalibration gate (predicted class)")
        fig.colorbar(im, ax=axes[k], fraction=0.046, pad=0.01)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    with atomic_path(Path(path).with_suffix(".npz")) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, image=image_rgb, prediction=prediction, **arrays)
