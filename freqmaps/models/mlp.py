"""A fully connected classifier, as the MNIST MLPs of Nayebi & Ganguli (2017, "Biologically inspired protection of
deep networks from adversarial attacks"), with sigmoid or ReLU hidden units."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from freqmaps.errors import UserInputError
from freqmaps.models.normalize import Normalize

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


class MLP(nn.Module):
    """Flattened pixels -> Linear -> activation (one hidden layer per entry of `widths`) -> Linear head.

    Input (B, C, H, W) in [0, 1], normalised inside as SmallCNN does; output logits (B, num_classes). Each hidden
    activation is its own `nn.Sigmoid` / `nn.ReLU` module, so `freqmaps.saturation` finds its pre-activations.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32,
                 widths: Sequence[int] = (256, 256), activation: Literal["sigmoid", "relu"] = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UserInputError(f"unknown MLP activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if not widths or any(int(w) < 1 for w in widths):
            raise UserInputError(f"MLP widths must be one or more positive layer widths, got {list(widths)}")
        self.normalize = Normalize((0.5,), (0.25,), in_channels)
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = in_channels * image_size * image_size
        for width in widths:
            layers += [nn.Linear(width_in, int(width)), ACTIVATIONS[activation]()]
            width_in = int(width)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, num_classes)

    def forward(self, x):
        return self.head(self.features(self.normalize(x)))
