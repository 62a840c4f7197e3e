"""The Fawzi et al. (2018) study in one call: boundary points, the curvature profile over a sweep of finite-
difference steps, vulnerability of the curved directions, their overlap, connectivity, the curvature detector
(`freqmaps.geometry`), and the curved directions' spectrum against the adversarial maps
(`freqmaps.curved_spectra`). Takes x: (B, C, H, W) in [0, 1] and y: (B,) int64 labels.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from freqmaps.attacks.base import Attack
from freqmaps.curved_spectra import crossing_maps, curved_spectra
from freqmaps.geometry import (
    boundary_points,
    connect,
    evaluate_detector,
    principal_curvatures,
    same_class_pairs,
    shared_directions,
    vulnerability,
)
from freqmaps.maps import MapSettings


@dataclass
class CurvatureStudy:
    """Everything the curvature study measures, in plain tensors, lists and numbers (`state()` is
    `torch.load(weights_only=True)`-compatible; `from_state` rebuilds it).

    profiles: "h=<h>" -> (k,) mean sorted curvature profile per finite-difference step of the sweep;
    curvatures: (B, k) the main h's curvatures (nan: not valid); valid: (B,) bool; distance: (B,) to the boundary;
    vulnerability: `Vulnerability.table()` rows; shared: {"mean": ..., "random": ...}; connectivity: {"pairs",
    "connected", "straight", "mean_length", "mean_points"}; detector: `DetectorResult.rows` plus "threshold",
    "fpr"; scores: "clean" / attack name -> (n,) detector scores (for the ROC figure); curved_dims, curved_median,
    random_median: the vulnerability curve. converged: share of the main curvatures Lanczos reports converged
    (`PrincipalCurvatures.converged`); spectra: the curved directions against the adversarial maps
    (`CurvedSpectra`: "summary", and the radial profiles "curved", "random", "perturbation", "adversarial_map",
    (R,) each; empty when skipped).
    """

    profiles: dict[str, torch.Tensor]
    curvatures: torch.Tensor
    valid: torch.Tensor
    distance: torch.Tensor
    vulnerability: list[dict]
    shared: dict[str, float]
    connectivity: dict[str, float]
    detector: dict
    scores: dict[str, torch.Tensor]
    converged: float
    spectra: dict

    def state(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}

    @classmethod
    def from_state(cls, state: dict) -> CurvatureStudy:
        return cls(**state)


def curvature_study(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack], k: int = 20,
                    steps: int | None = None, h: float = 0.05, h_sweep: Sequence[float] = (0.01, 0.05, 0.2),
                    dims: Sequence[int] = (1, 2, 5, 10, 20), attack_steps: int = 50, pairs: int = 20,
                    path_points: int = 32, fpr: float = 0.05, directions: int = 20, detector_h: float = 0.1,
                    spectrum_dims: int = 5, map_settings: MapSettings | None = None, seed: int = 0,
                    progress: bool = True) -> CurvatureStudy:
    """The paper's measurements on x: (B, C, H, W) in [0, 1], labels y: (B,): boundary points (L2 DeepFool),
    the top-k curvature profile for every h of `h_sweep` (and `h`, the main one), the vulnerability of the top-d
    curved directions vs random d-subspaces vs the full space, the overlap of the curved subspaces, the
    connectivity of `pairs` same-class pairs (0: skipped), the curvature detector against `attacks`, and the
    spectrum of the top-`spectrum_dims` curved directions against the adversarial maps (`freqmaps.curved_spectra`,
    solved with `map_settings`, default the fast solver; 0: skipped)."""
    bar = tqdm(total=6, desc="curvature study", unit="part", disable=not progress)
    boundary = boundary_points(model, x, y, steps=attack_steps)
    main = principal_curvatures(model, x, y, k, "finite", h, steps, seed, boundary, progress)
    profiles = {f"h={h:g}": main.sorted_profile()}
    for step in h_sweep:
        if step != h:
            profiles[f"h={step:g}"] = principal_curvatures(model, x, y, k, "finite", step, steps, seed, boundary,
                                                           progress).sorted_profile()
    bar.update()
    vulnerable = vulnerability(model, main, dims, attack_steps, seed, progress)
    bar.update()
    shared = shared_directions(main)
    bar.update()
    connectivity = {"pairs": 0, "connected": math.nan, "straight": math.nan, "mean_length": math.nan,
                    "mean_points": math.nan}
    if pairs:
        found = connect(model, x, y, same_class_pairs(y, boundary.correct, pairs, seed), max_points=path_points,
                        progress=progress)
        connectivity = {"pairs": len(found.pairs), "connected": found.connected.float().mean().item(),
                        "straight": found.straight.float().mean().item(),
                        "mean_length": found.length[found.connected].mean().item() if found.connected.any()
                        else math.nan, "mean_points": found.points.float().mean().item()}
    bar.update()
    detector = evaluate_detector(model, x, y, attacks, fpr, directions, detector_h, seed, progress)
    bar.update()
    spectra = {}
    if spectrum_dims and main.boundary.valid.any():
        found = curved_spectra(main, crossing_maps(model, main, map_settings, progress=progress), spectrum_dims,
                               seed=seed)
        spectra = {"summary": found.summary()} | {name: getattr(found, name) for name in
                                                   ("curved", "random", "perturbation", "adversarial_map")}
    bar.update()
    bar.close()
    scores = {"clean": detector.clean.score.cpu()} | {name: s.score.cpu() for name, s in detector.adversarial.items()}
    return CurvatureStudy(
        {key: value.cpu() for key, value in profiles.items()}, main.curvatures.cpu(), boundary.valid.cpu(),
        boundary.distance.cpu(), vulnerable.table(), {"mean": shared.mean, "random": shared.random}, connectivity,
        {"rows": detector.rows, "threshold": detector.threshold, "fpr": detector.fpr}, scores,
        main.converged()[main.boundary.valid].float().mean().item() if main.boundary.valid.any() else math.nan,
        spectra)
