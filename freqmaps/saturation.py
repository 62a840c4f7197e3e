"""Saturating networks (Nayebi & Ganguli 2017, "Biologically inspired protection of deep networks from adversarial
attacks"): the penalty that drives hidden units into their flat, saturated regime, and its annealing schedule.

    penalty = λ Σ_layers Σ_units ψ(h),   ψ(h) = relu(h) for a ReLU,   ψ(h) = σ(h)(1 − σ(h)) for a sigmoid,

h a unit's pre-activation: ψ is zero (ReLU) or vanishing (sigmoid) exactly where the unit is saturated. The
pre-activations are the inputs of every `nn.ReLU` / `nn.Sigmoid` module of any model, read with forward hooks
that are removed afterwards (functional activations such as `F.relu` are not seen). λ is annealed in over the
first epochs (`Annealing`), as in the paper, so the network first learns the task.

Brendel & Bethge (2017) showed that much of the resulting robustness is numerical: saturated units pass
gradients that vanish in float32. Evaluate such models with `freqmaps.robustness.robustness_report`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from freqmaps.errors import UserInputError
from freqmaps.objectives import CrossEntropy, Objective, TrainingLoss

SIGMOID_SATURATED = 4.0  # |h| beyond which a sigmoid counts as saturated: σ'(h) < 0.018, under 1/14 of σ'(0)


def psi(h: torch.Tensor, activation: nn.Module) -> torch.Tensor:
    """ψ(h) elementwise for the activation module it feeds: relu(h) (nn.ReLU) or σ(h)(1 − σ(h)) (nn.Sigmoid)."""
    if isinstance(activation, nn.ReLU):
        return torch.relu(h)
    s = torch.sigmoid(h)
    return s * (1 - s)


def saturated(h: torch.Tensor, activation: nn.Module) -> torch.Tensor:
    """Which units are in their flat region, elementwise bool: ReLU h <= 0; sigmoid |h| > SIGMOID_SATURATED."""
    if isinstance(activation, nn.ReLU):
        return h <= 0
    return h.abs() > SIGMOID_SATURATED


def activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The model's nn.ReLU / nn.Sigmoid modules by name, in registration order; UserInputError when it has none."""
    found = {name: m for name, m in model.named_modules() if isinstance(m, (nn.ReLU, nn.Sigmoid))}
    if not found:
        raise UserInputError(f"{type(model).__name__} has no nn.ReLU or nn.Sigmoid modules, so no pre-activations to "
                             "saturate (functional activations such as F.relu are not seen)")
    return found


@dataclass
class Preactivation:
    """One forward pass through one activation module: its name, the module, and h, its input (B, ...)."""

    name: str
    module: nn.Module
    h: torch.Tensor


@contextmanager
def recorded_preactivations(model: nn.Module, training_only: bool = False) -> Iterator[list[Preactivation]]:
    """Inside the block, every pass through an nn.ReLU / nn.Sigmoid module of `model` appends its Preactivation
    (h keeps its autograd graph) to the yielded list; with `training_only`, only passes of modules in training mode
    (not the eval-mode passes of an attack). The hooks are removed on exit, also on error."""
    recorded: list[Preactivation] = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if module.training or not training_only:
                recorded.append(Preactivation(name, module, inputs[0]))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in activation_modules(model).items()]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def penalty_sum(recorded: list[Preactivation]) -> torch.Tensor:
    """Σ over the recorded passes and their units of ψ(h), summed over the batch too: () float32."""
    return sum(psi(p.h.float(), p.module).sum() for p in recorded)


def saturation_penalty(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Σ_layers Σ_units ψ(h) of model on x: (B, C, H, W) in [0, 1], averaged over the images: () float32 (with
    autograd to the parameters when gradients are on). The model runs in its current mode."""
    with recorded_preactivations(model) as recorded:
        model(x)
    return penalty_sum(recorded) / len(x)


class Annealing:
    """λ by epoch, from 0 at epoch 0 to lambda_max at epoch `epochs` and after.

    linear: λ(e) = lambda_max · e / epochs. exponential: λ(e) = lambda_max · 10^(−decades · (epochs − e) / epochs)
    for 1 <= e <= epochs (a geometric rise over `decades` decades ending at lambda_max), 0 at e = 0.
    """

    def __init__(self, lambda_max: float, epochs: int = 5, kind: Literal["linear", "exponential"] = "linear",
                 decades: float = 3.0) -> None:
        if not lambda_max >= 0:
            raise UserInputError(f"lambda_max must be >= 0, got {lambda_max}")
        if epochs < 1:
            raise UserInputError(f"the annealing needs epochs >= 1, got {epochs}")
        if kind not in ("linear", "exponential"):
            raise UserInputError(f"unknown annealing {kind!r}; choose linear or exponential")
        if not decades > 0:
            raise UserInputError(f"decades must be > 0, got {decades}")
        self.lambda_max, self.epochs, self.kind, self.decades = lambda_max, epochs, kind, decades

    def __call__(self, epoch: int) -> float:
        if epoch <= 0:
            return 0.0
        if epoch >= self.epochs:
            return self.lambda_max
        if self.kind == "linear":
            return self.lambda_max * epoch / self.epochs
        return self.lambda_max * 10 ** (-self.decades * (self.epochs - epoch) / self.epochs)


class SaturationPenalty(Objective):
    """`base`'s loss (default cross-entropy) + λ Σ_layers Σ_units ψ(h), per image of the batch, over every
    training-mode pass of the step through the network's nn.ReLU / nn.Sigmoid modules (the eval-mode passes of an
    attack inside `base` do not count). λ follows `Annealing(lambda_max, anneal_epochs, schedule, decades)`, set
    by `start_epoch` (StandardClassifier calls it at each training epoch's start, also after a resume); λ is 0
    until then. Validation and test report `base`'s clean criterion."""

    def __init__(self, base: Objective | None = None, lambda_max: float = 0.01, anneal_epochs: int = 5,
                 schedule: Literal["linear", "exponential"] = "linear", decades: float = 3.0) -> None:
        self.base = base if base is not None else CrossEntropy()
        self.annealing = Annealing(lambda_max, anneal_epochs, schedule, decades)
        self.lam = self.annealing(0)

    def start_epoch(self, epoch: int) -> None:
        self.lam = self.annealing(epoch)

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.base.criterion(logits, y)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TrainingLoss:
        with recorded_preactivations(model, training_only=True) as recorded:
            result = self.base(model, x, y)
        return TrainingLoss(result.loss + self.lam * penalty_sum(recorded) / len(x), result.logits)


def excess_kurtosis(values: torch.Tensor) -> float:
    """Excess kurtosis γ₂ = m₄ / m₂² − 3 of all entries of `values` (central moments, population form; 0 for a
    Gaussian; scipy.stats.kurtosis's default), computed in float64; nan for fewer than 2 entries or constant ones."""
    v = values.detach().double().flatten()
    centred = v - v.mean()
    m2 = centred.pow(2).mean()
    return (centred.pow(4).mean() / m2**2 - 3).item() if len(v) > 1 and m2 > 0 else float("nan")


def weight_kurtosis(model: nn.Module) -> dict[str, float]:
    """`excess_kurtosis` of the weight of every nn.Linear and nn.Conv2d of the model, by module name (biases apart):
    Nayebi & Ganguli's saturating networks grow heavy-tailed, highly kurtotic weights."""
    return {name: excess_kurtosis(m.weight) for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))}
