"""CurvatureCallback in a real (tiny) fit: what it logs to an offline W&B run is the curvature profile of its probe,
computed by freqmaps.geometry on the same images, and the weights are left as they were."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger
from torch.utils.data import DataLoader, TensorDataset

from callbacks import CurvatureCallback
from callbacks.probe import load_shard
from freqmaps.errors import UserInputError
from freqmaps.geometry import boundary_points, principal_curvatures
from freqmaps.inputs import channels_last
from freqmaps.models import zoo_model
from freqmaps.sampling import seeded_indices
from tests.wandb_offline import offline_runs, read_offline_run


class Wrapped(L.LightningModule):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)

    def validation_step(self, batch, batch_idx):
        return None


def test_curvature_callback_logs_the_probe_profile_to_wandb(tmp_path):
    from datamodules.digits import load_digits_tensors

    x, y = load_digits_tensors(32, 1)
    dataset = TensorDataset(x[-40:], y[-40:])
    module = Wrapped(zoo_model("digits_small_cnn"))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    callback = CurvatureCallback(probe_size=6, batch_size=4, k=3, steps=6, h=0.1, deepfool_steps=20)
    logger = WandbLogger(project="test", save_dir=str(tmp_path), offline=True)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=logger, callbacks=[callback], enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)
    trainer.validate(module, DataLoader(dataset, batch_size=20))
    logger.experiment.finish()
    run = read_offline_run(offline_runs(tmp_path)[0])
    # the same numbers by hand: the probe's two batches (4 + 2 images), seeds by probe position, on channels-last
    # kernels as the callback ran them (the finite-difference curvature amplifies the layouts' rounding gap)
    shard = load_shard(dataset, seeded_indices(40, 6, 0), 4, 0, 1)
    with channels_last(module):
        curvatures = torch.cat([principal_curvatures(
            module, shard.x[rows], shard.y[rows], 3, "finite", 0.1, 6, int(rows[0]),
            boundary_points(module, shard.x[rows], shard.y[rows], steps=20)).curvatures for _, rows in shard])
    valid = ~curvatures.isnan().any(1)
    assert run.summary["val/curvature/mean_abs"] == pytest.approx(curvatures[valid].abs().mean().item(), rel=1e-4)
    assert run.summary["val/curvature/valid"] == pytest.approx(valid.float().mean().item())
    assert any(name.startswith("media/images/val/curvature/profile") for name in run.files)  # the profile plot
    assert run.summary["val/curvature/seconds"] > 0
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_bad_settings_give_clear_errors():
    with pytest.raises(UserInputError, match="h > 0"):
        CurvatureCallback(h=0.0)
    with pytest.raises(UserInputError, match="steps >= k"):
        CurvatureCallback(k=10, steps=5)
