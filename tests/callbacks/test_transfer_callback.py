"""TransferCallback in a real (tiny) digits fit: what it logs to an offline W&B run is the transfer of its probe's
adversarial examples computed by freqmaps.transfer on the same images, untargeted and targeted; a target of another
task stops the fit with both named."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

from callbacks import TransferCallback
from callbacks.probe import load_shard
from datamodules import DigitsDataModule
from freqmaps.attacks import PGD, TargetedPGD
from freqmaps.errors import UserInputError
from freqmaps.sampling import seeded_indices
from freqmaps.transfer import transfer_matrix
from lightning_modules import StandardClassifier
from lightning_modules.checkpoint import load_classifier
from tests.wandb_offline import offline_runs, read_offline_run

PROBE, BATCH = 24, 12


def digits(channels: int = 1, init_weights: str | None = None) -> tuple[DigitsDataModule, StandardClassifier]:
    torch.manual_seed(0)
    return (DigitsDataModule(channels=channels, batch_size=64),
            StandardClassifier("small_cnn", num_classes=10, in_channels=channels, image_size=32,
                               init_weights=init_weights))


def test_logged_transfer_is_freqmaps_transfer_on_the_probe(tmp_path):
    data, module = digits(init_weights="digits_small_cnn")  # fine-tuning the zoo's CNN: a source worth attacking
    attacks = {"transfer": PGD(eps=2.0, norm="l2", steps=5), "targeted": TargetedPGD(eps=3.0, norm="l2", steps=5)}
    callbacks = [TransferCallback({"zoo": "digits_small_cnn"}, PROBE, batch_size=BATCH, attack=attack,
                                  targeted=name == "targeted", name=name) for name, attack in attacks.items()]
    logger = WandbLogger(project="test", save_dir=str(tmp_path), offline=True)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, limit_train_batches=3, limit_val_batches=2,
                        logger=logger, callbacks=callbacks, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False)
    trainer.fit(module, data)
    logger.experiment.finish()
    run = read_offline_run(offline_runs(tmp_path)[0])

    # the probe by hand (the callbacks' seeded draw from the validation set) and the final weights' transfer
    shard = load_shard(data.val_set, seeded_indices(len(data.val_set), PROBE, 0), BATCH, 0, 1)
    target = {"zoo": load_classifier("digits_small_cnn")}
    for name, attack in attacks.items():
        assert len(run.values(f"val/{name}/white_box")) == 2  # every epoch
        result = transfer_matrix({"trained": module}, target, shard.x, shard.y, attack, targeted=name == "targeted",
                                 batch_size=BATCH, progress=False)
        white_box, on_zoo = run.summary[f"val/{name}/white_box"], run.summary[f"val/{name}/zoo"]
        assert white_box == pytest.approx(result.white_box[0].item(), abs=1e-6)
        assert on_zoo == pytest.approx(result.success[0, 0].item(), abs=1e-6)
        assert on_zoo <= white_box and white_box > 0.5  # a white-box attack beats its transfer
    assert run.summary["val/transfer/zoo"] > run.summary["val/targeted/zoo"]  # reaching one class is harder


def test_a_target_of_another_task_stops_with_both_named():
    data, module = digits(channels=3)
    callback = TransferCallback({"zoo": "digits_small_cnn"}, probe_size=4, batch_size=4, attack=PGD(steps=1))
    trainer = L.Trainer(accelerator="cpu", devices=1, limit_val_batches=1, logger=False, callbacks=[callback],
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(UserInputError) as error:
        trainer.validate(module, data)
    message = str(error.value)
    assert "'zoo'" in message and "'the trained model'" in message and "\n" not in message
