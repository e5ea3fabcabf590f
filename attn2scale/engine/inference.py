"""DeepLab's test protocol on any model of the package.

The image is padded to the test crop (513; COCO 641) by the dataset's Caffe
transform; the model's fused scores (stride 8: 65 x 65 at 513, as the test nets'
``fc8_interp`` zoom 8; the follow-up model's multi-stage net has stride 4) are
zoomed back to the input grid with Caffe's Interp rule (65 -> 513) and turned into
labels by the fused
``ops.upsample_argmax``, which never builds the C x H x W map; the labels are
cropped back to the image. Optional extra test scales and a horizontal flip are
averaged in score space on the 1x score grid before the zoom.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import torch

from .. import ops
from .checkpoint import CheckpointError, _load_tensors, latest_checkpoint
from .losses import model_outputs



@dataclass(frozen=True)
class InferenceSettings:
    """Test scales (1 must be one: its score grid is the one merged on) and flip."""

    scales: Tuple[float, ...] = (1.0,)
    flip: bool = False

    def __post_init__(self):
        if 1.0 not in self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"test scales must be positive and include 1, got {self.scales}")


def fused_scores(model, image: torch.Tensor) -> torch.Tensor:
    return model_outputs(model(image))["fusion"].float()


def scaled_size(h: int, w: int, s: float) -> Tuple[int, int]:
    """Input size at scale ``s`` keeping the corner-aligned grid: (H - 1) * s + 1."""
    return max(1, int(round((h - 1) * s)) + 1), max(1, int(round((w - 1) * s)) + 1)


@torch.no_grad()
def multiscale_scores(model, image: torch.Tensor, settings: InferenceSettings = InferenceSettings()) -> torch.Tensor:
    """Mean of the fused scores over the test scales (and flips), resized (Caffe Interp)
    to the 1x score grid."""
    runs = []
    for s in sorted(settings.scales, key=lambda v: v != 1.0):  # 1x first: it fixes the grid
        x = image if s == 1.0 else ops.interp(image, scaled_size(*image.shape[-2:], s))
        for flip in (False, True) if settings.flip else (False,):
            sc = fused_scores(model, x.flip(-1) if flip else x)
            sc = sc.flip(-1) if flip else sc
            if runs and tuple(sc.shape[-2:]) != tuple(runs[0].shape[-2:]):
                sc = ops.interp(sc, tuple(runs[0].shape[-2:]))
            runs.append(sc)
    return torch.stack(runs).mean(0)


def zoomed_size(scores: torch.Tensor, input_size: Sequence[int]) -> Tuple[int, int]:
    """Caffe's Interp zoom that takes the score grid back to the input grid: the model's
    output stride, ``(H - 1) / (h - 1)``, which must be a whole number."""
    (h, w), (H, W) = scores.shape[-2:], tuple(input_size)[-2:]
    strides = {(H - 1) // max(h - 1, 1), (W - 1) // max(w - 1, 1)}
    zoom = strides.pop() if len(strides) == 1 else None
    if zoom is None or zoom < 1 or (h - 1) * zoom != H - 1 or (w - 1) * zoom != W - 1:
        raise ValueError(f"scores {h}x{w} are no Caffe stride of the input {H}x{W} (input - 1 must be a multiple "
                         "of score - 1)")
    return ops.caffe_interp_size(h, w, zoom_factor=zoom)


def labels_from_scores(scores: torch.Tensor, sizes: torch.Tensor, input_size: Sequence[int]) -> List[torch.Tensor]:
    """Zoom back to the input grid and arg-max in one fused op, then crop each image to
    ``sizes`` (N x 2)."""
    labels = ops.upsample_argmax(scores, zoomed_size(scores, input_size))
    out = []
    for lab, (h, w) in zip(labels, sizes.tolist()):
        if lab.shape[-2] < h or lab.shape[-1] < w:
            raise ValueError(f"zoomed labels {tuple(lab.shape)} are smaller than the image {h}x{w}: the model's "
                             "output stride is not 8")
        out.append(lab[:h, :w])
    return out


def weights_file(path: Path) -> Path:
    """A .safetensors file, or a run folder (its latest checkpoint's weights)."""
    path = Path(path)
    if path.is_dir():
        meta = latest_checkpoint(path)
        if meta is None:
            raise CheckpointError(f"--weights {path}: a folder without checkpoints/latest")
        import json

        return meta.parent / json.loads(meta.read_text())["weights"]
    return path


def load_weights(model: torch.nn.Module, path: Path) -> Path:
    """Load trained weights by name: every tensor of the model must be in the file with
    its shape; differences are listed by name and shape."""
    path = weights_file(path)
    tensors = _load_tensors(path)
    state = model.state_dict()
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    wrong = [f"{k} {tuple(tensors[k].shape)} vs model {tuple(state[k].shape)}" for k in state
             if k in tensors and tuple(tensors[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for what, items in (("missing", missing), ("not in the model", unexpected), ("shape differs", wrong)):
            if items:
                parts.append(f"{what}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''} ({len(items)})")
        raise CheckpointError(f"{path}: weights do not fit the config's model; " + "; ".join(parts))
    model.load_state_dict(tensors)
    return path


def default_scales(text: str) -> Tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"--scales expects comma-separated numbers, got {text!r}") from None


def to_rgb_uint8(image: torch.Tensor, mean_bgr: Sequence[float], size: Tuple[int, int], scale: float = 1.0):
    """The network input (3 x H x W, (BGR minus mean) times ``scale``) back to an H x W x 3 RGB
    uint8 image."""
    h, w = size
    bgr = image[:, :h, :w] / scale + torch.tensor(mean_bgr, dtype=image.dtype).view(3, 1, 1)
    return bgr.flip(0).permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def attention_arrays(model, batch: dict):
    """(label map, arrays) of the first image of ``batch`` for the attention figure: the
    per-scale attention weights (S x H x W), the winning scale and, for the follow-up model,
    the recalibration gate of the predicted class, all at the image's size; arrays is None
    for a model without attention."""
    from .. import ops

    h, w = batch["size"][0].tolist()
    with torch.no_grad():
        res = model(batch["image"])
    zoom = zoomed_size(res["fusion"], batch["image"].shape)
    label = labels_from_scores(res["fusion"].float(), batch["size"], batch["image"].shape)[0].numpy()
    if res.get("attention") is None:
        return label, None
    att = ops.interp(res["attention"].float(), zoom)[0, :, :h, :w]
    arrays = {"attention": att.numpy(), "winner": att.argmax(0).numpy().astype("uint8")}
    if res.get("recalibration") is not None:
        gate = ops.interp(res["recalibration"].float(), zoom)[0, :, :h, :w]
        arrays["gate"] = gate.gather(0, torch.from_numpy(label).long()[None])[0].numpy()
    return label, arrays
