"""Planted-frequency images (freqmaps.synthetic): the class is carried by known Fourier frequencies,
so essential maps can be checked against ground truth."""
from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from datamodules.base import ImageDataModule
from freqmaps.errors import UserInputError
from freqmaps.synthetic import planted_frequency_images


class SyntheticFrequencyDataModule(ImageDataModule):
    """Train / val / test drawn with seeds `seed`, `seed + 1`, `seed + 2` and the same class frequencies.

    Batches: x (B, channels, image_size, image_size) in [0, 1], y (B,) in 0..num_classes-1.
    `planted`: (num_classes, image_size, image_size) bool, fftshift-ed ground truth of each class's frequencies.
    """

    def __init__(
        self,
        num_train: int = 4000,
        num_val: int = 500,
        num_test: int = 500,
        num_classes: int = 4,
        image_size: int = 32,
        channels: int = 1,
        freqs_per_class: int = 3,
        max_radius: float = 8.0,
        amplitude: float = 0.08,
        amplitude_jitter: float = 0.25,
        noise_std: float = 0.05,
        frequency_seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        if min(num_train, num_val, num_test) < 1:
            raise UserInputError("data.num_train, data.num_val and data.num_test must all be >= 1")
        self.num_classes, self.in_channels, self.image_size = num_classes, channels, image_size
        self.sizes = (num_train, num_val, num_test)
        self.generator_kwargs = dict(
            num_classes=num_classes, image_size=image_size, channels=channels, freqs_per_class=freqs_per_class,
            max_radius=max_radius, amplitude=amplitude, amplitude_jitter=amplitude_jitter, noise_std=noise_std,
            frequency_seed=frequency_seed,
        )
        # one image drawn now: bad generator settings fail at config time, and the ground truth is known early
        self.planted: torch.Tensor = planted_frequency_images(1, **self.generator_kwargs).planted

    def build_datasets(self):
        sets = []
        for offset, n in enumerate(self.sizes):
            data = planted_frequency_images(n, seed=self.seed + offset, **self.generator_kwargs)
            sets.append(TensorDataset(data.x, data.y))
        return tuple(sets)
