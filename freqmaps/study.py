"""The paper's correlation study on one trained classifier, end to end (docs/method.md §1-§4).

For a set of clean test images: attack them with each configured attack; solve the essential maps of the
correctly classified images once and the adversarial maps of the images each attack fooled; pair them by image
index and correlate (IdCor with its permutation p-value, SVCCA, CKA, cosine); optionally train class-level maps
on training images and evaluate them as a defence, including an adaptive attack that sees the maps. The result
is one table row per attack plus the maps, the correlations and the class-map rates, and `write_study` turns it
into a results folder (JSON, markdown table, figures, map files).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

from freqmaps.attacks import Attack, attack_report
from freqmaps.class_maps import ClassMapDefence, ClassMapResult, ClassMaps, class_maps, evaluate_class_maps, predict
from freqmaps.correlation import CorrelationResult, correlate_maps
from freqmaps.errors import UserInputError
from freqmaps.figures import class_means_figure, radial_profile_figure
from freqmaps.inputs import check_images, check_labels, frozen_eval
from freqmaps.maps import FrequencyMaps, MapSettings, adversarial_maps, essential_maps

ROW_FIELDS = (
    "attack", "images", "correct", "fooled", "success_rate", "median_linf", "median_l2", "essential_kept",
    "adversarial_kept", "n_pairs", "idcor", "idcor_p", "id_adversarial", "id_essential", "id_joint", "svcca",
    "cka", "cosine_mean", "cosine_std", "attack_seconds", "maps_seconds",
)


@dataclass
class AttackStudy:
    """What one attack gave: x_adv (n, C, H, W) for all n images, the adversarial maps of the fooled correctly
    classified images, their correlation with the essential maps (None with fewer than 3 pairs), the row."""

    name: str
    x_adv: torch.Tensor
    maps: FrequencyMaps
    correlation: CorrelationResult | None
    row: dict


@dataclass
class DefenceStudy:
    """Class maps trained with `attack` on training images, their rates on the study's images (ClassMapResult),
    and the accuracy of the label-free defended model under an adaptive attack that sees the maps."""

    attack: str
    maps: ClassMaps
    rates: ClassMapResult
    adaptive_attack: str
    adaptive_robust_accuracy: float
    undefended_robust_accuracy: float
    seconds: float


@dataclass
class Study:
    """The whole study: the clean images x (n, C, H, W) and labels y (n,), the essential maps, one AttackStudy
    per attack, the optional defence, and timings in seconds."""

    x: torch.Tensor
    y: torch.Tensor
    essential: FrequencyMaps
    attacks: list[AttackStudy]
    defence: DefenceStudy | None
    timings: dict = field(default_factory=dict)

    @property
    def rows(self) -> list[dict]:
        return [a.row for a in self.attacks]


def run_study(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[tuple[str, Attack]],
    settings: MapSettings | None = None,
    *,
    permutations: int = 100,
    seed: int = 0,
    attack_batch_size: int = 256,
    class_map_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    class_map_attack: str | None = None,
    class_map_settings: MapSettings | None = None,
    adaptive_attack: tuple[str, Attack] | None = None,
    num_classes: int | None = None,
    progress: bool = True,
) -> Study:
    """Run the study on clean images x: (n, C, H, W) in [0, 1] with labels y: (n,) int64, on x's device.

    attacks: (name, attack) pairs, run in batches of `attack_batch_size`. settings: the map solver's (default:
    the paper's). permutations, seed: IdCor's test. class_map_data: (x_train, y_train) training images for
    the class maps (None: no defence study); they are attacked with the attack named `class_map_attack`
    (default: the first); class_map_settings: the class-map solver's (default: CLASS_MAP_SETTINGS, the paper's).
    adaptive_attack: the attack run against the label-free defended model (default: none).
    """
    check_images(x)
    check_labels(y, len(x))
    if not attacks:
        raise UserInputError("the study needs at least one attack")
    names = [name for name, _ in attacks]
    if len(set(names)) != len(names):
        raise UserInputError(f"attack names must be unique, got {names}")
    settings = settings or MapSettings()
    num_classes = num_classes or int(y.max()) + 1
    timings: dict[str, float] = {}

    start = time.perf_counter()
    with frozen_eval(model):
        correct = predict(model, x, attack_batch_size) == y
    essential = essential_maps(model, x[correct], y[correct], settings, index=correct.nonzero().squeeze(1).cpu(),
                               progress=progress)
    timings["essential_maps"] = time.perf_counter() - start

    studies = []
    for name, attack in attacks:
        start = time.perf_counter()
        x_adv = _attack(attack, model, x, y, attack_batch_size)
        attack_seconds = time.perf_counter() - start
        report = attack_report(model, x[correct], x_adv[correct], y[correct])
        fooled = correct.clone()
        fooled[correct] = report.success
        start = time.perf_counter()
        maps = adversarial_maps(model, x_adv[fooled], report.adversarial_labels[report.success], y[fooled], settings,
                                index=fooled.nonzero().squeeze(1).cpu(), progress=progress)
        maps_seconds = time.perf_counter() - start
        correlation = _correlate(essential, maps, permutations, seed)
        row = {
            "attack": name, "images": len(x), "correct": int(correct.sum()), "fooled": int(fooled.sum()),
            "success_rate": report.success_rate, "median_linf": report.median_linf, "median_l2": report.median_l2,
            "essential_kept": int(essential.kept.sum()), "adversarial_kept": int(maps.kept.sum()),
            **(correlation.scalars() if correlation else {"n_pairs": 0}),
            "attack_seconds": attack_seconds, "maps_seconds": maps_seconds,
        }
        studies.append(AttackStudy(name, x_adv.cpu(), maps, correlation,
                                   {key: row.get(key, math.nan) for key in ROW_FIELDS}))
        timings[f"attack/{name}"], timings[f"adversarial_maps/{name}"] = attack_seconds, maps_seconds

    defence = None
    if class_map_data is not None:
        chosen = class_map_attack or names[0]
        if chosen not in names:
            raise UserInputError(f"class_map_attack {chosen!r} is not one of the study's attacks {names}")
        defence = _defence(model, dict(attacks)[chosen], chosen, class_map_data, x, y,
                           studies[names.index(chosen)].x_adv.to(x.device), class_map_settings, adaptive_attack,
                           num_classes, attack_batch_size, progress)
        timings["class_maps"] = defence.seconds
    return Study(x.cpu(), y.cpu(), essential, studies, defence, timings)


def _attack(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([attack(model, xb, yb) for xb, yb in zip(x.split(batch_size), y.split(batch_size))])


def _correlate(essential: FrequencyMaps, adversarial: FrequencyMaps, permutations: int,
               seed: int) -> CorrelationResult | None:
    e, a = essential.kept_only(), adversarial.kept_only()
    if int(torch.isin(e.index, a.index).sum()) < 3:
        return None
    return correlate_maps(e.maps, a.maps, e.index, a.index, permutations=permutations, seed=seed)


def _defence(model, attack, name, data, x, y, x_adv, settings, adaptive, num_classes, batch_size,
             progress) -> DefenceStudy:
    start = time.perf_counter()
    x_train, y_train = data
    x_train_adv = _attack(attack, model, x_train, y_train, batch_size)
    trained = class_maps(model, x_train, y_train, x_train_adv, num_classes, settings, progress=progress)
    rates = evaluate_class_maps(model, trained, x, y, x_adv, batch_size)
    adaptive_name, robust, undefended = "none", math.nan, math.nan
    if adaptive is not None:
        adaptive_name, adaptive_attack = adaptive
        defended = ClassMapDefence(model, trained.maps.to(x.device))
        x_defended = _attack(adaptive_attack, defended, x, y, batch_size)
        x_undefended = _attack(adaptive_attack, model, x, y, batch_size)
        with frozen_eval(defended):
            robust = (predict(defended, x_defended, batch_size) == y).float().mean().item()
            undefended = (predict(model, x_undefended, batch_size) == y).float().mean().item()
    return DefenceStudy(name, trained, rates, adaptive_name, robust, undefended, time.perf_counter() - start)


def null_distribution_figure(study: AttackStudy) -> Figure:
    """Histogram of IdCor's permutation null (joint ids with shuffled pairs) with the observed joint id marked."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    result = study.correlation.idcor
    ax.hist(result.null.numpy(), bins=20, color="0.6", label=f"{len(result.null)} shuffles")
    ax.axvline(result.id_joint, color="C3", lw=2, label=f"observed id_J = {result.id_joint:.2f}")
    ax.set_xlabel("intrinsic dimension of [A | E]")
    ax.set_ylabel("count")
    ax.set_title(f"{study.name}: IdCor {result.idcor:.3f}, p = {result.p_value:.3g}", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def markdown_table(rows: Sequence[dict]) -> str:
    """The rows as a markdown table, numbers to 4 significant digits."""
    def cell(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(ROW_FIELDS) + " |", "|" + "---|" * len(ROW_FIELDS)]
    lines += ["| " + " | ".join(cell(row[key]) for key in ROW_FIELDS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_study(study: Study, directory: str | Path, num_classes: int,
                class_names: Sequence[str] | None = None, extra: dict | None = None) -> dict[str, Path]:
    """Write the results folder: results.json (rows, defence, timings, `extra`), results.md (the table),
    figures/*.png (per attack: class means of essential vs adversarial maps and the IdCor null distribution;
    radial profiles of all), maps/*.pt (FrequencyMaps files, class_maps.pt). Returns name -> path."""
    directory = Path(directory)
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    (directory / "maps").mkdir(exist_ok=True)
    paths: dict[str, Path] = {}
    study.essential.save(directory / "maps" / "essential.pt")
    for attack in study.attacks:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in attack.name)
        attack.maps.save(directory / "maps" / f"adversarial_{safe}.pt")
        figure = class_means_figure(study.essential, attack.maps, num_classes, class_names)
        figure.suptitle(f"mean maps per class: essential vs {attack.name}", fontsize=9)
        paths[f"class_means_{safe}"] = directory / "figures" / f"class_means_{safe}.png"
        figure.savefig(paths[f"class_means_{safe}"], dpi=110)
        if attack.correlation is not None:
            paths[f"idcor_null_{safe}"] = directory / "figures" / f"idcor_null_{safe}.png"
            null_distribution_figure(attack).savefig(paths[f"idcor_null_{safe}"], dpi=110)
    paths["radial_profiles"] = directory / "figures" / "radial_profiles.png"
    radial_profile_figure(study.essential, {a.name: a.maps for a in study.attacks}).savefig(
        paths["radial_profiles"], dpi=110)

    summary = {"rows": study.rows, "timings": study.timings, **(extra or {})}
    if study.defence is not None:
        d = study.defence
        d.maps.save(directory / "maps" / "class_maps.pt")
        summary["defence"] = {"attack": d.attack, **asdict(d.rates), "adaptive_attack": d.adaptive_attack,
                              "adaptive_robust_accuracy": d.adaptive_robust_accuracy,
                              "undefended_robust_accuracy": d.undefended_robust_accuracy,
                              "class_map_steps": d.maps.steps.tolist(), "seconds": d.seconds}
        paths["class_maps"] = directory / "figures" / "class_maps.png"
        _class_map_figure(d.maps.maps, class_names).savefig(paths["class_maps"], dpi=110)
    paths["json"] = directory / "results.json"
    paths["json"].write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    table = markdown_table(study.rows)
    if study.defence is not None:
        dd = summary["defence"]
        table += ("\nClass-map defence (maps trained with {attack}): still correct {still_correct:.4f}, adversarial "
                  "undone {adversarial_undone:.4f} (label-using, the paper's); label-free: clean accuracy "
                  "{clean_accuracy:.4f} (unmasked {clean_accuracy_unmasked:.4f}), adversarial accuracy "
                  "{adversarial_accuracy:.4f} (unmasked {adversarial_accuracy_unmasked:.4f}); adaptive "
                  "{adaptive_attack}: robust accuracy {adaptive_robust_accuracy:.4f} defended vs "
                  "{undefended_robust_accuracy:.4f} undefended.\n").format(**dd)
    paths["markdown"] = directory / "results.md"
    paths["markdown"].write_text(table)
    return paths


def _class_map_figure(maps: torch.Tensor, class_names: Sequence[str] | None) -> Figure:
    """The class-level maps (K, C, H, W), channel mean, one panel per class."""
    K = len(maps)
    names = list(class_names) if class_names is not None else [str(k) for k in range(K)]
    fig = Figure(figsize=(1.3 * K + 1, 1.8), layout="constrained")
    axes = fig.subplots(1, K, squeeze=False)[0]
    for k, ax in enumerate(axes):
        image = ax.imshow(maps[k].float().mean(0), cmap="magma", vmin=0, vmax=1)
        ax.set_title(names[k], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes.tolist(), shrink=0.8)
    return fig


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


__all__ = ["AttackStudy", "DefenceStudy", "ROW_FIELDS", "Study", "markdown_table", "run_study", "write_study",
           "null_distribution_figure"]
