"""AdversarialClassifier: PGD adversarial training (Madry et al. 2018), TRADES (Zhang et al. 2019) or fast
FGSM training with a random start (Wong et al. 2020). The attacks come from `freqmaps.attacks` and from the
config (`train_attack`, `eval_attack` take any attack by class_path)."""
from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from freqmaps.attacks import FGSM, PGD, Attack
from freqmaps.attacks.trades import TRADES, trades_loss
from lightning_modules.classifier import ModelName, StandardClassifier

Method = Literal["pgd", "trades", "fgsm"]


def default_train_attack(method: Method) -> Attack:
    """The papers' CIFAR-10 settings: PGD-10 with step 2/255, TRADES-10 with step 0.007, FGSM from a random
    start with step 1.25 eps; all at eps = 8/255."""
    return {
        "pgd": lambda: PGD(eps=8 / 255, steps=10, step_size=2 / 255),
        "trades": lambda: TRADES(eps=8 / 255, steps=10, step_size=0.007),
        "fgsm": lambda: FGSM(eps=8 / 255, random_start=True),
    }[method]()


class AdversarialClassifier(StandardClassifier):
    """Trains on attacked inputs; validation and test report clean accuracy (`val/acc`, `test/acc`) and
    accuracy under `eval_attack` (`val/robust_acc`, `test/robust_acc`).

    method "pgd" and "fgsm": loss CE(f(x_adv), y) with x_adv = train_attack(f, x, y); `train/acc` is then the
    accuracy on the attacked training batch. method "trades": CE(f(x), y) + trades_beta * KL(f(x) || f(x_adv)).
    Attacks run the network in eval mode (BatchNorm statistics are not updated by them).
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
        method: Method = "pgd",
        train_attack: Attack | None = None,
        trades_beta: float = 6.0,
        eval_attack: Attack | None = None,
    ) -> None:
        super().__init__(model_name, num_classes, in_channels, image_size, pretrained, optimizer, lr_scheduler)
        self.method = method
        self.train_attack = train_attack or default_train_attack(method)
        self.trades_beta = trades_beta
        self.eval_attack = eval_attack or PGD(eps=8 / 255, steps=20, step_size=2 / 255)
        self.val_robust_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_robust_acc = MulticlassAccuracy(num_classes, average="micro")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        x_adv = self.train_attack(self.model, x, y)
        if self.method == "trades":
            logits = self(x)
            loss = trades_loss(logits, self(x_adv), y, self.trades_beta)
        else:
            logits = self(x_adv)
            loss = F.cross_entropy(logits, y)
        self.log_step("train", loss, logits, y)
        return loss

    def robust_step(self, batch, stage: str) -> None:
        x, y = batch
        x_adv = self.eval_attack(self.model, x, y)
        with torch.no_grad():
            metric = getattr(self, f"{stage}_robust_acc")
            metric(self(x_adv).argmax(1), y)
        self.log(f"{stage}/robust_acc", metric, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self.robust_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self.robust_step(batch, "test")
