"""`python analyze.py robustness --config configs/analysis/digits_robustness.yaml`: an evaluation that does not trust
gradients (`freqmaps.robustness.robustness_report`): accuracy under gradient, gradient-free and transfer attacks,
the per-image worst case, an eps sweep and the gradient-masking flags. Writes report.pt, results.json, results.md
and an offline W&B run; `write_results(DIR)` rewrites results.json / results.md from report.pt.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import torch

from datamodules.base import ImageDataModule
from freqmaps.attacks import Attack
from freqmaps.files import write_atomically
from freqmaps.report import prepare_output_dir
from freqmaps.robustness import RobustnessReport, robustness_markdown, robustness_report
from lightning_modules.checkpoint import load_classifier
from studies.common import Device, load_probe, log_to_wandb, pick_device, write_json


def robustness(
    checkpoint: str,
    data: ImageDataModule,
    attacks: dict[str, Attack],
    vanilla: str | None = None,
    eps_sweep: list[float] = [],  # noqa: B006 (jsonargparse reads it; never mutated)
    sweep_attack: str | None = None,
    output_dir: Path = Path("outputs/robustness"),
    overwrite: bool = False,
    images: int = 500,
    split: Literal["test", "val"] = "test",
    batch_size: int = 250,
    grad_tol: float = 1e-12,
    tolerance: float = 0.02,
    seed: int = 0,
    device: Device = "auto",
    wandb_project: str | None = "freqmaps",
    wandb_name: str | None = None,
    wandb_offline: bool = True,
    progress: bool = True,
) -> dict:
    """Accuracy of a checkpoint under gradient, gradient-free and transfer attacks, with the masking flags.

    Args:
        checkpoint: a zoo model name or a .ckpt written by `python train.py fit`.
        data: the datamodule the model was trained on; `images` images of `split` drawn with `seed`.
        attacks: name -> attack (Square attacks count as gradient-free, the others as gradient attacks).
        vanilla: a zoo name or .ckpt of an undefended model on the same data: the gradient attacks are also
            crafted on it and transferred.
        eps_sweep, sweep_attack: eps values at which `sweep_attack` (default: the first gradient attack) is rerun.
        output_dir, overwrite: the results folder (a finished one is refused unless overwrite).
        batch_size: images per attack call. grad_tol: gradient L∞ counted as vanishing. tolerance: the accuracy
            margin of the comparison flags. seed: image draw and attacks' random starts.
        device: where the model runs. wandb_project: W&B project (None: no run); wandb_offline: write offline.
        progress: progress bars.
    """
    started = time.perf_counter()
    prepare_output_dir(output_dir, overwrite)
    torch_device = pick_device(device)
    model, x, y, _ = load_probe(checkpoint, data, images, split, seed, torch_device)
    source = None if vanilla is None else load_classifier(vanilla).to(torch_device)
    report = robustness_report(model, x, y, attacks, source, eps_sweep, sweep_attack, batch_size, grad_tol,
                               tolerance, seed, progress)
    torch.save(report.state(), Path(output_dir) / "report.pt")
    config = {"checkpoint": str(checkpoint), "vanilla": vanilla, "images": len(x), "split": split, "seed": seed,
              "attacks": {name: repr(a) for name, a in attacks.items()}, "device": str(torch_device),
              "total_seconds": time.perf_counter() - started}
    paths = write_results(output_dir, config)
    print(paths["markdown"].read_text())
    scalars = {"clean_acc": report.clean_accuracy, "worst_case_acc": report.worst_case_accuracy,
               **{f"acc/{name}": value for name, value in report.accuracy.items()},
               **{f"flags/{flag.name}": 1 for flag in report.flags}}
    tables = {"attacks": (["attack", "gradient_free", "robust_accuracy"],
                          [[n, f, a] for (n, a), f in zip(report.accuracy.items(), report.gradient_free)])}
    log_to_wandb(wandb_project, wandb_name, wandb_offline, Path(output_dir), "robustness", config, scalars, tables, {})
    print(f"results in {output_dir} ({time.perf_counter() - started:.0f} s)")
    return {"report": report, "paths": paths}


def write_results(output_dir: Path, config: dict | None = None) -> dict[str, Path]:
    """From output_dir/report.pt: results.json and results.md; returns name -> path. config: what the run was
    (read back from results.json when None)."""
    output_dir = Path(output_dir)
    report = RobustnessReport.from_state(torch.load(output_dir / "report.pt", weights_only=True))
    if config is None:
        config = json.loads((output_dir / "results.json").read_text())["config"]
    payload = {"config": config, "clean_accuracy": report.clean_accuracy, "accuracy": report.accuracy,
               "gradient_free": dict(zip(report.attacks, report.gradient_free)),
               "worst_case_accuracy": report.worst_case_accuracy,
               "median_gradient_norm": report.gradient_norms.median().item(),
               "eps_sweep": dict(zip(map(str, report.eps_sweep), report.eps_accuracy)),
               "flags": {flag.name: flag.explanation for flag in report.flags}}
    paths = {"json": write_json(output_dir / "results.json", payload)}
    text = robustness_markdown(report, str(config.get("checkpoint", "")))
    paths["markdown"] = write_atomically(output_dir / "results.md", lambda partial: partial.write_text(text))
    return paths
