"""Pictures of frequency maps: per-class mean maps, radial profiles, single-image panels, class-level maps,
IdCor's permutation null distribution, and IdCor over training with its interval.

Every function returns a matplotlib `Figure` (no pyplot, so no display or global state is needed);
`write_map_figures` saves the standard set as PNG files. Maps are fftshift-ed (zero frequency in the centre)
and are averaged over channels for display.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import torch
from matplotlib.figure import Figure

from freqmaps.correlation import IdCorResult
from freqmaps.fourier import apply_mask, ifftshift2, log_spectrum, radial_profile
from freqmaps.maps import FrequencyMaps


def _names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    return list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]


def class_means_figure(
    essential: FrequencyMaps, adversarial: FrequencyMaps | None, num_classes: int,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """A grid with one column per class: the mean kept essential map of the class, and (when given) the mean
    kept adversarial map of the images whose adversarial label is the class and the difference adversarial -
    essential. Maps (n, C, H, W) are averaged over channels; all map rows share one colour scale [0, max]. Each
    row is one image of the classes' maps side by side (one axes a row, not one a map: ten times faster to draw,
    which matters to the per-epoch callback)."""
    rows = [("essential", essential.class_means(num_classes).mean(1))]
    if adversarial is not None:
        adv = adversarial.class_means(num_classes).mean(1)
        rows += [("adversarial", adv), ("adv - ess", adv - rows[0][1])]
    names = _names(num_classes, class_names)
    width = rows[0][1].shape[-1]
    fig = Figure(figsize=(1.3 * num_classes + 1, 1.4 * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    top = max(float(r.max()) for name, r in rows if name != "adv - ess") or 1.0
    for ax, (name, means) in zip(axes, rows):
        diff = name == "adv - ess"
        bound = float(means.abs().max()) or 1.0
        cmap = matplotlib.colormaps["RdBu_r" if diff else "magma"].with_extremes(bad="white")
        image = ax.imshow(_side_by_side(means), cmap=cmap, vmin=-bound if diff else 0, vmax=bound if diff else top)
        ax.set_xticks([k * (width + 1) + (width - 1) / 2 for k in range(num_classes)])
        ax.set_xticklabels(names if ax is axes[0] else [], fontsize=8)
        ax.xaxis.set_ticks_position("top")
        ax.tick_params(length=0)
        ax.set_yticks([])
        ax.set_ylabel(name, fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def _side_by_side(maps: torch.Tensor) -> torch.Tensor:
    """(K, H, W) -> (H, K * (W + 1) - 1): the maps left to right, one NaN column between neighbours."""
    K, H, W = maps.shape
    padded = torch.cat([maps.float(), torch.full((K, H, 1), float("nan"))], dim=2)
    return padded.permute(1, 0, 2).reshape(H, K * (W + 1))[:, :-1]


def radial_profiles(
    essential: FrequencyMaps, adversarial: FrequencyMaps | Mapping[str, FrequencyMaps] | None = None,
) -> dict[str, torch.Tensor]:
    """Mean kept map value against integer frequency radius, (R,) per map set: {"essential": ...,
    "adversarial": ...} for one adversarial set, or "adversarial (<name>)" per entry of a mapping name -> maps
    (one per attack). Sets without kept maps are left out."""
    sets = {"essential": essential}
    if isinstance(adversarial, FrequencyMaps):
        sets["adversarial"] = adversarial
    elif adversarial is not None:
        sets |= {f"adversarial ({name})": maps for name, maps in adversarial.items()}
    return {name: radial_profile(maps.kept_only().maps) for name, maps in sets.items() if maps.kept.any()}


def radial_profile_figure(
    essential: FrequencyMaps, adversarial: FrequencyMaps | Mapping[str, FrequencyMaps] | None = None,
) -> Figure:
    """Mean map value against frequency radius, essential and adversarial (one set, or one per attack as a
    mapping name -> maps) on one plot: at a glance, whether the attack lives in higher frequencies than the
    model's bias."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    for name, profile in radial_profiles(essential, adversarial).items():
        ax.plot(range(len(profile)), profile, marker="o", markersize=3, label=name)
    ax.set_xlabel("frequency radius")
    ax.set_ylabel("mean map value")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def image_panels_figure(x: torch.Tensor, maps: FrequencyMaps, count: int = 4) -> Figure:
    """For the first `count` kept maps: the image, its log spectrum, the map and the masked image.

    x: (N, C, H, W) in [0, 1], the images the maps were solved for, indexed by `maps.index`."""
    kept = maps.kept_only()
    count = min(count, len(kept))
    fig = Figure(figsize=(7, 1.8 * max(count, 1) + 0.3), layout="constrained")
    if count == 0:
        fig.text(0.5, 0.5, f"no kept {maps.kind} maps", ha="center")
        return fig
    axes = fig.subplots(count, 4, squeeze=False)
    titles = ("image", "log spectrum", f"{maps.kind} map", "masked image")
    for row in range(count):
        image = x[kept.index[row]].detach().cpu().float()
        mask = kept.maps[row].float()
        masked = apply_mask(image[None], ifftshift2(mask)[None])[0].clamp(0, 1)
        panels = (_rgb(image), log_spectrum(image).mean(0), mask.mean(0), _rgb(masked))
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, cmap="gray" if col in (0, 3) else "magma", vmin=0 if col == 2 else None,
                      vmax=1 if col == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=8)
        axes[row, 0].set_ylabel(f"#{int(kept.index[row])} label {int(kept.targets[row])}", fontsize=7)
    return fig


