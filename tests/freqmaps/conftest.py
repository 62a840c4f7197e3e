"""The map solvers' small deterministic problem."""
from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture(scope="module")
def tiny():
    """A BatchNorm-free conv net in float64 and 6 one-channel 16x16 images with its labels (several classes)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 3)).double().eval()
    x = torch.rand(6, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        model[-1].bias -= model(x).mean(0)  # centre the logits over the batch, so the images get different labels
        y = model(x).argmax(1)
    assert len(y.unique()) > 1
    return model, x, y
