"""The two map solvers: the paper's rule stays pinned to its maps, and the fast rule (time-scaled Adam, stop on
the map's change) solves the same problem: it follows the paper's path, stops where its rule says, and finds
the planted frequencies as the paper's rule does."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from freqmaps.class_maps import class_maps
from freqmaps.correlation import map_cosines
from freqmaps.errors import UserInputError
from freqmaps.maps import MapSettings, essential_maps

PIN = Path(__file__).parent / "data" / "paper_rule_pin.pt"


def test_paper_rule_gives_the_pinned_maps(tiny):
    """tests/freqmaps/data/paper_rule_pin.pt holds the `tiny` problem's maps and steps as the solver gave them
    at commit 723ecbf, before the fast rule existed (working batch 4 of 6: queue refills included)."""
    model, x, y = tiny
    pinned = torch.load(PIN, weights_only=True)
    result = essential_maps(model, x, y, batch_size=4, lam=0.002, min_steps=50, max_steps=400, tol=1e-5,
                            progress=False)
    assert torch.equal(result.steps, pinned["steps"]) and torch.equal(result.kept, pinned["kept"])
    torch.testing.assert_close(result.maps, pinned["maps"], atol=0, rtol=0)


def test_fast_rule_at_time_scale_one_is_the_paper_path(tiny):
    model, x, y = tiny
    paper = essential_maps(model, x, y, MapSettings(lam=0.002, min_steps=120, max_steps=120), progress=False)
    fast = essential_maps(model, x, y, MapSettings(lam=0.002, solver="fast", time_scale=1.0, fast_min_steps=120,
                                                   fast_max_steps=120), progress=False)
    assert (fast.steps == 120).all()
    torch.testing.assert_close(fast.maps, paper.maps, atol=1e-12, rtol=0)


@pytest.mark.parametrize("scale", [2.0, 4.0])
def test_a_time_scaled_step_follows_the_paper_path(tiny, scale):
    """k = time_scale paper steps at once: after 240 / k fast steps the maps are where 240 paper steps took
    them, up to the coarser discretisation (the paper path itself is far from its start and its end)."""
    model, x, y = tiny
    paper = essential_maps(model, x, y, MapSettings(lam=0.002, min_steps=240, max_steps=240), progress=False)
    steps = int(240 / scale)
    fast = essential_maps(model, x, y, MapSettings(lam=0.002, solver="fast", time_scale=scale,
                                                   fast_min_steps=steps, fast_max_steps=steps), progress=False)
    start = essential_maps(model, x, y, MapSettings(lam=0.002, min_steps=60, max_steps=60), progress=False)
    gap = (fast.maps - paper.maps).flatten(1).norm(dim=1)
    travelled = (paper.maps - start.maps).flatten(1).norm(dim=1)
    assert (gap < 0.1 * travelled).all(), (gap / travelled).tolist()


def test_fast_rule_stops_once_the_map_settles(tiny):
    model, x, y = tiny
    rule = dict(lam=0.002, solver="fast", fast_min_steps=20, fast_max_steps=300, change_window=5, change_tol=0.01)
    result = essential_maps(model, x, y, MapSettings(**rule), progress=False)
    assert result.converged.all() and len(set(result.steps.tolist())) > 1
    assert (result.steps % 5 == 0).all() and (result.steps > 20).all()
    for i in range(len(x)):
        stop = int(result.steps[i])
        at = {t: essential_maps(model, x[i:i + 1], y[i:i + 1], MapSettings(**{**rule, "fast_min_steps": t,
                                                                             "fast_max_steps": t}),
                                progress=False).maps[0] for t in (stop - 10, stop - 5)}

        def change(a, b):
            return ((a - b).abs().sum() / a.abs().sum().clamp_min(1.0)).item()

        assert change(result.maps[i], at[stop - 5]) < 0.01  # why it stopped
        if stop - 5 > 20:
            assert change(at[stop - 5], at[stop - 10]) >= 0.01  # and why it did not stop one window earlier


@pytest.fixture(scope="module")
def paper_planted(synthetic_cnn):
    """The paper's full rule (500 / 5000 steps) on 16 planted-frequency test images."""
    x, y = synthetic_cnn.x_test[:16], synthetic_cnn.y_test[:16]
    return essential_maps(synthetic_cnn.model, x, y, progress=False)


@pytest.mark.parametrize("autocast", [False, True])
def test_fast_rule_finds_the_planted_frequencies_like_the_paper_rule(synthetic_cnn, synthetic_data, paper_planted,
                                                                     autocast):
    """The paper's lam 0.5 and lr: the paper's full rule (500 / 5000 steps) and the fast rule on 16 test images
    keep the same images, put each map's mass off the zero frequency on its class's planted frequencies and
    nowhere else, and agree map by map; the fast rule takes a fraction of the steps."""
    _, test = synthetic_data
    x, y = synthetic_cnn.x_test[:16], synthetic_cnn.y_test[:16]
    paper = paper_planted
    fast = essential_maps(synthetic_cnn.model, x, y, solver="fast", autocast=autocast, progress=False)
    assert fast.maps.dtype == torch.float32 and torch.equal(fast.kept, paper.kept) and fast.kept.all()
    for result in (paper, fast):
        off_dc = result.maps[:, 0].clone()
        off_dc[:, 16, 16] = 0  # the zero frequency (mean grey level) is shared by all classes
        mass = off_dc.sum((1, 2))
        used = mass > 0.5
        assert used.sum() >= 5
        assert ((off_dc * test.planted[y]).sum((1, 2))[used] / mass[used]).min() > 0.95
        assert (off_dc * test.planted[(y + 1) % 4]).sum() < 0.01 * mass.sum()
    cosine = map_cosines(fast.maps, paper.maps)  # 1 where both maps are zero (the class of the black image)
    assert cosine.min() > 0.9 and cosine.median() > 0.97, cosine.tolist()
    assert fast.steps.sum() * 4 < paper.steps.sum()


def test_solver_settings_are_checked():
    with pytest.raises(UserInputError, match="solver must be 'paper' or 'fast', got adam"):
        MapSettings(solver="adam")
    with pytest.raises(UserInputError, match="time_scale must be >= 1"):
        MapSettings(time_scale=0.5)
    with pytest.raises(UserInputError, match="fast_min_steps must be in \\[0, fast_max_steps\\]"):
        MapSettings(fast_min_steps=50, fast_max_steps=10)
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(UserInputError, match="class maps are solved by the paper's rule only"):
        class_maps(torch.nn.Flatten(), x, torch.zeros(4, dtype=torch.long), x, 2, solver="fast")
