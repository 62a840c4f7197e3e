"""Small digits models for the transfer and fragility tests, cached per test process: the zoo's trained
digits_small_cnn and a linear classifier trained in about a second on the same 32x32 digits."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from datamodules.digits import load_digits_tensors
from freqmaps.models import zoo_model
from tests.conftest import train_classifier


@lru_cache(maxsize=None)
def digits32() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits at 32x32, one channel: x (1797, 1, 32, 32) in [0, 1], y (1797,); the zoo model was
    trained on the first 1,400 (the fixed split of datamodules.DigitsDataModule differs; these tests only need
    images the models mostly classify correctly)."""
    return load_digits_tensors(32, 1)


@lru_cache(maxsize=None)
def zoo_cnn() -> nn.Module:
    """The zoo's digits_small_cnn (98% test accuracy), eval mode."""
    return zoo_model("digits_small_cnn")


@lru_cache(maxsize=None)
def linear_classifier(seed: int = 0) -> nn.Module:
    """Flatten + Linear(1024, 10) trained 5 epochs with Adam on the first 1,400 digits (about 88% held out)."""
    x, y = digits32()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(1024, 10))
    return train_classifier(model, x[:1400], y[:1400], epochs=5, lr=1e-2, seed=seed)
