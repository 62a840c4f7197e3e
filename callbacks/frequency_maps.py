"""FrequencyMapsCallback: every N epochs, essential and adversarial frequency maps of a fixed probe set, their
correlation (IdCor, SVCCA, CKA, cosine), and pictures of them, logged to W&B (docs/method.md §1-§3)."""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from callbacks.probe import ProbeCallback, ProbeShard, gather_rows, seeded_rng
from freqmaps.attacks import FMN, Attack, attack_report
from freqmaps.correlation import correlate_maps
from freqmaps.errors import UserInputError
from freqmaps.figures import class_means_figure, radial_profile_figure
from freqmaps.maps import FrequencyMaps, MapSettings, solve_maps

FAST_DEV_RUN_STEPS = 5  # solver steps per map under Trainer(fast_dev_run=...)
KINDS = ("essential", "adversarial")


class FrequencyMapsCallback(ProbeCallback):
    """Attacks the current model on `probe_size` fixed images, solves their essential maps (correctly classified
    images, true label) and adversarial maps (images the attack fooled, adversarial label), correlates the two,
    and logs under `<stage>/<name>/` (stage "val" during fit and validate, "test" at test):

    * `clean_acc`: accuracy on the probe; `attack_success_rate`: share of the correctly classified probe images
      the attack fools; `attack_median_linf`, `attack_median_l2`: median perturbation norms of those fooled;
    * per kind (`essential_...`, `adversarial_...`): `maps` solved, `kept` (the share whose masked image still
      gives the target class; only those are used below), `steps` (mean solver steps), `warm` (share
      warm-started), `sparsity` (mean share of a kept map's entries <= `active_threshold`: the frequencies it
      switches off);
    * from `freqmaps.correlation.correlate_maps` on the kept pairs: `n_pairs`, `idcor`, `idcor_p` (permutation
      p-value), `id_essential`, `id_adversarial`, `id_joint` (TwoNN dimensions), `svcca`, `cka`,
      `cosine_mean`, `cosine_std`; skipped with a warning when fewer than 3 pairs (or degenerate maps) remain;
    * `seconds`: the analysis' wall time;

    and, to W&B loggers: images `class_mean_maps` (per class: mean essential map, mean adversarial map of the
    images sent to that class, their difference) and `radial_profiles` (mean map value against frequency
    radius), the table `per_class`, and with `log_artifact` the maps as a `frequency-maps` artifact.

    Maps are warm-started from the previous analysis of the same stage where it solved a map for the same image
    and target class (for an adversarial map: the same adversarial label); such maps may stop after
    `warm_min_steps` instead of `min_steps` (the rest of the stopping rule is the same); one that has not
    converged after `min_steps` steps goes on under the full rule from where it got. The solver's other knobs
    are MapSettings' (the paper's defaults: lam 0.5 for 32x32 images, Adam lr 0.01, stop after 500 steps once
    the loss moves < 1e-5 from its mean over the last 20, at most 5000). Under `fast_dev_run` each map gets
    FAST_DEV_RUN_STEPS steps.

    Args:
        probe_size: probe images (a seeded draw from the stage's dataset, the same every epoch).
        attack: any `freqmaps.attacks` attack (default: FMN, L-inf, the paper's).
        every_n_epochs: during fit, run after every n-th epoch's validation (always at validate / test).
        batch_size: images attacked and solved together; the unit dealt to the processes under DDP.
        lam, lr, min_steps, max_steps, tol, window: the map solver (`freqmaps.maps.MapSettings`).
        warm_start, warm_min_steps: warm start from the previous analysis, and its minimum steps.
        permutations: IdCor's permutation test. pool_kernel: max-pool before correlating (None: the paper's).
        active_threshold: a map entry above it counts as a frequency kept (for `sparsity`).
        log_images, log_table, log_artifact: what goes to W&B besides the scalars.
        seed: probe draw, attack random starts (batch b: seed + b), IdCor permutations.
        name: the metric group, so several of these callbacks (other attacks) can run side by side.
    """

    def __init__(
        self,
        probe_size: int = 512,
        attack: Attack | None = None,
        every_n_epochs: int = 1,
        batch_size: int = 256,
        lam: float = 0.5,
        lr: float = 0.01,
        min_steps: int = 500,
        max_steps: int = 5000,
        tol: float = 1e-5,
        window: int = 20,
        warm_start: bool = True,
        warm_min_steps: int = 50,
        permutations: int = 100,
        pool_kernel: int | None = None,
        active_threshold: float = 0.5,
        log_images: bool = True,
        log_table: bool = True,
        log_artifact: bool = False,
        seed: int = 0,
        name: str = "freqmaps",
    ) -> None:
        super().__init__(probe_size, every_n_epochs, batch_size, seed, name)
        self.attack = attack if attack is not None else FMN(norm="linf")
        self.settings = MapSettings(lam=lam, lr=lr, min_steps=min_steps, max_steps=max_steps, tol=tol,
                                    window=window, batch_size=batch_size)
        if warm_min_steps < 0:
            raise UserInputError(f"FrequencyMapsCallback: warm_min_steps must be >= 0, got {warm_min_steps}")
        if permutations < 0:
            raise UserInputError(f"FrequencyMapsCallback: permutations must be >= 0, got {permutations}")
        self.warm_start = warm_start
        self.warm_min_steps = warm_min_steps
        self.permutations = permutations
        self.pool_kernel = pool_kernel
        self.active_threshold = active_threshold
        self.log_images = log_images
        self.log_table = log_table
        self.log_artifact = log_artifact
        self._previous: dict[str, dict[str, dict[str, torch.Tensor]]] = {}  # stage -> kind -> maps, target

    def analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, shard: ProbeShard) -> dict:
        settings = self.settings
        if trainer.fast_dev_run:
            settings = replace(settings, min_steps=0, max_steps=FAST_DEV_RUN_STEPS)
        rows, num_classes = self.solve_shard(pl_module, shard, settings, self._previous.get(stage))
        probe = gather_rows(trainer, shard, rows)
        if self.warm_start:
            self._previous[stage] = {kind: {"maps": probe[f"{kind}_maps"], "target": probe[f"{kind}_target"]}
                                     for kind in KINDS}
        if not trainer.is_global_zero:
            return {}
        maps = {kind: probe_maps(kind, probe, settings) for kind in KINDS}
        scalars = self.summary(probe, maps)
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if loggers:
            self.log_media(loggers, trainer, stage, probe, maps, num_classes)
        return scalars

    def solve_shard(self, pl_module: L.LightningModule, shard: ProbeShard, settings: MapSettings,
                    previous: dict | None) -> tuple[dict[str, torch.Tensor], int]:
        """Attack and solve the maps of every batch of this process's shard: ({name: (shard rows, ...)}, the
        number of classes (the model's logits))."""
        device, n = pl_module.device, len(shard.y)
        with torch.no_grad():
            num_classes = pl_module(shard.x[:1].to(device)).shape[1]
        rows_out = {
            "y": shard.y, "index": shard.index, "correct": torch.zeros(n, dtype=torch.bool),
            "fooled": torch.zeros(n, dtype=torch.bool), "linf": torch.zeros(n), "l2": torch.zeros(n),
        }
        for kind in KINDS:
            rows_out |= {f"{kind}_maps": torch.zeros_like(shard.x), f"{kind}_target": torch.full((n,), -1),
                         f"{kind}_steps": torch.zeros(n, dtype=torch.long)}
            rows_out |= {f"{kind}_{flag}": torch.zeros(n, dtype=torch.bool)
                         for flag in ("solved", "kept", "converged", "warm")}
        for number, rows in shard:
            x, y = shard.x[rows].to(device), shard.y[rows].to(device)
            with seeded_rng(device, self.seed + number):
                x_adv = self.attack(pl_module, x, y)
            with torch.no_grad():
                correct = pl_module(x).argmax(1) == y
            report = attack_report(pl_module, x, x_adv, y)
            fooled = correct & report.success
            delta = (x_adv - x).flatten(1).float()
            rows_out["correct"][rows], rows_out["fooled"][rows] = correct.cpu(), fooled.cpu()
            rows_out["linf"][rows] = delta.abs().amax(1).cpu()
            rows_out["l2"][rows] = delta.norm(dim=1).cpu()
            problems = {"essential": (x, y, correct), "adversarial": (x_adv, report.adversarial_labels, fooled)}
            self.solve_batch(pl_module, problems, shard.position[rows], rows, settings, previous, rows_out)
        return rows_out, num_classes

    def solve_batch(self, model: torch.nn.Module, problems: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                    position: torch.Tensor, rows: torch.Tensor, settings: MapSettings, previous: dict | None,
                    out: dict[str, torch.Tensor]) -> None:
        """Solve one batch's maps into out[...][rows]. problems: kind -> (images (k, C, H, W), targets (k,),
        which to solve (k,) bool).

        A map is warm-started where `previous` (probe-order maps and targets of the last analysis) holds one for
        the same image and target: it may stop after `warm_min_steps` and gets at most `min_steps` steps; one not
        converged by then joins the cold maps and goes on from where it got under the full rule (its steps add
        up). Both kinds go to the solver together, at most two calls a batch (warm, then cold): the problems are
        independent and the solver batches them exactly, and on a GPU each call costs about its slowest map."""
        cold, warm = [], []
        for kind, (_, target, todo) in problems.items():
            todo, target = todo.cpu(), target.cpu()
            local = todo.nonzero().flatten()
            warm_started = torch.zeros(len(local), dtype=torch.bool)
            if previous is not None:
                warm_started = previous[kind]["target"][position[local]] == target[local]
            cold.append((kind, local[~warm_started], None, torch.zeros(int((~warm_started).sum()), dtype=torch.long)))
            starts = local[warm_started]
            warm.append((kind, starts, previous[kind]["maps"][position[starts]] if len(starts) else None,
                         torch.zeros(len(starts), dtype=torch.long)))
            out[f"{kind}_solved"][rows] = todo
            out[f"{kind}_target"][rows] = torch.where(todo, target, -1)
            out[f"{kind}_warm"][rows[starts]] = True
        warm_settings = replace(settings, min_steps=min(self.warm_min_steps, settings.min_steps),
                                max_steps=max(settings.min_steps, 1))
        unconverged = self.solve_jobs(model, problems, warm, warm_settings, rows, out, keep_unconverged=True)
        self.solve_jobs(model, problems, cold + unconverged, settings, rows, out)

    def solve_jobs(self, model: torch.nn.Module, problems: dict, jobs: list[tuple], settings: MapSettings,
                   rows: torch.Tensor, out: dict[str, torch.Tensor], keep_unconverged: bool = False) -> list[tuple]:
        """One solver call for jobs [(kind, batch rows (j,), start maps (j, C, H, W) fftshift-ed or None for
        ones, steps already taken (j,))], written into out[...][rows[...]]. With keep_unconverged, the maps that
        stopped without converging are not written but returned as jobs that start where they stopped."""
        jobs = [job for job in jobs if len(job[1])]
        if not jobs:
            return []
        images = torch.cat([problems[kind][0][local] for kind, local, _, _ in jobs])
        targets = torch.cat([problems[kind][1][local] for kind, local, _, _ in jobs])
        init = None
        if any(start is not None for _, _, start, _ in jobs):
            init = torch.cat([torch.ones_like(problems[kind][0][local].cpu()) if start is None else start
                              for kind, local, start, _ in jobs]).to(images)
        result = solve_maps(model, images, targets, settings=settings, init=init, progress=False)
        leftover, first = [], 0
        for kind, local, _, steps_before in jobs:
            part = slice(first, first + len(local))
            first += len(local)
            steps = steps_before + result.steps[part]
            done = result.converged[part] | (not keep_unconverged)
            if not done.all():
                leftover.append((kind, local[~done], result.maps[part][~done], steps[~done]))
            where = rows[local[done]]
            out[f"{kind}_maps"][where] = result.maps[part][done].to(out[f"{kind}_maps"].dtype)
            out[f"{kind}_steps"][where] = steps[done]
            out[f"{kind}_kept"][where] = result.kept[part][done]
            out[f"{kind}_converged"][where] = result.converged[part][done]
        return leftover

    def summary(self, probe: dict[str, torch.Tensor], maps: dict[str, FrequencyMaps]) -> dict[str, float]:
        """The scalars of one analysis (see the class docstring)."""
        correct, fooled = probe["correct"], probe["fooled"]
        scalars = {
            "clean_acc": correct.float().mean().item(),
            "attack_success_rate": fooled.sum().item() / correct.sum().item() if correct.any() else math.nan,
            "attack_median_linf": median(probe["linf"][fooled]),
            "attack_median_l2": median(probe["l2"][fooled]),
        }
        for kind, result in maps.items():
            kept = result.kept_only()
            scalars |= {
                f"{kind}_maps": len(result),
                f"{kind}_kept": result.kept.float().mean().item() if len(result) else math.nan,
                f"{kind}_steps": result.steps.float().mean().item() if len(result) else math.nan,
                f"{kind}_warm": probe[f"{kind}_warm"].sum().item() / max(len(result), 1),
                f"{kind}_sparsity": sparsity(kept.maps, self.active_threshold).mean().item(),
            }
        essential, adversarial = maps["essential"].kept_only(), maps["adversarial"].kept_only()
        try:
            correlation = correlate_maps(essential.maps, adversarial.maps, essential.index, adversarial.index,
                                         permutations=self.permutations, seed=self.seed, kernel=self.pool_kernel)
        except UserInputError as error:
            rank_zero_warn(f"FrequencyMapsCallback: no correlation this time: {error}")
        else:
            scalars |= correlation.scalars()
        return scalars

    def log_media(self, loggers: list[WandbLogger], trainer: L.Trainer, stage: str, probe: dict[str, torch.Tensor],
                  maps: dict[str, FrequencyMaps], num_classes: int) -> None:
        """Images, the per-class table and (optionally) the maps artifact, to every W&B logger."""
        prefix, step = f"{stage}/{self.name}", trainer.global_step
        essential, adversarial = maps["essential"], maps["adversarial"]
        figures = {}
        if self.log_images:
            figures = {"class_mean_maps": class_means_figure(essential, adversarial, num_classes),
                       "radial_profiles": radial_profile_figure(essential, adversarial)}
        columns, rows = per_class_table(probe, essential, adversarial, num_classes, self.active_threshold)
        for logger in loggers:
            for key, figure in figures.items():
                logger.log_image(f"{prefix}/{key}", [figure], step=step)
            if self.log_table:
                logger.log_table(f"{prefix}/per_class", columns=columns, data=rows, step=step)
            if self.log_artifact:
                log_maps_artifact(logger, f"{self.name}-{stage}", [essential, adversarial], trainer.current_epoch)


