"""Training objectives: each computes its paper's loss on the logits it says, and refuses an attack of another
method."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from freqmaps.attacks import FGSM, PGD
from freqmaps.attacks.trades import TRADES, trades_loss
from freqmaps.errors import UserInputError
from freqmaps.models import create_model
from freqmaps.objectives import CrossEntropy, FastFGSMTraining, PGDTraining, TRADESTraining


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    return create_model("small_cnn", 10, 1, 16).eval(), torch.rand(8, 1, 16, 16), torch.randint(0, 10, (8,))


def test_cross_entropy_smooths_labels_in_training_and_evaluation(batch):
    model, x, y = batch
    result = CrossEntropy(label_smoothing=0.1)(model, x, y)
    logits = model(x)
    torch.testing.assert_close(result.logits, logits)
    torch.testing.assert_close(result.loss, F.cross_entropy(logits, y, label_smoothing=0.1))
    torch.testing.assert_close(CrossEntropy(0.1).criterion(logits, y), result.loss)
    assert not torch.allclose(result.loss, F.cross_entropy(logits, y))
    with pytest.raises(UserInputError, match="label_smoothing"):
        CrossEntropy(1.0)


@pytest.mark.parametrize("objective", [PGDTraining(PGD(eps=0.1, steps=3, step_size=0.04)),
                                       FastFGSMTraining(FGSM(eps=0.1, random_start=True))])
def test_attack_training_losses_are_on_the_attacked_batch(objective, batch):
    model, x, y = batch
    torch.manual_seed(1)
    result = objective(model, x, y)
    torch.manual_seed(1)
    logits_adv = model(objective.attack(model, x, y))
    torch.testing.assert_close(result.logits, logits_adv)
    torch.testing.assert_close(result.loss, F.cross_entropy(logits_adv, y))
    assert result.loss > F.cross_entropy(model(x), y)  # the attack raised the loss
    torch.testing.assert_close(objective.criterion(model(x), y), F.cross_entropy(model(x), y))


def test_trades_loss_is_clean_cross_entropy_plus_beta_kl(batch):
    model, x, y = batch
    objective = TRADESTraining(TRADES(eps=0.1, steps=3, step_size=0.04), beta=3.0)
    torch.manual_seed(1)
    result = objective(model, x, y)
    torch.manual_seed(1)
    x_adv = objective.attack(model, x, y)
    torch.testing.assert_close(result.logits, model(x))
    torch.testing.assert_close(result.loss, trades_loss(model(x), model(x_adv), y, 3.0))


def test_defaults_are_the_papers_cifar10_settings():
    assert (PGDTraining().attack.eps, PGDTraining().attack.steps, PGDTraining().attack.step_size) == (
        8 / 255, 10, 2 / 255)
    assert (TRADESTraining().attack.steps, TRADESTraining().attack.step_size, TRADESTraining().beta) == (10, 0.007, 6.0)
    fgsm = FastFGSMTraining().attack
    assert fgsm.random_start and fgsm.step_size == pytest.approx(1.25 * 8 / 255)


def test_an_attack_of_another_method_is_refused():
    with pytest.raises(UserInputError, match="PGDTraining trains against a PGD attack, got TRADES"):
        PGDTraining(TRADES())
    with pytest.raises(UserInputError, match="TRADESTraining trains against a TRADES attack"):
        TRADESTraining(PGD())
    with pytest.raises(UserInputError, match="FastFGSMTraining trains against a FGSM attack"):
        FastFGSMTraining(PGD())
    with pytest.raises(UserInputError, match="random_start: true"):
        FastFGSMTraining(FGSM(random_start=False))
    with pytest.raises(UserInputError, match="beta"):
        TRADESTraining(beta=-1.0)
