"""Are the curved directions of the decision boundary the frequencies attacks use? (Beyond Fawzi et al. 2018.)

For each image with a boundary point (`freqmaps.geometry`), the power spectrum of its top-d curved directions,
P = sum_i |FFT(v_i)|^2 over the d principal directions of largest |κ| (fftshift-ed, (C, H, W)), is compared with
the adversarial frequency map of the image's boundary crossing (`freqmaps.maps.adversarial_maps` of
x + (1 + overshoot)(z - x), the DeepFool point): their per-image cosine, against the same cosine for d random
orthonormal directions (whose expected power is flat), and the radial profiles of both spectra, the map and the
DeepFool perturbation, each normalised to sum 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from freqmaps.correlation import pair_cosines
from freqmaps.fourier import normalised_profile, power_spectrum
from freqmaps.geometry import PrincipalCurvatures, random_subspaces
from freqmaps.inputs import frozen_eval
from freqmaps.maps import FrequencyMaps, MapSettings, adversarial_maps


@dataclass
class CurvedSpectra:
    """dims: d. curved, random, perturbation, adversarial_map: (R,) float32 radial profiles normalised to sum 1
    (the top-d curved directions' power, d random directions' power, the DeepFool perturbations' power, the
    adversarial maps), each a mean over the m images used; cosine, random_cosine: (m,) float64 per-image cosine
    of the curved / random power (C·H·W) with the image's adversarial map; images: m, the valid images whose
    adversarial map was kept."""

    dims: int
    curved: torch.Tensor
    random: torch.Tensor
    perturbation: torch.Tensor
    adversarial_map: torch.Tensor
    cosine: torch.Tensor
    random_cosine: torch.Tensor
    images: int

    def summary(self) -> dict[str, float]:
        """d, images, median cosines (curved, random) and the peak radius (above 0) of each profile."""
        return {"dims": self.dims, "cosine_median": self.cosine.median().item() if self.images else float("nan"),
                "random_cosine_median": self.random_cosine.median().item() if self.images else float("nan"),
                "images": self.images,
                **{f"{name}_peak_radius": int(getattr(self, name)[1:].argmax()) + 1
                   for name in ("curved", "random", "perturbation", "adversarial_map")}}


def direction_power(directions: torch.Tensor) -> torch.Tensor:
    """(B, d, C, H, W) directions -> (B, C, H, W) float32 fftshift-ed power summed over the d directions."""
    return power_spectrum(directions).sum(1)


def crossing_points(curvatures: PrincipalCurvatures, overshoot: float = 0.02) -> torch.Tensor:
    """(m, C, H, W) the valid images' boundary points pushed `overshoot` past the boundary, clipped to [0, 1]."""
    b = curvatures.boundary[curvatures.boundary.valid]
    return (b.x + (1 + overshoot) * (b.z - b.x)).clamp(0, 1)


def crossing_maps(model: nn.Module, curvatures: PrincipalCurvatures, settings: MapSettings | None = None,
                  overshoot: float = 0.02, progress: bool = False) -> FrequencyMaps:
    """Adversarial maps (fast solver unless `settings` says otherwise) of `crossing_points`, one row per valid
    image; a map is kept only where the crossing point is classified as neither the true label nor differently
    from its map's target."""
    b = curvatures.boundary[curvatures.boundary.valid]
    x_adv = crossing_points(curvatures, overshoot)
    with frozen_eval(model), torch.no_grad():
        y_adv = model(x_adv).argmax(1)
    maps = adversarial_maps(model, x_adv, y_adv, b.y, settings or MapSettings(solver="fast"), progress=progress)
    maps.kept &= (y_adv != b.y).to(maps.kept.device)
    return maps


def curved_spectra(curvatures: PrincipalCurvatures, maps: FrequencyMaps, dims: int = 5,
                   overshoot: float = 0.02, seed: int = 0) -> CurvedSpectra:
    """Compare the top-`dims` curved directions of the valid images with their adversarial maps.

    curvatures: `principal_curvatures(...)` of B images, k >= dims; maps: m rows, one per valid image in order
    (`crossing_maps`), (m, C, H, W) fftshift-ed; rows not kept (or all zero) are left out.
    """
    valid = curvatures.boundary.valid
    directions = curvatures.directions[valid][:, :dims].cpu()
    if directions.shape[1] < dims:
        raise ValueError(f"dims {dims} exceeds the k = {directions.shape[1]} principal directions computed")
    if len(maps.maps) != len(directions):
        raise ValueError(f"{len(maps.maps)} maps for {len(directions)} valid images")
    shape = directions.shape[2:]
    random = random_subspaces(len(directions), dims, shape.numel(), seed).view(len(directions), dims, *shape)
    b = curvatures.boundary[valid]
    use = maps.kept.cpu() & maps.maps.flatten(1).any(1).cpu()
    curved_power, random_power = direction_power(directions)[use], direction_power(random)[use]
    adversarial = maps.maps.cpu()[use].float()
    delta = (crossing_points(curvatures, overshoot) - b.x).cpu()[use]
    perturbation_power = power_spectrum(delta)
    m = int(use.sum())
    empty = torch.empty(0, dtype=torch.float64)
    return CurvedSpectra(
        dims, *(normalised_profile(t) for t in (curved_power, random_power, perturbation_power, adversarial)),
        pair_cosines(curved_power.flatten(1), adversarial.flatten(1)) if m else empty,
        pair_cosines(random_power.flatten(1), adversarial.flatten(1)) if m else empty, m)
