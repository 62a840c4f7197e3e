"""FrequencyMapsCallback: every N epochs, the analysis of `freqmaps.analysis` (attack, essential and adversarial
frequency maps, their correlation) on a fixed probe set, logged to W&B (docs/method.md §1-§3)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from callbacks.probe import ProbeCallback, ProbeShard, gather_batches
from freqmaps.analysis import PER_CLASS, Analysis, ImageAnalysis, analyse_images, conclude, summary
from freqmaps.attacks import FMN, Attack
from freqmaps.errors import UserInputError
from freqmaps.figures import class_means_figure, interval_curve_figure, radial_profile_figure
from freqmaps.maps import FrequencyMaps, MapSettings

FAST_DEV_RUN_STEPS = 5  # solver steps per map under Trainer(fast_dev_run=...)


class FrequencyMapsCallback(ProbeCallback):
    """Analyses the current model on `probe_size` fixed images with `freqmaps.analysis`: attacks them, solves the
    essential maps of the correctly classified images (true label) and the adversarial maps of the images the
    attack fooled (adversarial label), correlates the two, and logs under `<stage>/<name>/` (stage "val" during
    fit and validate, "test" at test):

    * every scalar of `freqmaps.analysis.summary` (the README's "Metrics" table: `clean_acc`, `success_rate`,
      `median_linf`, `essential_kept`, `n_pairs`, `idcor`, ...; `seconds` is the whole analysis' wall time here);
      without a correlation (fewer than 3 pairs, or degenerate maps) its scalars are nan, with a warning;
    * to W&B loggers: images `class_mean_maps` (per class: mean essential map, mean adversarial map of the images
      sent to that class, their difference), `radial_profiles` (mean map value against frequency radius) and
      `idcor_interval` (IdCor over the epochs so far with its 95% bootstrap interval as a band, the points with
      p < 0.05 filled: W&B's scalar charts draw lines, not bands; the curve is kept in checkpoints), the
      table `per_class` (`freqmaps.analysis.PER_CLASS`), and with `log_artifact` the maps as a `frequency-maps`
      artifact.

    Each probe batch is one `analyse_images` call (its attack seeded with seed + batch number); the batches are
    gathered, and rank zero concludes. With `warm_start`, a map starts from the previous analysis' map of the same
    stage, image and target class (kept in checkpoints: a resumed fit warm-starts too; `freqmaps.maps`: it
    may stop after `warm_min_steps`, at most `min_steps` (`fast_min_steps`) steps, then goes on under the full
    rule). Under `fast_dev_run` each map and the attack get at most FAST_DEV_RUN_STEPS steps.

    Args:
        probe_size: probe images (a seeded draw from the stage's dataset, the same every epoch).
        every_n_epochs: during fit, run after every n-th epoch's validation (always at validate / test).
        batch_size: probe images attacked and solved together; the unit dealt to the processes under DDP.
        attack: any `freqmaps.attacks` attack (default: FMN, L-inf, the paper's).
        maps: the map solver (`freqmaps.maps.MapSettings`; its batch_size is the solver's working batch).
            Default: the fast rule (`solver: fast`), made to be left on; `solver: paper` for the paper's.
        warm_start, warm_min_steps: warm start from the previous analysis, and its minimum steps.
        permutations: IdCor's permutation test. resamples: its 95% bootstrap interval (`idcor_ci_low`,
            `idcor_ci_high`; 0: none). pool_kernel: max-pool before correlating (None: the paper's).
        active_threshold: a map entry above it counts as a frequency kept (for the sparsity metrics).
        log_images, log_table, log_artifact: what goes to W&B besides the scalars.
        seed: probe draw, attack random starts (batch b: seed + b), IdCor permutations.
        name: the metric group, so several of these callbacks (other attacks) can run side by side.
        channels_last: run the analysis with channels-last convolution kernels (`ProbeCallback`).
    """

    def __init__(
        self,
        probe_size: int = 512,
        every_n_epochs: int = 1,
        batch_size: int = 256,
        attack: Attack | None = None,
        maps: MapSettings = MapSettings(solver="fast"),
        warm_start: bool = True,
        warm_min_steps: int = 50,
        permutations: int = 100,
        resamples: int = 200,
        pool_kernel: int | None = None,
        active_threshold: float = 0.5,
        log_images: bool = True,
        log_table: bool = True,
        log_artifact: bool = False,
        seed: int = 0,
        name: str = "freqmaps", channels_last: bool = True,
    ) -> None:
        super().__init__(probe_size, every_n_epochs, batch_size, seed, name, channels_last)
        if warm_min_steps < 0:
            raise UserInputError(f"FrequencyMapsCallback: warm_min_steps must be >= 0, got {warm_min_steps}")
        for key, value in (("permutations", permutations), ("resamples", resamples)):
            if value < 0:
                raise UserInputError(f"FrequencyMapsCallback: {key} must be >= 0, got {value}")
        self.attack = attack if attack is not None else FMN(norm="linf")
        self.maps = maps
        self.warm_start = warm_start
        self.warm_min_steps = warm_min_steps
        self.permutations = permutations
        self.resamples = resamples
        self.pool_kernel = pool_kernel
        self.active_threshold = active_threshold
        self.log_images = log_images
        self.log_table = log_table
        self.log_artifact = log_artifact
        self._previous: dict[str, list[FrequencyMaps]] = {}  # stage -> the last analysis' maps, for warm starts
        self._restored: dict[str, list[FrequencyMaps]] = {}  # the checkpoint's, until a fit takes them over
        self._curve: dict[str, list[dict[str, float]]] = {}  # stage -> IdCor per analysis, for `idcor_interval`
        self._restored_curve: dict[str, list[dict[str, float]]] = {}

    def state_dict(self) -> dict:
        """The warm-start maps and the IdCor curve, so that a resumed fit goes on as the uninterrupted one (tensors
        and floats only)."""
        return {"previous": {stage: [maps.state() for maps in kinds] for stage, kinds in self._previous.items()},
                "curve": {stage: [dict(point) for point in points] for stage, points in self._curve.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = {stage: [FrequencyMaps.from_state(maps, f"{self.state_key} in the checkpoint")
                                  for maps in kinds] for stage, kinds in state_dict.get("previous", {}).items()}
        self._restored_curve = {stage: [{key: float(value) for key, value in point.items()} for point in points]
                                for stage, points in state_dict.get("curve", {}).items()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resumed fit warm-starts from the checkpoint's maps and continues its IdCor curve; `validate` /
        `test` on a checkpoint start cold, and so give what the fit logged for those weights."""
        self._previous, self._restored = self._restored, {}
        self._curve, self._restored_curve = self._restored_curve, {}

    def analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, shard: ProbeShard) -> dict:
        settings, attack = self.maps, self.attack
        if trainer.fast_dev_run:
            settings, attack = settings.capped(FAST_DEV_RUN_STEPS), attack.capped(FAST_DEV_RUN_STEPS)
        device = pl_module.device
        batches = {
            number: analyse_images(
                pl_module, shard.x[rows].to(device), shard.y[rows].to(device), attack, settings,
                index=shard.index[rows], previous=self._previous.get(stage, ()), warm_min_steps=self.warm_min_steps,
                seed=self.seed + number, attack_batch_size=len(rows), progress=False,
            )
            for number, rows in shard
        }
        images = ImageAnalysis.cat(gather_batches(batches))
        if self.warm_start:
            self._previous[stage] = [images.essential, images.adversarial]
        if not trainer.is_global_zero:
            return {}
        analysis = conclude(images, permutations=self.permutations, resamples=self.resamples, seed=self.seed,
                            pool_kernel=self.pool_kernel, active_threshold=self.active_threshold)
        if analysis.correlation is None:
            rank_zero_warn(f"FrequencyMapsCallback: no correlation this time: {analysis.no_correlation}")
        scalars = summary(analysis)
        self._curve.setdefault(stage, []).append(
            {"epoch": float(trainer.current_epoch), "idcor": scalars["idcor"], "low": scalars["idcor_ci_low"],
             "high": scalars["idcor_ci_high"], "p": scalars["idcor_p"]})
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if loggers:
            self.log_media(loggers, trainer, stage, analysis)
        return scalars

    def log_media(self, loggers: list[WandbLogger], trainer: L.Trainer, stage: str, analysis: Analysis) -> None:
        """Images, the per-class table and (optionally) the maps artifact, to every W&B logger."""
        prefix, step = f"{stage}/{self.name}", trainer.global_step
        images = analysis.images
        essential, adversarial = images.essential, images.adversarial
        figures = {}
        if self.log_images:
            figures = {"class_mean_maps": class_means_figure(essential, adversarial, images.num_classes),
                       "radial_profiles": radial_profile_figure(essential, adversarial),
                       "idcor_interval": interval_curve_figure(self._curve[stage], f"{prefix}/idcor")}
        rows = [[row[key] for key in PER_CLASS] for row in analysis.per_class]
        for logger in loggers:
            for key, figure in figures.items():
                logger.log_image(f"{prefix}/{key}", [figure], step=step)
            if self.log_table:
                logger.log_table(f"{prefix}/per_class", columns=list(PER_CLASS), data=rows, step=step)
            if self.log_artifact:
                log_maps_artifact(logger, f"{self.name}-{stage}", [essential, adversarial], trainer.current_epoch)


def log_maps_artifact(logger: WandbLogger, name: str, results: list[FrequencyMaps], epoch: int) -> None:
    """Save each FrequencyMaps (`<kind>.pt`, readable with FrequencyMaps.load) into a W&B artifact of type
    `frequency-maps` named `<name>-<run id>`, aliased `epoch<epoch>`."""
    import wandb

    run = logger.experiment
    artifact = wandb.Artifact(f"{name}-{run.id}", type="frequency-maps", metadata={"epoch": epoch})
    with tempfile.TemporaryDirectory() as folder:
        for result in results:
            path = Path(folder) / f"{result.kind}.pt"
            result.save(path)
            artifact.add_file(str(path))
        run.log_artifact(artifact, aliases=[f"epoch{epoch}"])
