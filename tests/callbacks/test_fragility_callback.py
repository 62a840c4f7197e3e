"""FragilityCallback in a real (tiny) digits fit: the offline W&B run holds a heatmap image per analysis and the
scalars of freqmaps.fragility on the same probe; its per-filter history is that fragility, and a fit resumed from
a checkpoint goes on with it."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

from callbacks import FragilityCallback
from callbacks.probe import load_shard
from datamodules import DigitsDataModule
from freqmaps.fragility import fragility
from freqmaps.sampling import seeded_indices
from lightning_modules import StandardClassifier
from tests.wandb_offline import offline_runs, read_offline_run

PROBE, BATCH, EPS = 16, 8, [0.05, 0.1]


def fit(module: StandardClassifier, data: DigitsDataModule, epochs: int, logger,
        ckpt_path=None) -> tuple[FragilityCallback, L.Trainer]:
    callback = FragilityCallback(EPS, probe_size=PROBE, batch_size=BATCH)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, limit_train_batches=2, limit_val_batches=1,
                        logger=logger, callbacks=[callback], enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return callback, trainer


def classifier() -> StandardClassifier:
    torch.manual_seed(0)
    return StandardClassifier("small_cnn", num_classes=10, in_channels=1, image_size=32,
                              init_weights="digits_small_cnn")


def test_heatmap_scalars_and_history_are_the_probe_fragility_and_survive_a_resume(tmp_path):
    data, module = DigitsDataModule(channels=1, batch_size=64), classifier()
    logger = WandbLogger(project="test", save_dir=str(tmp_path), offline=True)
    callback, trainer = fit(module, data, 2, logger)
    checkpoint = tmp_path / "epoch2.ckpt"
    trainer.save_checkpoint(checkpoint)
    logger.experiment.finish()
    run_dir = offline_runs(tmp_path)[0]
    run = read_offline_run(run_dir)

    heatmaps = [name for name in run.files if name.startswith("media/images/val/fragility/heatmap")]
    assert len(heatmaps) == 2 and all((run_dir / "files" / name).stat().st_size > 1000 for name in heatmaps)
    shard = load_shard(data.val_set, seeded_indices(len(data.val_set), PROBE, 0), BATCH, 0, 1)
    result = fragility(module, shard.x, shard.y, EPS, batch_size=BATCH, progress=False)  # the final weights
    expected = {"max_fragility": result.fragility.max(), "mean_fragility": result.fragility.mean(),
                "most_fragile": result.ranking[0], "spearman": result.spearman[-1],
                "base_fgsm_acc": result.base_adversarial[-1]}
    for key, value in expected.items():
        assert run.summary[f"val/fragility/{key}"] == pytest.approx(float(value), abs=1e-6), key
    history = callback.state_dict()["history"]["val"]
    assert [epoch for epoch, _ in history] == [0, 1]
    torch.testing.assert_close(history[-1][1], result.fragility, atol=1e-6, rtol=0)  # every filter's fragility
    assert history[-1][1].shape == (32,) and not torch.equal(history[0][1], history[1][1])

    resumed, _ = fit(classifier(), data, 3, False, ckpt_path=checkpoint)  # a fresh callback, its state from the file
    columns = resumed.state_dict()["history"]["val"]
    assert [epoch for epoch, _ in columns] == [0, 1, 2]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(columns, history))