def null_distribution_figure(name: str, result: IdCorResult) -> Figure:
    """Histogram of IdCor's permutation null (joint ids with shuffled pairs) with the observed joint id marked;
    `name` (the attack) goes into the title."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.hist(result.null.numpy(), bins=20, color="0.6", label=f"{len(result.null)} shuffles")
    ax.axvline(result.id_joint, color="C3", lw=2, label=f"observed id_J = {result.id_joint:.2f}")
    ax.set_xlabel("intrinsic dimension of [A | E]")
    ax.set_ylabel("count")
    ax.set_title(f"{name}: IdCor {result.idcor:.3f}, p = {result.p_value:.3g}", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def interval_curve_figure(points: Sequence[Mapping[str, float]], title: str = "IdCor") -> Figure:
    """A statistic over training with its confidence interval as a band: `points` are analyses in order, each
    {"epoch", "idcor", "low", "high", "p"} (nan where missing: no band there). Points with p < 0.05 are filled,
    the others hollow; a dashed line marks 0."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    epochs, value, low, high, p = (torch.tensor([float(point[key]) for point in points], dtype=torch.float64)
                                   for key in ("epoch", "idcor", "low", "high", "p"))
    ax.fill_between(epochs.numpy(), low.numpy(), high.numpy(), color="C0", alpha=0.25, lw=0, label="95% interval")
    ax.plot(epochs.numpy(), value.numpy(), color="C0", lw=1.5)
    significant = p < 0.05
    ax.scatter(epochs[significant].numpy(), value[significant].numpy(), color="C0", zorder=3, label="p < 0.05")
    ax.scatter(epochs[~significant].numpy(), value[~significant].numpy(), facecolors="white", edgecolors="C0",
               zorder=3, label="p >= 0.05")
    ax.axhline(0.0, color="0.5", ls="--", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("IdCor")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def class_maps_figure(maps: torch.Tensor, class_names: Sequence[str] | None = None) -> Figure:
    """The class-level maps (K, C, H, W), channel mean, one panel per class."""
    K = len(maps)
    names = _names(K, class_names)
    fig = Figure(figsize=(1.3 * K + 1, 1.8), layout="constrained")
    axes = fig.subplots(1, K, squeeze=False)[0]
    for k, ax in enumerate(axes):
        image = ax.imshow(maps[k].float().mean(0), cmap="magma", vmin=0, vmax=1)
        ax.set_title(names[k], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes.tolist(), shrink=0.8)
    return fig


def _rgb(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (H, W) for one channel, (H, W, 3) for three."""
    return image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)


def write_map_figures(
    directory: str | Path, x: torch.Tensor, essential: FrequencyMaps, adversarial: FrequencyMaps | None = None,
    num_classes: int | None = None, class_names: Sequence[str] | None = None, count: int = 4,
    x_adv: torch.Tensor | None = None,
) -> list[Path]:
    """Write class_means.png, radial_profile.png, essential_panels.png (and adversarial_panels.png when
    adversarial maps and x_adv are given) into `directory`; returns the paths.

    x: (N, C, H, W) clean images indexed by the maps' `index`; x_adv: (N, C, H, W) their adversarial versions."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    num_classes = num_classes or int(essential.labels.max()) + 1
    figures = {
        "class_means.png": class_means_figure(essential, adversarial, num_classes, class_names),
        "radial_profile.png": radial_profile_figure(essential, adversarial),
        "essential_panels.png": image_panels_figure(x, essential, count),
    }
    if adversarial is not None and x_adv is not None:
        figures["adversarial_panels.png"] = image_panels_figure(x_adv, adversarial, count)
    paths = []
    for name, fig in figures.items():
        fig.savefig(directory / name, dpi=110)
        paths.append(directory / name)
    return paths
