"""Fragile and robust filters by nodal dropout (Pravin et al. 2021, "Adversarial robustness in deep learning: attacks
on fragile neurons"), and the rescaling defence.

For a convolution `layer` (default: the model's first `nn.Conv2d`) with K output channels, filter k is *dropped* by
zeroing channel k of the layer's output with a forward hook. `fragility` measures, for every filter at once:

* clean[k]: accuracy with filter k dropped; adversarial[k, e]: accuracy under FGSM at eps[e] against the network
  with filter k dropped (the attack sees the dropout; FGSM's direction does not depend on eps, so one input
  gradient serves the whole grid);
* fragility[k] = mean_e (adversarial[k, e] - base_adversarial[e]): the FGSM accuracy that dropping filter k gives
  back. A fragile filter (> 0) is one the attack works through; a robust one (<= 0) is one the network needs
  under attack too;
* energy[k, e] = mean_i ||phi_k(x_i + delta_i) - phi_k(x_i)||_2, the targeting energy: how much the FGSM
  perturbation delta of the intact network (at eps[e]) moves channel k of the layer's output phi;
* spearman[e]: Spearman's rank correlation between fragility and energy[:, e] (does the attack target the
  fragile filters?).

Batching: the images are replicated over G "copies" in one forward pass, copy g with its own channel mask (a row
of ones with a zero at its filter; copy 0 of the first pass is the intact network), so K + 1 networks are
evaluated in ceil((K + 1) / filters_per_pass) passes instead of a Python loop over filters. Hooks are removed
afterwards: the model is left as it came (weights, modes, hooks).

The defence (`ChannelRescaled`, `rescaling_scales`, `evaluate_rescaling`) multiplies the layer's output channels by
scales: amplify the fragile filters, compress the robust ones, in proportion to their fragility.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from freqmaps.attacks import FGSM, PGD, Attack, attack_in_chunks
from freqmaps.attacks.base import attacking
from freqmaps.attacks.pgd import ascent_step
from freqmaps.class_maps import predict
from freqmaps.errors import UserInputError
from freqmaps.fourier import fftshift2, frequency_radius, radial_profile
from freqmaps.inputs import frozen_eval


def conv_layer(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Conv2d]:
    """(name, module) of the convolution `layer` (a name of `model.named_modules()`), or of the first `nn.Conv2d`
    when None. UserInputError for a name that is not a convolution of the model."""
    convs = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise UserInputError(f"{type(model).__name__} has no nn.Conv2d to drop filters of")
    if layer is None:
        return convs[0]
    found = dict(convs).get(layer)
    if found is None:
        names = ", ".join(name for name, _ in convs[:8])
        raise UserInputError(f"{layer!r} is not a convolution of {type(model).__name__}; its convolutions: {names}, "
                             "...")
    return layer, found


@contextmanager
def channel_scaling(layer: nn.Module, scales: torch.Tensor) -> Iterator[None]:
    """Within the block, `layer`'s output (G·B, K, H, W) is multiplied per copy by scales (G, K): rows g·B to
    (g + 1)·B by scales[g]. The hook is removed on exit, also on error."""

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        s = scales.to(device=output.device, dtype=output.dtype)
        return (output.unflatten(0, (len(s), -1)) * s[:, None, :, None, None]).flatten(0, 1)

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def captured_output(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """A list that receives `layer`'s output of every forward pass run within the block (detached)."""
    outputs: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: outputs.append(output.detach()))
    try:
        yield outputs
    finally:
        handle.remove()


