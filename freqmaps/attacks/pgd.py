"""Projected gradient descent (Madry et al. 2018, "Towards deep learning models resistant to
adversarial attacks"), L∞ and L2, with random start and restarts.

Each step ascends the cross-entropy, x ← Π_{B_ε(x0) ∩ [0,1]}(x + α·s(∇ℓ)), with s = sign for L∞ and
s = ∇ℓ/‖∇ℓ‖₂ for L2. Defaults follow foolbox 3 (the paper's code, docs/method.md §2): L∞ ε = 8/255, 40 steps,
α = 0.01/0.3·ε; for L2 foolbox's α = 0.025·ε (foolbox's L2 PGD runs 50 steps by default, here 40 for both).
Step for step the iterates equal foolbox's (tests/freqmaps/attacks).
With `loss="cw"` it ascends the logit margin instead (Carlini & Wagner 2017), the loss a saturated softmax
cannot flatten.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from freqmaps.attacks.base import Attack, check_norm, check_positive, lp_norms, margin, per_image
from freqmaps.errors import UserInputError

_REL_STEP = {"linf": 0.01 / 0.3, "l2": 0.025}


def random_ball(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """A point drawn uniformly from the ε-ball around each image, clipped to [0, 1]."""
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        direction = torch.randn_like(x)
        direction = direction / per_image(lp_norms(direction, 2).clamp_min(1e-12), x)
        radius = torch.rand(len(x), device=x.device, dtype=x.dtype) ** (1 / x[0].numel())
        delta = direction * per_image(eps * radius, x)
    return (x + delta).clamp(0, 1)


def ascent_step(
    x_adv: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, eps: float, step_size: float, norm: str
) -> torch.Tensor:
    """One projected step up the gradient: the new x_adv inside the ε-ball around x0 and inside [0, 1]. step_size:
    a number, or a per-image (B, 1, 1, 1) tensor."""
    if norm == "linf":
        return project(x_adv + step_size * grad.sign(), x0, eps, norm)
    return project(x_adv + step_size * grad / per_image(lp_norms(grad, 2).clamp_min(1e-12), grad), x0, eps, norm)


def project(x_adv: torch.Tensor, x0: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """x_adv (B, C, H, W) moved to the nearest point of the ε-ball around x0 (L∞: clipped; L2: scaled towards
    x0), then clipped to [0, 1]."""
    delta = x_adv - x0
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * per_image((eps / lp_norms(delta, 2).clamp_min(1e-12)).clamp_max(1), delta)
    return (x0 + delta).clamp(0, 1)


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """The per-image loss an attack ascends, in float32: (B, K), (B,) -> (B,). "ce": cross-entropy; "cw": the
    logit margin of Carlini & Wagner, largest other logit − true logit (> 0 means fooled), which, unlike the
    cross-entropy, does not flatten out when the softmax saturates."""
    if loss == "ce":
        return F.cross_entropy(logits.float(), y, reduction="none")
    return -margin(logits, y)


def check_loss(loss: str, choices: tuple[str, ...] = ("ce", "cw")) -> None:
    """UserInputError unless `loss` is one of `choices`."""
    if loss not in choices:
        raise UserInputError(f"unknown attack loss {loss!r}; choose one of {', '.join(choices)}")


class PGD(Attack):
    """Untargeted PGD on the cross-entropy (or on the CW logit margin).

    Args:
        eps: radius of the ball (in pixel units of [0, 1]).
        norm: "linf" or "l2".
        steps: gradient steps per restart.
        step_size: α; None for foolbox's default (L∞ 0.01/0.3·ε, L2 0.025·ε).
        random_start: start each restart at a uniform point of the ball (required for restarts > 1).
        restarts: independent runs; per image the first run that fools the model is kept, else the run
            with the highest final loss. Restarts after the first attack only the images not fooled yet.
        early_stop: stop ascending on an image at the first iterate that fools the model and return that
            iterate (the robust-accuracy evaluation: any point of the ball that fools counts, and fooled images
            cost no further steps); False: every image takes all steps and the last iterate is returned.
        loss: "ce", the cross-entropy; "cw", the logit margin (largest other − true logit; `attack_loss`), which
            keeps its gradient where the softmax saturates (Carlini & Wagner 2017).
        channels_last: hand the model channels-last input (see `Attack`).
    """

    def __init__(
        self, eps: float = 8 / 255, norm: str = "linf", steps: int = 40, step_size: float | None = None,
        random_start: bool = True, restarts: int = 1, early_stop: bool = False, loss: str = "ce",
        channels_last: bool = True,
    ) -> None:
        check_norm(norm)
        check_loss(loss)
        check_positive(eps=eps, steps=steps, restarts=restarts)
        if step_size is not None:
            check_positive(step_size=step_size)
        if restarts > 1 and not random_start:
            raise UserInputError("restarts > 1 need random_start=True (otherwise every restart is the same)")
        self.eps = eps
        self.norm = norm
        self.steps = steps
        self.step_size = step_size if step_size is not None else _REL_STEP[norm] * eps
        self.random_start = random_start
        self.restarts = restarts
        self.early_stop = early_stop
        self.loss = loss
        self.channels_last = channels_last

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.restarts == 1:
            return self.ascend(model, x, y)
        best = x.clone()
        best_loss = torch.full((len(x),), -torch.inf, device=x.device)
        todo = torch.arange(len(x), device=x.device)
        for _ in range(self.restarts):
            x_adv = self.ascend(model, x[todo], y[todo])
            with torch.no_grad():
                logits = model(x_adv).float()
            loss = attack_loss(logits, y[todo], self.loss)
            fooled = logits.argmax(1) != y[todo]
            better = fooled | (loss > best_loss[todo])
            best[todo[better]] = x_adv[better]
            best_loss[todo[better]] = loss[better]
            todo = todo[~fooled]
            if len(todo) == 0:
                break
        return best

    def ascend(self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One PGD run from x0 (B, C, H, W) in [0, 1]; returns the last iterate (with `early_stop`, the first
        fooling iterate of each image that has one)."""
        x_adv = random_ball(x0, self.eps, self.norm) if self.random_start else x0
        if not self.early_stop:
            for _ in range(self.steps):
                x_adv = x_adv.detach().requires_grad_()
                loss = attack_loss(model(x_adv), y, self.loss).sum()
                (grad,) = torch.autograd.grad(loss, x_adv)
                x_adv = ascent_step(x_adv.detach(), grad, x0, self.eps, self.step_size, self.norm)
            return x_adv
        out = x_adv.detach().clone()
        active = torch.arange(len(x0), device=x0.device)
        for _ in range(self.steps):
            current = out[active].requires_grad_()
            logits = model(current).float()
            fooled = logits.argmax(1) != y[active]
            (grad,) = torch.autograd.grad(attack_loss(logits, y[active], self.loss).sum(), current)
            going = active[~fooled]
            out[going] = ascent_step(current.detach()[~fooled], grad[~fooled], x0[going], self.eps,
                                     self.step_size, self.norm)
            active = going
            if len(active) == 0:
                break
        return out
