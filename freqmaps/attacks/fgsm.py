"""Fast gradient sign method (Goodfellow et al. 2015), optionally from a random start as in fast
adversarial training (Wong, Rice, Kolter 2020, "Fast is better than free").

Without random start: x_adv = clip(x + ε·sign(∇ℓ(x))). With it: δ ~ U[-ε, ε], one step of size
α = 1.25·ε from x + δ, then projection back onto the ε-ball and [0, 1]. It is a single L∞ PGD step.
"""
from __future__ import annotations

from freqmaps.attacks.pgd import PGD


class FGSM(PGD):
    """One-step L∞ attack on the cross-entropy.

    Args:
        eps: L∞ radius (pixel units of [0, 1]).
        random_start: start from a uniform point of the ε-ball (Wong et al. 2020).
        step_size: α; None for ε without random start and 1.25·ε with it.
        channels_last: hand the model channels-last input (see `Attack`).
    """

    def __init__(self, eps: float = 8 / 255, random_start: bool = False, step_size: float | None = None,
                 channels_last: bool = True) -> None:
        if step_size is None:
            step_size = 1.25 * eps if random_start else eps
        super().__init__(eps=eps, norm="linf", steps=1, step_size=step_size, random_start=random_start,
                         channels_last=channels_last)

    def __repr__(self) -> str:
        return (f"FGSM(eps={self.eps!r}, random_start={self.random_start!r}, step_size={self.step_size!r}, "
                f"channels_last={self.channels_last!r})")
