"""Kurtotic versus Gaussian weights in a linear classifier under FGSM: Nayebi & Ganguli's (2017, "Biologically
inspired protection of deep networks from adversarial attacks") argument that heavy-tailed weights protect even a
linear model.

For a linear score s(x) = w·x + b and an L∞ perturbation ‖δ‖∞ <= ε, the score moves by at most ε‖w‖₁, and by
exactly that at δ = −ε·sign(w), which is the FGSM step of a two-class linear model (inside [0, 1]^d). With K
classes the margin of class y over class k, m_yk(x) = (w_y − w_k)·x + b_y − b_k, falls by at most ε‖w_y − w_k‖₁.
The clean margins scale with ‖w‖₂, and ‖w‖₁ = ρ·√d·‖w‖₂ with ρ = mean|w| / rms(w): √(2/π) ≈ 0.80 for Gaussian
entries, 1/√2 ≈ 0.71 for Laplace ones, and small for sparse, heavy-tailed (kurtotic) ones. So at equal clean
accuracy the more kurtotic w loses fewer images to FGSM.

The demonstration (`kurtotic_linear`): two multinomial logistic regressions on the same images, each fitted to its
optimum by accelerated proximal gradient (FISTA, Beck & Teboulle 2009; the problems are convex, so the result does
not depend on an initialisation or a batch order):

    gaussian:  mean CE + λ₂ ‖W‖²_F    (the MAP estimate under a Gaussian prior on the weights)
    kurtotic:  mean CE + λ₁ ‖W‖₁      (under a Laplace prior: sparse, heavy-tailed weights)

λ₂ is given; λ₁ is the value of a grid whose clean accuracy on the evaluation images is closest to the Gaussian
model's (clean accuracy only: the choice never sees an attack), and it must come within `tolerance`. Every model is
attacked with `freqmaps.attacks.FGSM` over an ε grid, and its exact worst-case L∞ accuracy inside [0, 1]^d
(`exact_robust_accuracy`, closed form for a linear model: no attack can do better) is computed beside it.

What it shows and what it does not: the L1 penalty lowers ‖W‖₁ directly, so this demonstrates that the task has a
kurtotic solution at the same clean accuracy which FGSM (and any L∞ attack) hurts less, through ε‖w_y − w_k‖₁; it
does not show that kurtosis arises by itself, as it does in the paper's saturating networks.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from freqmaps.attacks import FGSM
from freqmaps.errors import UserInputError
from freqmaps.inputs import check_images, check_labels
from freqmaps.saturation import excess_kurtosis

Penalty = Literal["l2", "l1"]


@dataclass
class LinearFit:
    """A fitted linear classifier on flattened pixels: weight (K, d), bias (K,) float32, logits = x·Wᵀ + b for x
    (n, d) in [0, 1]; steps: FISTA steps taken; converged: whether the relative step ‖ΔW‖_F / ‖W‖_F fell below the
    tolerance before max_steps."""

    weight: torch.Tensor
    bias: torch.Tensor
    steps: int
    converged: bool


@dataclass
class LinearModel:
    """One classifier of the demonstration and its figures.

    penalty "l2" (Gaussian prior) or "l1" (Laplace prior) and its strength λ; weight (K, d), bias (K,) float32;
    steps, converged: the fit's (`LinearFit`); clean_accuracy in [0, 1]; fgsm_accuracy, exact_accuracy: one per eps
    of the result, the share of images classified correctly clean and after FGSM / under the worst L∞ perturbation;
    excess_kurtosis of all weight entries (0 for Gaussian entries); l1_over_l2 = ‖W‖₁ / ‖W‖_F (at most √(K·d));
    zero_share: the share of weights that are exactly 0.
    """

    penalty: str
    strength: float
    weight: torch.Tensor
    bias: torch.Tensor
    steps: int
    converged: bool
    clean_accuracy: float
    fgsm_accuracy: list[float]
    exact_accuracy: list[float]
    excess_kurtosis: float
    l1_over_l2: float
    zero_share: float

    @property
    def rho(self) -> float:
        """mean|w| / rms(w) = ‖W‖₁ / (√(K·d)·‖W‖_F): √(2/π) ≈ 0.80 for Gaussian entries, 1/√2 for Laplace ones."""
        return self.l1_over_l2 / math.sqrt(self.weight.numel())


@dataclass
class KurtoticLinearResult:
    """eps: the FGSM grid; gaussian: the L2 model; candidates: the L1 models of the grid, in grid order; chosen:
    the index of the kurtotic model among them (the closest clean accuracy to the Gaussian model's); tolerance:
    the largest clean-accuracy gap allowed."""

    eps: list[float]
    gaussian: LinearModel
    candidates: list[LinearModel]
    chosen: int
    tolerance: float

    @property
    def kurtotic(self) -> LinearModel:
        return self.candidates[self.chosen]

    @property
    def accuracy_gap(self) -> float:
        """|clean accuracy of the kurtotic model − that of the Gaussian one|."""
        return abs(self.kurtotic.clean_accuracy - self.gaussian.clean_accuracy)

    def state(self) -> dict:
        """Plain contents for torch.save, loadable with torch.load(weights_only=True)."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> KurtoticLinearResult:
        return cls(**{**state, "gaussian": LinearModel(**state["gaussian"]),
                      "candidates": [LinearModel(**c) for c in state["candidates"]]})


def linear_classifier(weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """The classifier as a module for the attacks: (B, C, H, W) in [0, 1] -> flattened -> logits (B, K), with
    weight (K, C·H·W) and bias (K,); eval mode."""
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return nn.Sequential(nn.Flatten(), layer).eval()


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, penalty: Penalty, strength: float,
               max_steps: int = 3000, tol: float = 1e-4) -> LinearFit:
    """Multinomial logistic regression, mean CE + λ‖W‖²_F (penalty "l2") or + λ‖W‖₁ ("l1"), the bias unpenalised,
    solved by FISTA (Beck & Teboulle 2009) from W = 0 on the whole batch, on centred pixels (the centring goes into
    the returned bias), with the fixed step 1/L, L = ½·max(σ_max(X_c)² / n, 1) (+ 2λ for "l2"), a bound on the
    curvature of the mean CE (softmax Hessian <= ½ I). Stops when ‖ΔW‖_F / ‖W‖_F < tol, or after max_steps.

    x: (n, C, H, W) or (n, d) pixels; y: (n,) labels in 0..num_classes-1. Float32 throughout.
    """
    if penalty not in ("l2", "l1"):
        raise UserInputError(f"unknown penalty {penalty!r}; choose l2 or l1")
    if not strength >= 0:
        raise UserInputError(f"the penalty strength must be >= 0, got {strength}")
    if max_steps < 1 or not tol > 0:
        raise UserInputError(f"fit_linear needs max_steps >= 1 and tol > 0, got {max_steps} and {tol}")
    pixels = x.flatten(1).float()
    mean = pixels.mean(0)
    centred = pixels - mean
    onehot = F.one_hot(y, num_classes).float()
    curvature = 0.5 * max(torch.linalg.matrix_norm(centred, 2).item() ** 2 / len(pixels), 1.0)
    step = 1.0 / (curvature + (2 * strength if penalty == "l2" else 0.0))
    weight = torch.zeros(num_classes, pixels.shape[1])
    bias = torch.zeros(num_classes)
    look_w, look_b, t = weight, bias, 1.0
    converged = False
    for steps in range(1, max_steps + 1):
        residual = (torch.softmax(centred @ look_w.T + look_b, 1) - onehot) / len(pixels)
        grad_w = residual.T @ centred + (2 * strength * look_w if penalty == "l2" else 0.0)
        new_w = look_w - step * grad_w
        new_b = look_b - step * residual.sum(0)
        if penalty == "l1":
            new_w = new_w.sign() * (new_w.abs() - step * strength).clamp_min(0)
        change = (new_w - weight).norm() / new_w.norm().clamp_min(1e-12)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        look_w = new_w + (t - 1) / t_next * (new_w - weight)
        look_b = new_b + (t - 1) / t_next * (new_b - bias)
        weight, bias, t = new_w, new_b, t_next
        if change < tol:
            converged = True
            break
    return LinearFit(weight, bias - weight @ mean, steps, converged)


def exact_robust_accuracy(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                          eps: float) -> float:
    """Share of images classified correctly under every perturbation with ‖δ‖∞ <= eps and x + δ in [0, 1]^d, for
    the linear classifier logits = x·Wᵀ + b (the true robust accuracy; any attack's accuracy is at least this).

    Per other class k the worst δ lowers the margin m_yk by Σ_j |d_j|·room_j, d = w_y − w_k, room_j = min(eps, x_j)
    where d_j > 0 (the pixel goes down) and min(eps, 1 − x_j) otherwise; without the box this is eps·‖d‖₁.
    weight (K, d), bias (K,); x: (n, C, H, W) or (n, d) in [0, 1]; y: (n,).
    """
    pixels = x.flatten(1).float()
    logits = pixels @ weight.T + bias
    robust = logits.argmax(1) == y
    true_w = weight[y]
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    for k in range(len(weight)):
        diff = true_w - weight[k]
        room = torch.where(diff > 0, pixels.clamp(max=eps), (1 - pixels).clamp(max=eps))
        worst = true_logit - logits[:, k] - (diff.abs() * room).sum(1)
        robust &= (worst > 0) | (y == k)
    return robust.float().mean().item()


def fgsm_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Share of images classified correctly clean and after `freqmaps.attacks.FGSM(eps)`; x: (n, C, H, W) in
    [0, 1], y: (n,)."""
    x_adv = FGSM(eps=eps)(model, x, y)
    with torch.no_grad():
        return ((model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)).float().mean().item()


def evaluate_linear(fit: LinearFit, penalty: Penalty, strength: float, x: torch.Tensor, y: torch.Tensor,
                    eps: Sequence[float]) -> LinearModel:
    """A fit's clean, FGSM and exact robust accuracy on x: (n, C, H, W) in [0, 1], y: (n,), and its weight
    statistics."""
    model = linear_classifier(fit.weight, fit.bias)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    w = fit.weight
    return LinearModel(
        penalty, float(strength), w, fit.bias, fit.steps, fit.converged, clean,
        [fgsm_accuracy(model, x, y, e) for e in eps], [exact_robust_accuracy(w, fit.bias, x, y, e) for e in eps],
        excess_kurtosis(w), (w.abs().sum() / w.norm()).item(), (w == 0).float().mean().item())


def kurtotic_linear(
    x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor,
    eps: Sequence[float], gaussian_strength: float = 1e-2,
    kurtotic_strengths: Sequence[float] = (3e-4, 1e-3, 2e-3, 3e-3), tolerance: float = 0.01,
    num_classes: int | None = None, max_steps: int = 3000, tol: float = 1e-4,
) -> KurtoticLinearResult:
    """The demonstration of the module docstring: the L2 model at `gaussian_strength`, the L1 models of
    `kurtotic_strengths`, the kurtotic one chosen by clean accuracy, all evaluated under FGSM at every eps.

    Args:
        x_train, y_train: (n, C, H, W) in [0, 1] and (n,) labels, the images the models are fitted on.
        x_eval, y_eval: the images they are evaluated (and the kurtotic strength chosen) on.
        eps: the L∞ FGSM radii (pixel units of [0, 1]).
        gaussian_strength: λ₂. kurtotic_strengths: the λ₁ grid (ties in clean accuracy go to the first).
        tolerance: the largest clean-accuracy gap allowed between the two; UserInputError when no λ₁ comes that
            close (the message lists the grid's accuracies).
        num_classes: K (default: the largest label + 1). max_steps, tol: `fit_linear`'s.
    """
    for name, (x, y) in {"train": (x_train, y_train), "eval": (x_eval, y_eval)}.items():
        check_images(x, f"x_{name}")
        check_labels(y, len(x), f"y_{name}")
    if x_train.shape[1:] != x_eval.shape[1:]:
        raise UserInputError(f"x_train and x_eval must hold images of one shape, got {tuple(x_train.shape[1:])} "
                             f"and {tuple(x_eval.shape[1:])}")
    if not eps or any(not e >= 0 for e in eps):
        raise UserInputError(f"eps must be one or more radii >= 0, got {list(eps)}")
    if not kurtotic_strengths or any(not s > 0 for s in kurtotic_strengths) or not gaussian_strength > 0:
        raise UserInputError(f"the penalty strengths must be > 0, got gaussian {gaussian_strength} and kurtotic "
                             f"{list(kurtotic_strengths)}")
    classes = num_classes if num_classes is not None else int(max(y_train.max(), y_eval.max())) + 1
    if int(max(y_train.max(), y_eval.max())) >= classes:
        raise UserInputError(f"labels go up to {int(max(y_train.max(), y_eval.max()))}, beyond {classes} classes")
    eps = [float(e) for e in eps]

    def model(penalty: Penalty, strength: float) -> LinearModel:
        fit = fit_linear(x_train, y_train, classes, penalty, strength, max_steps, tol)
        return evaluate_linear(fit, penalty, strength, x_eval, y_eval, eps)

    gaussian = model("l2", gaussian_strength)
    candidates = [model("l1", s) for s in kurtotic_strengths]
    gaps = [abs(c.clean_accuracy - gaussian.clean_accuracy) for c in candidates]
    chosen = gaps.index(min(gaps))
    if gaps[chosen] > tolerance:
        grid = ", ".join(f"λ₁ {c.strength:g}: {c.clean_accuracy:.2%}" for c in candidates)
        raise UserInputError(f"no kurtotic strength reaches the Gaussian model's clean accuracy "
                             f"{gaussian.clean_accuracy:.2%} within tolerance {tolerance:g} ({grid}); widen "
                             "kurtotic_strengths or change gaussian_strength")
    return KurtoticLinearResult(eps, gaussian, candidates, chosen, float(tolerance))
