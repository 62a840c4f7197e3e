"""One analysis of a classifier on a set of images (docs/method.md §1-§3), the primitive behind both the per-epoch
callback and analyze.py: attack the images, solve the essential maps of the correctly classified ones (true
label) and the adversarial maps of the ones the attack fooled (adversarial label), correlate the two, and sum it
up in one vocabulary of scalars (`METRICS`, explained in the README's "Metrics" table).

It comes in two parts, so that the per-image work can be split over processes:

* `analyse_images`: the attack and the maps of any set of images -> `ImageAnalysis`; parts of one image set
  join with `ImageAnalysis.cat`;
* `conclude`: what needs the whole set (the correlation, per-class rows) -> `Analysis`;

and `analyse` is the two in one call. `summary(analysis)` gives the scalars.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from freqmaps.attacks import Attack, AttackReport, attack_in_chunks, attack_report
from freqmaps.class_maps import predict
from freqmaps.correlation import CorrelationResult, correlate_maps
from freqmaps.errors import UserInputError
from freqmaps.inputs import check_images, check_labels, frozen_eval
from freqmaps.maps import FrequencyMaps, MapProblem, MapSettings, solve_maps

KINDS = ("essential", "adversarial")
CORRELATION = ("idcor", "idcor_p", "idcor_ci_low", "idcor_ci_high", "id_essential", "id_adversarial", "id_joint",
               "id_essential_se", "id_adversarial_se", "id_joint_se", "svcca", "cka", "cosine_mean", "cosine_std")
METRICS = (
    "images", "correct", "clean_acc", "fooled", "success_rate", "median_linf", "median_l2",
    *(f"{kind}_{name}" for kind in KINDS for name in ("maps", "kept", "steps", "warm", "sparsity")),
    "n_pairs", *CORRELATION, "attack_seconds", "maps_seconds", "seconds",
)
PER_CLASS = ("class", "images", "clean_acc", "success_rate", "essential_maps", "essential_kept",
             "essential_sparsity", "adversarial_maps", "adversarial_kept", "adversarial_sparsity", "mean_map_cosine")


@dataclass
class ImageAnalysis:
    """The per-image part of an analysis of n images (all on the CPU).

    index: (n,) int64 image ids (the maps carry them too); labels: (n,) int64 true labels; correct: (n,) bool,
    the clean image is classified as its label; attack: the AttackReport of every image; x_adv: (n, C, H, W) in
    [0, 1]; essential: the maps of the correct images; adversarial: the maps of the fooled images (correct and
    misclassified after the attack); num_classes: the model's logits; attack_seconds, maps_seconds: time spent
    attacking and solving (summed over parts).
    """

    index: torch.Tensor
    labels: torch.Tensor
    correct: torch.Tensor
    attack: AttackReport
    x_adv: torch.Tensor
    essential: FrequencyMaps
    adversarial: FrequencyMaps
    num_classes: int
    attack_seconds: float
    maps_seconds: float

    def __len__(self) -> int:
        return len(self.index)

    @property
    def fooled(self) -> torch.Tensor:
        """(n,) bool: correctly classified clean, misclassified after the attack."""
        return self.correct & self.attack.success

    def state(self) -> dict:
        """Tensors (on the CPU) and plain values only, for torch.save and `torch.load(weights_only=True)`;
        `from_state` rebuilds the analysis."""
        return {"index": self.index, "labels": self.labels, "correct": self.correct, "attack": self.attack.state(),
                "x_adv": self.x_adv, "essential": self.essential.state(), "adversarial": self.adversarial.state(),
                "num_classes": self.num_classes, "attack_seconds": self.attack_seconds,
                "maps_seconds": self.maps_seconds}

    @classmethod
    def from_state(cls, data: dict) -> ImageAnalysis:
        """The inverse of `state`."""
        return cls(data["index"], data["labels"], data["correct"], AttackReport(**data["attack"]), data["x_adv"],
                   FrequencyMaps.from_state(data["essential"]), FrequencyMaps.from_state(data["adversarial"]),
                   data["num_classes"], data["attack_seconds"], data["maps_seconds"])

    @classmethod
    def cat(cls, parts: Sequence[ImageAnalysis]) -> ImageAnalysis:
        """One analysis of the images of all `parts` (disjoint), in their order."""
        return cls(
            torch.cat([p.index for p in parts]), torch.cat([p.labels for p in parts]),
            torch.cat([p.correct for p in parts]), AttackReport.cat([p.attack for p in parts]),
            torch.cat([p.x_adv for p in parts]), FrequencyMaps.cat([p.essential for p in parts]),
            FrequencyMaps.cat([p.adversarial for p in parts]), parts[0].num_classes,
            sum(p.attack_seconds for p in parts), sum(p.maps_seconds for p in parts),
        )


@dataclass
class Analysis:
    """A whole analysis: the per-image part, the correlation of the kept essential and adversarial maps of the
    same images (None when it cannot be computed, with the reason in `no_correlation`), `n_pairs` such images,
    one row per class (keys PER_CLASS), the `active_threshold` of the sparsity metrics, and the time the
    correlation took."""

    images: ImageAnalysis
    correlation: CorrelationResult | None
    no_correlation: str | None
    n_pairs: int
    per_class: list[dict[str, float]]
    active_threshold: float
    correlation_seconds: float


def analyse_images(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    settings: MapSettings | None = None,
    *,
    index: torch.Tensor | None = None,
    previous: Sequence[FrequencyMaps] = (),
    essential: FrequencyMaps | None = None,
    warm_min_steps: int = 50,
    seed: int = 0,
    attack_batch_size: int = 256,
    progress: bool = True,
) -> ImageAnalysis:
    """Attack x: (n, C, H, W) in [0, 1] (labels y: (n,) int64, on the model's device) and solve its maps.

    The attack runs in chunks of `attack_batch_size`, chunk k seeded with seed + k (`attack_in_chunks`). The
    essential maps of the correctly classified images and the adversarial maps of the fooled ones are solved
    together with `settings` (default: the paper's); `essential` instead reuses maps solved before for exactly
    the correctly classified images (an earlier attack on the same images). index: (n,) int64 image ids
    (default 0..n-1). previous: maps solved before for these images (an earlier analysis' essential and
    adversarial maps) to warm-start from (`solve_maps`).
    """
    check_images(x)
    check_labels(y, len(x))
    index = torch.arange(len(x)) if index is None else index.cpu()
    check_labels(index, len(x), "index")
    settings = settings or MapSettings()
    start = time.perf_counter()
    with frozen_eval(model), torch.no_grad():
        correct = predict(model, x, attack_batch_size) == y
        num_classes = model(x[:1]).shape[1]
    x_adv = attack_in_chunks(attack, model, x, y, attack_batch_size, seed)
    report = attack_report(model, x, x_adv, y)
    attack_seconds = time.perf_counter() - start

    start = time.perf_counter()
    fooled = correct & report.success
    problems = [MapProblem("adversarial", x_adv[fooled], report.adversarial_labels[fooled], labels=y[fooled],
                           index=index[fooled.cpu()])]
    if essential is None:
        problems.insert(0, MapProblem("essential", x[correct], y[correct], index=index[correct.cpu()]))
    elif not torch.equal(essential.index.sort().values, index[correct.cpu()].sort().values):
        raise UserInputError("the essential maps given must be those of exactly the correctly classified images")
    solved = solve_maps(model, problems, settings, previous=previous, warm_min_steps=warm_min_steps,
                        progress=progress)
    return ImageAnalysis(
        index, y.cpu(), correct.cpu(), report.cpu(), x_adv.cpu(), solved[0] if essential is None else essential,
        solved[-1], num_classes, attack_seconds, time.perf_counter() - start,
    )


def conclude(images: ImageAnalysis, *, permutations: int = 100, seed: int = 0, pool_kernel: int | None = None,
             active_threshold: float = 0.5, resamples: int = 0) -> Analysis:
    """Correlate the kept essential and adversarial maps of the same images (`correlate_maps`: IdCor with
    `permutations` seeded with `seed` and, with `resamples`, its bootstrap interval, SVCCA, CKA, cosine, after a
    max-pool of `pool_kernel`, None: the paper's)
    and make the per-class rows. A map entry above `active_threshold` counts as a frequency kept."""
    start = time.perf_counter()
    essential, adversarial = images.essential.kept_only(), images.adversarial.kept_only()
    correlation, reason = None, None
    try:
        correlation = correlate_maps(essential.maps, adversarial.maps, essential.index, adversarial.index,
                                     permutations=permutations, seed=seed, kernel=pool_kernel, resamples=resamples)
    except UserInputError as error:
        reason = str(error)
    return Analysis(images, correlation, reason, int(torch.isin(essential.index, adversarial.index).sum()),
                    per_class_rows(images, active_threshold), active_threshold, time.perf_counter() - start)


def analyse(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    settings: MapSettings | None = None,
    *,
    index: torch.Tensor | None = None,
    previous: Analysis | None = None,
    essential: FrequencyMaps | None = None,
    warm_min_steps: int = 50,
    permutations: int = 100,
    seed: int = 0,
    pool_kernel: int | None = None,
    active_threshold: float = 0.5,
    attack_batch_size: int = 256,
    progress: bool = True,
    resamples: int = 0,
) -> Analysis:
    """`analyse_images` then `conclude`, in one call (arguments as there)."""
    earlier = () if previous is None else (previous.images.essential, previous.images.adversarial)
    images = analyse_images(
        model, x, y, attack, settings, index=index, previous=earlier, essential=essential,
        warm_min_steps=warm_min_steps, seed=seed, attack_batch_size=attack_batch_size, progress=progress,
    )
    return conclude(images, permutations=permutations, seed=seed, pool_kernel=pool_kernel,
                    active_threshold=active_threshold, resamples=resamples)


def summary(analysis: Analysis) -> dict[str, float]:
    """The scalars of an analysis, name -> value for every name of METRICS (nan where undefined: no correlation,
    no maps of a kind, no correctly classified image)."""
    images = analysis.images
    attack = images.attack.select(images.correct)  # over the correctly classified images
    scalars = {
        "images": len(images), "correct": int(images.correct.sum()), "clean_acc": images.correct.float().mean(),
        "fooled": int(attack.success.sum()), "success_rate": attack.success_rate,
        "median_linf": attack.median_linf, "median_l2": attack.median_l2,
    }
    for kind, maps in (("essential", images.essential), ("adversarial", images.adversarial)):
        scalars |= {
            f"{kind}_maps": len(maps), f"{kind}_kept": _mean(maps.kept), f"{kind}_steps": _mean(maps.steps),
            f"{kind}_warm": maps.warm.sum() / max(len(maps), 1),
            f"{kind}_sparsity": sparsity(maps.kept_only().maps, analysis.active_threshold).mean(),
        }
    correlation = analysis.correlation.scalars() if analysis.correlation else dict.fromkeys(CORRELATION, math.nan)
    scalars |= {name: correlation[name] for name in CORRELATION}
    scalars |= {"n_pairs": analysis.n_pairs, "attack_seconds": images.attack_seconds,
                "maps_seconds": images.maps_seconds,
                "seconds": images.attack_seconds + images.maps_seconds + analysis.correlation_seconds}
    return {name: float(scalars[name]) for name in METRICS}


def sparsity(maps: torch.Tensor, threshold: float) -> torch.Tensor:
    """(n,) share of each map's entries at or below `threshold` (the frequencies it switches off);
    maps: (n, C, H, W)."""
    return (maps <= threshold).flatten(1).float().mean(1)


def per_class_rows(images: ImageAnalysis, active_threshold: float) -> list[dict[str, float]]:
    """One row per class c (keys PER_CLASS): the images of class c, their clean accuracy and the attack's success
    rate on the correct ones; the essential maps of class c and the adversarial maps whose adversarial label is
    c: how many were solved, the share kept, the mean sparsity of the kept ones; and the cosine between the two
    class-mean kept maps (nan where a class has no kept map of a kind)."""
    K = images.num_classes
    maps = {"essential": images.essential, "adversarial": images.adversarial}
    means = {kind: m.class_means(K).flatten(1) for kind, m in maps.items()}
    rows = []
    for c in range(K):
        of_class = images.labels == c
        correct = images.correct & of_class
        row = {"class": c, "images": int(of_class.sum()), "clean_acc": _mean(correct[of_class]),
               "success_rate": _mean(images.fooled[correct])}
        for kind, m in maps.items():
            mine = m.targets == c
            row |= {f"{kind}_maps": int(mine.sum()), f"{kind}_kept": _mean(m.kept[mine]),
                    f"{kind}_sparsity": sparsity(m.maps[mine & m.kept], active_threshold).mean().item()}
        both = all(bool((m.kept & (m.targets == c)).any()) for m in maps.values())
        row["mean_map_cosine"] = (F.cosine_similarity(means["essential"][c], means["adversarial"][c], dim=0).item()
                                  if both else math.nan)
        rows.append(row)
    return rows


def _mean(values: torch.Tensor) -> float:
    return values.float().mean().item() if len(values) else math.nan