def dropout_masks(filters: int) -> torch.Tensor:
    """(filters + 1, filters) float32: row 0 all ones (the intact network), row k + 1 ones with a zero at k."""
    return torch.cat([torch.ones(1, filters), 1 - torch.eye(filters)])


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of a, b: (n,) (ties get their mean rank); nan when either is constant."""
    from scipy.stats import spearmanr

    a, b = a.double().cpu().numpy(), b.double().cpu().numpy()
    if len(a) < 2 or a.min() == a.max() or b.min() == b.max():
        return math.nan
    return float(spearmanr(a, b).statistic)


@dataclass
class FragilityResult:
    """Nodal dropout of one layer's K filters on n images over an FGSM eps grid of E values (module docstring).

    layer: the layer's name; eps: (E,) L∞ radii in pixel units; images: n; base_clean: () clean accuracy of the
    intact network; base_adversarial: (E,) its FGSM accuracy; clean: (K,) and adversarial: (K, E) the same with
    filter k dropped; fragility: (K,) in [-1, 1]; energy: (K, E) >= 0; spearman: (E,) in [-1, 1] (nan where
    undefined); all accuracies in [0, 1], float32 on the CPU.
    """

    layer: str
    eps: torch.Tensor
    images: int
    base_clean: torch.Tensor
    base_adversarial: torch.Tensor
    clean: torch.Tensor
    adversarial: torch.Tensor
    fragility: torch.Tensor
    energy: torch.Tensor
    spearman: torch.Tensor

    @property
    def ranking(self) -> torch.Tensor:
        """(K,) int64 filter indices, most fragile first (ties by filter index)."""
        return torch.sort(-self.fragility, stable=True).indices

    @classmethod
    def merge(cls, results: Sequence[FragilityResult]) -> FragilityResult:
        """One result over the images of all `results` (same layer and eps; e.g. the batches of a probe): the
        accuracies and energies averaged with the images as weights, the Spearman correlations recomputed."""
        weights = torch.tensor([float(r.images) for r in results])
        weights = weights / weights.sum()

        def mean(name: str) -> torch.Tensor:
            return sum(w * getattr(r, name) for w, r in zip(weights, results))

        fragility, energy = mean("fragility"), mean("energy")
        return cls(layer=results[0].layer, eps=results[0].eps, images=sum(r.images for r in results),
                   base_clean=mean("base_clean"), base_adversarial=mean("base_adversarial"), clean=mean("clean"),
                   adversarial=mean("adversarial"), fragility=fragility, energy=energy,
                   spearman=torch.tensor([spearman(fragility, energy[:, e]) for e in range(energy.shape[1])]))

    def save(self, path: str | Path) -> None:
        torch.save(asdict(self), path)

    @classmethod
    def load(cls, path: str | Path) -> FragilityResult:
        state = torch.load(path, weights_only=True)
        return cls(**{f.name: state[f.name] for f in fields(cls)})


def fragility(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float] = (1 / 255, 2 / 255, 4 / 255, 8 / 255),
    layer: str | None = None, batch_size: int = 128, filters_per_pass: int | None = None, progress: bool = True,
) -> FragilityResult:
    """Nodal dropout of every filter of `layer` under FGSM at each eps (module docstring).

    Args:
        model: pixels in [0, 1] -> logits; left as it came (modes, weights, no hook left behind).
        x: (n, C, H, W) in [0, 1]; y: (n,) labels.
        eps: the FGSM grid (L∞, pixel units), each > 0.
        layer: a convolution's name in `model.named_modules()`; None: the first convolution.
        batch_size: images per pass; a pass holds batch_size · filters_per_pass images.
        filters_per_pass: networks (dropout masks) per forward pass; None: all K + 1 at once; 1: a loop over filters.
        progress: a tqdm bar over passes.
    """
    eps = [float(e) for e in eps]
    if not eps or min(eps) <= 0:
        raise UserInputError(f"eps must be a non-empty list of values > 0, got {eps}")
    name, conv = conv_layer(model, layer)
    masks = dropout_masks(conv.out_channels)
    per_pass = len(masks) if filters_per_pass is None else filters_per_pass
    if per_pass < 1 or batch_size < 1:
        raise UserInputError(f"batch_size and filters_per_pass must be >= 1, got {batch_size}, {filters_per_pass}")
    clean = torch.zeros(len(masks))
    adversarial = torch.zeros(len(masks), len(eps))
    energy = torch.zeros(conv.out_channels, len(eps))
    groups = list(zip(range(0, len(masks), per_pass), masks.split(per_pass)))
    with attacking(model, x, y) as (x, y):  # checked private copies; the model frozen in eval mode, autograd on
        passes = [(xb, yb, row, group) for xb, yb in zip(x.split(batch_size), y.split(batch_size))
                  for row, group in groups]
        for xb, yb, row, group in tqdm(passes, desc=f"fragility of {name}", disable=not progress):
            rows = slice(row, row + len(group))
            xr = xb.repeat(len(group), 1, 1, 1).requires_grad_()
            yr = yb.repeat(len(group))
            with channel_scaling(conv, group.to(x.device)):
                logits = model(xr).float()
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, yr, reduction="sum"), xr)
                clean[rows] += (logits.argmax(1) == yr).view(len(group), -1).sum(1).cpu()
                xr = xr.detach()
                with torch.no_grad():
                    for e, radius in enumerate(eps):
                        correct = model(ascent_step(xr, grad, xr, radius, radius, "linf")).argmax(1) == yr
                        adversarial[rows, e] += correct.view(len(group), -1).sum(1).cpu()
            if row == 0:  # copy 0 is the intact network: how much its perturbations move each filter's output
                for e, radius in enumerate(eps):
                    x_adv = ascent_step(xb, grad[:len(xb)], xb, radius, radius, "linf")
                    energy[:, e] += targeting_energy(model, conv, xb, x_adv).sum(0).cpu()
    clean, adversarial, energy = clean / len(x), adversarial / len(x), energy / len(x)
    gained = (adversarial[1:] - adversarial[:1]).mean(1)
    return FragilityResult(
        layer=name, eps=torch.tensor(eps), images=len(x), base_clean=clean[0], base_adversarial=adversarial[0],
        clean=clean[1:], adversarial=adversarial[1:], fragility=gained, energy=energy,
        spearman=torch.tensor([spearman(gained, energy[:, e]) for e in range(len(eps))]))


def targeting_energy(model: nn.Module, layer: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """(B, K) ||phi_k(x_adv) - phi_k(x)||_2 per image and output channel k of `layer` (phi: its output), for x,
    x_adv: (B, C, H, W) in [0, 1]; the model is run as it is (callers freeze it)."""
    with torch.no_grad(), captured_output(layer) as outputs:
        model(x)
        model(x_adv)
    clean, moved = outputs
    return torch.linalg.vector_norm((moved - clean).float().flatten(2), dim=2)


@dataclass
class FilterSpectra:
    """Frequency responses of K filters at a size x size grid: radial (K, R) the mean |FFT| of each kernel (zero
    padded, averaged over input channels) against integer radius (`fourier.radial_profile`), each row summing to 1;
    centroid (K,) the mean radius weighted by |FFT|^2 (higher: a higher-frequency filter), in [0, size / sqrt 2]."""

    radial: torch.Tensor
    centroid: torch.Tensor


def filter_spectra(conv: nn.Conv2d, size: int = 32) -> FilterSpectra:
    """The frequency response of each output filter of `conv` (kernel (K, C, kh, kw)) on a size x size grid."""
    weight = conv.weight.detach().float().cpu()
    if size < max(weight.shape[-2:]):
        raise UserInputError(f"size {size} is smaller than the kernel {tuple(weight.shape[-2:])}")
    response = fftshift2(torch.fft.fft2(weight, s=(size, size)).abs()).mean(1)  # (K, size, size)
    radial = torch.stack([radial_profile(r) for r in response])
    radial = radial / radial.sum(1, keepdim=True).clamp_min(1e-12)
    power = response**2
    centroid = (power * frequency_radius(size)).flatten(1).sum(1) / power.flatten(1).sum(1).clamp_min(1e-12)
    return FilterSpectra(radial, centroid)


def profile_correlation(radial: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
    """(K,) float32 Pearson correlation over frequency radius between each filter's radial response radial: (K, R)
    (`FilterSpectra.radial`) and one radial profile (R,) (e.g. `fourier.radial_profile` of adversarial maps of the
    same image size): does a filter pass the frequencies the attack's maps keep? nan for a constant row or profile."""
    if radial.shape[1:] != profile.shape:
        raise UserInputError(f"radial responses {tuple(radial.shape)} and the profile {tuple(profile.shape)} must "
                             "cover the same radii (the same image size)")
    r = radial.double() - radial.double().mean(1, keepdim=True)
    p = profile.double() - profile.double().mean()
    norms = r.norm(dim=1) * p.norm()
    return torch.where(norms > 0, (r @ p) / norms.clamp_min(1e-300), torch.nan).float()


