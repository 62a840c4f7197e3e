"""Fourier masks: the masking identity, layouts, fixed radial masks, spectra and radial profiles."""
from __future__ import annotations

import math

import pytest
import torch

from freqmaps.errors import UserInputError
from freqmaps.fourier import (
    FrequencyMask, apply_mask, band_mask, fftshift2, frequency_radius, highpass_mask, ifftshift2, log_spectrum,
    lowpass_mask, radial_profile,
)


def cosine_image(ky: int, kx: int, size: int = 16, channels: int = 1) -> torch.Tensor:
    """(1, channels, size, size) 0.5 + 0.25 cos(2 pi (ky i + kx j) / size)."""
    i, j = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    wave = 0.5 + 0.25 * torch.cos(2 * math.pi * (ky * i + kx * j) / size)
    return wave.expand(1, channels, size, size).clone()


def test_all_ones_mask_is_identity_and_zero_mask_blanks():
    x = torch.rand(3, 2, 8, 8)
    torch.testing.assert_close(apply_mask(x, torch.ones(2, 8, 8)), x, atol=1e-6, rtol=0)
    assert apply_mask(x, torch.zeros(3, 2, 8, 8)).abs().max() < 1e-6


def test_band_mask_keeps_a_planted_cosine_only_inside_its_band():
    x = cosine_image(3, 4)  # radius 5
    inside = FrequencyMask(band_mask(16, 4.5, 5.5))(x)
    outside = FrequencyMask(band_mask(16, 6, 8))(x)
    torch.testing.assert_close(inside, x - 0.5, atol=1e-5, rtol=0)  # the wave without its mean (DC removed)
    assert outside.abs().max() < 1e-5
    torch.testing.assert_close(FrequencyMask(lowpass_mask(16, 0))(x), torch.full_like(x, 0.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(FrequencyMask(highpass_mask(16, 4.9))(x), x - 0.5, atol=1e-5, rtol=0)


def test_frequency_mask_shared_and_per_image():
    x = torch.rand(2, 3, 8, 8)
    masks = torch.rand(2, 3, 8, 8)
    per_image = FrequencyMask(masks)(x)
    for i in range(2):
        torch.testing.assert_close(per_image[i:i + 1], FrequencyMask(masks[i])(x[i:i + 1]))
    torch.testing.assert_close(FrequencyMask(masks[0])(x)[1:], FrequencyMask(masks[0:1])(x[1:]))
    # the layer's mask is fftshift-ed: zeroing the centre entry removes the mean
    centre = torch.ones(3, 8, 8)
    centre[:, 4, 4] = 0
    torch.testing.assert_close(FrequencyMask(centre)(x).mean((-2, -1)), torch.zeros(2, 3), atol=1e-6, rtol=0)


def test_frequency_mask_rejects_wrong_shapes():
    with pytest.raises(UserInputError, match=r"\(C, H, W\) or \(B, C, H, W\)"):
        FrequencyMask(torch.ones(8, 8))
    with pytest.raises(UserInputError, match="does not fit the frequency mask"):
        FrequencyMask(torch.ones(3, 8, 8))(torch.rand(2, 1, 8, 8))
    with pytest.raises(UserInputError, match="does not fit the frequency mask"):
        FrequencyMask(torch.ones(2, 3, 8, 8))(torch.rand(3, 3, 8, 8))
    with pytest.raises(UserInputError, match="low <= high"):
        band_mask(8, 3, 2)


def test_shift_helpers_move_only_the_spatial_axes():
    t = torch.arange(3 * 4 * 6).float().view(3, 4, 6)
    shifted = fftshift2(t)
    assert shifted[:, 2, 3].tolist() == t[:, 0, 0].tolist()  # zero frequency to the centre, channels in place
    torch.testing.assert_close(ifftshift2(shifted), t)
    odd = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(ifftshift2(fftshift2(odd)), odd)


def test_radius_grid_and_log_spectrum_are_centred():
    r = frequency_radius(8, 6)
    assert r.shape == (8, 6) and r[4, 3] == 0 and r[4, 0] == 3 and r[0, 3] == 4
    spectrum = log_spectrum(cosine_image(0, 2, size=8))
    assert spectrum.shape == (1, 1, 8, 8)
    peaks = (spectrum[0, 0] > 0.1).nonzero().tolist()
    assert peaks == [[4, 2], [4, 4], [4, 6]]  # -2, DC, +2 along the columns


def test_radial_profile_of_a_lowpass_mask():
    profile = radial_profile(lowpass_mask(32, 6.0, channels=3).expand(4, 3, 32, 32))
    assert len(profile) == round(math.hypot(16, 16)) + 1
    assert torch.all(profile[:6] == 1) and torch.all(profile[8:] == 0)
    torch.testing.assert_close(radial_profile(torch.full((2, 1, 9, 9), 0.3)), torch.full((round(math.hypot(4, 4)) + 1,), 0.3))
