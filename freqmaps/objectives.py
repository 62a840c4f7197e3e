"""Training objectives: what a training step minimises, each a small object that owns its attack and only its
own arguments, so no combination of settings can contradict another.

`objective(model, x, y) -> TrainingLoss` with model: pixels in [0, 1] -> logits (B, K), x: (B, C, H, W) in
[0, 1], y: (B,) labels. `objective.criterion(logits, y)` is the clean loss that validation and test report.
Attacks run the model in eval mode (BatchNorm statistics are updated only by the loss's own forward passes).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from freqmaps.attacks import FGSM, PGD
from freqmaps.attacks.trades import TRADES, trades_loss
from freqmaps.errors import UserInputError


@dataclass
class TrainingLoss:
    """loss: () the value to minimise; logits: (B, K) the logits it was computed on, which `train/acc`
    counts (of the attacked batch for PGD-AT and fast FGSM, of the clean batch for cross-entropy and TRADES)."""

    loss: torch.Tensor
    logits: torch.Tensor


class Objective(ABC):
    """Base of the objectives; see the module docstring."""

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The clean loss of logits (B, K) against y (B,), batch mean: cross-entropy."""
        return F.cross_entropy(logits, y)

    def start_epoch(self, epoch: int) -> None:
        """Called at the start of every training epoch (0-based, also after a resume), for objectives whose weights
        follow a schedule (`freqmaps.saturation.SaturationPenalty`); the others ignore it."""

    @abstractmethod
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TrainingLoss:
        """The training loss of one batch."""


def check_attack(objective: str, attack: object, kind: type) -> None:
    """UserInputError unless `attack` is a `kind` attack."""
    if not isinstance(attack, kind):
        raise UserInputError(f"{objective} trains against a {kind.__name__} attack, got {attack!r}")


class CrossEntropy(Objective):
    """Standard training: CE(f(x), y) with `label_smoothing` (0: none), also in validation and test."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0 <= label_smoothing < 1:
            raise UserInputError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TrainingLoss:
        logits = model(x)
        return TrainingLoss(self.criterion(logits, y), logits)


class PGDTraining(Objective):
    """PGD adversarial training (Madry et al. 2018): CE(f(x_adv), y) with x_adv = attack(f, x, y). Default
    attack: the paper's CIFAR-10 PGD-10, L∞ ε 8/255, step 2/255."""

    def __init__(self, attack: PGD | None = None) -> None:
        self.attack = attack if attack is not None else PGD(eps=8 / 255, steps=10, step_size=2 / 255)
        check_attack("PGDTraining", self.attack, PGD)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TrainingLoss:
        logits = model(self.attack(model, x, y))
        return TrainingLoss(F.cross_entropy(logits, y), logits)


class TRADESTraining(Objective):
    """TRADES (Zhang et al. 2019): CE(f(x), y) + beta * KL(f(x) || f(x_adv)), x_adv from the KL inner
    maximisation `attack` (default: the paper's CIFAR-10 setting, ε 8/255, 10 steps of 0.007)."""

    def __init__(self, attack: TRADES | None = None, beta: float = 6.0) -> None:
        self.attack = attack if attack is not None else TRADES()
        check_attack("TRADESTraining", self.attack, TRADES)
        if not beta >= 0:
            raise UserInputError(f"TRADES beta must be >= 0, got {beta}")
        self.beta = beta

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TrainingLoss:
        x_adv = self.attack(model, x, y)
        logits = model(x)
        return TrainingLoss(trades_loss(logits, model(x_adv), y, self.beta), logits)


class FastFGSMTraining(Objective):
    """Fast adversarial training (Wong et al. 2020): CE(f(x_adv), y) with x_adv one FGSM step from a random
    start (default: ε 8/255, step 1.25 ε). The random start is what keeps FGSM training from catastrophic
    overfitting, so an attack without it is refused."""

    def __init__(self, attack: FGSM | None = None) -> None:
        self.attack = attack if attack is not None else FGSM(eps=8 / 255, random_start=True)
        check_attack("FastFGSMTraining", self.attack, FGSM)
        if not self.attack.random_start:
            raise UserInputError("FastFGSMTraining needs an FGSM attack with random_start: true (Wong et al. 2020)")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TrainingLoss:
        logits = model(self.attack(model, x, y))
        return TrainingLoss(F.cross_entropy(logits, y), logits)