def probe_maps(kind: str, probe: dict[str, torch.Tensor], settings: MapSettings) -> FrequencyMaps:
    """The solved maps of one kind from the gathered probe rows, as a FrequencyMaps (index = dataset index)."""
    solved = probe[f"{kind}_solved"]
    adversarial_labels = probe[f"{kind}_target"] if kind == "adversarial" else torch.full_like(probe["y"], -1)
    return FrequencyMaps(
        kind, probe[f"{kind}_maps"][solved], probe["index"][solved], probe["y"][solved], adversarial_labels[solved],
        probe[f"{kind}_steps"][solved], probe[f"{kind}_converged"][solved], probe[f"{kind}_kept"][solved],
        asdict(settings),
    )


def median(values: torch.Tensor) -> float:
    return values.float().quantile(0.5).item() if len(values) else math.nan


def sparsity(maps: torch.Tensor, threshold: float) -> torch.Tensor:
    """(n,) share of each map's entries at or below `threshold` (the frequencies it switches off)."""
    return (maps <= threshold).flatten(1).float().mean(1)


def per_class_table(probe: dict[str, torch.Tensor], essential: FrequencyMaps, adversarial: FrequencyMaps,
                    num_classes: int, threshold: float) -> tuple[list[str], list[list]]:
    """One row per class c: probe images of class c, their clean accuracy and attack success rate, kept
    essential maps of class c and kept adversarial maps whose adversarial label is c, the mean sparsity of
    each, and the cosine between the two class-mean maps (nan where a class has no map of a kind)."""
    columns = ["class", "images", "clean_acc", "attack_success", "essential_maps", "adversarial_maps",
               "essential_sparsity", "adversarial_sparsity", "mean_map_cosine"]
    kept = {"essential": essential.kept_only(), "adversarial": adversarial.kept_only()}
    means = {kind: maps.class_means(num_classes).flatten(1) for kind, maps in kept.items()}
    rows = []
    for c in range(num_classes):
        of_class = probe["y"] == c
        correct = probe["correct"] & of_class
        counts = {kind: int((maps.targets == c).sum()) for kind, maps in kept.items()}
        mean_sparsity = {kind: sparsity(maps.maps[maps.targets == c], threshold).mean().item()
                         for kind, maps in kept.items()}
        cosine = (torch.nn.functional.cosine_similarity(means["essential"][c], means["adversarial"][c], dim=0).item()
                  if all(counts.values()) else math.nan)
        rows.append([
            c, int(of_class.sum()), correct.sum().item() / max(int(of_class.sum()), 1),
            (probe["fooled"] & of_class).sum().item() / correct.sum().item() if correct.any() else math.nan,
            counts["essential"], counts["adversarial"], mean_sparsity["essential"], mean_sparsity["adversarial"],
            cosine,
        ])
    return columns, rows


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
