"""`python analyze.py kurtotic_linear --config configs/analysis/digits_kurtotic_linear.yaml`: Nayebi & Ganguli's
linear demonstration (`freqmaps.kurtotic_linear`): a logistic regression with Gaussian-prior (L2) weights and one
with kurtotic Laplace-prior (L1) weights at equal clean accuracy, under FGSM over an eps grid, with the exact
worst-case L∞ accuracy beside it. Trains its own models (no checkpoint). Writes result.pt, results.json, results.md,
figures/{accuracy_vs_eps,weights}.png and an offline W&B run; `write_results(DIR)` redraws them from result.pt.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Literal

import torch
from matplotlib.figure import Figure

from datamodules.base import ImageDataModule
from freqmaps.errors import UserInputError
from freqmaps.files import write_atomically
from freqmaps.kurtotic_linear import KurtoticLinearResult, LinearModel, kurtotic_linear
from freqmaps.report import prepare_output_dir
from freqmaps.sampling import take
from studies.common import log_to_wandb, save_figure, write_json


def kurtotic_linear_study(
    data: ImageDataModule,
    eps: list[float] = [0.02, 0.05, 0.1, 0.15, 0.2],  # noqa: B006 (jsonargparse reads it; never mutated)
    gaussian_strength: float = 1e-2,
    kurtotic_strengths: list[float] = [3e-4, 1e-3, 2e-3, 3e-3],  # noqa: B006
    tolerance: float = 0.01,
    split: Literal["test", "val"] = "test",
    classes: list[int] | None = None,
    max_steps: int = 4000,
    tol: float = 1e-4,
    output_dir: Path = Path("outputs/kurtotic_linear"),
    overwrite: bool = False,
    wandb_project: str | None = "freqmaps",
    wandb_name: str | None = None,
    wandb_offline: bool = True,
) -> dict:
    """A Gaussian-weight and a kurtotic-weight linear classifier at equal clean accuracy, under FGSM.

    Args:
        data: the images: the models are fitted on its training split and evaluated on `split`, all of it.
        eps: the L∞ FGSM radii (pixel units of [0, 1]).
        gaussian_strength: λ₂ of the L2 (Gaussian-prior) model. kurtotic_strengths: the λ₁ grid of the L1
            (Laplace-prior) models; the one closest to the L2 model's clean accuracy on `split` is the kurtotic model.
        tolerance: the largest clean-accuracy gap allowed between the two (an error otherwise).
        classes: the labels to keep, relabelled 0, 1, ... in this order (e.g. [4, 9]: a two-class problem, on which
            FGSM is the optimal L∞ attack of a linear model); None: all.
        max_steps, tol: the FISTA fit's step cap and stopping tolerance on the relative weight change.
        output_dir, overwrite: the results folder (a finished one is refused unless overwrite).
        wandb_project: W&B project (None: no run); wandb_offline: write offline.
    """
    started = time.perf_counter()
    prepare_output_dir(output_dir, overwrite)
    data.prepare_data()
    data.setup("fit")
    train = data.train_set
    evaluation = data.test_set if split == "test" else data.val_set
    x_train, y_train = keep_classes(*take(train, torch.arange(len(train))), classes)
    x_eval, y_eval = keep_classes(*take(evaluation, torch.arange(len(evaluation))), classes)
    num_classes = len(classes) if classes is not None else getattr(data, "num_classes", None)
    result = kurtotic_linear(x_train, y_train, x_eval, y_eval, eps, gaussian_strength, kurtotic_strengths, tolerance,
                             num_classes, max_steps, tol)
    torch.save(result.state(), Path(output_dir) / "result.pt")
    config = {"data": type(data).__name__, "classes": classes, "train_images": len(x_train),
              "eval_images": len(x_eval), "split": split,
              "image_shape": list(x_train.shape[1:]), "gaussian_strength": gaussian_strength,
              "kurtotic_strengths": list(kurtotic_strengths), "tolerance": tolerance, "max_steps": max_steps,
              "tol": tol, "total_seconds": time.perf_counter() - started}
    paths = write_results(output_dir, config)
    print(paths["markdown"].read_text())
    scalars = {"accuracy_gap": result.accuracy_gap}
    for name, model in (("gaussian", result.gaussian), ("kurtotic", result.kurtotic)):
        scalars |= {f"{name}/clean_acc": model.clean_accuracy, f"{name}/excess_kurtosis": model.excess_kurtosis,
                    f"{name}/l1_over_l2": model.l1_over_l2, f"{name}/strength": model.strength}
        scalars |= {f"{name}/fgsm_acc/eps{e:g}": a for e, a in zip(result.eps, model.fgsm_accuracy)}
        scalars |= {f"{name}/exact_acc/eps{e:g}": a for e, a in zip(result.eps, model.exact_accuracy)}
    columns = ["penalty", "strength", "clean_accuracy", "excess_kurtosis", "l1_over_l2", "zero_share",
               *[f"fgsm@{e:g}" for e in result.eps]]
    rows = [[m.penalty, m.strength, m.clean_accuracy, m.excess_kurtosis, m.l1_over_l2, m.zero_share,
             *m.fgsm_accuracy] for m in [result.gaussian, *result.candidates]]
    log_to_wandb(wandb_project, wandb_name, wandb_offline, Path(output_dir), "kurtotic_linear", config, scalars,
                 {"models": (columns, rows)}, {key: path for key, path in paths.items() if path.suffix == ".png"})
    print(f"results in {output_dir} ({time.perf_counter() - started:.0f} s)")
    return {"result": result, "paths": paths}


def keep_classes(x: torch.Tensor, y: torch.Tensor, classes: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The images x (n, C, H, W) whose label y (n,) is among `classes`, relabelled by position in it; all when
    None. UserInputError for a class no image has, or a class given twice."""
    if classes is None:
        return x, y
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise UserInputError(f"classes must be two or more distinct labels, got {classes}")
    missing = [c for c in classes if not (y == c).any()]
    if missing:
        raise UserInputError(f"no image has label {missing[0]} (labels here: {sorted(set(y.tolist()))})")
    keep = torch.isin(y, torch.tensor(classes))
    return x[keep], torch.tensor([classes.index(int(label)) for label in y[keep]], dtype=torch.long)


