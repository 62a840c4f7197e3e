"""What every attack shares: the checked and frozen setting it runs in, per-image norms, a result type.

Every attack has one signature, `attack(model, x, y) -> x_adv`, with
x: (B, C, H, W) float pixels in [0, 1] (the model normalises inside), y: (B,) integer labels, and
x_adv: (B, C, H, W) in [0, 1], same dtype as x. Images outside [0, 1] or labels of another shape raise
UserInputError (`freqmaps.inputs`).

During an attack the model is switched to `eval()` and its parameters to `requires_grad=False`;
each module's `training` flag and each parameter's `requires_grad` are restored exactly afterwards,
even on an exception. Gradients are taken only with respect to the input (`torch.autograd.grad`),
so parameters' `.grad` fields are never touched, and the work runs with autograd on even inside a
`no_grad` or `inference_mode` validation step (on copies of x and y made inside). Under autocast the
logits may come out in bf16/fp16; losses are computed in float32 and the perturbation stays in x's dtype.
"""
from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from freqmaps.errors import UserInputError
from freqmaps.inputs import check_images, check_labels, check_model_fits, frozen_eval, own_batch
from freqmaps.sampling import seeded_rng

NORMS = {"linf": math.inf, "l2": 2.0}
DUAL_NORMS = {"linf": 1.0, "l2": 2.0}


def check_norm(norm: str) -> float:
    """The order p of a norm name ("linf" -> inf, "l2" -> 2); UserInputError for another name."""
    if norm not in NORMS:
        raise UserInputError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return NORMS[norm]


def check_positive(**values: float) -> None:
    """UserInputError naming the first hyper-parameter that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise UserInputError(f"{name} must be > 0, got {value}")


@contextmanager
def attacking(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Check a batch, then yield private copies of it (x clipped to [0, 1], in channels-last memory format
    if asked; y int64 on x's device) with `model` frozen in eval mode and autograd on, also under `no_grad`
    or `inference_mode`; see `freqmaps.inputs.frozen_eval`. x: (B, C, H, W) in [0, 1]; y: (B,) labels.
    A model that cannot take channels-last input (it flattens feature maps with `.view`) gets a
    UserInputError that says how to turn it off; one that fails on the batch because it takes other images or
    has fewer classes than the labels, a UserInputError naming both (checked only once it failed: no cost)."""
    check_images(x)
    check_labels(y, len(x))
    with frozen_eval(model):
        try:
            yield own_batch(x, y, channels_last=channels_last)
        except (IndexError, RuntimeError) as error:
            if channels_last and "view size is not compatible" in str(error):
                raise UserInputError(
                    f"the model failed on channels-last input ({error}); give the attack channels_last=False, "
                    "or flatten with .reshape / torch.flatten in the model") from error
            check_model_fits(model, x, y, "the batch")  # a model and batch that do not fit: say which way
            raise


def lp_norms(t: torch.Tensor, p: float) -> torch.Tensor:
    """Per-image Lp norm of t: (B, ...) -> (B,)."""
    return torch.linalg.vector_norm(t.flatten(1), ord=p, dim=1)


def per_image(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-image vector (B,) to broadcast against `like` (B, C, H, W)."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logit of the true class minus the largest other logit, in float32: (B, K) -> (B,); < 0 means fooled."""
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], -math.inf).amax(1)
    return true - other


@dataclass
class MinimumNormResult:
    """A minimum-norm attack's output: x_adv (B, C, H, W) in [0, 1]; success (B,) bool, the images
    misclassified at x_adv; norms (B,) the Lp norm of x_adv - x in the attack's norm (inf where no
    adversarial was found)."""

    x_adv: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor


class Attack(ABC):
    """Base of all attacks: `attack(model, x, y) -> x_adv`, hyper-parameters set in the constructor.

    Every attack takes `channels_last` (default True): the model sees the attacked images in channels-last
    (NHWC) memory format, in which oneDNN's CPU convolutions run faster than in NCHW (a PGD step on
    ResNet-20, 2 CPU threads: about 15% less time); cuDNN prefers it too under autocast. The values are
    the same images; only the layout differs, so results match an NCHW run up to the convolutions'
    rounding. x_adv comes back in the standard contiguous layout.
    """

    channels_last: bool = True

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1], y: (B,) labels -> x_adv (B, C, H, W) in [0, 1], x's dtype."""
        with attacking(model, x, y, self.channels_last) as (x, y):
            return self.perturb(model, x, y).detach().contiguous()

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attack itself, on validated inputs, with the model frozen and gradients enabled."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"

    def capped(self, steps: int) -> Attack:
        """A copy running at most `steps` iterations (attacks with a `steps` knob; others as they are): for smoke
        runs such as Trainer(fast_dev_run=...)."""
        attack = copy.copy(self)
        if hasattr(attack, "steps"):
            attack.steps = min(attack.steps, steps)
        return attack


class MinimumNormAttack(Attack):
    """An attack that searches the smallest adversarial perturbation; `run` also returns the norms."""

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MinimumNormResult:
        """Like calling the attack, but returns x_adv with its success mask and norms."""
        with attacking(model, x, y, self.channels_last) as (x, y):
            result = self.minimise(model, x, y)
        return MinimumNormResult(result.x_adv.contiguous(), result.success, result.norms)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.minimise(model, x, y).x_adv

    @abstractmethod
    def minimise(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MinimumNormResult:
        """The search, on validated inputs, with the model frozen and gradients enabled."""


def attack_in_chunks(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     seed: int = 0) -> torch.Tensor:
    """x_adv (n, C, H, W) of `attack` on x: (n, C, H, W) in [0, 1] with labels y: (n,), `batch_size` images at a
    time. Chunk k draws its random numbers (random starts, restarts) from torch's generators seeded with
    seed + k, restored afterwards: a chunk's result depends only on its images and its number, not on what ran
    before, and the caller's random streams are left as they were."""
    if batch_size < 1:
        raise UserInputError(f"the attack batch size must be >= 1, got {batch_size}")
    chunks = []
    for k, (xb, yb) in enumerate(zip(x.split(batch_size), y.split(batch_size))):
        with seeded_rng(x.device, seed + k):
            chunks.append(attack(model, xb, yb))
    return torch.cat(chunks)
