"""The power of IdCor's permutation test by simulation: it rises with the number of pairs and with the effect,
stays near alpha without an effect, and `pairs_for_power` returns a number of pairs that reaches the target
while half of it does not."""
from __future__ import annotations

import pytest
import torch

from freqmaps.correlation import idcor
from freqmaps.errors import UserInputError
from freqmaps.power import detection_power, pairs_for_power, shared_dimensions, simulated_pairs

RUNS = dict(simulations=30, permutations=50)


def test_the_simulated_pairs_share_the_dimensions_asked_for():
    A, E = simulated_pairs(400, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    assert idcor(A, E, permutations=0).idcor > 0.95  # the same latent: one set determines the other
    assert shared_dimensions(10, 20, 0.22) == 4 and shared_dimensions(4, 20, 1.0) == 4


def test_power_rises_with_pairs_and_with_the_effect():
    by_n = [detection_power(n, 6, 6, 0.3, **RUNS).power for n in (50, 200, 800)]
    assert by_n[0] < by_n[1] < by_n[2] and by_n[0] < 0.5 < 0.8 < by_n[2]
    by_effect = [detection_power(200, 6, 6, effect, **RUNS).power for effect in (0.0, 0.3, 0.6)]
    assert by_effect[0] < by_effect[1] < by_effect[2]


def test_without_an_effect_the_test_rejects_at_about_alpha():
    power = detection_power(100, 6, 6, 0.0, simulations=100, permutations=50, seed=1)
    assert power.shared == 0 and power.effect == 0
    assert power.power <= 0.05 + 3 * (0.05 * 0.95 / 100) ** 0.5  # within 3 binomial errors of alpha


def test_pairs_for_power_reaches_the_target_and_half_as_many_do_not():
    found = pairs_for_power(6, 6, 0.5, target=0.8, start=40, simulations=20, permutations=30)
    assert found.power >= 0.8 and found.effect == pytest.approx(0.5)
    assert detection_power(found.n // 2, 6, 6, 0.5, simulations=20, permutations=30).power < 0.8


def test_bad_power_settings_are_refused():
    with pytest.raises(UserInputError, match="effect .* must be in"):
        detection_power(100, 6, 6, 1.5)
    with pytest.raises(UserInputError, match="too small to detect"):
        pairs_for_power(6, 6, 0.0, start=50, most=100, **RUNS)
