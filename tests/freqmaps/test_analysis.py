"""The analysis primitive: its scalars are what the attack, the maps and the correlation say; batches analysed
apart and joined give the one-call result; too few pairs leave no correlation, with the reason; warm starts."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from freqmaps.analysis import METRICS, PER_CLASS, ImageAnalysis, analyse, analyse_images, conclude, summary
from freqmaps.attacks import PGD
from freqmaps.correlation import correlate_maps
from freqmaps.errors import UserInputError
from freqmaps.maps import MapSettings

SETTINGS = MapSettings(lam=0.1, lr=0.05, min_steps=10, max_steps=30, batch_size=64)


def attack(eps: float = 0.1) -> PGD:
    return PGD(eps=eps, norm="linf", steps=5, random_start=True)


@pytest.fixture(scope="module")
def digits(digits_cnn):
    return digits_cnn.model, digits_cnn.x_test[:40], digits_cnn.y_test[:40]


@pytest.fixture(scope="module")
def analysis(digits):
    model, x, y = digits
    return analyse(model, x, y, attack(), SETTINGS, index=torch.arange(100, 140), permutations=20, seed=3,
                   attack_batch_size=16, progress=False)


def test_scalars_are_what_the_attack_maps_and_correlation_say(digits, analysis):
    model, x, y = digits
    scalars = summary(analysis)
    assert list(scalars) == list(METRICS)
    images = analysis.images
    with torch.no_grad():
        correct = model(x).argmax(1) == y
        fooled = correct & (model(images.x_adv).argmax(1) != y)
    assert torch.equal(images.correct, correct) and torch.equal(images.fooled, fooled)
    assert scalars["images"] == 40 and scalars["correct"] == correct.sum() and scalars["fooled"] == fooled.sum()
    assert scalars["clean_acc"] == pytest.approx(correct.float().mean().item())
    assert 0 < scalars["fooled"] < scalars["correct"]
    assert scalars["success_rate"] == pytest.approx(fooled.sum().item() / correct.sum().item())
    linf = (images.x_adv - x).flatten(1).abs().amax(1)[fooled]
    assert scalars["median_linf"] == pytest.approx(linf.quantile(0.5).item()) and linf.max() <= 0.1 + 1e-6

    essential, adversarial = images.essential, images.adversarial
    assert torch.equal(essential.index, torch.arange(100, 140)[correct])  # the maps carry the image ids
    assert torch.equal(adversarial.index, torch.arange(100, 140)[fooled])
    assert torch.equal(adversarial.targets, model(images.x_adv[fooled]).argmax(1))
    assert scalars["essential_maps"] == correct.sum() and scalars["adversarial_maps"] == fooled.sum()
    assert scalars["essential_kept"] == pytest.approx(essential.kept.float().mean().item())
    assert scalars["adversarial_steps"] == pytest.approx(adversarial.steps.float().mean().item())
    assert scalars["essential_warm"] == 0 and scalars["adversarial_warm"] == 0
    off = (essential.kept_only().maps <= 0.5).flatten(1).float().mean(1).mean().item()
    assert scalars["essential_sparsity"] == pytest.approx(off) and 0 < off < 1

    e, a = essential.kept_only(), adversarial.kept_only()
    direct = correlate_maps(e.maps, a.maps, e.index, a.index, permutations=20, seed=3)
    assert scalars["n_pairs"] == direct.n_pairs >= 3 and analysis.no_correlation is None
    for name in ("idcor", "idcor_p", "id_joint", "svcca", "cka", "cosine_mean"):
        assert scalars[name] == pytest.approx(direct.scalars()[name]), name

    rows = analysis.per_class
    assert [row["class"] for row in rows] == list(range(10)) and all(list(row) == list(PER_CLASS) for row in rows)
    assert sum(row["images"] for row in rows) == 40
    assert sum(row["essential_maps"] for row in rows) == correct.sum()
    assert sum(row["adversarial_maps"] for row in rows) == fooled.sum()  # by adversarial label


def test_batches_analysed_apart_and_joined_equal_one_call(digits, analysis):
    """The callback's way (one call per probe batch, seed + batch number, joined) gives the one-call analysis, up
    to the float rounding of other batch sizes in the solver."""
    model, x, y = digits
    index = torch.arange(100, 140)
    parts = [analyse_images(model, x[rows], y[rows], attack(), SETTINGS, index=index[rows], seed=3 + number,
                            attack_batch_size=16, progress=False)
             for number, rows in enumerate(torch.arange(40).split(16))]
    joined = conclude(ImageAnalysis.cat(parts), permutations=20, seed=3)
    one, apart = summary(analysis), summary(joined)
    for name in METRICS:
        if not name.endswith("seconds"):
            assert apart[name] == pytest.approx(one[name], rel=1e-5, abs=1e-6, nan_ok=True), name
    torch.testing.assert_close(joined.images.x_adv, analysis.images.x_adv, atol=0, rtol=0)
    # float32 maps after a hundred Adam steps at other working-batch sizes: 2e-5 apart on some CPUs
    torch.testing.assert_close(joined.images.adversarial.maps, analysis.images.adversarial.maps, atol=1e-4, rtol=0)


def test_without_three_pairs_there_is_no_correlation_and_the_reason_is_kept(digits):
    model, x, y = digits
    result = analyse(model, x[:8], y[:8], attack(eps=1e-4), SETTINGS, permutations=5, progress=False)
    scalars = summary(result)
    assert scalars["fooled"] == 0 and scalars["n_pairs"] == 0 and math.isnan(scalars["median_linf"])
    assert result.correlation is None and "needs at least 3" in result.no_correlation
    assert all(math.isnan(scalars[name]) for name in ("idcor", "idcor_p", "svcca", "cka", "cosine_mean"))
    assert scalars["adversarial_maps"] == 0 and math.isnan(scalars["adversarial_kept"])


def test_a_second_analysis_warm_starts_and_shares_essential_maps(digits, analysis):
    model, x, y = digits
    settled = replace(SETTINGS, max_steps=300, tol=1e-3)  # maps that converge: a warm start can stop early
    kwargs = dict(index=torch.arange(100, 140), permutations=20, seed=3, attack_batch_size=16, progress=False)
    first = analyse(model, x, y, attack(), settled, **kwargs)
    again = analyse(model, x, y, attack(), settled, previous=first, warm_min_steps=2, **kwargs)
    before, after = summary(first), summary(again)
    assert before["essential_warm"] == 0 and after["essential_warm"] == 1 and after["adversarial_warm"] == 1
    assert after["essential_steps"] < before["essential_steps"]  # they start where the first analysis ended
    assert after["adversarial_steps"] < before["adversarial_steps"]
    shared = analyse(model, x, y, attack(eps=0.05), SETTINGS, index=torch.arange(100, 140),
                     essential=analysis.images.essential, permutations=20, seed=3, progress=False)
    assert shared.images.essential is analysis.images.essential
    with pytest.raises(UserInputError, match="exactly the correctly classified images"):
        analyse(model, x[:20], y[:20], attack(), SETTINGS, essential=analysis.images.essential, progress=False)
