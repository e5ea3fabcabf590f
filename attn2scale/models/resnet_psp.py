"""ResNet-34, dilated to output stride 8, with a PSP pyramid-pooling head.

The ADE20K rows of the follow-up paper use this base alone, under the
attention-to-scale share-net (:class:`MultiScaleNet`), and with PSP. The last
two stages trade their stride for dilation (2 and 4), so 97 -> 13 and
513 -> 65 as with DeepLab-LargeFOV. Small per-GPU batches make BatchNorm
statistics noisy: ``bn="frozen"`` keeps running statistics and affine
parameters fixed (as when fine-tuning from ImageNet), ``bn="sync"`` converts
to SyncBatchNorm for distributed training, ``bn="train"`` is plain BatchNorm.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .params import caffe_convention


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class PSPHead(nn.Module):
    """Pyramid pooling (bins 1, 2, 3, 6): each bin's average pool -> 1x1 conv
    (C/len(bins)) -> BN -> ReLU -> bilinear back, concatenated with the input,
    then 3x3 conv -> BN -> ReLU -> Dropout."""

    def __init__(self, c_in: int, c_out: int = 512, bins: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__()
        self.bins = tuple(bins)
        c_bin = c_in // len(self.bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_bin, 1, bias=False), nn.BatchNorm2d(c_bin), nn.ReLU(inplace=True))
            for _ in self.bins
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(c_in + c_bin * len(self.bins), c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pyramid = [x] + [
            ops.interp(stage(F.adaptive_avg_pool2d(x, b)), size) for b, stage in zip(self.bins, self.stages)
        ]
        return self.bottleneck(torch.cat(pyramid, dim=1))


class ResNet34D8(nn.Module):
    """ResNet-34 with stages 3 and 4 dilated (2, 4): output stride 8.

    ``forward`` returns ``(features, scores)`` like :class:`DeepLabLargeFOV`, so
    it plugs into :class:`MultiScaleNet`; ``fc7_channels`` is the feature width.
    ``head=False`` drops the classifier for heads built on
    :meth:`stage_features` (the follow-up model).
    """

    def __init__(
        self,
        num_classes: int = 150,
        width_div: int = 1,
        psp: bool = True,
        bn: str = "frozen",
        psp_channels: int = 512,
        dropout: float = 0.1,
        head: bool = True,
    ):
        super().__init__()
        if bn not in ("frozen", "sync", "train"):
            raise ValueError(f"ResNet34D8: bn must be 'frozen', 'sync' or 'train', got {bn!r}")
        w = [64 // width_div, 128 // width_div, 256 // width_div, 512 // width_div]
        self.conv1 = nn.Conv2d(3, w[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        specs = [(w[0], 3, 1, 1), (w[1], 4, 2, 1), (w[2], 6, 1, 2), (w[3], 3, 1, 4)]  # (width, blocks, stride, dilation)
        c_in = w[0]
        for i, (c, n, stride, dil) in enumerate(specs, start=1):
            blocks = [BasicBlock(c_in, c, stride, dil)] + [BasicBlock(c, c, 1, dil) for _ in range(n - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            c_in = c
        self.psp = PSPHead(c_in, psp_channels // width_div, dropout=dropout) if psp else None
        self.fc7_channels = psp_channels // width_div if psp else c_in
        # Without the head (the classifier), only stage_features() is used.
        self.classifier = nn.Conv2d(self.fc7_channels, num_classes, 1) if head else None
        self.bn_mode = bn
        if bn == "sync":
            nn.SyncBatchNorm.convert_sync_batchnorm(self)
        elif bn == "frozen":
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    for p in m.parameters():
                        p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.bn_mode == "frozen":  # running statistics stay fixed
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def caffe_param_groups(self) -> List[dict]:
        """Trunk at the base rates (BatchNorm: no decay; frozen BatchNorm: left out), the
        PSP head and the classifier (the decoder) at 10x."""
        return caffe_convention(self, head=("psp", "classifier"))

    @property
    def stage_channels(self) -> List[int]:
        """Widths of :meth:`stage_features`."""
        top = self.fc7_channels if self.psp is not None else self.layer4[-1].conv2.out_channels
        return [self.layer1[-1].conv2.out_channels, self.layer2[-1].conv2.out_channels,
                self.layer3[-1].conv2.out_channels, top]

    def stage_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """layer1 (stride 4), layer2, layer3, layer4 or PSP(layer4) (stride 8):
        the multi-stage features of the follow-up model."""
        blobs: Dict[str, torch.Tensor] = {}
        top, _ = self._trunk(x, blobs)
        return [blobs["layer1"], blobs["layer2"], blobs["layer3"], top]

    def _trunk(self, x: torch.Tensor, blobs: Optional[Dict[str, torch.Tensor]], suffix: str = ""):
        # Ceil-mode stem pooling, like every pooling here: output sizes follow the
        # DeepLab rule (H-1)/8+1 (64 -> 9), so label decimation stays exact.
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1, ceil_mode=True)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            if blobs is not None:
                blobs[f"layer{i}{suffix}"] = x
        return (self.psp(x) if self.psp is not None else x), x

    def forward(
        self, x: torch.Tensor, blobs: Optional[Dict[str, torch.Tensor]] = None, suffix: str = ""
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.classifier is None:
            raise RuntimeError("ResNet34D8 was built with head=False; use stage_features()")
        feats, _ = self._trunk(x, blobs, suffix)
        return feats, self.classifier(feats)