def model_summary(model: LinearModel, eps: list[float]) -> dict:
    """A model's numbers for results.json (the weights stay in result.pt)."""
    return {"penalty": model.penalty, "strength": model.strength, "steps": model.steps, "converged": model.converged,
            "clean_accuracy": model.clean_accuracy, "excess_kurtosis": model.excess_kurtosis,
            "l1_over_l2": model.l1_over_l2, "rho": model.rho, "zero_share": model.zero_share,
            "fgsm_accuracy": dict(zip(map(str, eps), model.fgsm_accuracy)),
            "exact_accuracy": dict(zip(map(str, eps), model.exact_accuracy))}


def write_results(output_dir: Path, config: dict | None = None) -> dict[str, Path]:
    """From output_dir/result.pt: results.json, results.md and figures/{accuracy_vs_eps,weights}.png; returns
    name -> path. config: what the run was (read back from results.json when None)."""
    output_dir = Path(output_dir)
    result = KurtoticLinearResult.from_state(torch.load(output_dir / "result.pt", weights_only=True))
    if config is None:
        config = json.loads((output_dir / "results.json").read_text())["config"]
    payload = {"config": config, "eps": result.eps, "accuracy_gap": result.accuracy_gap,
               "gaussian": model_summary(result.gaussian, result.eps),
               "kurtotic": model_summary(result.kurtotic, result.eps),
               "candidates": [model_summary(m, result.eps) for m in result.candidates]}
    paths = {"json": write_json(output_dir / "results.json", payload)}
    text = results_markdown(result, config)
    paths["markdown"] = write_atomically(output_dir / "results.md", lambda partial: partial.write_text(text))
    figures = output_dir / "figures"
    figures.mkdir(exist_ok=True)
    paths["accuracy_vs_eps"] = save_figure(accuracy_figure(result), figures / "accuracy_vs_eps.png")
    paths["weights"] = save_figure(weights_figure(result), figures / "weights.png")
    return paths


def label(model: LinearModel) -> str:
    kind = "Gaussian prior, L2" if model.penalty == "l2" else "Laplace prior, L1"
    return f"{kind} λ {model.strength:g} (γ₂ {model.excess_kurtosis:.1f})"


