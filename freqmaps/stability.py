"""Map stability: do two models trained alike (other seeds) need the same frequencies for the same image?

For every image both models classify correctly, the essential map of model A is compared with model B's
(per-image cosine, "between seeds") and with model A's own map solved again from a start jittered by up to
`jitter` below 1 ("within seed": how much of a map is the solver's path rather than the model). Maps of
models that share a frequency bias agree between seeds about as well as within a seed.

    python -m freqmaps.stability MODEL_A MODEL_B [--images 256] [--solver paper|fast] [--data-root DIR]
                                 [--jitter 0.01] [--seed 0] [--out stability.json] [--figure stability.png]

MODEL_A / MODEL_B: zoo names (`python -m freqmaps.zoo list`); both must use the same test data.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

from freqmaps.class_maps import predict
from freqmaps.correlation import map_cosines
from freqmaps.errors import UserInputError, exit_on_user_error
from freqmaps.maps import MapProblem, MapSettings, solve_maps
from freqmaps.sampling import seeded_indices, seeded_rng, take


@dataclass
class Stability:
    """index: (n,) the images both models classify correctly; between: (n,) cosine of model A's and model B's
    essential maps; within: (n,) cosine of model A's maps from ones and from the jittered start; kept: (n, 3)
    bool, each of the three maps kept (A, B, A jittered); settings: the MapSettings as a dict."""

    index: torch.Tensor
    between: torch.Tensor
    within: torch.Tensor
    kept: torch.Tensor
    settings: dict

    def scalars(self) -> dict[str, float]:
        """Median, 10th percentile and mean of both cosines, over the images all three maps of were kept."""
        rows = self.kept.all(1)
        out: dict[str, float] = {"images": len(self.index), "images_kept": int(rows.sum())}
        for name in ("between", "within"):
            values = getattr(self, name)[rows]
            out |= {f"{name}_median": values.median().item(), f"{name}_p10": values.quantile(0.1).item(),
                    f"{name}_mean": values.mean().item()} if len(values) else {}
        return out


def map_stability(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  settings: MapSettings | None = None, *, jitter: float = 0.01, seed: int = 0,
                  progress: bool = True) -> Stability:
    """Essential maps of x: (n, C, H, W) in [0, 1] with labels y: (n,) under both models (same settings),
    and model A's again from ones minus U(0, jitter) noise (seeded); see the module docstring."""
    if not 0 < jitter < 1:
        raise UserInputError(f"jitter must be in (0, 1), got {jitter}")
    settings = settings or MapSettings()
    both = (predict(model_a, x, settings.batch_size) == y) & (predict(model_b, x, settings.batch_size) == y)
    x, y, index = x[both], y[both], both.nonzero().squeeze(1).cpu()
    with seeded_rng(x.device, seed):
        start = 1 - jitter * torch.rand(x.shape, device=x.device, dtype=x.dtype)
    a, again = solve_maps(model_a, [MapProblem("essential", x, y, index=index),
                                    MapProblem("essential", x, y, index=index, init=start)], settings,
                          progress=progress)
    (b,) = solve_maps(model_b, [MapProblem("essential", x, y, index=index)], settings, progress=progress)
    return Stability(index, map_cosines(a.maps, b.maps), map_cosines(a.maps, again.maps),
                     torch.stack([a.kept, b.kept, again.kept], 1), asdict(settings))


def stability_figure(result: Stability, names: tuple[str, str] = ("A", "B")) -> Figure:
    """The cumulative distribution of the per-image cosines over the images all three maps of were kept: between
    the two models (`names`) and within model A (its maps solved again from the jittered start). A between
    curve far left of the within curve: the models need other frequencies, beyond the solver's own spread."""
    rows = result.kept.all(1)
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.subplots()
    for label, values in ((f"between {names[0]} and {names[1]}", result.between[rows]),
                          (f"within {names[0]} (jittered start)", result.within[rows])):
        ordered = values.sort().values
        ax.step(ordered.numpy(), torch.arange(1, len(ordered) + 1).div(max(len(ordered), 1)).numpy(), where="post",
                label=f"{label}: median {ordered.median().item():.3f}" if len(ordered) else label)
    ax.set_xlabel("per-image cosine of essential maps")
    ax.set_ylabel("share of images")
    ax.set_title(f"{int(rows.sum())} images, all three maps kept", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def _test_images(name: str, data_root: str | None, images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from freqmaps.zoo import entry, load_test_split

    dataset = load_test_split(entry(name), data_root)
    return take(dataset, seeded_indices(len(dataset), images, seed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_a")
    parser.add_argument("model_b")
    parser.add_argument("--images", type=int, default=256, help="test images drawn with --seed")
    parser.add_argument("--solver", choices=("paper", "fast"), default="paper")
    parser.add_argument("--batch-size", type=int, default=256, help="the solver's working batch")
    parser.add_argument("--jitter", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the scalars and per-image cosines as JSON")
    parser.add_argument("--figure", type=Path, default=None, help="save the cosines' distributions as a PNG")
    args = parser.parse_args(argv)
    exit_on_user_error(lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    from freqmaps.zoo import load_model

    a, b = load_model(args.model_a), load_model(args.model_b)
    x, y = _test_images(args.model_a, args.data_root, args.images, args.seed)
    start = time.perf_counter()
    result = map_stability(a, b, x, y, MapSettings(solver=args.solver, batch_size=args.batch_size),
                           jitter=args.jitter, seed=args.seed)
    scalars = {**result.scalars(), "seconds": time.perf_counter() - start}
    print(json.dumps(scalars, indent=1))
    if args.out:
        plain = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
        args.out.write_text(json.dumps({
            "models": [args.model_a, args.model_b], "args": plain,
            "scalars": scalars, "index": result.index.tolist(), "between": result.between.tolist(),
            "within": result.within.tolist(), "kept": result.kept.tolist(), "settings": result.settings,
        }, indent=1))
    if args.figure:
        stability_figure(result, (args.model_a, args.model_b)).savefig(args.figure, dpi=120)


if __name__ == "__main__":
    main()
