"""Adversarial training objectives really buy robustness; TRADES and fast FGSM converge; class maps trained on a
standard model, loaded from their file as a ClassMapFilter, act as the label-free defence."""
from __future__ import annotations

import lightning as L
import pytest
import torch

from datamodules import DigitsDataModule
from freqmaps.attacks import FGSM, PGD
from freqmaps.attacks.trades import TRADES
from freqmaps.class_maps import ClassMapDefence, class_maps, evaluate_class_maps
from freqmaps.errors import UserInputError
from freqmaps.filters import ClassMapFilter
from freqmaps.objectives import FastFGSMTraining, PGDTraining, TRADESTraining
from lightning_modules import StandardClassifier

EPS = 0.1


def fit(module, epochs: int) -> tuple[L.Trainer, DigitsDataModule]:
    L.seed_everything(0)
    dm = DigitsDataModule(image_size=16, batch_size=64)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        inference_mode=False)
    trainer.fit(module, dm)
    return trainer, dm


def robust_accuracy(model, dm: DigitsDataModule) -> float:
    x, y = dm.test_set.tensors
    torch.manual_seed(0)
    x_adv = PGD(eps=EPS, steps=10, step_size=0.025)(model, x, y)
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def standard_and_adversarial():
    args = dict(model_name="small_cnn", num_classes=10, in_channels=1, image_size=16)
    standard = StandardClassifier(**args)
    _, dm = fit(standard, 5)
    adversarial = StandardClassifier(**args, objective=PGDTraining(PGD(eps=EPS, steps=3, step_size=0.04)),
                                     eval_attack=PGD(eps=EPS, steps=5, step_size=0.03))
    trainer, _ = fit(adversarial, 5)
    return standard, adversarial, trainer, dm


def test_pgd_training_raises_robust_accuracy(standard_and_adversarial):
    standard, adversarial, trainer, dm = standard_and_adversarial
    standard_robust = robust_accuracy(standard.model.eval(), dm)
    adversarial_robust = robust_accuracy(adversarial.model.eval(), dm)
    print(f"PGD-10 eps={EPS} robust accuracy: standard {standard_robust:.3f}, PGD-AT {adversarial_robust:.3f}")
    assert adversarial_robust > standard_robust + 0.3
    assert "val/robust_acc" in trainer.callback_metrics  # validation reported it too
    assert trainer.callback_metrics["val/acc"] > 0.7


@pytest.mark.parametrize(
    "objective",
    [TRADESTraining(TRADES(eps=EPS, steps=3, step_size=0.04)), FastFGSMTraining(FGSM(eps=EPS, random_start=True))],
    ids=["trades", "fast_fgsm"],
)
def test_trades_and_fast_fgsm_converge(objective):
    module = StandardClassifier("small_cnn", 10, 1, 16, objective=objective,
                                eval_attack=PGD(eps=EPS, steps=3, step_size=0.04))
    losses = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            losses.append(trainer.callback_metrics["train/loss"].item())

    L.seed_everything(0)
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[Record()])
    trainer.fit(module, DigitsDataModule(image_size=16, batch_size=64))
    assert losses[-1] < 0.75 * losses[0] and losses == sorted(losses, reverse=True)
    assert trainer.callback_metrics["val/acc"] > 0.6


def test_class_map_defence_end_to_end(standard_and_adversarial, tmp_path):
    """Class maps trained on validation digits and their PGD adversarials, evaluated on test digits (docs/method.md
    §4), then loaded from their file as the ClassMapFilter of a classifier that applies the predicted class's map."""
    standard, _, _, dm = standard_and_adversarial
    model = standard.model.eval()
    x_val, y_val = dm.val_set.tensors
    x_test, y_test = dm.test_set.tensors
    attack = PGD(eps=EPS, steps=10, step_size=0.025)
    torch.manual_seed(0)
    trained = class_maps(model, x_val, y_val, attack(model, x_val, y_val), 10, min_steps=30, max_steps=200,
                         progress=False)
    assert trained.maps.shape == (10, 1, 16, 16) and (trained.steps > 0).all()
    assert trained.maps.mean() < 0.9  # the L1 penalty removed frequencies
    x_adv = attack(model, x_test, y_test)
    rates = evaluate_class_maps(model, trained, x_test, y_test, x_adv)
    print(f"class maps: still correct {rates.still_correct:.3f}, adversarial undone {rates.adversarial_undone:.3f}, "
          f"label-free clean {rates.clean_accuracy:.3f} / adversarial {rates.adversarial_accuracy:.3f} "
          f"(unmasked {rates.clean_accuracy_unmasked:.3f} / {rates.adversarial_accuracy_unmasked:.3f})")
    assert rates.n_fooled > 0.5 * rates.n_images and rates.adversarial_accuracy_unmasked < 0.3
    assert rates.still_correct > 0.8
    assert rates.adversarial_undone > rates.adversarial_accuracy_unmasked + 0.1  # the maps undo some attacks

    path = tmp_path / "class_maps.pt"
    trained.save(path)
    defended = StandardClassifier("small_cnn", 10, 1, 16, input_filter=ClassMapFilter(str(path)))
    defended.network.load_state_dict(model.state_dict())
    defended.eval()
    reference = ClassMapDefence(model, trained.maps)
    with torch.no_grad():
        torch.testing.assert_close(defended(x_test), reference(x_test))
        assert (defended(x_test).argmax(1) == y_test).float().mean() == pytest.approx(rates.clean_accuracy)
    robust = robust_accuracy(defended.model, dm)  # an adaptive attack: PGD through the maps
    assert 0 <= robust <= 1
    with pytest.raises(UserInputError, match="shape"):
        StandardClassifier("small_cnn", 10, 1, 32, input_filter=ClassMapFilter(str(path)))
