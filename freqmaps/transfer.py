"""Transfer of adversarial examples between models (Springer, Mitchell & Kenyon 2021, "Adversarial perturbations are
not so weird: entanglement of robust and non-robust features in neural network classifiers").

Each source model crafts adversarial examples of x with `attack` (white box on the source); each target model
classifies them. Success, per target, is counted over the images that target classifies correctly clean:

* untargeted: the target's prediction on x_adv != y;
* targeted: the target's prediction == the target class t = (y + target_shift) mod C (the attack, a targeted one
  such as `TargetedPGD`, is called with t as its labels).

The source's own (white-box) success is counted the same way, over the images it classifies correctly. With the
spectrum of each source's perturbations (`perturbation_spectrum`): do robust sources perturb lower frequencies? And,
on `map_images` of the images (a seeded draw, `map_index`), the cosine between each source's adversarial frequency
maps and each target's essential maps (`freqmaps.maps`, `kept_map_cosines`): does transfer follow the alignment of
maps?

The map images are a seeded draw of the n, not the first m: a probe drawn with `freqmaps.sampling.seeded_indices`
from an image folder comes out sorted by class, and its first images, all of one class, all have one target class
when targeted. An image has a cosine only where both maps are kept and the attack succeeded on the source;
`map_pairs` counts them per (source, target), so a cell without any reads as n = 0, not as a bare nan.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from freqmaps.attacks import Attack, attack_in_chunks
from freqmaps.class_maps import predict
from freqmaps.correlation import pair_cosines
from freqmaps.errors import UserInputError
from freqmaps.fourier import normalised_profile, power_spectrum
from freqmaps.inputs import check_images, check_labels, frozen_eval
from freqmaps.maps import FrequencyMaps, MapSettings, adversarial_maps, essential_maps
from freqmaps.sampling import seeded_indices


def goal_labels(y: torch.Tensor, num_classes: int, targeted: bool, target_shift: int = 1) -> torch.Tensor:
    """The labels the attack is called with: y (n,) itself, or the target classes (y + target_shift) mod C."""
    if not targeted:
        return y
    if target_shift % num_classes == 0:
        raise UserInputError(f"target_shift {target_shift} maps every class to itself with {num_classes} classes")
    return (y + target_shift) % num_classes


def success_flags(predictions: torch.Tensor, y: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    """(n,) bool: the attack succeeded on each image (prediction == goal if targeted, else prediction != y)."""
    return predictions == goal if targeted else predictions != y


def check_compatible(models: Mapping[str, nn.Module], x: torch.Tensor) -> int:
    """The number of classes all `models` give on images shaped like x: (n, C, H, W); a one-line UserInputError
    naming two models that take different images or give different numbers of classes."""
    if not models:
        raise UserInputError("transfer needs at least one source and one target model")
    classes: dict[str, int] = {}
    for name, model in models.items():
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        device = next(model.parameters(), x).device
        try:
            with frozen_eval(model), torch.no_grad():
                classes[name] = model(x[:1].to(device)).shape[1]
        except RuntimeError as error:
            taking = next(iter(classes), None)
            channels = f"{first.in_channels}-channel images" if first is not None else "other images"
            message = (str(error).strip().splitlines() or [""])[0][:120]
            raise UserInputError(f"models {name!r} and {taking!r} take different images: {name!r} ({channels}) does "
                                 f"not take the images {tuple(x.shape[1:])}" + (f" that {taking!r} takes"
                                                                                 if taking else "") +
                                 f" ({message})") from None
    counts = set(classes.values())
    if len(counts) > 1:
        (a, ka), (b, kb) = next((p, q) for p in classes.items() for q in classes.items() if p[1] != q[1])
        raise UserInputError(f"models {a!r} and {b!r} give different numbers of classes ({ka} and {kb}): transfer "
                             "needs models of one task")
    return counts.pop()


@dataclass
class TransferResult:
    """Transfer of S sources' adversarial examples to T targets on n images.

    sources, targets: the model names; targeted: the success rule; target_shift: t = (y + shift) mod C;
    success: (S, T) float32 in [0, 1], the share of the images target j classifies correctly that source i's
    x_adv makes succeed; white_box: (S,) each source's success on itself; counts: (T,) int64 the images each
    target classifies correctly (success's denominators); source_counts: (S,); outcomes: (S, T, n) bool per-image
    success (False where the target misclassifies the clean image); correct: (T, n) bool; source_correct: (S, n);
    spectrum: (S, R) float32 the radial power spectrum of each source's perturbations (`perturbation_spectrum`);
    map_index: (m,) int64 the positions in x of the m = map_images images whose maps were solved (a seeded draw,
    ascending); map_cosine: (S, T, m) float32 on those images, the cosine between source i's adversarial map and
    target j's essential map of each image (`kept_map_cosines`; nan where either map is missing; m = 0: not
    solved).
    """

    sources: list[str]
    targets: list[str]
    targeted: bool
    target_shift: int
    success: torch.Tensor
    white_box: torch.Tensor
    counts: torch.Tensor
    source_counts: torch.Tensor
    outcomes: torch.Tensor
    correct: torch.Tensor
    source_correct: torch.Tensor
    spectrum: torch.Tensor
    map_index: torch.Tensor
    map_cosine: torch.Tensor

    @property
    def map_pairs(self) -> torch.Tensor:
        """(S, T) int64: the images with a map cosine (both maps kept, the attack successful on the source)."""
        return (~self.map_cosine.isnan()).sum(2)

    @property
    def mean_map_cosine(self) -> torch.Tensor:
        """(S, T) float32: map_cosine averaged over the images with both maps (nan where `map_pairs` is 0)."""
        return self.map_cosine.nanmean(2) if self.map_cosine.shape[2] else torch.full(self.success.shape, torch.nan)

    def save(self, path: str | Path) -> None:
        torch.save(asdict(self), path)

    @classmethod
    def load(cls, path: str | Path) -> TransferResult:
        state = torch.load(path, weights_only=True)
        if "map_index" not in state:  # saved before the map images were drawn: they were the first m
            state["map_index"] = torch.arange(state["map_cosine"].shape[2])
        return cls(**{f.name: state[f.name] for f in fields(cls)})


def perturbation_spectrum(delta: torch.Tensor) -> torch.Tensor:
    """Radial power spectrum of perturbations delta: (n, C, H, W): the mean |F(delta)|^2 over images and channels
    against integer frequency radius (`fourier.radial_profile`), normalised to sum 1: (R,) float32."""
    return normalised_profile(power_spectrum(delta))


def kept_map_cosines(adversarial: FrequencyMaps, essential: FrequencyMaps,
                     succeeded: torch.Tensor) -> torch.Tensor:
    """(m,) float32 cosine between the adversarial and the essential map of each of m images (both FrequencyMaps
    of the same m images, maps (m, C, H, W)); nan where either map is not kept, where the attack did not succeed
    on the image (succeeded: (m,) bool), or where a map is all zeros."""
    a, e = adversarial.maps.flatten(1).cpu(), essential.maps.flatten(1).cpu()
    valid = adversarial.kept.cpu() & essential.kept.cpu() & succeeded.cpu() & a.any(1) & e.any(1)
    cosine = torch.full((len(a),), torch.nan)
    cosine[valid] = pair_cosines(a[valid], e[valid]).float()
    return cosine


def transfer_matrix(
    sources: Mapping[str, nn.Module], targets: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
    attack: Attack, targeted: bool = False, target_shift: int = 1, batch_size: int = 256, seed: int = 0,
    progress: bool = True, map_images: int = 0, map_settings: MapSettings | None = None,
) -> TransferResult:
    """Attack x with every source and classify the adversarial examples with every target (module docstring).

    Args:
        sources, targets: name -> model (pixels in [0, 1] -> logits), all of one task (same input shape and
            classes); a model may be in both. Models are run in eval mode and handed back as they came.
        x: (n, C, H, W) in [0, 1]; y: (n,) true labels.
        attack: `attack(model, x, labels) -> x_adv`; a targeted attack (`TargetedPGD`) when targeted.
        targeted: the success rule; target_shift: the target class t = (y + target_shift) mod C.
        batch_size: images per attack call and per prediction; seed: the attack's random starts (chunk k: seed + k).
        progress: a tqdm bar over the sources (and the map solver's bars).
        map_images: on map_images of the images, drawn with `seed` (`map_index`), solve each target's essential
            maps (true labels) and each source's adversarial maps (its x_adv, kept where the attack succeeded on it)
            and store their cosines (`map_cosine`, `map_pairs`); 0 skips the solver. map_settings: the solver's
            (default: the fast rule).
    """
    check_images(x)
    check_labels(y, len(x))
    if getattr(attack, "targeted", False) != targeted:
        kind = "a targeted attack (e.g. TargetedPGD)" if targeted else "an untargeted attack"
        raise UserInputError(f"targeted={targeted} needs {kind}, got {attack!r}")
    num_classes = check_compatible({**sources, **targets}, x)
    goal = goal_labels(y, num_classes, targeted, target_shift)
    if map_images < 0:
        raise UserInputError(f"map_images must be >= 0, got {map_images}")
    m = min(map_images, len(x))
    map_index = (seeded_indices(len(x), m, seed) if m else torch.zeros(0, dtype=torch.long)).to(x.device)
    settings = map_settings or MapSettings(solver="fast")

    def device_of(model: nn.Module) -> torch.device:
        return next(model.parameters(), x).device

    def predictions(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        with frozen_eval(model):
            return predict(model, images.to(device_of(model)), batch_size).to(y.device)

    correct = torch.stack([predictions(model, x) == y for model in targets.values()])
    x_map, y_map = x[map_index], y[map_index]
    essential = [essential_maps(model, x_map.to(device_of(model)), y_map.to(device_of(model)), settings,
                                progress=progress) for model in targets.values()] if m else []
    success, outcomes, white_box, source_correct, spectra, cosines = [], [], [], [], [], []
    for name, source in tqdm(sources.items(), desc="transfer: sources", disable=not progress):
        device = device_of(source)
        x_adv = attack_in_chunks(attack, source, x.to(device), goal.to(device), batch_size, seed).to(x.device)
        spectra.append(perturbation_spectrum(x_adv - x))
        own = predictions(source, x) == y
        own_success = success_flags(predictions(source, x_adv), y, goal, targeted) & own
        source_correct.append(own)
        white_box.append(own_success.sum() / own.sum().clamp_min(1))
        hits = torch.stack([success_flags(predictions(model, x_adv), y, goal, targeted) for model in targets.values()])
        hits &= correct
        outcomes.append(hits)
        success.append(hits.sum(1) / correct.sum(1).clamp_min(1))
        if m:
            x_adv_map = x_adv[map_index]
            adversarial = adversarial_maps(source, x_adv_map.to(device), predictions(source, x_adv_map).to(device),
                                           y_map.to(device), settings, progress=progress)
            cosines.append(torch.stack([kept_map_cosines(adversarial, maps, own_success[map_index])
                                        for maps in essential]))
        else:
            cosines.append(torch.zeros(len(targets), 0))
    return TransferResult(
        sources=list(sources), targets=list(targets), targeted=targeted, target_shift=target_shift,
        success=torch.stack(success).float().cpu(), white_box=torch.stack(white_box).float().cpu(),
        counts=correct.sum(1).cpu(), source_counts=torch.stack(source_correct).sum(1).cpu(),
        outcomes=torch.stack(outcomes).cpu(), correct=correct.cpu(), source_correct=torch.stack(source_correct).cpu(),
        spectrum=torch.stack(spectra).cpu(), map_index=map_index.cpu(), map_cosine=torch.stack(cosines).cpu())
