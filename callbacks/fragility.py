"""FragilityCallback: every N epochs, the fragility of each filter of a convolution (nodal dropout under FGSM,
`freqmaps.fragility`) on a fixed probe, logged as scalars and as a W&B heatmap of filters x epochs."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from matplotlib.figure import Figure

from callbacks.probe import ProbeCallback, ProbeShard, gather_batches
from freqmaps.fragility import FragilityResult, fragility


class FragilityCallback(ProbeCallback):
    """Per-filter fragility of `layer` (None: the model's first convolution) under FGSM at each of `eps`.

    Logs, under `<stage>/<name>/`: `max_fragility`, `mean_fragility`, `most_fragile` (the filter's index), `spearman`
    (fragility against the targeting energy at the largest eps), `base_fgsm_acc` (the intact model's FGSM accuracy
    at the largest eps), `seconds`; and to every W&B logger the image `<stage>/<name>/heatmap`: fragility of every
    filter (rows) at every analysis so far (columns, by epoch). The columns are kept in the callback's checkpoint
    state, so a resumed fit goes on with its heatmap.

    Args:
        eps: the FGSM grid (L∞, pixel units). layer: a convolution's name in the LightningModule (e.g.
            `network.conv1`). filters_per_pass: dropout masks per forward pass (None: all).
        probe_size, every_n_epochs, batch_size, seed, name, channels_last: as in RobustAccuracyCallback.
    """

    def __init__(
        self, eps: list[float] = [2 / 255, 8 / 255], layer: str | None = None,  # noqa: B006 (never mutated)
        filters_per_pass: int | None = None, probe_size: int = 256, every_n_epochs: int = 1, batch_size: int = 64,
        seed: int = 0, name: str = "fragility", channels_last: bool = True,
    ) -> None:
        super().__init__(probe_size, every_n_epochs, batch_size, seed, name, channels_last)
        self.eps = list(eps)
        self.layer = layer
        self.filters_per_pass = filters_per_pass
        self._history: dict[str, list[tuple[int, torch.Tensor]]] = {}

    def state_dict(self) -> dict:
        return {"history": {stage: [(epoch, f.clone()) for epoch, f in columns]
                            for stage, columns in self._history.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self._history = {stage: [(int(epoch), f) for epoch, f in columns]
                         for stage, columns in state_dict.get("history", {}).items()}

    def analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, shard: ProbeShard) -> dict:
        device = pl_module.device
        batches = {number: fragility(pl_module, shard.x[rows].to(device), shard.y[rows].to(device), self.eps,
                                     self.layer, len(rows), self.filters_per_pass, progress=False)
                   for number, rows in shard}
        result = FragilityResult.merge(gather_batches(batches))
        if not trainer.is_global_zero:
            return {}
        history = self._history.setdefault(stage, [])
        history.append((trainer.current_epoch, result.fragility.clone()))
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        for logger in loggers:
            logger.log_image(f"{stage}/{self.name}/heatmap", [heatmap_figure(history, result.layer)],
                             step=trainer.global_step)
        return {"max_fragility": result.fragility.max(), "mean_fragility": result.fragility.mean(),
                "most_fragile": result.ranking[0], "spearman": result.spearman[-1],
                "base_fgsm_acc": result.base_adversarial[-1]}


def heatmap_figure(history: list[tuple[int, torch.Tensor]], layer: str) -> Figure:
    """Fragility of K filters (rows) at each analysis (columns labelled by epoch), centred colour scale."""
    values = torch.stack([f for _, f in history], dim=1)
    bound = max(float(values.abs().max()), 1e-6)
    figure = Figure(figsize=(max(4, 0.4 * len(history) + 2), 4))
    axis = figure.subplots()
    image = axis.imshow(values.numpy(), aspect="auto", cmap="coolwarm", vmin=-bound, vmax=bound)
    axis.set_xticks(range(len(history)), [str(epoch) for epoch, _ in history])
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"filter of {layer}")
    figure.colorbar(image, ax=axis, label="fragility")
    figure.tight_layout()
    return figure
