"""StandardClassifier learns the planted-frequency data, builds its optimizer and scheduler from callables, and
composes its input filter and network into one model without registering anything twice, and starts from trained
weights when asked."""
from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch

from datamodules import SyntheticFrequencyDataModule
from freqmaps.errors import UserInputError
from freqmaps.filters import FilteredNetwork, LowPass
from freqmaps.objectives import CrossEntropy
from lightning_modules import StandardClassifier
from lightning_modules.checkpoint import load_classifier


def test_planted_frequency_data_is_learnable():
    L.seed_everything(0)
    dm = SyntheticFrequencyDataModule(num_train=2000, num_val=400, num_test=400, batch_size=64)
    model = StandardClassifier("small_cnn", dm.num_classes, dm.in_channels, dm.image_size)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)
    assert trainer.callback_metrics["val/acc"] >= 0.9
    assert trainer.callback_metrics["val/acc_best"] >= trainer.callback_metrics["val/acc"]


def test_optimizer_and_scheduler_come_from_the_config():
    model = StandardClassifier(
        "resnet20", 10, 3, 32,
        optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-4),
        lr_scheduler=partial(torch.optim.lr_scheduler.MultiStepLR, milestones=[100, 150], gamma=0.1),
    )
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert scheduler.milestones == {100: 1, 150: 1}
    assert isinstance(StandardClassifier().configure_optimizers(), torch.optim.Adam)


def test_the_model_is_the_filter_then_the_network_registered_once():
    plain = StandardClassifier("small_cnn", 10, 1, 16)
    assert plain.model is plain.network and plain.input_filter is None and plain.hparams.input_filter is None
    assert isinstance(plain.objective, CrossEntropy) and plain.objective.label_smoothing == 0.0
    filtered = StandardClassifier("small_cnn", 10, 1, 16, input_filter=LowPass(3.0))
    model = filtered.model
    assert isinstance(model, FilteredNetwork) and model.network is filtered.network
    assert model.input_filter is filtered.input_filter
    assert filtered.hparams.input_filter == {"class_path": "freqmaps.filters.LowPass", "init_args": {"radius": 3.0}}
    assert len(list(filtered.parameters())) == len(list(filtered.network.parameters()))
    assert {key.split(".")[0] for key in filtered.state_dict()} == {"network", "val_acc_best"}  # the mask is rebuilt
    x = torch.rand(2, 1, 16, 16)
    filtered.eval()
    with torch.no_grad():
        torch.testing.assert_close(filtered(x), filtered.network(LowPass(3.0)(x, None)))


def test_init_weights_starts_from_a_trained_network_and_refuses_another_architecture(tmp_path):
    zoo = load_classifier("digits_small_cnn")
    started = StandardClassifier("small_cnn", 10, 1, 32, init_weights="digits_small_cnn")
    for key, value in zoo.state_dict().items():
        torch.testing.assert_close(started.network.state_dict()[key], value, rtol=0, atol=0)
    x = torch.rand(4, 1, 32, 32)
    started.eval()
    with torch.no_grad():
        torch.testing.assert_close(started(x), zoo(x), rtol=0, atol=0)
    # from a train.py checkpoint of a filtered model: the network's weights only, the new module's own filter
    filtered = StandardClassifier("small_cnn", 10, 1, 32, input_filter=LowPass(3.0))
    trainer = L.Trainer(max_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.strategy.connect(filtered)
    trainer.save_checkpoint(tmp_path / "filtered.ckpt")
    plain = StandardClassifier("small_cnn", 10, 1, 32, init_weights=str(tmp_path / "filtered.ckpt"))
    assert plain.input_filter is None
    for key, value in filtered.network.state_dict().items():
        torch.testing.assert_close(plain.network.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(UserInputError, match="init_weights digits_small_cnn: its weights do not fit CifarResNet"):
        StandardClassifier("resnet20", 10, 1, 32, init_weights="digits_small_cnn")
