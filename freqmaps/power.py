"""The power of IdCor's permutation test, by simulation on data with a known shared dimension.

`simulated_pairs` draws n pairs (A, E) with dimensions id_a and id_e of which `shared` are common: Gaussian
latents Z (n, shared), U (n, id_a - shared), V (n, id_e - shared), A = [Z | U] Q_a and E = [Z | V] Q_e with
random orthonormal Q into `ambient` dimensions. The generating model's IdCor is shared / max(id_a, id_e) (the
joint dimension is id_a + id_e - shared), so an effect is a number of shared dimensions: `effect` is rounded to
the nearest 1 / max(id_a, id_e) and the rounded value is reported.

`detection_power` runs the test (`freqmaps.correlation.idcor`) on `simulations` such draws and counts p <= alpha;
`pairs_for_power` searches the smallest n whose simulated power reaches a target (doubling, then bisection).
Estimated dimensions of Gaussian clouds fall below the generating ones at these n (TwoNN's known bias), as the
maps' dimensions do: the simulation asks what the test sees, not what the estimator should see.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from freqmaps.correlation import idcor
from freqmaps.errors import UserInputError


@dataclass(frozen=True)
class Power:
    """The simulated probability that the permutation test detects the effect (p <= alpha), its binomial
    standard error, and the setting: n pairs, dimensions, shared dimensions and the effect they make."""

    power: float
    standard_error: float
    n: int
    id_a: int
    id_e: int
    shared: int
    effect: float
    alpha: float
    simulations: int


def shared_dimensions(id_a: int, id_e: int, effect: float) -> int:
    """The number of shared dimensions closest to IdCor = `effect` for dimensions id_a, id_e (at most the
    smaller of the two)."""
    if id_a < 1 or id_e < 1:
        raise UserInputError(f"dimensions must be >= 1, got id_a={id_a}, id_e={id_e}")
    if not 0 <= effect <= 1:
        raise UserInputError(f"effect (an IdCor) must be in [0, 1], got {effect}")
    return min(round(effect * max(id_a, id_e)), id_a, id_e)


def simulated_pairs(n: int, id_a: int, id_e: int, shared: int, ambient: int = 64,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs A: (n, ambient), E: (n, ambient) float64 with `shared` of their id_a / id_e dimensions common."""
    if not 0 <= shared <= min(id_a, id_e) or max(id_a, id_e) > ambient:
        raise UserInputError(f"need 0 <= shared <= min(id_a, id_e) and ids <= ambient, got shared={shared}, "
                             f"id_a={id_a}, id_e={id_e}, ambient={ambient}")

    def embed(latent: torch.Tensor) -> torch.Tensor:
        q, _ = torch.linalg.qr(torch.randn(ambient, latent.shape[1], generator=generator, dtype=torch.float64))
        return latent @ q.T

    z = torch.randn(n, shared, generator=generator, dtype=torch.float64)
    u = torch.randn(n, id_a - shared, generator=generator, dtype=torch.float64)
    v = torch.randn(n, id_e - shared, generator=generator, dtype=torch.float64)
    return embed(torch.cat([z, u], 1)), embed(torch.cat([z, v], 1))


def detection_power(n: int, id_a: int, id_e: int, effect: float, alpha: float = 0.05, simulations: int = 100,
                    permutations: int = 100, seed: int = 0) -> Power:
    """Share of `simulations` draws of n pairs (seeded with `seed`) in which IdCor's permutation test with
    `permutations` shuffles gives p <= alpha."""
    if n < 4 or simulations < 1 or permutations < 1 or not 0 < alpha < 1:
        raise UserInputError(f"need n >= 4, simulations >= 1, permutations >= 1 and 0 < alpha < 1, got n={n}, "
                             f"simulations={simulations}, permutations={permutations}, alpha={alpha}")
    shared = shared_dimensions(id_a, id_e, effect)
    generator = torch.Generator().manual_seed(seed)
    hits = 0
    for i in range(simulations):
        A, E = simulated_pairs(n, id_a, id_e, shared, generator=generator)
        hits += idcor(A, E, permutations=permutations, seed=seed + i).p_value <= alpha
    power = hits / simulations
    return Power(power, math.sqrt(power * (1 - power) / simulations), n, id_a, id_e, shared,
                 shared / max(id_a, id_e), alpha, simulations)


def pairs_for_power(id_a: int, id_e: int, effect: float, target: float = 0.8, alpha: float = 0.05,
                    simulations: int = 100, permutations: int = 100, seed: int = 0, start: int = 50,
                    most: int = 6400) -> Power:
    """The smallest n (to within the bisection's last step) whose simulated power reaches `target`: n doubles
    from `start` until it does, then bisects between the last two. Returns that n's Power; UserInputError if
    even `most` pairs do not reach it."""
    if not 0 < target < 1:
        raise UserInputError(f"target power must be in (0, 1), got {target}")

    def power_at(n: int) -> Power:
        return detection_power(n, id_a, id_e, effect, alpha, simulations, permutations, seed)

    low, n = None, start
    found = power_at(n)
    while found.power < target:
        if n >= most:
            raise UserInputError(f"{most} pairs reach power {found.power:.2f} < {target} for effect "
                                 f"{found.effect:.3f} (ids {id_a}, {id_e}); the effect is too small to detect")
        low, n = n, min(2 * n, most)
        found = power_at(n)
    while low is not None and n - low > max(4, n // 16):
        middle = (low + n) // 2
        trial = power_at(middle)
        if trial.power >= target:
            n, found = middle, trial
        else:
            low = middle
    return found
