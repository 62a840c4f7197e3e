"""CurvatureCallback: every N epochs, the principal-curvature profile of the decision boundary near a fixed probe set
(`freqmaps.geometry.principal_curvatures`): does adversarial or frequency-masked training flatten the boundary?"""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from callbacks.probe import ProbeCallback, ProbeShard, gather_batches
from freqmaps.curvature_figures import curvature_profile_figure
from freqmaps.errors import UserInputError
from freqmaps.geometry import boundary_points, principal_curvatures


class CurvatureCallback(ProbeCallback):
    """The top-k principal curvatures of the boundary at the L2-DeepFool boundary points of `probe_size` fixed
    images (finite-difference Hessian-vector products with step `h`, batched Lanczos), logged under
    `<stage>/<name>/`: `mean_abs` (mean |κ| over images and the k directions), `max_abs` (mean over images of the
    largest |κ|), `mean` (mean signed κ), `distance` (median L2 distance to the boundary), `valid` (share of probe
    images classified correctly with a boundary point), `seconds`; and to W&B loggers the image `profile`, the
    mean sorted curvatures against their rank. Images misclassified or unfooled leave the statistics.

    Args:
        probe_size: probe images (a seeded draw from the stage's dataset, the same every epoch).
        every_n_epochs: during fit, run after every n-th epoch's validation (always at validate / test).
        batch_size: probe images solved together; the unit dealt to the processes under DDP.
        k: principal curvatures per image. steps: Lanczos steps (None: min(2k + 20, D - 1)).
        h: the finite-difference step (L2, pixels in [0, 1]). deepfool_steps: L2 DeepFool's steps.
        log_images: log the profile plot to W&B loggers.
        seed: probe draw and Lanczos start vectors (probe image i: seed + i).
        name: the metric group. channels_last: as in `ProbeCallback`.
    """

    def __init__(self, probe_size: int = 64, every_n_epochs: int = 1, batch_size: int = 64, k: int = 10,
                 steps: int | None = None, h: float = 0.05, deepfool_steps: int = 50, log_images: bool = True,
                 seed: int = 0, name: str = "curvature", channels_last: bool = True) -> None:
        super().__init__(probe_size, every_n_epochs, batch_size, seed, name, channels_last)
        if k < 1 or not h > 0 or deepfool_steps < 1 or (steps is not None and steps < k):
            raise UserInputError(f"CurvatureCallback: need k >= 1, steps >= k, h > 0, deepfool_steps >= 1; got k={k}, "
                                 f"steps={steps}, h={h}, deepfool_steps={deepfool_steps}")
        self.k, self.steps, self.h, self.deepfool_steps = k, steps, h, deepfool_steps
        self.log_images = log_images

    def analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, shard: ProbeShard) -> dict:
        device = pl_module.device
        batches = {}
        for number, rows in shard:
            x, y = shard.x[rows].to(device), shard.y[rows].to(device)
            boundary = boundary_points(pl_module, x, y, steps=self.deepfool_steps)
            result = principal_curvatures(pl_module, x, y, self.k, "finite", self.h, self.steps,
                                          self.seed + int(shard.position[rows[0]]), boundary)
            batches[number] = {"curvatures": result.curvatures.cpu(), "distance": boundary.distance.cpu()}
        gathered = gather_batches(batches)
        if not trainer.is_global_zero:
            return {}
        curvatures = torch.cat([b["curvatures"] for b in gathered])
        distance = torch.cat([b["distance"] for b in gathered])
        valid = ~curvatures.isnan().any(1)
        kept = curvatures[valid]
        nan = float("nan")
        scalars = {"valid": valid.float().mean().item(),
                   "mean_abs": kept.abs().mean().item() if len(kept) else nan,
                   "max_abs": kept.abs().amax(1).mean().item() if len(kept) else nan,
                   "mean": kept.mean().item() if len(kept) else nan,
                   "distance": distance[valid].median().item() if len(kept) else nan}
        if self.log_images and len(kept):
            profile = kept.sort(1, descending=True).values.mean(0)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    figure = curvature_profile_figure({"mean": profile}, f"epoch {trainer.current_epoch}")
                    logger.log_image(f"{stage}/{self.name}/profile", [figure], step=trainer.global_step)
        return scalars
