"""A small CNN for the embedded default (digits) and for fast tests."""
from __future__ import annotations

from torch import nn

from freqmaps.models.normalize import Normalize


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (two followed by 2x max-pool), global average pool, linear head.

    Input (B, C, H, W) in [0, 1]; output logits (B, num_classes). About 95k parameters at width 32.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.normalize = Normalize((0.5,), (0.25,), in_channels)
        self.features = nn.Sequential(
            _block(in_channels, width),
            nn.MaxPool2d(2),
            _block(width, 2 * width),
            nn.MaxPool2d(2),
            _block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(self.normalize(x)))
