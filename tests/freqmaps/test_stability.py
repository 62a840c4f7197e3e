"""Map stability between two models and within one: the same model twice agrees exactly between "seeds",
a jittered start measures the solver's own spread, and images a model gets wrong are left out."""
from __future__ import annotations

import copy

import pytest
import torch

from freqmaps.errors import UserInputError
from freqmaps.maps import MapSettings, essential_maps
from freqmaps.stability import map_stability, stability_figure

RULE = MapSettings(lam=0.002, min_steps=50, max_steps=400, tol=1e-5)


def test_one_model_twice_agrees_exactly_and_the_jitter_measures_the_solver(tiny):
    model, x, y = tiny
    result = map_stability(model, model, x, y, RULE, jitter=0.05, seed=3, progress=False)
    assert result.index.tolist() == list(range(6))
    torch.testing.assert_close(result.between, torch.ones(6, dtype=torch.float64), atol=1e-9, rtol=0)
    plain = essential_maps(model, x, y, RULE, progress=False)
    assert (result.within < 1).all() and (result.within > 0.5).all()
    scalars = result.scalars()
    assert scalars["images"] == 6 and scalars["between_median"] == pytest.approx(1.0, abs=1e-9)
    assert scalars["within_median"] == pytest.approx(result.within[result.kept.all(1)].median().item())
    again = map_stability(model, model, x, y, RULE, jitter=0.05, seed=3, progress=False)
    assert torch.equal(again.within, result.within)  # the jitter is seeded
    assert plain.kept.tolist() == result.kept[:, 0].tolist()


def test_images_either_model_gets_wrong_are_left_out(tiny):
    model, x, y = tiny
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[-1].bias[int(y[0])] -= 1e3  # the second model never predicts image 0's class
    result = map_stability(model, other, x, y, RULE, progress=False)
    expected = [i for i in range(6) if y[i] != y[0]]
    assert result.index.tolist() == expected and len(result.between) == len(expected)
    with pytest.raises(UserInputError, match="jitter must be in"):
        map_stability(model, model, x, y, RULE, jitter=0.0)


def test_the_figure_draws_both_distributions_of_the_kept_images(tiny):
    model, x, y = tiny
    result = map_stability(model, model, x, y, RULE, jitter=0.05, seed=3, progress=False)
    result.kept[0, 1] = False  # image 0 drops out of both curves
    between, within = stability_figure(result, ("a", "b")).axes[0].get_lines()
    assert between.get_xdata().tolist() == pytest.approx(result.between[1:].sort().values.tolist())
    assert within.get_xdata().tolist() == pytest.approx(result.within[1:].sort().values.tolist())
    assert within.get_ydata().tolist() == pytest.approx([k / 5 for k in range(1, 6)])
    assert "between a and b" in between.get_label()
