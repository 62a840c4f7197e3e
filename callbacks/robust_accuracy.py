"""RobustAccuracyCallback: accuracy under a configured attack on a fixed probe set, every N epochs."""
from __future__ import annotations

import lightning as L
import torch

from callbacks.probe import ProbeCallback, ProbeShard, gather_batches
from freqmaps.attacks import PGD, Attack, attack_in_chunks, attack_report
from freqmaps.class_maps import predict


class RobustAccuracyCallback(ProbeCallback):
    """Accuracy of the current model under `attack` on `probe_size` fixed images of the validation (or test) data.

    Logs, under `<stage>/<name>/`: `acc`, the share of probe images classified correctly both clean and after
    the attack (robust accuracy: an image misclassified clean counts as broken); `clean_acc`, the clean
    accuracy on the same images; `seconds`. Default attack: PGD-20, L-inf, eps = 8/255, step 2/255, random start.

    Args:
        probe_size: probe images (a seeded draw from the stage's dataset, the same every epoch).
        every_n_epochs: during fit, run after every n-th epoch's validation (always at validate / test).
        batch_size: images attacked together; the unit dealt to the processes under DDP.
        attack: any `freqmaps.attacks` attack, `attack(model, x, y) -> x_adv`.
        seed: probe draw and the attack's random starts (batch b uses seed + b).
        name: the metric group, so several of these callbacks (other attacks) can run side by side.
        channels_last: run the analysis with channels-last convolution kernels (`ProbeCallback`).
    """

    def __init__(
        self, probe_size: int = 512, every_n_epochs: int = 1, batch_size: int = 256, attack: Attack | None = None,
        seed: int = 0, name: str = "robust", channels_last: bool = True,
    ) -> None:
        super().__init__(probe_size, every_n_epochs, batch_size, seed, name, channels_last)
        self.attack = attack if attack is not None else PGD(eps=8 / 255, steps=20, step_size=2 / 255)

    def analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, shard: ProbeShard) -> dict:
        device = pl_module.device
        batches = {}
        for number, rows in shard:
            x, y = shard.x[rows].to(device), shard.y[rows].to(device)
            x_adv = attack_in_chunks(self.attack, pl_module, x, y, len(rows), self.seed + number)
            clean = (predict(pl_module, x, len(rows)) == y).cpu()
            batches[number] = {"clean": clean, "robust": clean & ~attack_report(pl_module, x, x_adv, y).success.cpu()}
        gathered = gather_batches(batches)
        probe = {key: torch.cat([flags[key] for flags in gathered]) for key in ("clean", "robust")}
        return {"acc": probe["robust"].float().mean(), "clean_acc": probe["clean"].float().mean()}