class ChannelRescaled(nn.Module):
    """`model` with the output channels of its convolution `layer` multiplied by scales (K,): the rescaling defence.
    The hook lives only inside `forward`, so the wrapped model alone is unchanged; an attack on this module sees the
    scales (adaptive)."""

    def __init__(self, model: nn.Module, scales: torch.Tensor, layer: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.layer, conv = conv_layer(model, layer)
        if scales.shape != (conv.out_channels,):
            raise UserInputError(f"scales must have shape ({conv.out_channels},) for {self.layer}, got "
                                 f"{tuple(scales.shape)}")
        self.register_buffer("scales", scales.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with channel_scaling(self.model.get_submodule(self.layer), self.scales[None]):
            return self.model(x)


def rescaling_scales(fragility: torch.Tensor, strength: float = 0.5) -> torch.Tensor:
    """(K,) scales 1 + strength · (f - mean f) / max|f - mean f| in [1 - strength, 1 + strength]: the most fragile
    filter amplified by 1 + strength, the most robust compressed towards 1 - strength (all ones for constant f)."""
    if not 0 <= strength < 1:
        raise UserInputError(f"strength must be in [0, 1), got {strength}")
    centred = fragility.float() - fragility.float().mean()
    return 1 + strength * centred / centred.abs().max().clamp_min(1e-12)


@dataclass
class RescalingResult:
    """The rescaling defence on n images: accuracy[attack][setting] in [0, 1] for attack in (clean, FGSM, PGD-20)
    and setting in (undefended, transferred: crafted on the undefended model and scored on the defended one,
    adaptive: crafted on the defended model), with the scales (K,) and eps used."""

    scales: torch.Tensor
    eps: float
    accuracy: dict[str, dict[str, float]]


def evaluate_rescaling(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scales: torch.Tensor, eps: float = 4 / 255,
                       layer: str | None = None, pgd_steps: int = 20, batch_size: int = 256,
                       seed: int = 0) -> RescalingResult:
    """Accuracy of `model` and of `ChannelRescaled(model, scales, layer)` on x: (n, C, H, W) in [0, 1], y: (n,),
    clean and under FGSM and PGD (L∞ eps, `pgd_steps` steps of eps / 4 from a random start) (`RescalingResult`)."""
    defended = ChannelRescaled(model, scales.to(x.device), layer)
    attacks: dict[str, Attack] = {"FGSM": FGSM(eps),
                                  f"PGD-{pgd_steps}": PGD(eps, steps=pgd_steps, step_size=eps / 4)}

    def accuracy(net: nn.Module, images: torch.Tensor) -> float:
        with frozen_eval(net):
            return (predict(net, images, batch_size) == y).float().mean().item()

    table = {"clean": {"undefended": accuracy(model, x), "transferred": accuracy(defended, x),
                       "adaptive": accuracy(defended, x)}}
    for name, attack in attacks.items():
        x_base = attack_in_chunks(attack, model, x, y, batch_size, seed)
        x_adaptive = attack_in_chunks(attack, defended, x, y, batch_size, seed)
        table[name] = {"undefended": accuracy(model, x_base), "transferred": accuracy(defended, x_base),
                       "adaptive": accuracy(defended, x_adaptive)}
    return RescalingResult(defended.scales.cpu(), eps, table)
