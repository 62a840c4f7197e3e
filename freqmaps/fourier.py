"""Fourier masks on images: `x -> Re F^-1(M * F(x))`, spectra, radial frequency grids and fixed radial masks.

Layouts: masks handed to or returned by this package are fftshift-ed over the two spatial axes only (zero
frequency at (H // 2, W // 2), channels untouched), as the paper stores its maps; `apply_mask` takes the
unshifted layout of `torch.fft.fft2`, which the solvers use internally.
"""
from __future__ import annotations

import torch
from torch import nn

from freqmaps.errors import UserInputError


def fftshift2(t: torch.Tensor) -> torch.Tensor:
    """Unshifted -> fftshift-ed layout over the last two (spatial) axes. t: (..., H, W)."""
    return torch.fft.fftshift(t, dim=(-2, -1))


def ifftshift2(t: torch.Tensor) -> torch.Tensor:
    """fftshift-ed -> unshifted layout over the last two (spatial) axes. t: (..., H, W)."""
    return torch.fft.ifftshift(t, dim=(-2, -1))


def apply_mask(x: torch.Tensor, mask: torch.Tensor, spectrum: torch.Tensor | None = None) -> torch.Tensor:
    """Re F^-1(mask * F(x)): x (B, C, H, W) real; mask in the *unshifted* layout, (B, C, H, W) one per image
    or (1, C, H, W) / (C, H, W) shared. `spectrum`: F(x) (B, C, H, W) complex, when already computed (then x
    is not read and may be None). Returns (B, C, H, W) real, x's dtype."""
    spectrum = torch.fft.fft2(x) if spectrum is None else spectrum
    return torch.fft.ifft2(mask * spectrum).real


class FrequencyMask(nn.Module):
    """A layer that filters its input through a fixed frequency mask: x -> Re F^-1(M * F(x)).

    mask: fftshift-ed, (C, H, W) or (1, C, H, W) shared by the batch, or (B, C, H, W) one per image; values
    usually in [0, 1]. Kept as the buffer `mask` in that layout. forward(x: (B, C, H, W)) -> (B, C, H, W) real.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        if not isinstance(mask, torch.Tensor) or mask.dim() not in (3, 4) or mask.is_complex():
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise UserInputError(f"a frequency mask must be a real tensor (C, H, W) or (B, C, H, W), got {got}")
        self.register_buffer("mask", (mask.unsqueeze(0) if mask.dim() == 3 else mask).float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-3:] != self.mask.shape[-3:] or self.mask.shape[0] not in (1, x.shape[0]):
            raise UserInputError(
                f"input {tuple(x.shape)} does not fit the frequency mask {tuple(self.mask.shape)}: need "
                "(B, C, H, W) with the mask's C, H, W, and B equal to the mask's batch unless the mask is shared"
            )
        return apply_mask(x, ifftshift2(self.mask).to(x.dtype))


def frequency_radius(height: int, width: int | None = None) -> torch.Tensor:
    """(height, width) float32 distance of each frequency from zero frequency, fftshift-ed layout
    (integer frequencies: row k - height // 2, column k - width // 2). width defaults to height."""
    width = height if width is None else width
    ky = torch.arange(height, dtype=torch.float32) - height // 2
    kx = torch.arange(width, dtype=torch.float32) - width // 2
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def band_mask(size: int, low: float, high: float, channels: int = 1) -> torch.Tensor:
    """(channels, size, size) float32 fftshift-ed: 1 where low <= radius <= high, else 0."""
    if not 0 <= low <= high:
        raise UserInputError(f"a band needs 0 <= low <= high, got low={low}, high={high}")
    r = frequency_radius(size)
    return ((r >= low) & (r <= high)).float().expand(channels, size, size).clone()


def lowpass_mask(size: int, radius: float, channels: int = 1) -> torch.Tensor:
    """(channels, size, size) float32 fftshift-ed: keeps the frequencies with radius <= `radius`."""
    return band_mask(size, 0.0, radius, channels)


def highpass_mask(size: int, radius: float, channels: int = 1) -> torch.Tensor:
    """(channels, size, size) float32 fftshift-ed: keeps the frequencies with radius > `radius`."""
    return 1.0 - lowpass_mask(size, radius, channels)


def log_spectrum(x: torch.Tensor) -> torch.Tensor:
    """log(1 + |F(x)|), fftshift-ed. x: (..., H, W) real -> (..., H, W)."""
    return torch.log1p(fftshift2(torch.fft.fft2(x).abs()))


def power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """|F(x)|², fftshift-ed, float32. x: (..., H, W) real -> (..., H, W)."""
    return fftshift2(torch.fft.fft2(x.float()).abs() ** 2)


def radial_profile(maps: torch.Tensor) -> torch.Tensor:
    """Mean map value against integer frequency radius, over all leading axes (images, channels).

    maps: (..., H, W) fftshift-ed -> (R,) float32 with R = round(max radius) + 1; entry r is the mean over
    the frequencies whose radius rounds to r (entry 0 is the zero frequency alone).
    """
    r = frequency_radius(*maps.shape[-2:]).round().long().flatten()
    values = maps.detach().reshape(-1, r.numel()).float().mean(0).cpu()
    total = torch.zeros(int(r.max()) + 1).index_add_(0, r, values)
    return total / torch.bincount(r).float()


def normalised_profile(maps: torch.Tensor) -> torch.Tensor:
    """`radial_profile(maps)` divided by its sum: (R,) float32 shares summing to 1 (all zeros stay zeros)."""
    profile = radial_profile(maps)
    return profile / profile.sum().clamp_min(1e-30)
