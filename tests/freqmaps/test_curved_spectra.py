"""The curved directions' spectrum against ground truth: a quadric boundary curved only along Fourier modes of
radius 5 puts the top curved directions' power at radius 5, and their cosine with a map that keeps those modes'
frequencies is near 1, against a map of the whole radius-5 ring (the closed form sqrt(4 / ring size)) and random
directions'."""
from __future__ import annotations

import math

import torch
from torch import nn

from freqmaps.curved_spectra import curved_spectra
from freqmaps.fourier import band_mask, fftshift2
from freqmaps.geometry import principal_curvatures
from freqmaps.maps import FrequencyMaps

SIZE, RADIUS = 16, 5


def fourier_modes() -> torch.Tensor:
    """(4, D) orthonormal real images cos / sin of the frequencies (5, 0) and (3, 4), radius 5."""
    i, j = torch.meshgrid(torch.arange(SIZE, dtype=torch.float64), torch.arange(SIZE, dtype=torch.float64),
                          indexing="ij")
    modes = [f(2 * math.pi * (a * i + b * j) / SIZE) for a, b in ((5, 0), (3, 4)) for f in (torch.cos, torch.sin)]
    modes = torch.stack([m.flatten() for m in modes])
    return modes / modes.norm(dim=1, keepdim=True)


class BandCurved(nn.Module):
    """Two logits differing by F(x) = ½ Σ κ_i (u_i·u)² + b·u + c, u = x − ½, with u_i the radius-5 modes and b the
    constant image: the boundary bends only along the u_i."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("u", fourier_modes())
        self.register_buffer("kappa", torch.tensor([3.0, -2.5, 2.0, -1.5], dtype=torch.float64))
        self.register_buffer("b", torch.full((SIZE * SIZE,), 1.0 / SIZE, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.flatten(1) - 0.5
        f = 0.5 * (self.kappa * (u @ self.u.T) ** 2).sum(1) + u @ self.b + 0.2
        return torch.stack([f, torch.zeros_like(f)], 1)


def test_curved_directions_carry_the_planted_band_and_align_with_a_map_of_it():
    model = BandCurved().eval()
    generator = torch.Generator().manual_seed(0)
    x = (0.5 + 0.01 * torch.randn(5, 1, SIZE, SIZE, generator=generator, dtype=torch.float64)).clamp(0, 1)
    y = torch.zeros(5, dtype=torch.long)
    curvatures = principal_curvatures(model, x, y, k=4, method="exact", steps=12)
    assert bool(curvatures.boundary.valid.all())
    n = len(x)
    planted = fftshift2(torch.fft.fft2(fourier_modes().view(4, 1, SIZE, SIZE)).abs() ** 2).sum(0) > 1e-6  # 4 points
    ring = band_mask(SIZE, RADIUS - 0.5, RADIUS + 0.5).bool()

    def spectra_against(kept: torch.Tensor):
        frequencies = kept.double().expand(n, 1, SIZE, SIZE).clone()
        maps = FrequencyMaps("adversarial", frequencies, torch.arange(n), y, torch.ones(n, dtype=torch.long),
                             torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.bool),
                             torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool))
        return curved_spectra(curvatures, maps, dims=4)

    spectra = spectra_against(planted)
    assert spectra.images == n and int(planted.sum()) == 4
    assert float(spectra.curved[RADIUS]) > 0.95  # the planted radius holds the curved power (the rest: DC leakage
    assert float(spectra.random[RADIUS]) < 0.2  # of the tangent projection); random directions spread theirs
    assert spectra.summary()["curved_peak_radius"] == RADIUS
    assert float(spectra.cosine.min()) > 0.98 and float(spectra.random_cosine.max()) < 0.2
    on_ring = spectra_against(ring).cosine  # equal power on 4 of the ring's frequencies: sqrt(4 / ring size)
    torch.testing.assert_close(on_ring, torch.full((n,), math.sqrt(4 / int(ring.sum())), dtype=torch.float64),
                               atol=0.02, rtol=0)
