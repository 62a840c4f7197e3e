"""`python analyze.py curvature --config configs/analysis/cifar10_curvature.yaml`: the decision-boundary geometry
of Fawzi et al. (CVPR 2018) on a trained checkpoint (`freqmaps.curvature_study`): curvature profile and its h
sweep, vulnerability of the curved subspaces, their overlap, connectivity of same-class pairs, the curvature
detector, and the spectrum of the curved directions against the adversarial maps. Writes study.pt, results.json,
results.md, figures/*.png and an offline W&B run; `write_results(DIR)` redraws table and figures from study.pt.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Literal

import torch

from datamodules.base import ImageDataModule
from freqmaps.attacks import Attack
from freqmaps.curvature_figures import (
    curvature_profile_figure,
    roc_figure,
    spectra_figure,
    vulnerability_figure,
)
from freqmaps.curvature_study import CurvatureStudy, curvature_study
from freqmaps.errors import UserInputError
from freqmaps.files import write_atomically
from freqmaps.maps import MapSettings
from freqmaps.report import prepare_output_dir
from studies.common import Device, load_probe, log_to_wandb, pick_device, write_json


def curvature(
    checkpoint: str,
    data: ImageDataModule,
    attacks: dict[str, Attack],
    output_dir: Path = Path("outputs/curvature"),
    overwrite: bool = False,
    images: int = 64,
    split: Literal["test", "val"] = "test",
    k: int = 20,
    lanczos_steps: int | None = None,
    h: float = 0.05,
    h_sweep: list[float] = [0.01, 0.05, 0.2],  # noqa: B006 (jsonargparse reads it; never mutated)
    dims: list[int] = [1, 2, 5, 10, 20],  # noqa: B006
    attack_steps: int = 50,
    pairs: int = 20,
    path_points: int = 32,
    fpr: float = 0.05,
    directions: int = 20,
    detector_h: float = 0.1,
    spectrum_dims: int = 5,
    map_settings: MapSettings | None = None,
    seed: int = 0,
    device: Device = "auto",
    wandb_project: str | None = "freqmaps",
    wandb_name: str | None = None,
    wandb_offline: bool = True,
    progress: bool = True,
) -> dict:
    """Boundary curvature, curved-subspace vulnerability, connectivity and the curvature detector of a checkpoint.

    Args:
        checkpoint: a zoo model name or a .ckpt written by `python train.py fit`.
        data: the datamodule the model was trained on; `images` images of `split` drawn with `seed`.
        attacks: name -> attack whose adversarials the detector is tested on (DeepFool, FMN, small-eps PGD).
        output_dir, overwrite: the results folder (a finished one is refused unless overwrite).
        k: principal curvatures per image. lanczos_steps: Lanczos steps (None: min(2k + 20, D - 1)).
        h: the finite-difference step of the Hessian-vector products (L2, pixels in [0, 1]); h_sweep: the steps
            whose profiles are shown too (ReLU networks: the exact Hessian is zero almost everywhere).
        dims: subspace dimensions of the vulnerability test (each <= k). attack_steps: DeepFool steps.
        pairs: same-class pairs for the connectivity test (0: skip). path_points: the path search's vertex cap.
        fpr: the detector's false-positive rate on clean images. directions, detector_h: its random directions
            and second-difference step.
        spectrum_dims: the top curved directions whose power spectrum is compared with the adversarial maps of
            the boundary crossings (0: skip); map_settings: those maps' solver (None: the fast solver).
        seed: image draw, Lanczos starts, random subspaces, pairs, detector directions, attacks' random starts.
        device: where the model runs. wandb_project: W&B project (None: no run); wandb_offline: write offline.
        progress: progress bars.
    """
    started = time.perf_counter()
    if images < 2:
        raise UserInputError(f"images must be >= 2, got {images}")
    if not 0 <= spectrum_dims <= k:
        raise UserInputError(f"spectrum_dims must be in [0, k={k}], got {spectrum_dims}")
    prepare_output_dir(output_dir, overwrite)
    torch_device = pick_device(device)
    model, x, y, index = load_probe(checkpoint, data, images, split, seed, torch_device)
    study = curvature_study(model, x, y, attacks, k, lanczos_steps, h, h_sweep, dims, attack_steps, pairs,
                            path_points, fpr, directions, detector_h, spectrum_dims, map_settings, seed, progress)
    torch.save(study.state(), output_dir / "study.pt")
    config = {"checkpoint": str(checkpoint), "images": images, "split": split, "k": k, "h": h, "seed": seed,
              "device": str(torch_device), "total_seconds": time.perf_counter() - started}
    paths = write_results(output_dir, config)
    print(paths["markdown"].read_text())
    scalars = {f"detector/{row['attack']}/{key}": row[key] for row in study.detector["rows"]
               for key in ("auc", "tpr", "recovery", "success")}
    scalars |= {f"vulnerability/{key}_d{row['dim']}": row[key] for row in study.vulnerability
                for key in ("curved_ratio", "random_ratio")}
    scalars |= {f"connectivity/{key}": value for key, value in study.connectivity.items()}
    scalars |= {"shared/mean_overlap": study.shared["mean"], "shared/random_overlap": study.shared["random"],
                "valid": study.valid.float().mean().item(), "lanczos/converged": study.converged}
    scalars |= {f"spectra/{key}": value for key, value in study.spectra.get("summary", {}).items()}
    profile = next(iter(study.profiles.values()))
    tables = {"profile": (["rank", "curvature"], [[i + 1, float(v)] for i, v in enumerate(profile)]),
              "vulnerability": (list(study.vulnerability[0]), [list(row.values()) for row in study.vulnerability])}
    log_to_wandb(wandb_project, wandb_name, wandb_offline, output_dir, "curvature", config, scalars, tables,
                 {key: path for key, path in paths.items() if path.suffix == ".png"})
    print(f"results in {output_dir} ({time.perf_counter() - started:.0f} s)")
    return {"study": study, "paths": paths}


def _cell(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def markdown(study: CurvatureStudy, config: dict) -> str:
    """results.md: profile, vulnerability table, shared directions, connectivity, detector."""
    valid = study.valid
    lines = [f"# Boundary curvature: {config.get('checkpoint', '')}", "",
             f"{int(valid.sum())} of {len(valid)} images correctly classified with an L2-DeepFool boundary point "
             f"(median distance {_cell(study.distance[valid].median().item() if valid.any() else math.nan)}).", "",
             "## Sorted principal curvatures (mean over images; top-k by |κ|, then sorted)", "",
             f"Lanczos reports {_cell(100 * study.converged)}% of the main curvatures converged (residual within 1% "
             "of the image's largest |κ|); the others are Ritz values that more steps would still move.", "",
             "| h | " + " | ".join(f"κ{i + 1}" for i in range(len(next(iter(study.profiles.values()))))) + " |",
             "|---|" + "---|" * len(next(iter(study.profiles.values())))]
    lines += [f"| {name} | " + " | ".join(_cell(float(v)) for v in p) + " |" for name, p in study.profiles.items()]
    lines += ["", "## Vulnerability: median L2 norm DeepFool needs in a subspace", "",
              "| dim | top curved | random | full space | curved / full | random / full | curved success | "
              "random success |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['dim']} | {_cell(r['curved_median'])} | {_cell(r['random_median'])} | {_cell(r['full_median'])} "
              f"| {_cell(r['curved_ratio'])} | {_cell(r['random_ratio'])} | {_cell(r['curved_success'])} | "
              f"{_cell(r['random_success'])} |" for r in study.vulnerability]
    c = study.connectivity
    lines += ["", "## Shared directions and connectivity", "",
              f"Mean overlap of two images' top curved subspaces: {_cell(study.shared['mean'])} (random subspaces: "
              f"{_cell(study.shared['random'])}).", "",
              f"Same-class pairs: {c['pairs']}; share connected by the path search {_cell(c['connected'])}, share "
              f"whose straight segment already stays in the class {_cell(c['straight'])}; mean path length / "
              f"distance {_cell(c['mean_length'])}, mean vertices {_cell(c['mean_points'])}.", "",
              f"## Curvature detector (threshold at {study.detector['fpr']:.0%} false positives on clean images)", "",
              "| attack | success | median L2 | AUC | detected | recovered label |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {_cell(r['success'])} | {_cell(r['median_l2'])} | {_cell(r['auc'])} | "
              f"{_cell(r['tpr'])} | {_cell(r['recovery'])} |" for r in study.detector["rows"]]
    if study.spectra:
        m = study.spectra["summary"]
        lines += ["", "## Curved directions against the adversarial maps", "",
                  f"Power spectrum of each image's top {m['dims']} curved directions against the adversarial map of "
                  f"its boundary crossing ({m['images']} images with a kept map): median cosine "
                  f"{_cell(m['cosine_median'])}, against {_cell(m['random_cosine_median'])} for {m['dims']} random "
                  "directions. Peak radius (above 0) of the radial profiles: "
                  + ", ".join(f"{name.replace('_', ' ')} {m[f'{name}_peak_radius']}"
                              for name in ("curved", "random", "perturbation", "adversarial_map")) + "."]
    return "\n".join(lines) + "\n"


def write_results(output_dir: Path, config: dict | None = None) -> dict[str, Path]:
    """From output_dir/study.pt: results.json, results.md and figures/{profile,vulnerability,roc}.png; returns
    name -> path. config: what the run was (kept in results.json; read back from it when None)."""
    output_dir = Path(output_dir)
    study = CurvatureStudy.from_state(torch.load(output_dir / "study.pt", weights_only=True))
    if config is None:
        import json

        config = json.loads((output_dir / "results.json").read_text())["config"]
    payload = {"config": config, "profiles": {name: p.tolist() for name, p in study.profiles.items()},
               "valid": study.valid.float().mean().item(), "vulnerability": study.vulnerability,
               "shared": study.shared, "connectivity": study.connectivity, "detector": study.detector,
               "converged": study.converged,
               "spectra": {key: value if key == "summary" else value.tolist() for key, value in study.spectra.items()}}
    paths = {"json": write_json(output_dir / "results.json", payload)}
    text = markdown(study, config)
    paths["markdown"] = write_atomically(output_dir / "results.md", lambda partial: partial.write_text(text))
    figures = output_dir / "figures"
    figures.mkdir(exist_ok=True)
    drawn = {"profile": curvature_profile_figure(study.profiles, "sorted principal curvatures"),
             "vulnerability": vulnerability_figure(study.vulnerability),
             "roc": roc_figure(study.scores["clean"], {k: v for k, v in study.scores.items() if k != "clean"},
                               study.detector["fpr"])}
    if study.spectra:
        drawn["spectra"] = spectra_figure({key: value for key, value in study.spectra.items() if key != "summary"})
    for name, figure in drawn.items():
        paths[name] = figures / f"{name}.png"
        figure.savefig(paths[name], dpi=110)
    return paths
