"""Pictures of the boundary geometry (`freqmaps.geometry`): the sorted principal-curvature profile, the
vulnerability of curved vs random subspaces against their dimension, the curvature detector's ROC curves, and the
radial spectra of the curved directions against the adversarial maps.

Every function returns a matplotlib `Figure` (no pyplot), as in `freqmaps.figures`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from freqmaps.geometry import roc_auc


def curvature_profile_figure(profiles: Mapping[str, torch.Tensor], title: str = "") -> Figure:
    """Mean sorted principal curvatures (k,) against their rank, one line per entry (e.g. per h or per model)."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    for name, profile in profiles.items():
        ax.plot(range(1, len(profile) + 1), profile.tolist(), marker="o", markersize=3, label=name)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set(xlabel="rank (sorted by value)", ylabel="principal curvature", title=title)
    if len(profiles) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def vulnerability_figure(table: Sequence[Mapping[str, float]]) -> Figure:
    """Median L2 norm a subspace-restricted DeepFool needs against the subspace dimension (rows of
    `Vulnerability.table()`): the top curved directions, random subspaces, and the full space as a line."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    dims = [r["dim"] for r in table]
    ax.plot(dims, [r["curved_median"] for r in table], marker="o", label="top curved directions")
    ax.plot(dims, [r["random_median"] for r in table], marker="s", label="random subspace")
    ax.axhline(table[0]["full_median"], color="grey", linestyle="--", label="full space")
    ax.set(xlabel="subspace dimension", ylabel="median L2 norm to fool", yscale="log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def roc_figure(clean: torch.Tensor, adversarial: Mapping[str, torch.Tensor], fpr: float) -> Figure:
    """The curvature detector's ROC curves: clean scores (n,) vs each attack's adversarial scores (m,), the
    chosen false-positive rate as a line."""
    fig = Figure(figsize=(4, 4), layout="constrained")
    ax = fig.subplots()
    for name, scores in adversarial.items():
        thresholds = torch.cat([clean, scores]).unique().flip(0)
        false = [0.0] + [(clean >= t).float().mean().item() for t in thresholds]
        true = [0.0] + [(scores >= t).float().mean().item() for t in thresholds]
        ax.plot(false, true, label=f"{name} (AUC {roc_auc(clean, scores):.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.axvline(fpr, color="grey", linestyle=":")
    ax.set(xlabel="false-positive rate (clean)", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="lower right")
    return fig


def spectra_figure(profiles: Mapping[str, torch.Tensor]) -> Figure:
    """Radial profiles (R,) normalised to sum 1 against frequency radius, one line each (the curved directions'
    power, random directions', the perturbations', the adversarial maps'; `freqmaps.curved_spectra`)."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    for name, profile in profiles.items():
        ax.plot(range(len(profile)), list(map(float, profile)), marker="o", markersize=3, label=name.replace("_", " "))
    ax.set(xlabel="frequency radius", ylabel="share (normalised profile)", yscale="log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
