"""torchvision ResNet-18 and ViT-B/16 with a new classification head and ImageNet normalisation inside.

Pretrained weights are optional and off by default (loading them needs a network or a filled torch hub cache).
"""
from __future__ import annotations

import torchvision
from torch import nn

from freqmaps.errors import UserInputError
from freqmaps.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize


class _Normalized(nn.Module):
    def __init__(self, net: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD, in_channels)
        self.net = net

    def forward(self, x):
        return self.net(self.normalize(x))


def resnet18(num_classes: int = 10, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    """x: (B, C, H, W) in [0, 1] -> logits (B, num_classes)."""
    net = torchvision.models.resnet18(weights="DEFAULT" if pretrained else None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return _Normalized(net, in_channels)


def vit_b_16(num_classes: int = 10, in_channels: int = 3, image_size: int = 224, pretrained: bool = False) -> nn.Module:
    """x: (B, C, image_size, image_size) in [0, 1] -> logits (B, num_classes). image_size a multiple of 16."""
    if image_size % 16 != 0:
        raise UserInputError(f"vit_b_16 needs an image size divisible by 16, got {image_size}")
    if pretrained and image_size != 224:
        raise UserInputError("pretrained vit_b_16 weights are for 224x224 inputs")
    if pretrained:
        net = torchvision.models.vit_b_16(weights="DEFAULT")
    else:
        net = torchvision.models.vit_b_16(image_size=image_size)
    if in_channels != 3:
        net.conv_proj = nn.Conv2d(in_channels, net.hidden_dim, 16, 16)
    net.heads.head = nn.Linear(net.heads.head.in_features, num_classes)
    return _Normalized(net, in_channels)
