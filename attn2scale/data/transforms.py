"""DeepLab's ImageSegData transforms (``DataTransformer::TransformImgAndSeg``).

Order and arithmetic as Caffe's: the mirror coin is drawn first; the image
(as double) and the label are padded at the bottom and right up to the crop
size with the mean colour and the ignore label; training crops at a uniform
random offset, testing at ``(H - crop) / 2``; every pixel becomes
``(float(pixel) - mean[c]) * scale`` in BGR order, so padded pixels are exactly
0. Caffe's random stream is not reproduced (its draws are), the same as for
fillers.

Two additions that Caffe's v1 layer does not have, both off unless asked:
``scale_range`` (the random input scaling of the paper's "Attention+",
applied before padding: bilinear image, nearest label, as ``cv2.resize`` with
``INTER_LINEAR`` / ``INTER_NEAREST``), and in testing an image larger than the
crop is padded to its own size instead of centre-cropped, so that no pixel
of the image goes unpredicted (VOC, Person-Part and COCO images never exceed
the authors' test crops of 513 and 641); it is padded to 8k + 1 so that the
stride-8 score grid stays corner-aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from .registry import CAFFE_MEAN_BGR, IGNORE_LABEL, DatasetInfo


@dataclass(frozen=True)
class SegTransform:
    """Caffe's image + label transform.

    Args:
        crop_size: ``transform_param.crop_size`` (0: no padding or cropping).
        train: Caffe's TRAIN phase (random crop, mirror coin, ``scale_range``).
        mirror: ``transform_param.mirror``: a coin flip per sample, in either phase as in Caffe.
        mean_bgr: ``transform_param.mean_value`` (B, G, R).
        scale: ``transform_param.scale``.
        ignore_label: label of padded pixels.
        scale_range: (low, high) of a uniform random input scaling, or None.
    """

    crop_size: int
    train: bool
    mirror: bool = False
    mean_bgr: Tuple[float, float, float] = CAFFE_MEAN_BGR
    scale: float = 1.0
    ignore_label: int = IGNORE_LABEL
    scale_range: Optional[Tuple[float, float]] = None

    def __post_init__(self):
        if self.crop_size < 0:
            raise ValueError(f"SegTransform: crop_size must be >= 0, got {self.crop_size}")
        if len(self.mean_bgr) != 3:
            raise ValueError(f"SegTransform: mean_bgr needs 3 values (B, G, R), got {self.mean_bgr}")
        # Caffe keeps mean_value and scale as float: round them once, so that equal settings compare equal.
        object.__setattr__(self, "mean_bgr", tuple(float(np.float32(m)) for m in self.mean_bgr))
        object.__setattr__(self, "scale", float(np.float32(self.scale)))
        if self.scale_range is not None:
            lo, hi = self.scale_range
            if not 0 < lo <= hi:
                raise ValueError(f"SegTransform: scale_range must satisfy 0 < low <= high, got {self.scale_range}")

    @classmethod
    def for_dataset(cls, info: DatasetInfo, train: bool, **overrides) -> "SegTransform":
        """The authors' setting for ``info``: crop 321 and mirror for training, the
        dataset's test crop (513; COCO 641) for testing."""
        kw = dict(crop_size=info.train_crop if train else info.test_crop, train=train, mirror=train,
                  mean_bgr=info.mean_bgr, scale=info.input_scale, ignore_label=info.ignore_label)
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def from_prototxt(cls, path: Union[str, Path], phase: str, values: Optional[Dict[str, object]] = None,
                      **overrides) -> "SegTransform":
        """Read ``transform_param`` (and the ignore label) off a prototxt's data layer."""
        p = caffe_data_params(path, phase, values)
        kw = dict(crop_size=p["crop_size"], train=phase.upper() == "TRAIN", mirror=p["mirror"],
                  mean_bgr=p["mean_bgr"], scale=p["scale"], ignore_label=p["ignore_label"])
        kw.update(overrides)
        return cls(**kw)

    def draws(self, rng: np.random.Generator, height: int, width: int) -> Dict[str, object]:
        """The random choices for one sample, in Caffe's order (mirror coin, then offsets)."""
        # Caffe: do_mirror = mirror() && Rand(2), in either phase (the authors' test nets say mirror: false).
        d: Dict[str, object] = {"mirror": bool(self.mirror and rng.integers(2)), "scale": 1.0}
        if self.train and self.scale_range is not None:
            d["scale"] = float(rng.uniform(*self.scale_range))
            height, width = _scaled_size(height, width, d["scale"])
        ph, pw = self._padded(height, width)
        if self.train and self.crop_size:
            d["offset"] = (int(rng.integers(ph - self.crop_size + 1)), int(rng.integers(pw - self.crop_size + 1)))
        else:  # testing: Caffe's (padded - crop) / 2 is 0, since testing pads to >= the image
            d["offset"] = (0, 0)
        return d

    def _padded(self, height: int, width: int) -> Tuple[int, int]:
        if self.train or height <= self.crop_size and width <= self.crop_size:
            return max(height, self.crop_size), max(width, self.crop_size)
        # testing an image larger than the crop: its own size rounded up to 8k + 1, so that the
        # networks' stride-8 (and 4) grids stay corner-aligned, as at 513 and 641
        return tuple(max(self.crop_size, 8 * -(-(v - 1) // 8) + 1) for v in (height, width))

    def out_size(self, height: int, width: int) -> Tuple[int, int]:
        if not self.crop_size:
            return height, width
        if self.train:
            return self.crop_size, self.crop_size
        return self._padded(height, width)

    def __call__(self, image: np.ndarray, label: Optional[np.ndarray], rng: Optional[np.random.Generator] = None):
        """``image``: H x W x 3 uint8 BGR; ``label``: H x W uint8 or None.

        Returns ``(image 3 x h x w float32 tensor, label h x w int64 tensor or None,
        (H', W'))`` with (H', W') the image size before padding (after scaling)."""
        if (self.train or self.mirror) and rng is None:
            raise ValueError("SegTransform: training or mirroring transforms need a random generator (rng)")
        h, w = image.shape[:2]
        d = self.draws(rng, h, w) if rng is not None else self.draws(np.random.default_rng(0), h, w)
        size = _scaled_size(h, w, d["scale"]) if d["scale"] != 1.0 else (h, w)
        oh, ow = self.out_size(*size)
        y0, x0 = d["offset"]
        # Only the crop window is computed (and resampled, with random scaling). Caffe:
        # float(double pixel) - mean (float), so a padded pixel (the mean, as double) becomes
        # exactly 0, and integer pixels are exact in float: this float32 arithmetic is Caffe's.
        vh, vw = max(0, min(size[0] - y0, oh)), max(0, min(size[1] - x0, ow))
        if size != (h, w):  # cv2.resize copies when the size does not change, whatever fx is
            win, win_lab = _resample_window(image, label, d["scale"], y0, vh, x0, vw)
        else:
            win = image[y0 : y0 + vh, x0 : x0 + vw]
            win_lab = None if label is None else label[y0 : y0 + vh, x0 : x0 + vw]
        mean = torch.tensor(self.mean_bgr, dtype=torch.float32).view(3, 1, 1)
        out = torch.zeros(3, oh, ow, dtype=torch.float32)
        out[:, :vh, :vw] = torch.from_numpy(np.ascontiguousarray(win)).permute(2, 0, 1).to(torch.float32) - mean
        if self.scale != 1.0:
            out *= torch.tensor(self.scale, dtype=torch.float32)
        lab = None
        if label is not None:
            plab = torch.full((oh, ow), self.ignore_label, dtype=torch.int64)
            plab[:vh, :vw] = torch.from_numpy(np.ascontiguousarray(win_lab))
            lab = plab.flip(-1) if d["mirror"] else plab
        if d["mirror"]:
            out = out.flip(-1)
        return out.contiguous(), None if lab is None else lab.contiguous(), size


def _scaled(n: int, s: float) -> int:
    # cv2.resize(fx=fy=s) rounds the destination size to the nearest integer (half to even).
    return max(1, int(round(n * s)))


def _scaled_size(height: int, width: int, s: float) -> Tuple[int, int]:
    return _scaled(height, s), _scaled(width, s)


def _resample_window(image: np.ndarray, label: Optional[np.ndarray], s: float, y0: int, vh: int, x0: int,
                     vw: int):
    """Rows [y0, y0 + vh) and columns [x0, x0 + vw) of the image scaled by ``s`` as
    ``cv2.resize(img, None, fx=s, fy=s, INTER_LINEAR)`` (DeepLab v2's random scaling) samples it,
    kept in float32 rather than rounded to uint8, and of the label as INTER_NEAREST. Separate
    numpy multiplies and adds: the result does not depend on thread counts or SIMD paths, so
    a run is the same with any number of workers."""
    h, w = image.shape[:2]
    (r0, r1, ly), (c0, c1, lx) = _linear_taps(h, s), _linear_taps(w, s)
    r0, r1, ly = r0[y0 : y0 + vh], r1[y0 : y0 + vh], ly[y0 : y0 + vh]
    c0, c1, lx = c0[x0 : x0 + vw], c1[x0 : x0 + vw], lx[x0 : x0 + vw]
    rows = image[r0].astype(np.float32) * (1 - ly)[:, None, None] + image[r1].astype(np.float32) * ly[:, None, None]
    win = rows[:, c0] * (1 - lx)[None, :, None] + rows[:, c1] * lx[None, :, None]
    win_lab = None
    if label is not None:
        win_lab = label[_nearest_taps(h, s)[y0 : y0 + vh]][:, _nearest_taps(w, s)[x0 : x0 + vw]]
    return win, win_lab


def _linear_taps(n_in: int, s: float):
    """cv2 INTER_LINEAR with fx = s: source = (dst + 0.5) / s - 0.5, clamped to the image."""
    n_out = _scaled(n_in, s)
    src = np.maximum((np.arange(n_out) + 0.5) * (1.0 / s) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _nearest_taps(n_in: int, s: float) -> np.ndarray:
    """cv2 INTER_NEAREST with fx = s: source = floor(dst * (1 / s))."""
    n_out = _scaled(n_in, s)
    return np.minimum(np.floor(np.arange(n_out) * (1.0 / s)).astype(np.int64), n_in - 1)


# Data layer types that carry DeepLab's image + label transform.
SEG_DATA_TYPES = ("ImageSegData",)


def caffe_data_params(path: Union[str, Path], phase: str, values: Optional[Dict[str, object]] = None) -> dict:
    """The ImageSegData parameters of a (V1 or V2) prototxt's data layer in ``phase``,
    read with the project's Caffe reader: mean (B, G, R), crop size, mirror, scale,
    batch size, shuffle, whether it gives labels, the ignore label, the list source."""
    from ..caffe.reader import CaffeFormatError, filter_phase, read_net_prototxt

    net = read_net_prototxt(path, values, strict="unquoted")
    layers = [lp for lp in filter_phase(net, phase, source=str(path)) if lp.type in SEG_DATA_TYPES]
    if len(layers) != 1:
        raise CaffeFormatError(f"{path}: expected one {'/'.join(SEG_DATA_TYPES)} layer in phase {phase}, "
                               f"found {len(layers)}")
    lp = layers[0]
    tp, ip = lp.transform_param, lp.image_data_param
    mean = tuple(float(v) for v in tp.mean_value)
    if len(mean) == 1:
        mean = mean * 3  # Caffe repeats a single mean value over the channels
    if len(mean) != 3 or tp.mean_file:
        raise CaffeFormatError(f"{path}: layer {lp.name!r}: expected 1 or 3 mean_value and no mean_file, "
                               f"got mean_value={list(tp.mean_value)} mean_file={tp.mean_file!r}")
    has_label = len(lp.top) >= 2 and ip.label_type != ip.NONE and ip.has_label
    return {
        "layer": lp.name, "mean_bgr": mean, "crop_size": int(tp.crop_size), "mirror": bool(tp.mirror),
        "scale": float(tp.scale), "batch_size": int(ip.batch_size), "shuffle": bool(ip.shuffle),
        "has_label": bool(has_label), "ignore_label": int(ip.ignore_label), "source": ip.source,
        "root_folder": ip.root_folder,
    }
