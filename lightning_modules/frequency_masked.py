"""FrequencyMaskedClassifier: the network sees its input through a frequency filter, in training and
evaluation alike (a fixed low-, high- or band-pass mask), or through random frequency dropout in training."""
from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from freqmaps.fourier import FrequencyMask, band_mask, highpass_mask, lowpass_mask
from freqmaps.frequency_dropout import FrequencyDropout
from lightning_modules.classifier import ModelName, StandardClassifier

Filter = Literal["lowpass", "highpass", "band", "dropout"]


def make_filter(kind: Filter, image_size: int, channels: int, radius: float, band: tuple[float, float],
                dropout: float) -> nn.Module:
    """The input filter: a FrequencyMask of radius `radius` (lowpass keeps radius <= r, highpass > r), of the
    annulus `band` = (low, high), or FrequencyDropout(dropout)."""
    if kind == "dropout":
        return FrequencyDropout(dropout)
    mask = {
        "lowpass": lambda: lowpass_mask(image_size, radius, channels),
        "highpass": lambda: highpass_mask(image_size, radius, channels),
        "band": lambda: band_mask(image_size, band[0], band[1], channels),
    }[kind]()
    return FrequencyMask(mask)


class FrequencyMaskedClassifier(StandardClassifier):
    """StandardClassifier whose `model` is `Sequential(filter, network)`, so attacks and frequency maps of
    this model see the filter too (an adaptive attack)."""

    def __init__(
        self,
        model_name: ModelName = "small_cnn",
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        pretrained: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        filter: Filter = "lowpass",
        radius: float = 8.0,
        band: tuple[float, float] = (4.0, 12.0),
        dropout: float = 0.2,
    ) -> None:
        super().__init__(model_name, num_classes, in_channels, image_size, pretrained, optimizer, lr_scheduler)
        self.model = nn.Sequential(OrderedDict(
            filter=make_filter(filter, image_size, in_channels, radius, band, dropout), network=self.model,
        ))
