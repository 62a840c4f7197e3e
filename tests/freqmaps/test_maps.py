"""The batched essential / adversarial map solver: recovers planted frequencies, equals the one-image solve,
freezes stopped images, keeps only maps that keep their class, validates inputs, restores the model."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.maps import loop_map
from freqmaps.correlation import pool_and_flatten
from freqmaps.errors import UserInputError
from freqmaps.figures import interval_curve_figure, radial_profiles, write_map_figures
from freqmaps.fourier import apply_mask, ifftshift2
from freqmaps.maps import FrequencyMaps, MapSettings, adversarial_maps, essential_maps

# The settings of the `tiny` problem (tests/freqmaps/conftest.py).
TINY = dict(lam=0.002, min_steps=50, max_steps=400, tol=1e-5, progress=False)


def paper_loop(model, x, y, lam, min_steps, max_steps, tol):
    """The paper's per-image loop with torch.optim.Adam (the speed benchmark's baseline): an independent
    reference for one image. Returns the fftshift-ed map (C, H, W) and the steps taken."""
    return loop_map(model, x, y, MapSettings(lam=lam, min_steps=min_steps, max_steps=max_steps, tol=tol))


def test_essential_maps_find_the_planted_frequencies(synthetic_cnn, synthetic_data):
    """The paper's lam = 0.5 and lr, with min/max steps cut to 100/400 (all 16 images stop by the tolerance)."""
    _, test = synthetic_data
    x, y = synthetic_cnn.x_test[:16], synthetic_cnn.y_test[:16]
    result = essential_maps(synthetic_cnn.model, x, y, min_steps=100, max_steps=400, progress=False)
    assert result.kept.all() and result.converged.all()
    maps = result.maps[:, 0]  # (16, 32, 32), fftshift-ed
    off_dc = maps.clone()
    off_dc[:, 16, 16] = 0  # the zero frequency (mean grey level) is shared by all classes
    mass = off_dc.sum((1, 2))
    on_own = (off_dc * test.planted[y]).sum((1, 2))
    on_other = (off_dc * test.planted[(y + 1) % 4]).sum((1, 2))
    used = mass > 0.5  # maps that need frequencies besides the mean (7 of 16 here, classes 2 and 3;
    # the model tells classes 0 and 1 apart by mean grey level alone, so their maps keep only the zero frequency)
    assert used.sum() >= 5 and len(y[used].unique()) >= 2
    assert (on_own[used] / mass[used]).min() > 0.95  # >95% of each map's mass off DC is on its class's frequencies
    assert on_other.sum() < 0.01 * mass.sum()
    assert (maps.sum((1, 2)) < 0.02 * 1024).all()  # sparse: from 1024 ones to a few entries


