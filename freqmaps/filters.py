"""Input filters: what a classifier's network sees of its input, in training and evaluation alike.

A filter is an `nn.Module` called as `input_filter(x, network) -> x_seen`, with x: (B, C, H, W) pixels and
x_seen: (B, C, H, W) real, x's dtype; `network` (pixels -> logits (B, K)) is the classifier behind it, which
only `ClassMapFilter` consults (to pick each image's map by the predicted class). `FilteredNetwork` composes
the two into one pixels -> logits model, so attacks and frequency maps of it see the filter (an adaptive
attack). Each filter carries only its own arguments and is described as plain data
(`description()`, `InputFilter.from_description`), which is how checkpoints record it.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod

import torch
from torch import nn

from freqmaps.class_maps import ClassMaps
from freqmaps.errors import UserInputError
from freqmaps.fourier import apply_mask, band_mask, highpass_mask, ifftshift2, lowpass_mask
from freqmaps.frequency_dropout import FrequencyDropout


class InputFilter(nn.Module, ABC):
    """Base of the filters; see the module docstring for the call signature."""

    @abstractmethod
    def forward(self, x: torch.Tensor, network: nn.Module) -> torch.Tensor:
        """x: (B, C, H, W) -> the (B, C, H, W) images `network` is given."""

    def check(self, num_classes: int, in_channels: int, image_size: int) -> None:
        """UserInputError if the filter cannot sit in front of a network of this shape (every filter but
        ClassMapFilter fits any)."""

    def description(self) -> dict:
        """{"class_path": ..., "init_args": {...}}: the constructor arguments, plain values only."""
        init_args = {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}

    @staticmethod
    def from_description(description: dict) -> InputFilter:
        """The filter a `description()` describes (read from a checkpoint or a zoo manifest); UserInputError if it
        names no InputFilter of this module. Only this module's classes are looked up (an allow-list): nothing a
        file names is imported."""
        module, _, name = str(description.get("class_path", "")).rpartition(".")
        cls = globals().get(name) if module == __name__ else None
        if cls is None:
            raise UserInputError(f"input filter {description.get('class_path')!r}: a saved model may name only the "
                                 f"input filters of {__name__}")
        if not (isinstance(cls, type) and issubclass(cls, InputFilter)):
            raise UserInputError(f"input filter {description['class_path']} is not a freqmaps.filters.InputFilter")
        return cls(**description.get("init_args", {}))


class FrequencyMaskFilter(InputFilter):
    """A fixed Fourier mask: x -> Re F^-1(M * F(x)), M built for the input's size and channels on first use
    (and kept, unsaved, on the input's device). Subclasses build a 1x1 mask in their constructor, so that a
    bad radius or band fails there rather than at the first batch."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_mask", torch.empty(0), persistent=False)

    @abstractmethod
    def mask(self, size: int, channels: int) -> torch.Tensor:
        """(channels, size, size) float32 in [0, 1], fftshift-ed."""

    def forward(self, x: torch.Tensor, network: nn.Module) -> torch.Tensor:
        channels, height, width = x.shape[-3:]
        if height != width:
            raise UserInputError(f"{type(self).__name__} needs square images, got {height}x{width}")
        if self._mask.shape != (channels, height, width) or self._mask.device != x.device:
            with torch.inference_mode(False):  # a cache made in a validation step must serve training too
                self._mask = ifftshift2(self.mask(height, channels)).to(x.device)
        return apply_mask(x, self._mask.to(x.dtype))


class RadiusFilter(FrequencyMaskFilter):
    """A mask set by one radius (frequency distance from the zero frequency)."""

    def __init__(self, radius: float = 8.0) -> None:
        super().__init__()
        self.radius = radius
        self.mask(1, 1)


class LowPass(RadiusFilter):
    """Keeps the frequencies at radius <= `radius`."""

    def mask(self, size: int, channels: int) -> torch.Tensor:
        return lowpass_mask(size, self.radius, channels)


class HighPass(RadiusFilter):
    """Keeps the frequencies at radius > `radius`."""

    def mask(self, size: int, channels: int) -> torch.Tensor:
        return highpass_mask(size, self.radius, channels)


class BandPass(FrequencyMaskFilter):
    """Keeps the annulus low <= radius <= high."""

    def __init__(self, low: float = 4.0, high: float = 12.0) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.mask(1, 1)

    def mask(self, size: int, channels: int) -> torch.Tensor:
        return band_mask(size, self.low, self.high, channels)


class FrequencyDropoutFilter(InputFilter):
    """Random conjugate-symmetric frequency dropout with probability `p` in training, identity in eval
    (`freqmaps.frequency_dropout.FrequencyDropout`)."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        self.dropout = FrequencyDropout(p)
        self.p = p

    def forward(self, x: torch.Tensor, network: nn.Module) -> torch.Tensor:
        return self.dropout(x)


class ClassMapFilter(InputFilter):
    """The label-free class-map defence (docs/method.md §4): each image is masked with the map of the class
    the network predicts for it, x -> Re F^-1(M_c * F(x)) with c = argmax network(x). The class choice carries
    no gradient; the masked path does, so a gradient attack sees the maps. `maps_file`: a ClassMaps file
    (analyze.py's class_maps.pt); its (K, C, H, W) maps are kept as the buffer `maps` in the unshifted layout
    of torch.fft.fft2."""

    def __init__(self, maps_file: str) -> None:
        super().__init__()
        self.maps_file = maps_file
        self.register_buffer("maps", ifftshift2(ClassMaps.load(maps_file).maps.detach().float()))

    def check(self, num_classes: int, in_channels: int, image_size: int) -> None:
        expected = (num_classes, in_channels, image_size, image_size)
        if tuple(self.maps.shape) != expected:
            raise UserInputError(
                f"{self.maps_file} holds class maps of shape {tuple(self.maps.shape)}, the model needs {expected}")

    def forward(self, x: torch.Tensor, network: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            classes = network(x).argmax(1)
        return apply_mask(x, self.maps[classes].to(x.dtype))


class FilteredNetwork(nn.Module):
    """The pixels -> logits model of a filter in front of a network: x (B, C, H, W) -> network(input_filter(x,
    network)) (B, K). Its state_dict keys are `network.*` and `input_filter.*`."""

    def __init__(self, network: nn.Module, input_filter: InputFilter) -> None:
        super().__init__()
        self.network = network
        self.input_filter = input_filter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.input_filter(x, self.network))
