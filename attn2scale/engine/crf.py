"""Fully connected CRF post-processing (Krähenbühl & Koltun) through ``pydensecrf2``,
the optional extra ``pip install -e .[crf]`` (the older ``pydensecrf`` does not build
with current Cython).

Parameters: the paper's test-server submission (10 iterations, bilateral weight 4,
xy std 49, rgb std 5, position weight 3, xy std 3), or those of a prototxt's
DenseCRF layer (``DenseCRFParams.from_prototxt``). The unary is ``-log p`` of the
softmax of the zoomed scores, at the image's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from .. import ops

INSTALL_HINT = "DenseCRF needs the optional extra: pip install -e .[crf] (it installs pydensecrf2)"


class CRFUnavailable(RuntimeError):
    """pydensecrf2 is not installed."""


def require_pydensecrf():
    try:
        import pydensecrf.densecrf as dcrf  # pydensecrf2 installs the module as "pydensecrf"
    except ImportError:
        raise CRFUnavailable(INSTALL_HINT) from None
    return dcrf


@dataclass(frozen=True)
class DenseCRFParams:
    max_iter: int = 10
    bi_w: float = 4.0
    bi_xy_std: float = 49.0
    bi_rgb_std: float = 5.0
    pos_w: float = 3.0
    pos_xy_std: float = 3.0

    @classmethod
    def from_prototxt(cls, path, values: Optional[dict] = None) -> "DenseCRFParams":
        """The (first) DenseCRF layer of a test prototxt; an error if it has none (the authors'
        published test prototxts keep theirs commented out)."""
        from ..caffe.reader import CaffeFormatError, read_net_prototxt

        net = read_net_prototxt(path, values, strict="unquoted")
        layers = [lp for lp in net.layer if lp.type == "DenseCRF"]
        if not layers:
            raise CaffeFormatError(f"{path}: no DenseCRF layer (commented-out layers do not count)")
        p = layers[0].dense_crf_param
        one = lambda field, default: float(getattr(p, field)[0]) if len(getattr(p, field)) else default  # noqa: E731
        return cls(max_iter=int(p.max_iter), bi_w=one("bi_w", cls.bi_w), bi_xy_std=one("bi_xy_std", cls.bi_xy_std),
                   bi_rgb_std=one("bi_rgb_std", cls.bi_rgb_std), pos_w=one("pos_w", cls.pos_w),
                   pos_xy_std=one("pos_xy_std", cls.pos_xy_std))


def dense_crf(image_rgb: np.ndarray, prob: np.ndarray, params: DenseCRFParams = DenseCRFParams()) -> np.ndarray:
    """Labels (H x W int64) of the CRF over ``prob`` (C x H x W, summing to 1 per pixel)."""
    dcrf = require_pydensecrf()
    c, h, w = prob.shape
    if image_rgb.shape[:2] != (h, w):
        raise ValueError(f"dense_crf: image {image_rgb.shape[:2]} and probabilities {(h, w)} differ in size")
    d = dcrf.DenseCRF2D(w, h, c)
    unary = -np.log(np.clip(prob, 1e-8, 1.0)).reshape(c, -1).astype(np.float32)
    d.setUnaryEnergy(np.ascontiguousarray(unary))
    d.addPairwiseGaussian(sxy=params.pos_xy_std, compat=params.pos_w)
    d.addPairwiseBilateral(sxy=params.bi_xy_std, srgb=params.bi_rgb_std,
                           rgbim=np.ascontiguousarray(image_rgb, dtype=np.uint8), compat=params.bi_w)
    q = np.asarray(d.inference(params.max_iter)).reshape(c, h, w)
    return q.argmax(0)


def caffe_dense_crf(unary: np.ndarray, image: Optional[np.ndarray], kernels) -> np.ndarray:
    """The solver of a Caffe ``DenseCRF`` layer (:class:`attn2scale.caffe.layers.DenseCRF`):
    Q (M x H x W) of mean-field inference from the unary energy (M x H x W), with the layer's
    Potts kernels over the features (x, y) / std and (x, y) / std, image channels / colour std,
    the image as the net fed it (C x H x W). The per-pixel normalisation after filtering is the
    one of the densecrf code the DeepLab fork bundles (read from its source, not run here)."""
    dcrf = require_pydensecrf()
    m, h, w = unary.shape
    crf = dcrf.DenseCRF(h * w, m)
    crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(m, -1), dtype=np.float32))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for weight, xy_std in kernels.positional:
        feats = np.stack([xs / xy_std, ys / xy_std]).reshape(2, -1)
        crf.addPairwiseEnergy(np.ascontiguousarray(feats, dtype=np.float32), compat=weight,
                              kernel=dcrf.CONST_KERNEL, normalization=dcrf.NORMALIZE_AFTER)
    for weight, xy_std, rgb_std in kernels.bilateral:
        if image is None:
            raise ValueError("caffe_dense_crf: bilateral kernels need the image")
        feats = np.concatenate([np.stack([xs / xy_std, ys / xy_std]), image / rgb_std]).reshape(2 + len(image), -1)
        crf.addPairwiseEnergy(np.ascontiguousarray(feats, dtype=np.float32), compat=weight,
                              kernel=dcrf.CONST_KERNEL, normalization=dcrf.NORMALIZE_AFTER)
    return np.asarray(crf.inference(kernels.max_iter), dtype=np.float32).reshape(m, h, w)


class CRFLabeller:
    """Turns a batch's scores into labels through the CRF, one image per worker process."""

    def __init__(self, params: DenseCRFParams = DenseCRFParams(), workers: int = 1):
        require_pydensecrf()
        self.params, self.workers = params, workers

    def labels(self, scores: torch.Tensor, batch: dict, info) -> List[torch.Tensor]:
        from .evaluate import image_rgb
        from .inference import zoomed_size

        zoomed = ops.interp(scores, zoomed_size(scores, batch["image"].shape))
        jobs = []
        for k, (h, w) in enumerate(batch["size"].tolist()):
            prob = torch.softmax(zoomed[k, :, :h, :w].float(), dim=0).cpu().numpy()
            jobs.append((image_rgb(batch, k, info), prob, self.params))
        if self.workers > 1 and len(jobs) > 1:
            import multiprocessing as mp

            with mp.get_context("fork").Pool(min(self.workers, len(jobs))) as pool:
                results = pool.starmap(dense_crf, jobs)
        else:
            results = [dense_crf(*j) for j in jobs]
        return [torch.from_numpy(r) for r in results]


def crf_from_args(enabled: bool, prototxt: Optional[str], workers: int) -> Optional[CRFLabeller]:
    if not enabled:
        if prototxt:
            raise ValueError("--crf-prototxt is only read with --crf")
        return None
    params = DenseCRFParams.from_prototxt(Path(prototxt)) if prototxt else DenseCRFParams()
    return CRFLabeller(params, workers)
