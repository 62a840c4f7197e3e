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

from freqmaps.analysis import METRICS, Analysis, analyse, summary
from freqmaps.attacks import Attack, attack_in_chunks
from freqmaps.class_maps import ClassMapDefence, ClassMapResult, ClassMaps, class_maps, evaluate_class_maps, predict
from freqmaps.errors import UserInputError
from freqmaps.inputs import frozen_eval
from freqmaps.maps import FrequencyMaps, MapSettings

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
) -> Study:
    """Run the study on clean images x: (n, C, H, W) in [0, 1] with labels y: (n,) int64, on x's device.

    attacks: (name, attack) pairs. settings, index, permutations, seed, pool_kernel, active_threshold,
    attack_batch_size, resamples (IdCor's bootstrap interval; 0: none): as in `freqmaps.analysis.analyse` (the
    same for every attack). class_map_data:
    (x_train, y_train) training images for the class maps (None: no defence study); they are attacked with the
    attack named `class_map_attack` (default: the first); class_map_settings: the class-map solver's (default:
    CLASS_MAP_SETTINGS, the paper's). adaptive_attack: the attack run against the label-free defended model.
    Every attack runs seeded (`attack_in_chunks` with `seed`).
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
    essential = None
    for name, attack in attacks:
        analyses[name] = analyse(
            model, x, y, attack, settings, index=index, essential=essential, permutations=permutations, seed=seed,
            pool_kernel=pool_kernel, active_threshold=active_threshold, attack_batch_size=attack_batch_size,
            progress=progress, resamples=resamples,
        )
        essential = analyses[name].images.essential

    defence = None
    if class_map_data is not None:
        defence = defence_study(
            model, dict(attacks)[chosen], chosen, class_map_data, x, y, analyses[chosen].images.x_adv.to(x.device),
            class_map_settings, adaptive_attack, analyses[chosen].images.num_classes, attack_batch_size, seed,
            progress,
        )
    return Study(x.cpu(), y.cpu(), index.cpu(), analyses, defence)


def defence_study(
    model: nn.Module, attack: Attack, name: str, train: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor,
    y: torch.Tensor, x_adv: torch.Tensor, settings: MapSettings | None, adaptive: tuple[str, Attack] | None,
    num_classes: int, batch_size: int, seed: int, progress: bool,
) -> DefenceStudy:
    """Train class maps on `train` = (x_train, y_train) and their adversarials under `attack` (called `name`),
    evaluate them on the study's x, y and x_adv (its adversarials under the same attack), and run the
    `adaptive` (name, attack) against the label-free defended model and the undefended one."""
    start = time.perf_counter()
    x_train, y_train = train
    x_train_adv = attack_in_chunks(attack, model, x_train, y_train, batch_size, seed)
    trained = class_maps(model, x_train, y_train, x_train_adv, num_classes, settings, progress=progress)
    rates = evaluate_class_maps(model, trained, x, y, x_adv, batch_size)
    adaptive_name, robust, undefended = "none", math.nan, math.nan
    if adaptive is not None:
        adaptive_name, adaptive_attack = adaptive
        defended = ClassMapDefence(model, trained.maps.to(x.device))
        x_defended = attack_in_chunks(adaptive_attack, defended, x, y, batch_size, seed)
        x_undefended = attack_in_chunks(adaptive_attack, model, x, y, batch_size, seed)
        with frozen_eval(defended):
            robust = (predict(defended, x_defended, batch_size) == y).float().mean().item()
            undefended = (predict(model, x_undefended, batch_size) == y).float().mean().item()
    return DefenceStudy(name, trained, rates, adaptive_name, robust, undefended, time.perf_counter() - start)
