"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), resized: the embedded default."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from datamodules.base import ImageDataModule, split_indices
from freqmaps.errors import UserInputError


def load_digits_tensors(image_size: int = 32, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as x: (1797, channels, image_size, image_size) float32 in [0, 1], y: (1797,) int64.

    Bilinear upsampling of the 8x8 originals (grey levels 0..16); channels > 1 repeats the grey image.
    """
    from sklearn.datasets import load_digits

    if image_size < 8 or channels not in (1, 3):
        raise ValueError(f"digits need image_size >= 8 and channels 1 or 3, got {image_size} and {channels}")
    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.repeat(1, channels, 1, 1).contiguous(), torch.as_tensor(bunch.target, dtype=torch.int64)


class DigitsDataModule(ImageDataModule):
    """The embedded default: no download, 1,797 images split by a fixed seed into train / val / test.

    Batches: x (B, channels, image_size, image_size) in [0, 1], y (B,) in 0..9.
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: Literal[1, 3] = 1,
        val_size: int = 180,
        test_size: int = 360,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        if image_size < 8:
            raise UserInputError(f"data.image_size must be >= 8 for the 8x8 digits, got {image_size}")
        if val_size < 1 or test_size < 1 or val_size + test_size >= 1797:
            raise UserInputError(
                f"data.val_size={val_size} and data.test_size={test_size} must be >= 1 and leave training "
                "images out of the 1,797 digits"
            )
        self.num_classes, self.in_channels, self.image_size = 10, channels, image_size
        self.val_size, self.test_size = val_size, test_size

    def build_datasets(self):
        x, y = load_digits_tensors(self.image_size, self.in_channels)
        train_val, test = split_indices(len(x), self.test_size, self.seed)
        train, val = train_val[self.val_size :], train_val[: self.val_size]
        return tuple(TensorDataset(x[idx], y[idx]) for idx in (train, val, test))
