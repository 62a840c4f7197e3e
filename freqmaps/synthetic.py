"""Images whose class is carried by planted Fourier frequencies: the oracle for essential maps.

Each class owns a few spatial frequencies (disjoint between classes, none at zero frequency). An image of
class c is a sum of cosines at c's frequencies, each with a random phase and a jittered amplitude, plus
broadband (white Gaussian) noise, around mid-grey:

    x = clamp(0.5 + sum_f a_f cos(2 pi (ky_f i + kx_f j) / N + phi_f) + noise, 0, 1)

The ground truth `planted[c]` marks both conjugate positions (+k and -k) of class c's frequencies in
fftshift-ed coordinates (zero frequency at (N // 2, N // 2)), the layout frequency maps are stored in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from freqmaps.errors import UserInputError


@dataclass
class PlantedFrequencyData:
    """x: (n, C, N, N) in [0, 1]; y: (n,) int64; planted: (num_classes, N, N) bool, fftshift-ed;
    frequencies: (num_classes, freqs_per_class, 2) int64 (ky, kx) pairs, unshifted (may be negative)."""

    x: torch.Tensor
    y: torch.Tensor
    planted: torch.Tensor
    frequencies: torch.Tensor


def class_frequencies(
    num_classes: int, freqs_per_class: int, image_size: int, max_radius: float, seed: int
) -> torch.Tensor:
    """Disjoint sets of frequencies (ky, kx) with 1 <= |k| <= max_radius, one per class.

    Only one of each conjugate pair (+k, -k) is drawn, so no two classes share a spectral peak.
    Returns (num_classes, freqs_per_class, 2) int64.
    """
    half = image_size // 2
    candidates = [
        (ky, kx)
        for ky in range(0, half)
        for kx in range(-half + 1, half)
        if (ky > 0 or kx > 0) and 1 <= math.hypot(ky, kx) <= max_radius
    ]
    needed = num_classes * freqs_per_class
    if needed > len(candidates):
        raise UserInputError(
            f"{num_classes} classes x {freqs_per_class} frequencies need {needed} distinct frequencies, "
            f"but only {len(candidates)} exist with radius <= {max_radius} at {image_size}px; "
            "raise max_radius or lower freqs_per_class"
        )
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(candidates), generator=g)[:needed]
    return torch.tensor([candidates[i] for i in order.tolist()], dtype=torch.int64).view(
        num_classes, freqs_per_class, 2
    )


def planted_frequency_images(
    n: int,
    num_classes: int = 4,
    image_size: int = 32,
    channels: int = 1,
    freqs_per_class: int = 3,
    max_radius: float = 8.0,
    amplitude: float = 0.08,
    amplitude_jitter: float = 0.25,
    noise_std: float = 0.05,
    seed: int = 0,
    frequency_seed: int = 0,
) -> PlantedFrequencyData:
    """Draw `n` labelled images (classes balanced round-robin, then shuffled).

    `frequency_seed` fixes which frequencies each class owns (keep it equal across train/val/test splits);
    `seed` draws the images. Amplitude of each cosine: amplitude * U(1 - jitter, 1 + jitter).
    """
    if n < 1 or num_classes < 2 or channels < 1 or image_size < 4:
        raise UserInputError(f"need n >= 1, num_classes >= 2, channels >= 1, image_size >= 4; got "
                         f"n={n}, num_classes={num_classes}, channels={channels}, image_size={image_size}")
    freqs = class_frequencies(num_classes, freqs_per_class, image_size, max_radius, frequency_seed)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=g)]
    grid = torch.arange(image_size, dtype=torch.float32)
    ii, jj = torch.meshgrid(grid, grid, indexing="ij")  # (N, N)
    k = freqs[y].to(torch.float32)  # (n, F, 2)
    phase_arg = 2 * math.pi * (k[..., 0, None, None] * ii + k[..., 1, None, None] * jj) / image_size  # (n, F, N, N)
    phi = 2 * math.pi * torch.rand(n, freqs_per_class, channels, generator=g)  # (n, F, C)
    amp = amplitude * (1 + amplitude_jitter * (2 * torch.rand(n, freqs_per_class, channels, generator=g) - 1))
    waves = amp[..., None, None] * torch.cos(phase_arg[:, :, None] + phi[..., None, None])  # (n, F, C, N, N)
    noise = noise_std * torch.randn(n, channels, image_size, image_size, generator=g)
    x = (0.5 + waves.sum(1) + noise).clamp(0, 1)

    planted = torch.zeros(num_classes, image_size, image_size, dtype=torch.bool)
    c_idx = torch.arange(num_classes)[:, None].expand(-1, freqs_per_class)
    for sign in (1, -1):
        rows = (sign * freqs[..., 0]) % image_size
        cols = (sign * freqs[..., 1]) % image_size
        planted[c_idx, (rows + image_size // 2) % image_size, (cols + image_size // 2) % image_size] = True
    return PlantedFrequencyData(x=x, y=y, planted=planted, frequencies=freqs)
