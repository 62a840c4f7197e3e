"""What every study entry does around its science: pick the device, draw the probe images, write results and figures,
open the W&B run."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
from matplotlib.figure import Figure

from datamodules.base import ImageDataModule
from freqmaps.files import write_atomically
from freqmaps.inputs import check_model_fits
from freqmaps.sampling import seeded_indices, take
from lightning_modules.checkpoint import load_classifier

Device = Literal["auto", "cpu", "cuda"]


def pick_device(device: Device) -> torch.device:
    """`auto`: CUDA when there is one, else the CPU."""
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)


def load_probe(checkpoint: str, data: ImageDataModule, images: int, split: Literal["test", "val"], seed: int,
               device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model (zoo name or .ckpt, eval mode, on `device`) and `images` images of `split` drawn with `seed` (the
    callbacks' probe draw): model, x (n, C, H, W) in [0, 1], y (n,), index (n,) into the split. UserInputError when
    the model does not fit the data."""
    model = load_classifier(checkpoint).to(device)
    data.prepare_data()
    data.setup("test")
    dataset = data.test_set if split == "test" else data.val_set
    index = seeded_indices(len(dataset), images, seed)
    x, y = take(dataset, index)
    check_model_fits(model, x, y, f"{type(data).__name__}'s {split} split")
    return model, x.to(device), y.to(device), index


def strict_json(value):
    """value with every non-finite float (nan: not measured; inf) as None, so the JSON has no NaN tokens."""
    if isinstance(value, dict):
        return {key: strict_json(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: dict) -> Path:
    """results.json, atomically (a crash never leaves half a file), strict JSON: nan and inf become null."""
    text = json.dumps(strict_json(json.loads(json.dumps(payload, default=float))), indent=2, allow_nan=False)
    return write_atomically(path, lambda partial: partial.write_text(text))


def save_figure(figure: Figure, path: Path) -> Path:
    """Save a figure as PNG, atomically."""
    figure.tight_layout()
    return write_atomically(path, lambda partial: figure.savefig(partial, dpi=110, format="png"))


def log_to_wandb(project: str | None, name: str | None, offline: bool, output_dir: Path, job_type: str,
                 config: dict, scalars: dict, tables: dict[str, tuple[list[str], list[list]]],
                 figures: dict[str, Path]) -> None:
    """One W&B run (offline by default; `wandb sync` uploads it) under output_dir: `scalars` logged as they are,
    each table as a wandb.Table, each figure as an image under figures/. Nothing when project is None (or empty).
    The folder goes to W&B as an absolute path: its service process may have started in another working
    directory, and would resolve a relative one against that."""
    if not project:
        return
    import wandb

    run = wandb.init(project=project, name=name, dir=str(Path(output_dir).resolve()),
                     mode="offline" if offline else "online", job_type=job_type, config=config)
    try:
        log = dict(scalars)
        log |= {key: wandb.Table(columns=columns, data=rows) for key, (columns, rows) in tables.items()}
        log |= {f"figures/{key}": wandb.Image(str(path)) for key, path in figures.items()}
        run.log(log)
    finally:
        run.finish()
