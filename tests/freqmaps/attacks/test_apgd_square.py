"""APGD and Square on a small CNN trained on 8x8 digits: APGD at least as strong as PGD at equal steps, Square fools
within its query budget, both stay in the eps-ball and [0, 1], and both agree with torchattacks' on the same
images (robust accuracy within 6 points for APGD, 8 for Square: random starts and square positions differ; this Square
draws a sign per image where theirs shares one across the batch, and came out 2-10 points stronger here)."""
from __future__ import annotations

import pytest
import torch
from conftest import accuracy, train_classifier
from torch import nn

from datamodules.digits import load_digits_tensors
from freqmaps.attacks import APGD, PGD, Square, create_attack
from freqmaps.attacks.apgd import dlr_loss
from freqmaps.attacks.base import lp_norms
from freqmaps.errors import UserInputError


@pytest.fixture(scope="module")
def cnn():
    """A conv-ReLU-linear net on 8x8 digits (about 95% test accuracy) and 128 test digits."""
    x, y = load_digits_tensors(8, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 10))
    model = train_classifier(model, x[:1400], y[:1400], epochs=10)
    return model, x[1400:1528], y[1400:1528]


def in_ball(x_adv, x, eps, norm):
    p = float("inf") if norm == "linf" else 2.0
    return bool((lp_norms(x_adv - x, p) <= eps * (1 + 1e-5)).all() and x_adv.min() >= 0 and x_adv.max() <= 1)


@pytest.mark.parametrize("norm, eps", [("linf", 0.08), ("l2", 0.6)])
def test_apgd_at_least_as_strong_as_pgd_at_equal_steps(cnn, norm, eps):
    model, x, y = cnn
    torch.manual_seed(0)
    pgd = PGD(eps=eps, norm=norm, steps=10, step_size=2.5 * eps / 10)(model, x, y)  # Madry's step rule
    apgd = APGD(eps=eps, norm=norm, steps=10)(model, x, y)
    assert in_ball(apgd, x, eps, norm)
    assert accuracy(model, x, y) - accuracy(model, apgd, y) > 0.2  # the attack does something
    assert accuracy(model, apgd, y) <= accuracy(model, pgd, y) + 1 / len(x)


@pytest.mark.parametrize("kwargs", [dict(loss="dlr"), dict(loss="dlr", targeted=True, target_classes=3),
                                    dict(loss="ce", targeted=True, target_classes=2), dict(float64=True),
                                    dict(norm="l2", eps=0.6, restarts=2)])
def test_apgd_variants_fool_and_stay_in_the_ball(cnn, kwargs):
    model, x, y = cnn
    kwargs = {"eps": 0.08, "norm": "linf", **kwargs}
    x_adv = create_attack("apgd", steps=5, **kwargs)(model, x[:64], y[:64])
    assert x_adv.dtype == x.dtype and in_ball(x_adv, x[:64], kwargs["eps"], kwargs["norm"])
    assert accuracy(model, x_adv, y[:64]) < accuracy(model, x[:64], y[:64]) - 0.2


def test_dlr_is_scale_invariant_and_pgd_cw_fools(cnn):
    logits, y = torch.randn(6, 10), torch.arange(6)
    assert torch.allclose(dlr_loss(logits, y), dlr_loss(1000 * logits, y), atol=1e-5)
    assert torch.allclose(dlr_loss(logits, y, (y + 1) % 10), dlr_loss(7 * logits, y, (y + 1) % 10), atol=1e-5)
    model, x, y = cnn
    x_adv = PGD(eps=0.08, steps=10, step_size=0.02, loss="cw")(model, x, y)
    assert in_ball(x_adv, x, 0.08, "linf") and accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.2
    with pytest.raises(UserInputError, match="unknown attack loss"):
        PGD(loss="dlr")


@pytest.mark.parametrize("norm, eps", [("linf", 0.15), ("l2", 0.6)])
def test_square_fools_within_its_budget_and_stays_in_the_ball(cnn, norm, eps):
    model, x, y = cnn
    calls = []
    handle = model.register_forward_pre_hook(lambda m, inputs: calls.append(len(inputs[0])))
    torch.manual_seed(0)
    x_adv = Square(eps=eps, norm=norm, queries=200)(model, x, y)
    handle.remove()
    assert in_ball(x_adv, x, eps, norm)
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.25
    assert len(calls) <= 201  # the initial point + 200 queries
    assert sum(calls) < 201 * len(x)  # fooled images take no more queries


@pytest.mark.parametrize("norm, eps", [("linf", 0.08), ("l2", 0.6)])
def test_agreement_with_torchattacks(cnn, norm, eps):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = cnn
    torch.manual_seed(0)
    ta_norm = "Linf" if norm == "linf" else "L2"
    ours = accuracy(model, APGD(eps=eps, norm=norm, steps=10)(model, x, y), y)
    theirs = accuracy(model, torchattacks.APGD(model, norm=ta_norm, eps=eps, steps=10)(x, y), y)
    assert abs(ours - theirs) <= 0.06
    ours = accuracy(model, Square(eps=eps, norm=norm, queries=100)(model, x, y), y)
    theirs = accuracy(model, torchattacks.Square(model, norm=ta_norm, eps=eps, n_queries=100)(x, y), y)
    assert abs(ours - theirs) <= 0.08


def test_bad_settings_raise_clear_errors(cnn):
    model, x, y = cnn
    with pytest.raises(UserInputError, match="unknown attack loss"):
        APGD(loss="cw")
    with pytest.raises(UserInputError, match="p_init"):
        Square(p_init=2.0)
    with pytest.raises(UserInputError, match="at least 4 classes"):
        APGD(loss="dlr", targeted=True)(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), x[:2], y[:2] % 3)
    assert Square(queries=50).capped(3).queries == 3
