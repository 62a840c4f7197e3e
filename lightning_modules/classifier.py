"""StandardClassifier: any registered network, trained with an objective, optionally behind an input filter.

The network is built by name from `freqmaps.models` (pixels in [0, 1], normalisation inside), so attacks and
frequency maps act on raw pixels. The training objective (`freqmaps.objectives`: cross-entropy, PGD-AT,
TRADES, fast FGSM), the input filter (`freqmaps.filters`) and the evaluation attack (`freqmaps.attacks`) are
components passed in; optimizer and LR scheduler come from the config as callables.
"""
from __future__ import annotations

import random
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from freqmaps.attacks import Attack
from freqmaps.errors import UserInputError
from freqmaps.filters import FilteredNetwork, InputFilter
from freqmaps.models import classifier_head, create_model
from freqmaps.objectives import CrossEntropy, Objective
from lightning_modules.checkpoint import load_weights

ModelName = Literal["small_cnn", "resnet20", "resnet56", "resnet18", "vit_b_16", "mlp"]


class StandardClassifier(L.LightningModule):
    """Logs `train/loss`, `train/acc`, `val/loss`, `val/acc`, `val/acc_best`, `test/loss`, `test/acc`, and with
    an `eval_attack` also `val/robust_acc`, `test/robust_acc` (accuracy on the attacked batch).

    `num_classes`, `in_channels` and `image_size` are linked from the datamodule by train.py. `objective`
    (default: cross-entropy) gives the training loss and the clean validation / test loss; `train/acc` counts
    the logits the objective computed its loss on. `input_filter` (default: none) sits between the pixels and
    the network; `model` is the composed pixels -> logits model that training, attacks and the analysis
    callbacks use. State: the network under `network.`, the filter under `input_filter.`; the checkpoint's
    hyper-parameters describe the filter as plain data (`InputFilter.description()`).

    `trainable: head` trains the classification head alone (`freqmaps.models.classifier_head`), the rest of
    the network frozen (its BatchNorm statistics still follow the data in training mode, as in the paper's
    ResNet-18 fine-tuning); `all` (default) trains everything.

    `init_weights` starts the network from trained weights instead of a random draw: a zoo model's name
    (`python -m freqmaps.zoo list`) or a `train.py` checkpoint; only the network's weights are taken (not its input
    filter, optimizer or epoch), so fine-tuning, e.g. adversarially, starts from them. The architecture must match.

    `model_options` are the network's own knobs (`freqmaps.models.create_model`; mlp: `widths`, `activation`).
    The objective's `start_epoch` is called at every training epoch's start (the saturation penalty's annealing).
    """

    def __init__(
        self,
        model_name: ModelName = "small_cnn",
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        pretrained: bool = False,
        trainable: Literal["all", "head"] = "all",
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        objective: Objective | None = None,
        input_filter: InputFilter | None = None,
        eval_attack: Attack | None = None,
        init_weights: str | None = None,
        model_options: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "objective", "input_filter", "eval_attack"])
        self.hparams["input_filter"] = None if input_filter is None else input_filter.description()
        self.network = create_model(model_name, num_classes, in_channels, image_size, pretrained,
                                    **(model_options or {}))
        if init_weights is not None:
            load_weights(self.network, init_weights)
        if trainable not in ("all", "head"):
            raise UserInputError(f"trainable must be 'all' or 'head', got {trainable!r}")
        if trainable == "head":
            self.network.requires_grad_(False)
            classifier_head(self.network).requires_grad_(True)
        if input_filter is not None:
            input_filter.check(num_classes, in_channels, image_size)
        self.input_filter = input_filter
        self.objective = objective if objective is not None else CrossEntropy()
        self.eval_attack = eval_attack
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))
            setattr(self, f"{stage}_loss", MeanMetric())
        if eval_attack is not None:
            self.val_robust_acc = MulticlassAccuracy(num_classes, average="micro")
            self.test_robust_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in checkpoints: a resumed run goes on from the best so far

    @property
    def model(self) -> nn.Module:
        """The pixels -> logits model: the network, behind the input filter if there is one (built on access,
        so the parameters are registered once, under `network.`)."""
        return self.network if self.input_filter is None else FilteredNetwork(self.network, self.input_filter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1] -> logits (B, num_classes)."""
        return self.model(x)

    def log_step(self, stage: str, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Update and log the `stage` loss and accuracy (epoch-level, synchronised across processes)."""
        loss_metric, acc_metric = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        loss_metric(loss.detach())
        acc_metric(logits.detach().argmax(1), y)
        self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The CPU random state (dropout, augmentation) travels in the checkpoint, for an exact resume."""
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "python": random.getstate()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states is not None:
            torch.set_rng_state(states["torch"])
            random.setstate(states["python"])

    def on_train_epoch_start(self) -> None:
        self.objective.start_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        result = self.objective(self.model, x, y)
        self.log_step("train", result.loss, result.logits, y)
        return result.loss

    def eval_step(self, batch, stage: str) -> None:
        """Clean loss and accuracy, and with an eval_attack the accuracy on the attacked batch."""
        x, y = batch
        logits = self(x)
        self.log_step(stage, self.objective.criterion(logits, y), logits, y)
        if self.eval_attack is None:
            return
        x_adv = self.eval_attack(self.model, x, y)
        metric = getattr(self, f"{stage}_robust_acc")
        with torch.no_grad():
            metric(self(x_adv).argmax(1), y)
        self.log(f"{stage}/robust_acc", metric, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self.eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # the sanity check's validation does not count
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self.eval_step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"}}
