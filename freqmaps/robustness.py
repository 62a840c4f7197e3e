"""An evaluation that does not trust gradients: accuracy under several attacks, the per-image worst case across them
(AutoAttack's rule, Croce & Hein 2020), and flags for the signs of gradient masking (Athalye, Carlini & Wagner
2018; Carlini et al. 2019, "On evaluating adversarial robustness"; RobustBench's validity rules), each with a
one-line explanation:

* `zero_gradients`: images, correctly classified, whose cross-entropy input gradient is zero or vanishing
  (L∞ <= grad_tol in float32) — a gradient attack cannot move them (AutoAttack's check);
* `softmax_outputs`: the model's rows are non-negative and sum to 1 — probabilities, not logits, whose
  cross-entropy saturates (AutoAttack's check);
* `gradient_free_beats_gradient`: a gradient-free (Square) or transfer attack leaves lower accuracy than the best
  gradient attack — the gradients mislead (Brendel & Bethge 2017 on saturating networks);
* `eps_does_not_lower_accuracy`: accuracy under the eps sweep does not fall from its smallest to its largest eps,
  or rises somewhere — a sound attack gets stronger with a larger budget.

Per attack, "robust" means classified correctly clean and after the attack (`attack_report`).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from freqmaps.attacks import Attack, attack_in_chunks, attack_report
from freqmaps.attacks.square import Square
from freqmaps.class_maps import predict
from freqmaps.errors import UserInputError
from freqmaps.inputs import check_labels, check_model_fits, frozen_eval


@dataclass
class Flag:
    """One warning sign: its name and a one-line explanation with the numbers behind it."""

    name: str
    explanation: str


@dataclass
class RobustnessReport:
    """attacks: the attack names, gradient-based first as given, then gradient-free, then `transfer/<name>` (crafted
    on the vanilla model); gradient_free: per attack, whether it is gradient-free or a transfer; robust
    (len(attacks), n) bool: classified correctly clean and after each attack;
    clean (n,) bool; worst (n,) bool: robust under every attack; gradient_norms (n,) float32: L2 norm of the
    clean cross-entropy input gradient; eps_sweep, eps_accuracy: the sweep's eps values and accuracies (empty
    without a sweep); flags: the warning signs raised."""

    attacks: list[str]
    gradient_free: list[bool]
    robust: torch.Tensor
    clean: torch.Tensor
    worst: torch.Tensor
    gradient_norms: torch.Tensor
    eps_sweep: list[float] = field(default_factory=list)
    eps_accuracy: list[float] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    @property
    def clean_accuracy(self) -> float:
        return self.clean.float().mean().item()

    @property
    def accuracy(self) -> dict[str, float]:
        """Per attack, the robust accuracy in [0, 1]."""
        return {name: row.float().mean().item() for name, row in zip(self.attacks, self.robust)}

    @property
    def worst_case_accuracy(self) -> float:
        return self.worst.float().mean().item()

    def state(self) -> dict:
        """Plain contents for torch.save, loadable with torch.load(weights_only=True)."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> RobustnessReport:
        return cls(**{**state, "flags": [Flag(**f) for f in state["flags"]]})


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The cross-entropy's input gradient (n, C, H, W), float32, `batch_size` images at a time; model frozen."""
    grads = []
    with frozen_eval(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            xb = xb.detach().clone().requires_grad_()
            (grad,) = torch.autograd.grad(F.cross_entropy(model(xb).float(), yb, reduction="sum"), xb)
            grads.append(grad.float())
    return torch.cat(grads)


def robust_under(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor,
                 batch_size: int, seed: int, source: nn.Module | None = None) -> torch.Tensor:
    """(n,) bool: clean-correct and still correct on attack's adversarials, crafted on `source` (default: model)."""
    x_adv = attack_in_chunks(attack, model if source is None else source, x, y, batch_size, seed)
    return clean & ~attack_report(model, x, x_adv, y).success


def robustness_report(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: dict[str, Attack], vanilla: nn.Module | None = None,
    eps_sweep: Sequence[float] = (), sweep_attack: str | None = None, batch_size: int = 128, grad_tol: float = 1e-12,
    tolerance: float = 0.02, seed: int = 0, progress: bool = True,
) -> RobustnessReport:
    """Evaluate `model` under every attack and raise the masking flags (module docstring).

    Args:
        model: pixels in [0, 1] -> logits (B, K). x: (n, C, H, W) in [0, 1]; y: (n,) labels.
        attacks: name -> attack. `Square` attacks count as gradient-free, the others as gradient attacks.
        vanilla: a model trained without the defence on the same data: each gradient attack is also crafted on it
            and transferred (`transfer/<name>`).
        eps_sweep: eps values at which `sweep_attack` (default: the first gradient attack; it needs an `eps`) is
            rerun; empty: no sweep.
        batch_size: images per attack call. grad_tol: the gradient L∞ at or below which it counts as vanishing.
        tolerance: accuracy margin of the comparison flags. seed: attack_in_chunks' seed.
    """
    check_labels(y, len(x))
    check_model_fits(model, x, y)
    if not attacks:
        raise UserInputError("robustness_report needs at least one attack")
    gradient = {name: a for name, a in attacks.items() if not isinstance(a, Square)}
    free = {name: a for name, a in attacks.items() if isinstance(a, Square)}
    sweep_name = sweep_attack if sweep_attack is not None else next(iter(gradient), None)
    if eps_sweep and (sweep_name not in attacks or not hasattr(attacks[sweep_name], "eps")):
        raise UserInputError(f"the eps sweep needs an attack with an eps among the attacks, got {sweep_name!r}")
    with frozen_eval(model):
        clean = predict(model, x, batch_size) == y
    runs = [(name, a, None) for name, a in gradient.items()] + [(name, a, None) for name, a in free.items()]
    if vanilla is not None:
        check_model_fits(vanilla, x, y, "the vanilla model's data")
        runs += [(f"transfer/{name}", a, vanilla) for name, a in gradient.items()]
    robust = []
    for name, attack, source in tqdm(runs, desc="attacks", disable=not progress):
        robust.append(robust_under(model, attack, x, y, clean, batch_size, seed, source))
    robust = torch.stack(robust)
    names = [name for name, _, _ in runs]
    is_free = [name in free or name.startswith("transfer/") for name in names]
    grads = input_gradients(model, x, y, batch_size)
    sweep_accuracy = []
    for eps in tqdm(eps_sweep, desc="eps sweep", disable=not progress):
        attack = copy.copy(attacks[sweep_name])
        attack.eps = eps
        sweep_accuracy.append(robust_under(model, attack, x, y, clean, batch_size, seed).float().mean().item())
    with frozen_eval(model), torch.no_grad():
        outputs = torch.cat([model(xb).float() for xb in x.split(batch_size)])
    report = RobustnessReport(names, is_free, robust.cpu(), clean.cpu(), robust.all(0).cpu(),
                              grads.flatten(1).norm(dim=1).cpu(), list(eps_sweep), sweep_accuracy)
    report.flags = masking_flags(report, grads.flatten(1).abs().amax(1).cpu(), outputs.cpu(), grad_tol, tolerance)
    return report


def masking_flags(report: RobustnessReport, grad_linf: torch.Tensor, outputs: torch.Tensor, grad_tol: float,
                  tolerance: float) -> list[Flag]:
    """The flags of a report, from its per-image gradient L∞ (n,) and the model's outputs (n, K)."""
    flags = []
    vanishing = (grad_linf <= grad_tol) & report.clean
    if vanishing.any():
        flags.append(Flag("zero_gradients", f"{int(vanishing.sum())} of {int(report.clean.sum())} correctly classified "
                          f"images have a zero or vanishing input gradient (L∞ <= {grad_tol:g}): gradient attacks "
                          "cannot move them, so their robustness under gradient attacks means nothing"))
    if (outputs >= 0).all() and torch.allclose(outputs.sum(1), torch.ones(len(outputs)), atol=1e-4):
        flags.append(Flag("softmax_outputs", "the model's outputs are non-negative and sum to 1: probabilities, not "
                          "logits; the attacks' losses saturate on them, so give the attacks the logits"))
    accuracy = report.accuracy
    by_gradient = [accuracy[n] for n, f in zip(report.attacks, report.gradient_free) if not f]
    if by_gradient:
        best = min(by_gradient)
        for name, free in zip(report.attacks, report.gradient_free):
            if free and accuracy[name] < best - tolerance:
                flags.append(Flag("gradient_free_beats_gradient", f"{name} leaves {accuracy[name]:.1%} accuracy, "
                                  f"below the best gradient attack's {best:.1%}: the gradients mislead the attacks "
                                  "(masking), so trust the lower figure"))
    sweep = report.eps_accuracy
    if len(sweep) >= 2:
        rises = any(b > a + tolerance for a, b in zip(sweep, sweep[1:]))
        if rises or sweep[-1] >= sweep[0] - tolerance:
            curve = ", ".join(f"{e:g}: {a:.1%}" for e, a in zip(report.eps_sweep, sweep))
            flags.append(Flag("eps_does_not_lower_accuracy", f"accuracy under a growing eps ({curve}) does not fall "
                              "as it must for a working attack: the attack, not the model, is failing"))
    return flags


def robustness_markdown(report: RobustnessReport, title: str = "") -> str:
    """results.md: clean, per-attack and worst-case accuracy, the eps sweep, the flags."""
    def pct(v: float) -> str:
        return "-" if math.isnan(v) else f"{v:.1%}"

    lines = [f"# Robustness{': ' + title if title else ''}", "", f"{len(report.clean)} images; clean accuracy "
             f"{pct(report.clean_accuracy)}; median clean input-gradient L2 norm "
             f"{report.gradient_norms.median().item():.3g}.", "", "| attack | kind | robust accuracy |",
             "|---|---|---|"]
    lines += [f"| {name} | {'gradient-free / transfer' if free else 'gradient'} | {pct(acc)} |"
              for (name, acc), free in zip(report.accuracy.items(), report.gradient_free)]
    lines += [f"| **worst case per image** | all | **{pct(report.worst_case_accuracy)}** |", ""]
    if report.eps_sweep:
        lines += ["| eps | accuracy |", "|---|---|"]
        lines += [f"| {e:g} | {pct(a)} |" for e, a in zip(report.eps_sweep, report.eps_accuracy)] + [""]
    lines += ["## Flags", ""] + ([f"* **{f.name}**: {f.explanation}" for f in report.flags] or ["None raised."])
    return "\n".join(lines) + "\n"
