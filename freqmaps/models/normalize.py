"""Per-channel input normalisation bundled inside a model, so attacks and maps act on [0, 1] pixels."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """`x -> (x - mean) / std` per channel.

    x: (B, C, H, W) in [0, 1]. `mean`/`std` of length C, or length 3 with C == 1 (their average is used).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels: int) -> None:
        super().__init__()
        mean_t, std_t = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        if channels != len(mean_t):
            mean_t, std_t = mean_t.mean().repeat(channels), std_t.mean().repeat(channels)
        self.register_buffer("mean", mean_t.view(1, channels, 1, 1))
        self.register_buffer("std", std_t.view(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
