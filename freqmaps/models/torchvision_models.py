"""torchvision ResNet-18 and ViT-B/16 with a new classification head and ImageNet normalisation inside.

Pretrained (ImageNet-1k) weights are optional and off by default. They are read from the torch hub cache
(`torch.hub.get_dir()/checkpoints/<file>`, where torchvision puts what it downloads) with `weights_only=True`
after checking the sha256 prefix in the file name; nothing is downloaded here, and a missing file is a one-line
error with the URL to fetch it from.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torchvision
from torch import nn

from freqmaps.errors import UserInputError
from freqmaps.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize


def imagenet_weights(weights: torchvision.models.WeightsEnum) -> dict[str, torch.Tensor]:
    """The state dict of torchvision `weights` from the hub cache, hash-checked and loaded without unpickling
    code. UserInputError naming the expected path and the URL when the file is not there or does not match."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise UserInputError(
            f"pretrained weights: no {path}. Download {weights.url} there (e.g. `python -c \"import torchvision; "
            f"torchvision.models.get_weight('{weights}').get_state_dict()\"` on a machine with internet), "
            "or set pretrained: false")
    prefix = path.stem.rsplit("-", 1)[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(prefix):
        raise UserInputError(f"pretrained weights: {path} has sha256 {digest[:12]}..., its name says {prefix}; "
                             "the download is damaged, fetch it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a file that is not a plain state dict
        raise UserInputError(f"pretrained weights: {path} does not load as tensors ({error})") from None


class _Normalized(nn.Module):
    def __init__(self, net: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD, in_channels)
        self.net = net

    def forward(self, x):
        return self.net(self.normalize(x))


def resnet18(num_classes: int = 10, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    """x: (B, C, H, W) in [0, 1] -> logits (B, num_classes)."""
    net = torchvision.models.resnet18()
    if pretrained:
        net.load_state_dict(imagenet_weights(torchvision.models.ResNet18_Weights.DEFAULT))
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
    net = torchvision.models.vit_b_16(image_size=image_size)
    if pretrained:
        net.load_state_dict(imagenet_weights(torchvision.models.ViT_B_16_Weights.DEFAULT))
    if in_channels != 3:
        net.conv_proj = nn.Conv2d(in_channels, net.hidden_dim, 16, 16)
    net.heads.head = nn.Linear(net.heads.head.in_features, num_classes)
    return _Normalized(net, in_channels)
