"""DeepLab-LargeFOV (VGG-16 with a dilated fc6), as Caffe defines it.

The attention paper's variant (``vgg128_noup_pool3_20M_largewin``) has no
pool5a; the official DeepLab v1 release adds pool5a (AVE 3x3, stride 1, pad 1).
Module names are the Caffe layer names, so converted weights map one to one.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .params import caffe_convention

# (name, out channels at full width, dilation); pools follow each stage.
_STAGES = [
    [("conv1_1", 64), ("conv1_2", 64)],
    [("conv2_1", 128), ("conv2_2", 128)],
    [("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256)],
    [("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512)],
    [("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512)],
]
# Caffe pooling: 3x3 with pad 1; stride 2 for pool1-3 and 1 for pool4-5. Caffe
# rounds the output size up and drops a last window that starts in the
# padding, which is PyTorch's ceil_mode rule.
_POOL_STRIDES = [2, 2, 2, 1, 1]


def _caffe_max_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=stride, padding=1, ceil_mode=True)


class DeepLabLargeFOV(nn.Module):
    """VGG-16 DeepLab-LargeFOV: output stride 8 (321 -> 41, 513 -> 65).

    Args:
        num_classes: fc8 outputs.
        width_div: divide every VGG width (and fc6/fc7) by this; 1 is the real
            network, 8 the slim nets of the golden Caffe fixtures.
        pool5a: add the official DeepLab v1 pool5a (AVE 3x3/1/1).
        dropout: dropout after fc6 and fc7 (0.5 in Caffe).
        fc_channels: fc6/fc7 width at ``width_div`` 1 (1024 for LargeFOV).
        head: build fc6-fc8; without them the module is the VGG trunk
            (:meth:`trunk`) that other heads build on.

    ``forward`` returns ``(fc7, fc8)``. Pass a dict as ``blobs`` to collect
    every Caffe top blob (after in-place ReLU/Dropout, as Caffe stores them),
    with ``suffix`` appended to the names (``_res075`` for the 0.75 tower).
    """

    def __init__(
        self,
        num_classes: int = 21,
        width_div: int = 1,
        pool5a: bool = False,
        dropout: float = 0.5,
        fc_channels: int = 1024,
        head: bool = True,
        fc8_lr_scale: float = 10.0,
    ):
        super().__init__()
        self.pool5a = pool5a
        self.fc8_lr_scale = float(fc8_lr_scale)
        self.dropout = dropout
        c_in = 3
        for stage, layers in enumerate(_STAGES):
            for name, width in layers:
                c_out = width // width_div
                dil = 2 if stage == 4 else 1
                self.add_module(name, nn.Conv2d(c_in, c_out, 3, padding=dil, dilation=dil))
                c_in = c_out
        self.trunk_channels = c_in
        if head:
            fc = fc_channels // width_div
            self.fc6 = nn.Conv2d(c_in, fc, 3, padding=12, dilation=12)
            self.fc7 = nn.Conv2d(fc, fc, 1)
            self.fc8 = nn.Conv2d(fc, num_classes, 1)
            self.fc7_channels = fc
            nn.init.normal_(self.fc8.weight, std=0.01)
            nn.init.zeros_(self.fc8.bias)

    def trunk(self, x: torch.Tensor, blobs: Optional[Dict[str, torch.Tensor]] = None, suffix: str = "") -> torch.Tensor:
        """conv1_1 ... pool5 (and pool5a): the VGG trunk, stride 8."""

        def keep(name, t):
            if blobs is not None:
                blobs[name + suffix] = t
            return t

        for stage, layers in enumerate(_STAGES):
            for name, _ in layers:
                x = keep(name, F.relu(getattr(self, name)(x)))
            x = keep(f"pool{stage + 1}", _caffe_max_pool(x, _POOL_STRIDES[stage]))
        if self.pool5a:
            # Caffe AVE pooling divides by the window clipped at H + pad, i.e.
            # counts the padding: count_include_pad=True.
            x = keep("pool5a", F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True))
        return x

    def forward(
        self, x: torch.Tensor, blobs: Optional[Dict[str, torch.Tensor]] = None, suffix: str = ""
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        def keep(name, t):
            if blobs is not None:
                blobs[name + suffix] = t
            return t

        x = self.trunk(x, blobs, suffix)
        x = F.dropout(F.relu(self.fc6(x)), self.dropout, self.training)
        x = keep("fc6", x)
        fc7 = keep("fc7", F.dropout(F.relu(self.fc7(x)), self.dropout, self.training))
        fc8 = keep("fc8", self.fc8(fc7))
        return fc7, fc8

    @property
    def stage_channels(self) -> List[int]:
        """Widths of :meth:`stage_features` (pool2 .. pool5)."""
        return [self.conv2_2.out_channels, self.conv3_3.out_channels, self.conv4_3.out_channels,
                self.conv5_3.out_channels]

    def stage_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """pool2 (stride 4), pool3, pool4, pool5 (stride 8): the multi-stage
        features of the follow-up model."""
        blobs: Dict[str, torch.Tensor] = {}
        self.trunk(x, blobs)
        return [blobs["pool2"], blobs["pool3"], blobs["pool4"], blobs["pool5"]]

    def caffe_param_groups(self) -> List[dict]:
        """Per-parameter Caffe multipliers (:mod:`attn2scale.models.params`): weights 1/1,
        biases 2/0; the classifier fc8 ``fc8_lr_scale`` times that (10/1 and 20/0; some of
        the authors' average-merge nets train fc8 at 1/1 and 2/0: ``fc8_lr_scale=1``)."""
        return caffe_convention(self, head=("fc8",), head_scale=self.fc8_lr_scale)

    def conv_layer_names(self) -> List[str]:
        return [n for layers in _STAGES for n, _ in layers] + ["fc6", "fc7", "fc8"]