def test_batched_equals_one_at_a_time_in_float64(tiny):
    model, x, y = tiny
    batched = essential_maps(model, x, y, batch_size=6, **TINY)
    queued = essential_maps(model, x, y, batch_size=2, **TINY)  # working batch refilled from the queue
    assert len(set(batched.steps.tolist())) > 3 and batched.converged.all()  # images stop at different steps
    for i in range(len(x)):
        single = essential_maps(model, x[i:i + 1], y[i:i + 1], batch_size=1, **TINY)
        reference, steps = paper_loop(model, x[i:i + 1], y[i:i + 1], 0.002, 50, 400, 1e-5)
        torch.testing.assert_close(batched.maps[i], single.maps[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(queued.maps[i], single.maps[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batched.maps[i], reference, atol=1e-5, rtol=0)
        assert batched.steps[i] == single.steps[0] == queued.steps[i] == steps
    assert 0.005 < batched.maps.mean() < 0.2  # real, partly sparse maps, not all ones or all zeros


def test_a_stopped_map_no_longer_changes(tiny):
    model, x, y = tiny
    short = essential_maps(model, x, y, **TINY)
    longer = essential_maps(model, x, y, **{**TINY, "max_steps": 800})
    first = int(short.steps.argmin())
    assert short.steps[first] < short.steps.max() - 50  # it stopped while others still ran
    torch.testing.assert_close(short.maps, longer.maps, atol=0, rtol=0)  # nothing touched them after the stop
    # the stopped map is the map after exactly its step count: a solve capped there gives the same map
    capped = essential_maps(model, x[first:first + 1], y[first:first + 1],
                            **{**TINY, "max_steps": int(short.steps[first])})
    torch.testing.assert_close(capped.maps[0], short.maps[first], atol=1e-12, rtol=0)  # batch 1 vs 6: float noise
    assert short.converged[first] and capped.converged[0]


def test_maps_whose_image_ends_misclassified_are_not_kept(tiny):
    model, x, y = tiny
    result = essential_maps(model, x, y, **{**TINY, "lam": 1.0})  # the penalty wins: maps collapse
    with torch.no_grad():
        predicted = model(apply_mask(x, ifftshift2(result.maps))).argmax(1)
    assert torch.equal(result.kept, predicted == y)
    assert (~result.kept).any() and result.maps.sum() < 1.0


def test_adversarial_maps_store_both_labels(tiny):
    model, x, y = tiny
    y_adv = (y + 1) % 3
    result = adversarial_maps(model, x[:2], y_adv[:2], y[:2], index=torch.tensor([7, 9]), **TINY)
    assert result.kind == "adversarial"
    assert torch.equal(result.adversarial_labels, y_adv[:2]) and torch.equal(result.labels, y[:2])
    assert torch.equal(result.targets, y_adv[:2]) and result.index.tolist() == [7, 9]
    with torch.no_grad():
        predicted = model(apply_mask(x[:2], ifftshift2(result.maps))).argmax(1)
    assert torch.equal(result.kept, predicted == y_adv[:2])


def test_warm_start_begins_at_the_given_maps(tiny):
    model, x, y = tiny
    cold = essential_maps(model, x, y, **TINY)
    one_step = essential_maps(model, x, y, init=cold.maps, **{**TINY, "min_steps": 0, "max_steps": 1})
    assert (one_step.maps - cold.maps).abs().max() <= 0.01 + 1e-9  # Adam's first step moves at most lr
    warm = essential_maps(model, x, y, init=cold.maps, **{**TINY, "min_steps": 20})
    assert warm.steps.sum() < cold.steps.sum() / 2


def test_previous_maps_warm_start_under_the_warm_rule(tiny):
    """An image with a previous map of the same index and target starts from it, may stop after warm_min_steps,
    gets at most min_steps steps, and if not converged by then goes on under the full rule (steps add up)."""
    model, x, y = tiny
    rough = essential_maps(model, x[:5], y[:5], **{**TINY, "min_steps": 200, "max_steps": 200})  # 5: none
    other = y[:5].clone()
    other[1] = (other[1] + 1) % 3  # image 1's previous map kept another class: no warm start
    previous = replace(rough, labels=other)
    warm = essential_maps(model, x, y, previous=previous, warm_min_steps=5, **TINY)
    assert warm.warm.tolist() == [True, False, True, True, True, False]

    cold = essential_maps(model, x[[1, 5]], y[[1, 5]], **TINY)
    torch.testing.assert_close(warm.maps[[1, 5]], cold.maps, atol=1e-12, rtol=0)
    assert torch.equal(warm.steps[[1, 5]], cold.steps)
    rows = torch.tensor([0, 2, 3, 4])
    first = essential_maps(model, x[rows], y[rows], init=rough.maps[rows], **{**TINY, "min_steps": 5, "max_steps": 50})
    assert first.converged.any() and not first.converged.all()  # both ways out of the warm rule happen here
    going_on = ~first.converged
    then = essential_maps(model, x[rows][going_on], y[rows][going_on], init=first.maps[going_on], **TINY)
    expected_maps, expected_steps = first.maps.clone(), first.steps.clone()
    expected_maps[going_on], expected_steps[going_on] = then.maps, 50 + then.steps
    torch.testing.assert_close(warm.maps[rows], expected_maps, atol=1e-12, rtol=0)
    assert torch.equal(warm.steps[rows], expected_steps)
    assert (warm.steps[rows][first.converged] <= 50).all() and (warm.steps[rows][going_on] > 50).all()
    with pytest.raises(UserInputError, match="warm_min_steps must be >= 0"):
        essential_maps(model, x, y, previous=previous, warm_min_steps=-1, **TINY)


def test_result_saves_and_loads_safely(tiny, tmp_path):
    model, x, y = tiny
    result = essential_maps(model, x[:3], y[:3], index=torch.tensor([4, 5, 6]), **{**TINY, "max_steps": 60})
    path = tmp_path / "maps.pt"
    result.save(path)
    raw = torch.load(path, weights_only=True)  # no pickled objects inside
    assert set(raw) >= {"maps", "index", "labels", "adversarial_labels", "steps", "converged", "kept", "warm",
                        "settings"}
    loaded = FrequencyMaps.load(path)
    for name in FrequencyMaps._TENSORS:
        assert torch.equal(getattr(loaded, name), getattr(result, name))
    assert loaded.kind == "essential" and loaded.settings["lam"] == 0.002 and loaded.settings["max_steps"] == 60
    means = loaded.class_means(3)
    for c in range(3):
        rows = loaded.kept & (loaded.labels == c)
        if rows.any():
            torch.testing.assert_close(means[c], loaded.maps[rows].mean(0).float())
    torch.save({"maps": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserInputError, match="not a saved FrequencyMaps"):
        FrequencyMaps.load(tmp_path / "other.pt")


def test_bad_inputs_give_clear_errors(tiny):
    model, x, y = tiny
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\].*normalisation belongs inside the model"):
        essential_maps(model, x * 2 - 0.5, y, progress=False)
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        essential_maps(model, x[0], y, progress=False)
    with pytest.raises(ValueError, match=r"int64 tensor of shape \(6,\)"):
        essential_maps(model, x, y[:3], progress=False)
    with pytest.raises(ValueError, match=r"int64 tensor of shape \(6,\)"):
        essential_maps(model, x, y.double(), progress=False)
    with pytest.raises(ValueError, match="init must be maps shaped like the images"):
        essential_maps(model, x, y, init=torch.ones(6, 1, 8, 8), progress=False)
    with pytest.raises(ValueError, match="unknown map setting.*lamda"):
        essential_maps(model, x, y, lamda=0.1)
    with pytest.raises(ValueError, match="min_steps must be in"):
        MapSettings(min_steps=10, max_steps=5)


def test_model_in_train_mode_is_solved_in_eval_and_handed_back(synthetic_cnn):
    model = copy.deepcopy(synthetic_cnn.model).train()
    model.head.eval()  # a mixed state must come back exactly
    frozen = model.features[0][0].weight.requires_grad_(False)
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = synthetic_cnn.x_test[:4], synthetic_cnn.y_test[:4]
    settings = MapSettings(min_steps=5, max_steps=30)
    together = essential_maps(model, x, y, settings, progress=False)
    assert model.training and not model.head.training and model.features.training
    assert not frozen.requires_grad and model.head.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():  # BatchNorm running statistics untouched
        assert torch.equal(v, stats[k]), k
    alone = essential_maps(model, x[2:3], y[2:3], settings, progress=False)
    torch.testing.assert_close(together.maps[2], alone.maps[0], atol=1e-4, rtol=0)  # images not coupled
    reference = essential_maps(synthetic_cnn.model, x, y, settings, progress=False)
    torch.testing.assert_close(together.maps, reference.maps, atol=0, rtol=0)


def test_progress_bar_counts_stopped_images(tiny, capsys):
    model, x, y = tiny
    essential_maps(model, x[:3], y[:3], **{**TINY, "max_steps": 60, "progress": True})
    assert "3/3" in capsys.readouterr().err


def test_figure_writer_draws_class_means_profiles_and_panels(tiny, tmp_path):
    model, x, y = tiny
    essential = essential_maps(model, x, y, **TINY)
    adversarial = adversarial_maps(model, x, (y + 1) % 3, y, **TINY)
    paths = write_map_figures(tmp_path / "figures", x, essential, adversarial, num_classes=3, x_adv=x)
    assert [p.name for p in paths] == ["class_means.png", "radial_profile.png", "essential_panels.png",
                                       "adversarial_panels.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000 for p in paths)
    profiles = radial_profiles(essential, {"a": adversarial, "b": adversarial})
    assert list(profiles) == ["essential", "adversarial (a)", "adversarial (b)"]
    torch.testing.assert_close(profiles["essential"][0], essential.kept_only().maps[:, :, 8, 8].float().mean())


def test_interval_curve_draws_the_band_and_marks_significant_points():
    nan = float("nan")
    points = [{"epoch": 0.0, "idcor": 0.1, "low": -0.05, "high": 0.3, "p": 0.4},
              {"epoch": 1.0, "idcor": 0.3, "low": 0.1, "high": 0.5, "p": 0.01},
              {"epoch": 2.0, "idcor": 0.35, "low": nan, "high": nan, "p": 0.02}]
    ax = interval_curve_figure(points).axes[0]
    (band,) = ax.collections[:1]
    vertices = {tuple(v) for path in band.get_paths() for v in path.vertices.round(6).tolist()}
    assert {(0.0, -0.05), (0.0, 0.3), (1.0, 0.1), (1.0, 0.5)} <= vertices
    assert not any(x == 2.0 for x, _ in vertices)  # no interval at epoch 2: no band there
    filled, hollow = ax.collections[1:3]
    assert filled.get_offsets().tolist() == [[1.0, 0.3], [2.0, 0.35]]
    assert hollow.get_offsets().tolist() == [[0.0, 0.1]]


def test_at_224_pixels_the_batched_solver_equals_the_one_image_loop_and_pools_to_the_papers_cells():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                          nn.Linear(64, 3)).double().eval()
    x = torch.rand(3, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        model[-1].bias -= model(x).mean(0)
        y = model(x).argmax(1)
    rule = dict(lam=0.1, min_steps=20, max_steps=60, tol=1e-5, progress=False)
    batched = essential_maps(model, x, y, batch_size=3, **rule)
    for i in range(len(x)):
        reference, steps = paper_loop(model, x[i:i + 1], y[i:i + 1], 0.1, 20, 60, 1e-5)
        torch.testing.assert_close(batched.maps[i], reference, atol=1e-5, rtol=0)
        assert batched.steps[i] == steps
    assert 0.01 < batched.maps.mean() < 0.99  # the maps moved from all ones
    pooled = pool_and_flatten(batched.maps, 7)  # the paper's kernel at 224 px: 32 x 32 cells a channel
    assert pooled.shape == (3, 3 * 32 * 32)
    assert torch.equal(pool_and_flatten(batched.maps), pooled)  # 7 is also the default at 224 px
    assert torch.equal(pooled[0, :32 * 32].view(32, 32), F.max_pool2d(batched.maps[:1, :1], 7)[0, 0].to(pooled))
