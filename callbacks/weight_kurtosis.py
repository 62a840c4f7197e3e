"""WeightKurtosisCallback: per-layer excess kurtosis of the weights, and per activation layer the share of saturated
units and a histogram of the pre-activations on a fixed probe set, every N epochs (Nayebi & Ganguli 2017)."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from callbacks.probe import ProbeCallback, ProbeShard, gather_batches
from freqmaps.errors import UserInputError
from freqmaps.saturation import recorded_preactivations, saturated, weight_kurtosis


class WeightKurtosisCallback(ProbeCallback):
    """Logs, under `<stage>/<name>/`: `kurtosis/<module>`, the excess kurtosis of each nn.Linear / nn.Conv2d weight
    (`freqmaps.saturation.weight_kurtosis`; 0 for Gaussian weights); `saturated/<module>`, the share of the units of
    each nn.ReLU / nn.Sigmoid module in their flat region on the probe images (`freqmaps.saturation.saturated`: ReLU
    h <= 0, sigmoid |h| > 4); and to a W&B logger `<stage>/<name>/preactivations/<module>`, a histogram of those
    pre-activations (`bins` bins). Module names are those of the LightningModule (`network.features.1`, ...).

    Args:
        probe_size: probe images (a seeded draw from the stage's dataset, the same every epoch).
        every_n_epochs: during fit, run after every n-th epoch's validation (always at validate / test).
        batch_size: images per forward pass; the unit dealt to the processes under DDP.
        bins: histogram bins.
        seed: the probe draw.
        name: the metric group. channels_last: as in `ProbeCallback`.
    """

    def __init__(self, probe_size: int = 256, every_n_epochs: int = 1, batch_size: int = 256, bins: int = 64,
                 seed: int = 0, name: str = "saturation", channels_last: bool = True) -> None:
        super().__init__(probe_size, every_n_epochs, batch_size, seed, name, channels_last)
        if not 1 <= bins <= 512:
            raise UserInputError(f"WeightKurtosisCallback: bins must be in 1..512 (W&B's limit), got {bins}")
        self.bins = bins

    def analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, shard: ProbeShard) -> dict:
        batches = {}
        for number, rows in shard:
            with recorded_preactivations(pl_module) as recorded, torch.no_grad():
                pl_module(shard.x[rows].to(pl_module.device))
            batches[number] = [(p.name, isinstance(p.module, torch.nn.ReLU), p.h.float().flatten().cpu())
                               for p in recorded]
        gathered = gather_batches(batches)
        layers: dict[str, tuple[torch.nn.Module, list[torch.Tensor]]] = {}
        modules = dict(pl_module.named_modules())
        for batch in gathered:
            for layer, _, h in batch:
                layers.setdefault(layer, (modules[layer], []))[1].append(h)
        scalars = {f"kurtosis/{layer}": value for layer, value in weight_kurtosis(pl_module).items()}
        values = {layer: torch.cat(hs) for layer, (_, hs) in layers.items()}
        scalars |= {f"saturated/{layer}": saturated(values[layer], module).float().mean().item()
                    for layer, (module, _) in layers.items()}
        if trainer.is_global_zero and isinstance(trainer.logger, WandbLogger):
            import wandb

            histograms = {f"{stage}/{self.name}/preactivations/{layer}": wandb.Histogram(h.numpy(), num_bins=self.bins)
                          for layer, h in values.items()}
            trainer.logger.experiment.log({**histograms, "trainer/global_step": trainer.global_step})
        return scalars
