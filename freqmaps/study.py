"""The paper's correlation study on one trained classifier (docs/method.md §1-§4).

One `freqmaps.analysis` analysis per configured attack, on the same images: the essential maps are solved once,
with the first attack, and shared by the others; then, optionally, class-level maps trained on training images
and evaluated as a defence, including an adaptive attack that sees the maps. The result is a `Study`;
`freqmaps.report` writes it as a results folder.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from freqmaps.analysis import METRICS, Analysis, ImageAnalysis, analyse_images, conclude, summary
from freqmaps.attacks import Attack, attack_in_chunks
from freqmaps.chunks import ChunkStore, cached, digest
from freqmaps.class_maps import (
    CLASS_MAP_SETTINGS,
    ClassMapDefence,
    ClassMapResult,
    ClassMaps,
    class_maps,
    evaluate_class_maps,
    predict,
)
from freqmaps.errors import UserInputError
from freqmaps.files import safe
from freqmaps.inputs import frozen_eval
from freqmaps.maps import FrequencyMaps, MapSettings, speed_free

ROW_FIELDS = ("attack", *METRICS)


@dataclass
class DefenceStudy:
    """Class maps trained with `attack` on training images, their rates on the study's images (ClassMapResult),
    and the accuracy of the label-free defended model under an adaptive attack that sees the maps (nan without
    one), next to the undefended model's under the same attack."""

    attack: str
    maps: ClassMaps
    rates: ClassMapResult
    adaptive_attack: str
    adaptive_robust_accuracy: float
    undefended_robust_accuracy: float
    seconds: float