def results_markdown(result: KurtoticLinearResult, config: dict) -> str:
    """results.md: the pair side by side, then every L1 candidate of the grid."""
    g, k = result.gaussian, result.kurtotic
    eps_header = " | ".join(f"ε {e:g}" for e in result.eps)
    classes = f", classes {config['classes']}" if config.get("classes") else ""
    intro = (f"Fitted on {config.get('train_images', '?')} training images, evaluated on "
             f"{config.get('eval_images', '?')} {config.get('split', '')} images; clean-accuracy gap "
             f"{result.accuracy_gap:.2%} (tolerance {result.tolerance:g}). FGSM accuracy (exact worst-case L∞ accuracy "
             "in brackets): classified correctly clean and after the attack.")
    title = f"# Kurtotic vs Gaussian weights in a linear classifier ({config.get('data', '')}{classes})"
    lines = [title, "", intro, "",
             f"| model | clean | excess kurtosis | ‖W‖₁/‖W‖_F | ρ = mean\\|w\\|/rms(w) | zeros | {eps_header} |",
             "|---|---|---|---|---|---|" + "---|" * len(result.eps)]
    for name, m in (("Gaussian (L2)", g), ("kurtotic (L1)", k)):
        cells = " | ".join(f"{a:.1%} ({b:.1%})" for a, b in zip(m.fgsm_accuracy, m.exact_accuracy))
        lines.append(f"| {name}, λ {m.strength:g} | {m.clean_accuracy:.1%} | {m.excess_kurtosis:.2f} | "
                     f"{m.l1_over_l2:.1f} | {m.rho:.3f} | {m.zero_share:.1%} | {cells} |")
    reference = (f"ρ is √(2/π) = {math.sqrt(2 / math.pi):.3f} for Gaussian entries and 1/√2 = {1 / math.sqrt(2):.3f} "
                 "for Laplace ones.")
    lines += ["", reference, "", "## The L1 grid (the kurtotic model is the one closest in clean accuracy)", "",
              f"| λ₁ | steps | clean | excess kurtosis | ‖W‖₁/‖W‖_F | {eps_header} |",
              "|---|---|---|---|---|" + "---|" * len(result.eps)]
    for i, m in enumerate(result.candidates):
        mark = " **chosen**" if i == result.chosen else ""
        steps = f"{m.steps}" + ("" if m.converged else " (cap)")
        lines.append(f"| {m.strength:g}{mark} | {steps} | {m.clean_accuracy:.1%} | {m.excess_kurtosis:.2f} | "
                     f"{m.l1_over_l2:.1f} | " + " | ".join(f"{a:.1%}" for a in m.fgsm_accuracy) + " |")
    return "\n".join(lines) + "\n"


def accuracy_figure(result: KurtoticLinearResult) -> Figure:
    """Accuracy against eps for the pair: FGSM (solid) and the exact worst case (dashed)."""
    figure = Figure(figsize=(5.5, 3.8))
    axis = figure.subplots()
    for model, colour in ((result.gaussian, "tab:blue"), (result.kurtotic, "tab:red")):
        eps = [0.0, *result.eps]
        axis.plot(eps, [model.clean_accuracy, *model.fgsm_accuracy], "o-", color=colour, label=f"FGSM: {label(model)}")
        axis.plot(eps, [model.clean_accuracy, *model.exact_accuracy], "--", color=colour, alpha=0.7,
                  label="exact worst case")
    axis.set_xlabel("ε (L∞, pixels in [0, 1])")
    axis.set_ylabel("accuracy")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title(f"linear classifiers at equal clean accuracy (gap {result.accuracy_gap:.1%})", fontsize=9)
    return figure


def weights_figure(result: KurtoticLinearResult) -> Figure:
    """Histograms of the two weight vectors, each divided by its rms (log counts): the kurtotic one is peaked at
    zero with heavy tails."""
    figure = Figure(figsize=(5.5, 3.8))
    axis = figure.subplots()
    scaled = [m.weight.flatten() / m.weight.pow(2).mean().sqrt().clamp_min(1e-12)
              for m in (result.gaussian, result.kurtotic)]
    reach = max(float(w.abs().max()) for w in scaled) or 1.0
    bins = torch.linspace(-reach, reach, 82).numpy()
    for model, w, colour in zip((result.gaussian, result.kurtotic), scaled, ("tab:blue", "tab:red")):
        axis.hist(w.numpy(), bins=bins, histtype="step", color=colour, log=True, label=label(model))
    axis.set_xlabel("weight / rms(weight)")
    axis.set_ylabel("count")
    axis.legend(fontsize=7)
    return figure
