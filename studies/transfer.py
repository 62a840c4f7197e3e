"""`python analyze.py transfer --config configs/analysis/cifar10_transfer.yaml`: transfer of adversarial examples from
sources (e.g. L2 adversarially trained at growing eps) to targets (other seeds, architectures, a low-pass model),
untargeted and targeted (Springer, Mitchell & Kenyon 2021, `freqmaps.transfer`), with each source's white-box
success, the radial power spectrum of its perturbations and, on a seeded draw of `map_images` of the images, the cosine
between each source's adversarial frequency maps and each target's essential maps, with the number of images that have
one (does transfer follow the alignment of maps?). Writes
transfer_{untargeted,targeted}.pt, results.json, results.md, figures/*.png and an offline W&B run; `write_results(DIR)`
redraws them from the .pt files.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import torch
from matplotlib.figure import Figure

from datamodules.base import ImageDataModule
from freqmaps.attacks import Attack
from freqmaps.errors import UserInputError
from freqmaps.files import write_atomically
from freqmaps.fragility import spearman
from freqmaps.maps import MapSettings
from freqmaps.report import prepare_output_dir
from freqmaps.transfer import TransferResult, transfer_matrix
from lightning_modules.checkpoint import load_classifier
from studies.common import Device, load_probe, log_to_wandb, pick_device, save_figure, write_json

KINDS = ("untargeted", "targeted")


def transfer_study(
    sources: dict[str, str],
    targets: dict[str, str],
    data: ImageDataModule,
    attack: Attack,
    targeted_attack: Attack | None = None,
    source_eps: dict[str, float] | None = None,
    target_shift: int = 1,
    output_dir: Path = Path("outputs/transfer"),
    overwrite: bool = False,
    images: int = 1000,
    split: Literal["test", "val"] = "test",
    batch_size: int = 256,
    seed: int = 0,
    map_images: int = 16,
    map_settings: MapSettings | None = None,
    device: Device = "auto",
    wandb_project: str | None = "freqmaps",
    wandb_name: str | None = None,
    wandb_offline: bool = True,
    progress: bool = True,
) -> dict:
    """Transfer success of every source's adversarial examples on every target, untargeted and targeted.

    Args:
        sources, targets: name -> a zoo model name or a .ckpt written by `python train.py fit`; one task.
        data: the datamodule of that task; `images` images of `split` drawn with `seed`.
        attack: the untargeted attack run on each source (e.g. PGD L2). targeted_attack: a targeted one
            (`freqmaps.attacks.TargetedPGD`) towards (y + target_shift) mod C; None: untargeted only.
        source_eps: name -> the eps the source was adversarially trained with (the figures' x axis; None: sources
            in the given order).
        output_dir, overwrite: the results folder (a finished one is refused unless overwrite).
        batch_size: images per attack call. seed: image draw and the attacks' random starts.
        map_images: images whose maps are solved for the map cosines, a seeded draw of the `images` (0: none);
            map_settings: the solver's (default: the fast rule).
        device: where the models run. wandb_project: W&B project (None: no run); wandb_offline: write offline.
        progress: progress bars.
    """
    started = time.perf_counter()
    if source_eps is not None and set(source_eps) != set(sources):
        raise UserInputError(f"source_eps names {sorted(source_eps)} differ from the sources {sorted(sources)}")
    prepare_output_dir(output_dir, overwrite)
    torch_device = pick_device(device)
    first = next(iter({**sources, **targets}.values()))
    _, x, y, _ = load_probe(first, data, images, split, seed, torch_device)
    loaded: dict[str, torch.nn.Module] = {}

    def load(path: str) -> torch.nn.Module:
        if path not in loaded:
            loaded[path] = load_classifier(path).to(torch_device).eval()
        return loaded[path]

    source_models = {name: load(path) for name, path in sources.items()}
    target_models = {name: load(path) for name, path in targets.items()}
    attacks = {"untargeted": attack, "targeted": targeted_attack}
    for kind, chosen in attacks.items():
        if chosen is not None:
            result = transfer_matrix(source_models, target_models, x, y, chosen, kind == "targeted", target_shift,
                                     batch_size, seed, progress, map_images, map_settings)
            result.save(output_dir / f"transfer_{kind}.pt")
    config = {"sources": sources, "targets": targets, "source_eps": source_eps, "attack": repr(attack),
              "targeted_attack": repr(targeted_attack), "images": images, "split": split, "seed": seed,
              "map_images": map_images, "device": str(torch_device), "total_seconds": time.perf_counter() - started}
    paths = write_results(output_dir, config)
    print(paths["markdown"].read_text())
    scalars, tables = {}, {}
    for kind, result in read_results(output_dir).items():
        scalars |= {f"{kind}/{s}/{t}": float(result.success[i, j]) for i, s in enumerate(result.sources)
                    for j, t in enumerate(result.targets)}
        scalars |= {f"{kind}/{s}/white_box": float(result.white_box[i]) for i, s in enumerate(result.sources)}
        scalars |= {f"{kind}/map_{name}/{s}/{t}": float(values[i, j])
                    for name, values in (("cosine", result.mean_map_cosine), ("pairs", result.map_pairs))
                    for i, s in enumerate(result.sources) for j, t in enumerate(result.targets)}
        tables[kind] = (["source", "white_box", *result.targets],
                        [[s, float(result.white_box[i]), *result.success[i].tolist()]
                         for i, s in enumerate(result.sources)])
    log_to_wandb(wandb_project, wandb_name, wandb_offline, output_dir, "transfer", config, scalars, tables,
                 {key: path for key, path in paths.items() if path.suffix == ".png"})
    print(f"results in {output_dir} ({time.perf_counter() - started:.0f} s)")
    return {"results": read_results(output_dir), "paths": paths}


def read_results(output_dir: Path) -> dict[str, TransferResult]:
    """The saved results of output_dir: kind (untargeted / targeted) -> TransferResult."""
    return {kind: TransferResult.load(output_dir / f"transfer_{kind}.pt") for kind in KINDS
            if (Path(output_dir) / f"transfer_{kind}.pt").is_file()}


def cosine_spearman(result: TransferResult) -> float:
    """Spearman's rank correlation between the mean map cosine and the transfer success over the (source, target)
    cells that have a cosine (nan when fewer than two)."""
    cosine, success = result.mean_map_cosine.flatten(), result.success.flatten()
    known = ~cosine.isnan()
    return spearman(cosine[known], success[known])


def write_results(output_dir: Path, config: dict | None = None) -> dict[str, Path]:
    """From output_dir/transfer_*.pt: results.json, results.md and figures/{success_vs_eps,spectra}.png."""
    output_dir = Path(output_dir)
    if config is None:
        config = json.loads((output_dir / "results.json").read_text())["config"]
    results = read_results(output_dir)
    payload = {"config": config} | {kind: {
        "sources": r.sources, "targets": r.targets, "success": r.success.tolist(), "white_box": r.white_box.tolist(),
        "counts": r.counts.tolist(), "source_counts": r.source_counts.tolist(), "spectrum": r.spectrum.tolist(),
        "map_cosine": r.mean_map_cosine.tolist(), "map_pairs": r.map_pairs.tolist(), "map_index": r.map_index.tolist(),
        "spearman_cosine_success": cosine_spearman(r)}
        for kind, r in results.items()}
    paths = {"json": write_json(output_dir / "results.json", payload)}
    lines = [f"# Transfer of adversarial examples ({config.get('images')} {config.get('split')} images)", ""]
    for kind, r in results.items():
        lines += [f"## {kind} ({config['targeted_attack' if kind == 'targeted' else 'attack']})", "",
                  "Success on the images each model classifies correctly (their number in brackets).", "",
                  "| source | white box | " + " | ".join(f"{t} ({int(c)})" for t, c in zip(r.targets, r.counts))
                  + " |", "|---|---|" + "---|" * len(r.targets)]
        lines += [f"| {s} ({int(r.source_counts[i])}) | {float(r.white_box[i]):.3f} | "
                  + " | ".join(f"{v:.3f}" for v in r.success[i].tolist()) + " |" for i, s in enumerate(r.sources)]
        if r.map_cosine.shape[2]:
            lines += ["", "Cosine between the source's adversarial maps and the target's essential maps "
                      f"({r.map_cosine.shape[2]} seeded images; in brackets the images with a cosine: both maps kept "
                      "and the attack successful on the source; n/a where there is none); Spearman(cosine, success) "
                      f"over the cells with one: {cosine_spearman(r):.3f}.", "",
                      "| source | " + " | ".join(r.targets) + " |", "|---|" + "---|" * len(r.targets)]
            lines += [f"| {s} | " + " | ".join(f"{c:.3f} ({n})" if n else "n/a (0)" for c, n in
                                               zip(r.mean_map_cosine[i].tolist(), r.map_pairs[i].tolist())) + " |"
                      for i, s in enumerate(r.sources)]
        lines.append("")
    text = "\n".join(lines)
    paths["markdown"] = write_atomically(output_dir / "results.md", lambda partial: partial.write_text(text))
    figures = output_dir / "figures"
    figures.mkdir(exist_ok=True)
    eps = config.get("source_eps")
    figure = Figure(figsize=(5 * len(results), 4))
    for axis, (kind, r) in zip(figure.subplots(1, len(results), squeeze=False)[0], results.items()):
        xs = [eps[s] for s in r.sources] if eps else list(range(len(r.sources)))
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        for j, target in enumerate(r.targets):
            axis.plot([xs[i] for i in order], [float(r.success[i, j]) for i in order], marker="o", label=target)
        axis.plot([xs[i] for i in order], [float(r.white_box[i]) for i in order], "k--", label="white box")
        if eps:
            axis.set_xscale("symlog", linthresh=min([e for e in xs if e > 0], default=1.0))
        axis.set_xlabel("source training eps (L2)" if eps else "source")
        if not eps:
            axis.set_xticks(xs, r.sources, rotation=30, fontsize=7)
        axis.set_ylabel("success rate")
        axis.set_ylim(0, 1)
        axis.set_title(kind)
        axis.legend(fontsize=7)
    paths["success_vs_eps"] = save_figure(figure, figures / "success_vs_eps.png")
    figure = Figure(figsize=(5, 4))
    axis = figure.subplots()
    any_result = next(iter(results.values()))
    for i, source in enumerate(any_result.sources):
        axis.semilogy(any_result.spectrum[i].clamp_min(1e-12).numpy(), label=source)
    axis.set_xlabel("frequency radius")
    axis.set_ylabel("share of perturbation power")
    axis.set_title(f"perturbation spectra ({next(iter(results))})")
    axis.legend(fontsize=7)
    paths["spectra"] = save_figure(figure, figures / "spectra.png")
    return paths
