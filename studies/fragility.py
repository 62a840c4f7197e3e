"""`python analyze.py fragility --config configs/analysis/cifar10_fragility.yaml`: fragile and robust filters of a
checkpoint's first convolution by nodal dropout under FGSM (Pravin et al. 2021, `freqmaps.fragility`), the
targeting energy and its rank correlation with fragility, each filter's frequency response against its fragility and
against the radial profile of the FGSM adversarial maps of `map_images` of the images (`freqmaps.maps`), and the
rescaling defence under FGSM, PGD and an adaptive attack. Writes fragility.pt, results.json, results.md,
figures/*.png and an offline W&B run; `write_results(DIR)` redraws them from fragility.pt and results.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import torch
from matplotlib.figure import Figure

from datamodules.base import ImageDataModule
from freqmaps.attacks import FGSM, attack_in_chunks
from freqmaps.class_maps import predict
from freqmaps.files import write_atomically
from freqmaps.fourier import radial_profile
from freqmaps.fragility import (
    FragilityResult,
    conv_layer,
    evaluate_rescaling,
    filter_spectra,
    fragility,
    profile_correlation,
    rescaling_scales,
    spearman,
)
from freqmaps.inputs import frozen_eval
from freqmaps.maps import MapSettings, adversarial_maps
from freqmaps.report import prepare_output_dir
from freqmaps.sampling import seeded_indices
from studies.common import Device, load_probe, log_to_wandb, pick_device, save_figure, write_json


def fragility_study(
    checkpoint: str,
    data: ImageDataModule,
    output_dir: Path = Path("outputs/fragility"),
    overwrite: bool = False,
    images: int = 500,
    split: Literal["test", "val"] = "test",
    eps: list[float] = [1 / 255, 2 / 255, 4 / 255, 8 / 255],  # noqa: B006 (jsonargparse reads it; never mutated)
    layer: str | None = None,
    batch_size: int = 128,
    filters_per_pass: int | None = None,
    strength: float = 0.5,
    defence_eps: float = 4 / 255,
    pgd_steps: int = 20,
    map_images: int = 16,
    map_settings: MapSettings | None = None,
    seed: int = 0,
    device: Device = "auto",
    wandb_project: str | None = "freqmaps",
    wandb_name: str | None = None,
    wandb_offline: bool = True,
    progress: bool = True,
) -> dict:
    """Nodal dropout of every filter of one convolution under FGSM, and the rescaling defence.

    Args:
        checkpoint: a zoo model name or a .ckpt written by `python train.py fit`.
        data: the datamodule the model was trained on; `images` images of `split` drawn with `seed`.
        output_dir, overwrite: the results folder (a finished one is refused unless overwrite).
        eps: the FGSM grid (L∞, pixel units). layer: the convolution (None: the first).
        batch_size: images per pass; filters_per_pass: dropout masks per pass (None: all at once).
        strength: the defence's scales 1 ± strength (`rescaling_scales`); defence_eps: its attacks' eps;
            pgd_steps: its PGD's steps.
        map_images: the adversarial maps (FGSM at the largest eps) of a seeded draw of map_images images, whose radial
            profile each filter's response is correlated with (0: none); map_settings: the solver's (default: fast).
        seed: image draw, PGD's random starts. device: where the model runs.
        wandb_project: W&B project (None: no run); wandb_offline: write offline. progress: progress bars.
    """
    started = time.perf_counter()
    prepare_output_dir(output_dir, overwrite)
    torch_device = pick_device(device)
    model, x, y, _ = load_probe(checkpoint, data, images, split, seed, torch_device)
    result = fragility(model, x, y, eps, layer, batch_size, filters_per_pass, progress)
    result.save(output_dir / "fragility.pt")
    spectra = filter_spectra(conv_layer(model, result.layer)[1], x.shape[-1])
    rows = seeded_indices(len(x), min(map_images, len(x)), seed).to(x.device)  # the probe is sorted by class
    profile = adversarial_profile(model, x[rows], y[rows], max(eps), batch_size, seed,
                                  map_settings or MapSettings(solver="fast"), progress)
    defence = evaluate_rescaling(model, x, y, rescaling_scales(result.fragility, strength), defence_eps,
                                 result.layer, pgd_steps, batch_size, seed)
    config = {"checkpoint": str(checkpoint), "images": images, "split": split, "layer": result.layer,
              "strength": strength, "defence_eps": defence_eps, "pgd_steps": pgd_steps, "map_images": map_images,
              "seed": seed, "device": str(torch_device), "total_seconds": time.perf_counter() - started}
    payload = {"config": config, "radial_response": spectra.radial.tolist(), "centroid": spectra.centroid.tolist(),
               "adversarial_profile": profile.tolist(),
               "profile_correlation": profile_correlation(spectra.radial, profile).tolist(),
               "defence": {"scales": defence.scales.tolist(), "eps": defence.eps, "accuracy": defence.accuracy}}
    write_json(output_dir / "results.json", payload)
    paths = write_results(output_dir)
    print(paths["markdown"].read_text())
    scalars = {"base_clean": float(result.base_clean), "spearman_frequency": paths["spearman_frequency"],
               "spearman_profile": paths["spearman_profile"]}
    scalars |= {f"spearman_energy/eps{e:.4f}": float(s) for e, s in zip(result.eps.tolist(), result.spearman)}
    scalars |= {f"defence/{attack}/{setting}": value for attack, row in defence.accuracy.items()
                for setting, value in row.items()}
    correlation = torch.tensor(payload["profile_correlation"])
    rows = [[int(k), float(result.fragility[k]), float(result.clean[k]), float(spectra.centroid[k]),
             float(correlation[k])] for k in result.ranking]
    log_to_wandb(wandb_project, wandb_name, wandb_offline, output_dir, "fragility", config, scalars,
                 {"ranking": (["filter", "fragility", "clean_dropped", "frequency_centroid", "profile_correlation"],
                              rows)},
                 {key: path for key, path in paths.items() if isinstance(path, Path) and path.suffix == ".png"})
    print(f"results in {output_dir} ({time.perf_counter() - started:.0f} s)")
    return {"result": result, "defence": defence, "paths": paths}


def adversarial_profile(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, batch_size: int,
                        seed: int, settings: MapSettings, progress: bool) -> torch.Tensor:
    """(R,) radial profile (`fourier.radial_profile`) of the kept adversarial maps of FGSM at eps on the images
    x: (m, C, H, W) it fools (y: (m,)); all nan when there is none (m = 0, nothing fooled or kept)."""
    radii = len(radial_profile(x.new_zeros(x.shape[-2:])))
    if not len(x):
        return torch.full((radii,), torch.nan)
    x_adv = attack_in_chunks(FGSM(eps), model, x, y, batch_size, seed)
    with frozen_eval(model):
        y_adv = predict(model, x_adv, batch_size)
    fooled = y_adv != y
    if not fooled.any():
        return torch.full((radii,), torch.nan)
    maps = adversarial_maps(model, x_adv[fooled], y_adv[fooled], y[fooled], settings, progress=progress).kept_only()
    return radial_profile(maps.maps) if len(maps) else torch.full((radii,), torch.nan)


def write_results(output_dir: Path) -> dict:
    """From output_dir/fragility.pt and results.json: results.md, results.json's ranking and figures/
    {fragility,frequency}.png; returns name -> path, spearman_frequency (fragility against centroid) and
    spearman_profile (fragility against the filters' correlation with the adversarial maps' radial profile)."""
    output_dir = Path(output_dir)
    result = FragilityResult.load(output_dir / "fragility.pt")
    payload = json.loads((output_dir / "results.json").read_text())
    centroid, radial = torch.tensor(payload["centroid"]), torch.tensor(payload["radial_response"])
    rho = spearman(result.fragility, centroid)
    profile, correlation = torch.tensor(payload["adversarial_profile"]), torch.tensor(payload["profile_correlation"])
    rho_profile = spearman(result.fragility, correlation) if not correlation.isnan().any() else float("nan")
    order = result.ranking
    payload |= {"eps": result.eps.tolist(), "base_clean": float(result.base_clean),
                "base_adversarial": result.base_adversarial.tolist(), "ranking": order.tolist(),
                "fragility": result.fragility.tolist(), "clean": result.clean.tolist(),
                "adversarial": result.adversarial.tolist(), "energy": result.energy.tolist(),
                "spearman_energy": result.spearman.tolist(), "spearman_frequency": rho,
                "spearman_profile": rho_profile}
    paths: dict = {"json": write_json(output_dir / "results.json", payload), "spearman_frequency": rho,
                   "spearman_profile": rho_profile}
    eps = "/".join(f"{e * 255:.3g}" for e in result.eps.tolist())
    lines = [f"# Fragile filters of {result.layer}: {payload['config']['checkpoint']}", "",
             f"{result.images} images; intact network: clean {float(result.base_clean):.3f}, FGSM at eps {eps}/255 "
             + ", ".join(f"{a:.3f}" for a in result.base_adversarial.tolist()) + ".", "",
             "Spearman(fragility, targeting energy) per eps: "
             + ", ".join(f"{s:.3f}" for s in result.spearman.tolist())
             + f"; Spearman(fragility, frequency centroid of the filter): {rho:.3f}; Spearman(fragility, the filter's "
             f"correlation with the adversarial maps' radial profile): {rho_profile:.3f}.", "",
             "| rank | filter | fragility | clean, dropped | FGSM, dropped | energy | frequency centroid | "
             "corr. with adv. maps |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {i + 1} | {int(k)} | {float(result.fragility[k]):+.3f} | {float(result.clean[k]):.3f} | "
              + "/".join(f"{a:.2f}" for a in result.adversarial[k].tolist()) + f" | "
              f"{float(result.energy[k].mean()):.3g} | {float(centroid[k]):.2f} | {float(correlation[k]):+.2f} |"
              for i, k in enumerate(order)]
    defence = payload["defence"]
    lines += ["", f"## Rescaling defence (scales {min(defence['scales']):.2f}..{max(defence['scales']):.2f}, "
              f"eps {defence['eps'] * 255:.3g}/255)", "", "| attack | undefended | transferred | adaptive |",
              "|---|---|---|---|"]
    lines += [f"| {attack} | {row['undefended']:.3f} | {row['transferred']:.3f} | {row['adaptive']:.3f} |"
              for attack, row in defence["accuracy"].items()]
    text = "\n".join(lines) + "\n"
    paths["markdown"] = write_atomically(output_dir / "results.md", lambda partial: partial.write_text(text))
    figures = output_dir / "figures"
    figures.mkdir(exist_ok=True)
    figure = Figure(figsize=(8, 6))
    bars, responses = figure.subplots(2, 1, sharex=True)
    bars.bar(range(len(order)), result.fragility[order].numpy(), color="tab:red")
    bars.set_ylabel("fragility (FGSM acc. regained)")
    bars.set_title(f"filters of {result.layer}, most fragile first")
    image = responses.imshow(radial[order].T.numpy(), aspect="auto", origin="lower", cmap="viridis")
    responses.set_xticks(range(len(order)), [str(int(k)) for k in order], fontsize=7)
    responses.set_xlabel("filter")
    responses.set_ylabel("frequency radius")
    figure.colorbar(image, ax=responses, label="|FFT| share")
    paths["fragility"] = save_figure(figure, figures / "fragility.png")
    figure = Figure(figsize=(10, 4))
    axis, radii = figure.subplots(1, 2)
    axis.scatter(centroid.numpy(), result.fragility.numpy())
    axis.set_xlabel("frequency centroid of the filter")
    axis.set_ylabel("fragility")
    axis.set_title(f"Spearman {rho:.2f}")
    radii.plot((profile / profile.sum()).numpy(), "k", linewidth=2, label="adversarial maps (FGSM)")
    for k, role in ((order[0], "most fragile"), (order[-1], "most robust")):
        radii.plot(radial[k].numpy(), label=f"{role}: filter {int(k)} (r {float(correlation[k]):+.2f})")
    radii.set_xlabel("frequency radius")
    radii.set_ylabel("share of the profile")
    radii.set_title(f"Spearman(fragility, r) {rho_profile:.2f}")
    radii.legend(fontsize=7)
    paths["frequency"] = save_figure(figure, figures / "frequency.png")
    return paths
