"""WeightKurtosisCallback in a real (tiny) fit of a saturating MLP: the kurtosis it logs to an offline W&B run is
scipy.stats.kurtosis of the final weights, the saturated shares are those of the probe's pre-activations, the
histograms reach W&B, and the classifier hands each epoch to the objective's annealing."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

from callbacks import WeightKurtosisCallback
from callbacks.probe import load_shard
from datamodules import DigitsDataModule
from freqmaps.errors import UserInputError
from freqmaps.sampling import seeded_indices
from freqmaps.saturation import SaturationPenalty, recorded_preactivations, saturated
from lightning_modules import StandardClassifier
from tests.wandb_offline import offline_runs, read_offline_run


def test_kurtosis_and_saturation_reach_wandb(tmp_path):
    stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    data = DigitsDataModule(image_size=8, channels=1, batch_size=32, num_workers=0)
    objective = SaturationPenalty(lambda_max=0.1, anneal_epochs=2)
    module = StandardClassifier("mlp", 10, 1, 8, objective=objective,
                                model_options={"widths": [16, 8], "activation": "sigmoid"})
    callback = WeightKurtosisCallback(probe_size=24, batch_size=16, bins=16)
    logger = WandbLogger(project="test", save_dir=str(tmp_path), offline=True)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=logger, callbacks=[callback], max_epochs=2,
                        limit_train_batches=3, limit_val_batches=2, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, data)
    logger.experiment.finish()
    assert objective.lam == pytest.approx(0.05)  # epoch 1 of a 2-epoch linear annealing
    run = read_offline_run(offline_runs(tmp_path)[0])
    for name in ("network.features.1", "network.features.3", "network.head"):
        weight = dict(module.named_modules())[name].weight.detach().flatten().numpy()
        assert run.summary[f"val/saturation/kurtosis/{name}"] == pytest.approx(float(stats.kurtosis(weight)),
                                                                               rel=1e-5)
    assert len(run.values("val/saturation/kurtosis/network.head")) == 2  # every epoch
    dataset = trainer.val_dataloaders.dataset
    shard = load_shard(dataset, seeded_indices(len(dataset), 24, 0), 16, 0, 1)
    module.eval()
    with recorded_preactivations(module) as recorded, torch.no_grad():
        for _, rows in shard:
            module(shard.x[rows])
    sigmoid = dict(module.named_modules())["network.features.2"]
    h = torch.cat([p.h.flatten() for p in recorded if p.name == "network.features.2"])
    assert run.summary["val/saturation/saturated/network.features.2"] == pytest.approx(
        saturated(h, sigmoid).float().mean().item())
    for layer in ("network.features.2", "network.features.4"):
        assert run.values(f"val/saturation/preactivations/{layer}/_type") == ["histogram"] * 2  # every epoch


def test_bad_settings_give_clear_errors():
    with pytest.raises(UserInputError, match="bins"):
        WeightKurtosisCallback(bins=0)
