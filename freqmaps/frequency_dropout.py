"""Random frequency dropout: an augmentation that zeroes a random subset of each image's Fourier
coefficients during training (identity in eval mode)."""
from __future__ import annotations

import torch
from torch import nn

from freqmaps.errors import UserInputError


class FrequencyDropout(nn.Module):
    """x: (B, C, H, W) -> F^-1(D * F(x)) with D ~ Bernoulli(1 - p) per image and frequency pair (+k and -k
    dropped together, so the output is real and exactly the input without those frequencies; shared by the
    channels); the zero frequency is always kept so the mean brightness survives. Identity in eval mode."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise UserInputError(f"frequency dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        h, w = x.shape[-2:]
        draw = torch.rand(x.shape[0], 1, h, w, device=x.device)
        conjugate = draw.flip(-2, -1).roll((1, 1), dims=(-2, -1))  # the draw at frequency -k
        flat = torch.arange(h * w, device=x.device).view(h, w)
        flat_conjugate = flat.flip(-2, -1).roll((1, 1), dims=(-2, -1))
        keep = torch.where(flat <= flat_conjugate, draw, conjugate) >= self.p
        keep[..., 0, 0] = True
        return torch.fft.ifft2(keep * torch.fft.fft2(x)).real
