"""FrequencyMaskedClassifier: the network sees its input through a frequency filter, in training and
evaluation alike (a fixed low-, high- or band-pass mask, or the class-level map of the class the network
predicts, loaded from a file the map engine wrote), or through random frequency dropout in training."""
from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from freqmaps.class_maps import ClassMapDefence, ClassMaps
from freqmaps.errors import UserInputError
from freqmaps.fourier import FrequencyMask, band_mask, highpass_mask, lowpass_mask
from freqmaps.frequency_dropout import FrequencyDropout
from lightning_modules.classifier import ModelName, StandardClassifier

Filter = Literal["lowpass", "highpass", "band", "dropout", "class_maps"]


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


def load_class_maps(path: str | None, num_classes: int, channels: int, image_size: int) -> torch.Tensor:
    """The (num_classes, channels, image_size, image_size) maps of a ClassMaps file, checked against the model."""
    if path is None:
        raise UserInputError("filter: class_maps needs maps_file, a class_maps.pt written by analyze.py")
    maps = ClassMaps.load(path).maps
    expected = (num_classes, channels, image_size, image_size)
    if tuple(maps.shape) != expected:
        raise UserInputError(f"{path} holds class maps of shape {tuple(maps.shape)}, the model needs {expected}")
    return maps


class FrequencyMaskedClassifier(StandardClassifier):
    """StandardClassifier whose `model` is `Sequential(filter, network)` (for `filter: class_maps`, a
    ClassMapDefence around the network with the maps of `maps_file`), so attacks and frequency maps of this
    model see the filter too (an adaptive attack)."""

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
        maps_file: str | None = None,
    ) -> None:
        super().__init__(model_name, num_classes, in_channels, image_size, pretrained, optimizer, lr_scheduler)
        if filter == "class_maps":
            self.model = ClassMapDefence(self.model, load_class_maps(maps_file, num_classes, in_channels, image_size))
            return
        self.model = nn.Sequential(OrderedDict(
            filter=make_filter(filter, image_size, in_channels, radius, band, dropout), network=self.model,
        ))
