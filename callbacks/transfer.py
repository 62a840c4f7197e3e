"""TransferCallback: every N epochs, how well the current model's adversarial examples transfer to fixed target
checkpoints (the "a little robustness transfers better" curve of Springer et al. 2021 over adversarial training)."""
from __future__ import annotations

import lightning as L
import torch

from callbacks.probe import ProbeCallback, ProbeShard, gather_batches
from freqmaps.attacks import PGD, Attack, attack_in_chunks
from freqmaps.class_maps import predict
from freqmaps.errors import UserInputError
from freqmaps.inputs import frozen_eval
from freqmaps.transfer import check_compatible, goal_labels, success_flags
from lightning_modules.checkpoint import load_classifier


class TransferCallback(ProbeCallback):
    """Success of `attack` crafted on the current model against each target, on `probe_size` fixed images.

    Logs, under `<stage>/<name>/`: `<target>`, the share of the probe images the target classifies correctly that
    the current model's adversarial examples make succeed (untargeted: misclassified; targeted: classified as
    (y + target_shift) mod C, with a targeted attack such as TargetedPGD); `white_box`, the same on the current
    model itself; `seconds`. The rule is `freqmaps.transfer`'s. Default attack: PGD L2 eps 0.5, 10 steps.

    Args:
        targets: name -> zoo model name or .ckpt (loaded once, frozen, on the module's device).
        probe_size, every_n_epochs, batch_size, seed, name, channels_last: as in RobustAccuracyCallback.
        attack: any `freqmaps.attacks` attack; targeted: the success rule (the attack must match it).
        target_shift: the target class offset.
    """

    def __init__(
        self, targets: dict[str, str], probe_size: int = 256, every_n_epochs: int = 1, batch_size: int = 128,
        attack: Attack | None = None, targeted: bool = False, target_shift: int = 1, seed: int = 0,
        name: str = "transfer", channels_last: bool = True,
    ) -> None:
        super().__init__(probe_size, every_n_epochs, batch_size, seed, name, channels_last)
        if not targets:
            raise UserInputError("TransferCallback needs at least one target checkpoint")
        self.attack = attack if attack is not None else PGD(eps=0.5, norm="l2", steps=10)
        if getattr(self.attack, "targeted", False) != targeted:
            raise UserInputError(f"TransferCallback: targeted={targeted} does not match the attack {self.attack!r}")
        self.targets = dict(targets)
        self.targeted = targeted
        self.target_shift = target_shift
        self._models: dict[str, torch.nn.Module] | None = None
        self._num_classes: int | None = None

    def target_models(self, pl_module: L.LightningModule, shard: ProbeShard) -> dict[str, torch.nn.Module]:
        """The target networks on the module's device, in eval mode with frozen parameters: loaded on first use and
        checked then, once, against the trained model on the probe's images (`freqmaps.transfer.check_compatible`)."""
        if self._models is None:
            models = {name: load_classifier(path).eval().requires_grad_(False) for name, path in self.targets.items()}
            self._num_classes = check_compatible({"the trained model": pl_module, **models}, shard.x[:1])
            self._models = models
        return {name: model.to(pl_module.device) for name, model in self._models.items()}

    def analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, shard: ProbeShard) -> dict:
        device = pl_module.device
        targets = self.target_models(pl_module, shard)
        attack = self.attack.capped(2) if trainer.fast_dev_run else self.attack
        batches = {}
        for number, rows in shard:
            x, y = shard.x[rows].to(device), shard.y[rows].to(device)
            goal = goal_labels(y, self._num_classes, self.targeted, self.target_shift)
            x_adv = attack_in_chunks(attack, pl_module, x, goal, len(rows), self.seed + number)
            flags = {}
            for key, model in {"white_box": pl_module, **targets}.items():
                with frozen_eval(model):
                    correct = predict(model, x, len(rows)) == y
                    hit = success_flags(predict(model, x_adv, len(rows)), y, goal, self.targeted)
                flags[key] = torch.stack([correct, hit & correct]).cpu()
            batches[number] = flags
        gathered = gather_batches(batches)
        scalars = {}
        for key in ("white_box", *targets):
            correct, hits = torch.cat([batch[key] for batch in gathered], dim=1)
            scalars[key] = hits.sum() / correct.sum().clamp_min(1)
        return scalars