@dataclass
class Study:
    """The whole study: the images x (n, C, H, W), their labels y (n,) and dataset indices index (n,), one
    Analysis per attack name (in the order run), and the optional defence."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    analyses: dict[str, Analysis]
    defence: DefenceStudy | None

    @property
    def essential(self) -> FrequencyMaps:
        """The essential maps, shared by every attack."""
        return next(iter(self.analyses.values())).images.essential

    @property
    def rows(self) -> list[dict]:
        """One row per attack: its name and the scalars of `freqmaps.analysis.summary` (keys ROW_FIELDS)."""
        return [{"attack": name, **summary(analysis)} for name, analysis in self.analyses.items()]


def run_study(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[tuple[str, Attack]],
    settings: MapSettings | None = None,
    *,
    index: torch.Tensor | None = None,
    permutations: int = 100,
    seed: int = 0,
    pool_kernel: int | None = None,
    active_threshold: float = 0.5,
    attack_batch_size: int = 256,
    class_map_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    class_map_attack: str | None = None,
    class_map_settings: MapSettings | None = None,
    adaptive_attack: tuple[str, Attack] | None = None,
    progress: bool = True,
    resamples: int = 1000,
    store: ChunkStore | None = None,
) -> Study:
    """Run the study on clean images x: (n, C, H, W) in [0, 1] with labels y: (n,) int64, on x's device.

    attacks: (name, attack) pairs. settings, index, permutations, seed, pool_kernel, active_threshold,
    attack_batch_size, resamples (IdCor's bootstrap interval; 0: none): as in `freqmaps.analysis.analyse` (the
    same for every attack). class_map_data:
    (x_train, y_train) training images for the class maps (None: no defence study); they are attacked with the
    attack named `class_map_attack` (default: the first); class_map_settings: the class-map solver's (default:
    CLASS_MAP_SETTINGS, the paper's). adaptive_attack: the attack run against the label-free defended model.
    Every attack runs seeded (`attack_in_chunks` with `seed`).

    The images are worked through in chunks of `attack_batch_size` (chunk k: the attack seeded with seed + k, its
    maps; the same results as one call over all images). store: where finished chunks are saved and, on a rerun
    with the same fingerprint, read back (`freqmaps.chunks`; None: nothing saved); the defence saves its
    training adversarials, the class-map solver's state every `class_maps.CHECKPOINT_ROUNDS` rounds and the
    adaptive attacks' images in its subfolder `defence`, whose fingerprint adds the defence's own settings (so
    changing those keeps the attacks' chunks).
    """
    if not attacks:
        raise UserInputError("the study needs at least one attack")
    names = [name for name, _ in attacks]
    if len(set(names)) != len(names):
        raise UserInputError(f"attack names must be unique, got {names}")
    chosen = class_map_attack or names[0]
    if class_map_data is not None and chosen not in names:
        raise UserInputError(f"class_map_attack {chosen!r} is not one of the study's attacks {names}")
    index = torch.arange(len(x)) if index is None else index
    analyses: dict[str, Analysis] = {}
    essential: list[FrequencyMaps] = []  # per chunk, from the first attack; shared by the others
    for name, attack in attacks:
        parts = []
        for k, rows in enumerate(torch.arange(len(x)).split(attack_batch_size)):
            def compute(rows=rows, k=k) -> dict:
                return analyse_images(
                    model, x[rows.to(x.device)], y[rows.to(y.device)], attack, settings, index=index[rows],
                    essential=essential[k] if essential else None, seed=seed + k, attack_batch_size=attack_batch_size,
                    progress=progress).state()
            piece = f"{safe(name)}_chunk{k:04d}"
            parts.append(ImageAnalysis.from_state(cached(store, piece, compute)))
        essential = essential or [part.essential for part in parts]
        analyses[name] = conclude(ImageAnalysis.cat(parts), permutations=permutations, seed=seed,
                                  pool_kernel=pool_kernel, active_threshold=active_threshold, resamples=resamples)

    defence = None
    if class_map_data is not None:
        defence = defence_study(
            model, dict(attacks)[chosen], chosen, class_map_data, x, y, analyses[chosen].images.x_adv.to(x.device),
            class_map_settings, adaptive_attack, analyses[chosen].images.num_classes, attack_batch_size, seed,
            progress, None if store is None else store.nested("defence", {
                "class_map_attack": chosen, "class_map_data": digest(dict(zip("xy", class_map_data))),
                "class_maps": speed_free(class_map_settings or CLASS_MAP_SETTINGS),
                "adaptive_attack": repr(adaptive_attack)}),
        )
    return Study(x.cpu(), y.cpu(), index.cpu(), analyses, defence)


def defence_study(
    model: nn.Module, attack: Attack, name: str, train: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor,
    y: torch.Tensor, x_adv: torch.Tensor, settings: MapSettings | None, adaptive: tuple[str, Attack] | None,
    num_classes: int, batch_size: int, seed: int, progress: bool, store: ChunkStore | None = None,
) -> DefenceStudy:
    """Train class maps on `train` = (x_train, y_train) and their adversarials under `attack` (called `name`),
    evaluate them on the study's x, y and x_adv (its adversarials under the same attack), and run the
    `adaptive` (name, attack) against the label-free defended model and the undefended one. With a `store`, each
    of those steps is a saved piece, and the class-map solver checkpoints itself there (see `run_study`)."""
    start = time.perf_counter()
    x_train, y_train = train

    def attacked(piece: str, attack: Attack, target: nn.Module, images: torch.Tensor, labels: torch.Tensor):
        return cached(store, piece, lambda: {"x_adv": attack_in_chunks(attack, target, images, labels, batch_size,
                                                                       seed).cpu()})["x_adv"].to(images.device)

    x_train_adv = attacked("class_map_adversarials", attack, model, x_train, y_train)
    trained = ClassMaps.from_state(cached(store, "class_maps", lambda: class_maps(
        model, x_train, y_train, x_train_adv, num_classes, settings, progress=progress,
        checkpoint=None if store is None else store.path("class_maps_solver")).state()))
    rates = evaluate_class_maps(model, trained, x, y, x_adv, batch_size)
    adaptive_name, robust, undefended = "none", math.nan, math.nan
    if adaptive is not None:
        adaptive_name, adaptive_attack = adaptive
        defended = ClassMapDefence(model, trained.maps.to(x.device))
        x_defended = attacked("adaptive_defended", adaptive_attack, defended, x, y)
        x_undefended = attacked("adaptive_undefended", adaptive_attack, model, x, y)
        with frozen_eval(defended):
            robust = (predict(defended, x_defended, batch_size) == y).float().mean().item()
            undefended = (predict(model, x_undefended, batch_size) == y).float().mean().item()
    return DefenceStudy(name, trained, rates, adaptive_name, robust, undefended, time.perf_counter() - start)
