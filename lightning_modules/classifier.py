"""StandardClassifier: cross-entropy training of any registered model, with accuracy metrics.

The network is built by name from `freqmaps.models` (pixels in [0, 1], normalisation inside), so attacks and
frequency maps later act on raw pixels. Optimizer and LR scheduler come from the config as callables.
"""
from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from freqmaps.models import create_model
from lightning_modules.checkpoint import CLASS_KEY

ModelName = Literal["small_cnn", "resnet20", "resnet56", "resnet18", "vit_b_16"]


class StandardClassifier(L.LightningModule):
    """Logs `train/loss`, `train/acc`, `val/loss`, `val/acc`, `val/acc_best`, `test/loss`, `test/acc`.

    `num_classes`, `in_channels` and `image_size` are linked from the datamodule by train.py. `label_smoothing`
    is the cross-entropy's (0: none) in training, validation and test alike.
    """

    def __init__(
        self,
        model_name: ModelName = "small_cnn",
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        pretrained: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "train_attack", "eval_attack"])
        self.model = create_model(model_name, num_classes, in_channels, image_size, pretrained)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.label_smoothing = label_smoothing
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))
            setattr(self, f"{stage}_loss", MeanMetric())
        self.val_acc_best = MaxMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1] -> logits (B, num_classes)."""
        return self.model(x)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record this module's class, so `lightning_modules.load_network` restores it without being told."""
        checkpoint[CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"

    def model_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.log_step(stage, loss, logits, y)
        return loss

    def log_step(self, stage: str, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Update and log the `stage` loss and accuracy (epoch-level, synchronised across processes)."""
        loss_metric, acc_metric = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        loss_metric(loss.detach())
        acc_metric(logits.detach().argmax(1), y)
        self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)

    def on_train_start(self) -> None:
        self.val_acc_best.reset()  # the sanity check's validation must not count

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.model_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self.model_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self.model_step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"}}
