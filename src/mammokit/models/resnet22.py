"""ResNet-22: the pre-activation ("v2") ResNet column of Wu et al. (2019), one per view angle.

Layout (paper Fig. 4 / Table II and the reference implementation): 7x7 stride-2 conv, 16
channels, no padding, no bias; 3x3 stride-2 max pool, no padding; five layers of two basic blocks
with 16, 32, 64, 128, 256 channels and strides 1, 2, 2, 2, 2; final batch norm + ReLU. Every
layer's first block has a 1x1 shortcut conv, also the stride-1 first layer (its input and output
widths are equal there, the reference keeps the projection anyway, and its weights exist).

Attribute names follow the authors' state-dict keys (``first_conv``, ``layer_list.i.j.{bn1,
conv1, bn2, conv2, downsample.0}``, ``final_bn``) so converting their weights is a prefix change.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

COLUMN_CHANNELS = 256
"""Width of the column's output feature map (the input of the breast-level heads)."""


class BasicBlockV2(nn.Module):
    """Pre-activation basic block: BN, ReLU, [shortcut conv], 3x3 conv (stride), BN, ReLU, 3x3 conv, add.

    Shapes: ``[B, in_planes, H, W] -> [B, planes, ceil(H / stride), ceil(W / stride)]``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        # 3x3 convs with padding 1, as torchvision's conv3x3 used by the reference.
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        # A Sequential so the key is ``downsample.0.weight`` as in the authors' files.
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)) if downsample else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # v2 blocks take the shortcut projection from the *activated* input.
        residual = self.downsample(out) if self.downsample is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + residual


class ResNet22(nn.Module):
    """One ResNet-22 column.

    Args:
        in_channels: input channels (1 image-only; 3 image + benign + malignant heatmaps).
        num_filters: width of the first layer (16); doubles in every following layer.
        blocks_per_layer: basic blocks in each layer.
        strides: stride of each layer's first block.

    Shapes: ``[B, in_channels, H, W] -> [B, 256, h, w]`` (42 x 31 for a 2677 x 1942 CC window,
    47 x 28 for a 2974 x 1748 MLO window).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_filters: int = 16,
        blocks_per_layer: tuple[int, ...] = (2, 2, 2, 2, 2),
        strides: tuple[int, ...] = (1, 2, 2, 2, 2),
    ) -> None:
        super().__init__()
        if len(blocks_per_layer) != len(strides):
            raise ValueError("blocks_per_layer and strides must have the same length")
        self.in_channels = in_channels
        self.first_conv = nn.Conv2d(in_channels, num_filters, 7, stride=2, padding=0, bias=False)
        self.first_pool = nn.MaxPool2d(3, stride=2, padding=0)
        self.layer_list = nn.ModuleList()
        in_planes = planes = num_filters
        for n_blocks, stride in zip(blocks_per_layer, strides):
            blocks = [BasicBlockV2(in_planes, planes, stride, downsample=True)]
            blocks += [BasicBlockV2(planes, planes) for _ in range(1, n_blocks)]
            self.layer_list.append(nn.Sequential(*blocks))
            in_planes, planes = planes, planes * 2
        self.out_channels = in_planes
        self.final_bn = nn.BatchNorm2d(in_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first_pool(self.first_conv(x))
        for layer in self.layer_list:
            h = layer(h)
        return F.relu(self.final_bn(h))
