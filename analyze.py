"""The paper's correlation study on a trained checkpoint: attacks, essential and adversarial maps, IdCor /
SVCCA / CKA / cosine, class-level maps as a defence; writes a results folder and an (offline) W&B run.

    python analyze.py --config configs/reproduce/cifar10_analyze.yaml --checkpoint path/to/last.ckpt
    python analyze.py --config configs/reproduce/digits_analyze.yaml --checkpoint ... --images 200
    python analyze.py --help        (every knob; configs can interpolate with ${...})

The results folder holds results.json, results.md (one row per attack, then the class-map defence),
figures/*.png and maps/*.pt (FrequencyMaps files, loadable with freqmaps.maps.FrequencyMaps.load).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import ArgumentParser, set_parsing_settings
from torch.utils.data import Dataset

from datamodules.base import ImageDataModule
from freqmaps.attacks import Attack
from freqmaps.class_maps import CLASS_MAP_SETTINGS
from freqmaps.errors import UserInputError, exit_on_user_error
from freqmaps.maps import MapSettings
from freqmaps.study import ROW_FIELDS, run_study, write_study
from lightning_modules.checkpoint import load_network


def take(dataset: Dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n items of a dataset drawn without replacement with a fixed seed: x (n, C, H, W), y (n,) int64."""
    if n > len(dataset):
        raise UserInputError(f"asked for {n} images but the split holds {len(dataset)}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    xs, ys = zip(*(dataset[i] for i in order))
    return torch.stack(xs), torch.as_tensor(ys, dtype=torch.long)


def attack_names(attacks: list[Attack]) -> list[str]:
    """Row names: the attack's class and norm (e.g. FMN-linf), numbered when two would coincide."""
    names = [type(a).__name__ + (f"-{a.norm}" if hasattr(a, "norm") else "") for a in attacks]
    return [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def analyze(
    checkpoint: Path,
    data: ImageDataModule,
    attacks: list[Attack],
    output_dir: Path = Path("outputs/analysis"),
    images: int = 1000,
    split: Literal["test", "val"] = "test",
    maps: MapSettings = MapSettings(),
    permutations: int = 100,
    seed: int = 0,
    attack_batch_size: int = 256,
    class_map_images: int = 0,
    class_map_attack: str | None = None,
    class_maps: MapSettings = CLASS_MAP_SETTINGS,
    adaptive_attack: Attack | None = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    wandb_project: str | None = "freqmaps",
    wandb_name: str | None = None,
    wandb_offline: bool = True,
    progress: bool = True,
) -> dict:
    """Run the study and write the results folder.

    Args:
        checkpoint: a .ckpt written by `python train.py fit` (any of this project's classifiers).
        data: the datamodule the model was trained on; its `split` images are studied.
        attacks: one table row each (e.g. FMN, PGD eps 8/255, DeepFool; all L-inf in the paper).
        output_dir: the results folder.
        images: clean images drawn (seeded) from `split`.
        maps: the essential/adversarial map solver (the paper's: lam 0.5 at 32 px, lr 0.01, 500/5000 steps).
        permutations, seed: IdCor's permutation test.
        attack_batch_size: images per attack call.
        class_map_images: validation images (held-out training images) to train class maps on; 0 skips the
            defence study.
        class_map_attack: the row name of the attack whose adversarials train the class maps (default: first).
        class_maps: the class-map solver (the paper's: lam 1e-3, tol 1e-3).
        adaptive_attack: attack run against the label-free defended model, which sees the maps.
        device: where the model and the solvers run.
        wandb_project: W&B project for a run holding the table, scalars and figures (None: no W&B run).
        wandb_offline: write the run offline (`wandb sync` uploads it later).
        progress: progress bars.
    """
    started = time.perf_counter()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    model = load_network(checkpoint).to(device)
    data.prepare_data()
    data.setup("test")
    x, y = take(data.test_set if split == "test" else data.val_set, images, seed)
    class_data = None
    if class_map_images:
        class_data = tuple(t.to(device) for t in take(data.val_set, class_map_images, seed + 1))
    names = attack_names(attacks)
    num_classes = data.num_classes
    study = run_study(
        model, x.to(device), y.to(device), list(zip(names, attacks)), maps, permutations=permutations, seed=seed,
        attack_batch_size=attack_batch_size, class_map_data=class_data, class_map_attack=class_map_attack,
        class_map_settings=class_maps, num_classes=num_classes, progress=progress,
        adaptive_attack=None if adaptive_attack is None else (attack_names([adaptive_attack])[0], adaptive_attack),
    )
    class_names = getattr(data, "class_names", None)
    extra = {"checkpoint": str(checkpoint), "device": str(device), "images": images, "split": split,
             "total_seconds": time.perf_counter() - started,
             "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None}
    paths = write_study(study, output_dir, num_classes, class_names, extra)
    print((output_dir / "results.md").read_text())
    if wandb_project:
        log_to_wandb(study, paths, wandb_project, wandb_name, wandb_offline, output_dir, extra)
    print(f"results in {output_dir} ({extra['total_seconds']:.0f} s)")
    return {"rows": study.rows, "paths": paths}


def log_to_wandb(study, paths: dict[str, Path], project: str, name: str | None, offline: bool, output_dir: Path,
                 config: dict) -> None:
    """One W&B run: the table, each row's scalars under <attack>/<field>, the defence rates, the figures."""
    import wandb

    run = wandb.init(project=project, name=name, dir=str(output_dir), mode="offline" if offline else "online",
                     job_type="analysis", config=config)
    try:
        table = wandb.Table(columns=list(ROW_FIELDS), data=[[row[k] for k in ROW_FIELDS] for row in study.rows])
        scalars = {f"{row['attack']}/{k}": row[k] for row in study.rows for k in ROW_FIELDS if k != "attack"}
        if study.defence is not None:
            d = study.defence
            scalars |= {f"defence/{k}": v for k, v in vars(d.rates).items()}
            scalars |= {"defence/adaptive_robust_accuracy": d.adaptive_robust_accuracy,
                        "defence/undefended_robust_accuracy": d.undefended_robust_accuracy}
        images = {f"figures/{key}": wandb.Image(str(path)) for key, path in paths.items() if path.suffix == ".png"}
        run.log({"results": table, **scalars, **images})
    finally:
        run.finish()


def main(argv: list[str] | None = None) -> None:
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    parser = ArgumentParser(description=__doc__.split("\n")[0], parser_mode="omegaconf+")
    parser.add_argument("--config", action="config")
    parser.add_function_arguments(analyze)
    init = parser.instantiate(parser.parse_args(argv))
    analyze(**{k: v for k, v in vars(init).items() if k != "config"})


if __name__ == "__main__":
    exit_on_user_error(main)
