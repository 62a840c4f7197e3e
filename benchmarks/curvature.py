"""Top-k principal curvatures of the decision boundary (freqmaps.geometry): batched Lanczos over all images vs a
loop calling it image by image (the authors' per-image `eigs`), on the same boundary points and start vectors.

    python -m benchmarks.curvature [--model cifar10_resnet20] [--n 64] [--k 20] [--steps 60] [--h 0.05]
    python -m benchmarks.curvature --n 4 --k 4 --steps 8 --check-images 2 --out /tmp/curvature.json   (tiny)

The boundary points (L2 DeepFool + bisection) are found once, batched, outside the timing; both sides then run
the same finite-difference Hessian-vector products (step h) and Lanczos steps. Timed in float32, as the study
runs. Same values: in float32 the two differ on inner Ritz values (the difference quotient of a ReLU network's
gradients with a macroscopic step changes when rounding flips a unit near zero, batched and single-image
convolutions round differently, and Lanczos amplifies it), so the share agreeing to 1e-3 is printed; the
equality is asserted (relative 1e-6) in float64 on the first `--check-images` images (not timed: float64
convolutions on a CPU gain nothing from batching). Prints the share Lanczos reports converged (residual <= 1% of
the image's largest |κ|), `speedup: X`, and writes benchmarks/results/curvature.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import DEFAULT_MODEL, cifar10_root, cifar10_tensors, load_classifier, write_json
from freqmaps.geometry import PrincipalCurvatures, boundary_points, principal_curvatures


def both_ways(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              settings: dict) -> tuple[PrincipalCurvatures, torch.Tensor, float, float]:
    """The batched result, the looped curvatures (B, k), and the seconds of each, on shared boundary points."""
    boundary = boundary_points(model, x, y)
    start = time.perf_counter()
    batched = principal_curvatures(model, x, y, boundary=boundary, **settings)
    batched_seconds = time.perf_counter() - start
    start = time.perf_counter()
    looped = torch.cat([principal_curvatures(model, x[i:i + 1], y[i:i + 1], boundary=boundary[i:i + 1], seed=i,
                                             **settings).curvatures for i in range(len(x))])
    return batched, looped, batched_seconds, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="zoo model name or .ckpt path")
    parser.add_argument("--n", type=int, default=64, help="CIFAR-10 test images (seeded draw)")
    parser.add_argument("--k", type=int, default=20, help="principal curvatures per image")
    parser.add_argument("--steps", type=int, default=60, help="Lanczos steps")
    parser.add_argument("--h", type=float, default=0.05, help="finite-difference step (L2, pixels in [0, 1])")
    parser.add_argument("--check-images", type=int, default=8, help="images of the float64 equality check")
    parser.add_argument("--cifar-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y = cifar10_tensors(cifar10_root(args.cifar_root), "test", args.n)
    x, y = x.to(device), y.to(device)
    model = load_classifier(args.model).to(device).eval()
    settings = {"k": args.k, "steps": args.steps, "h": args.h, "method": "finite"}

    batched, looped, batched_seconds, loop_seconds = both_ways(model, x, y, settings)
    valid = batched.boundary.valid
    ours, theirs = batched.curvatures[valid], looped[valid]
    scale = float(ours.abs().max()) if valid.any() else 1.0
    agreeing = ((ours - theirs).abs() <= 1e-3 * scale).float().mean().item() if valid.any() else 1.0
    converged = batched.converged()[valid].float().mean().item() if valid.any() else 1.0

    m = args.check_images
    exact, exact_looped, _, _ = both_ways(model.double(), x[:m].double(), y[:m], settings)
    checked = exact.boundary.valid
    torch.testing.assert_close(exact.curvatures[checked], exact_looped[checked], rtol=1e-6,
                               atol=1e-6 * float(exact.curvatures[checked].abs().max()))
    difference = (exact.curvatures[checked] - exact_looped[checked]).abs().max().item() if checked.any() else 0.0

    speedup = loop_seconds / batched_seconds
    print(f"{int(valid.sum())}/{len(x)} images with a boundary point; top-{args.k} curvatures, {args.steps} Lanczos "
          f"steps, float32: batched {batched_seconds:.1f} s, per-image loop {loop_seconds:.1f} s; {agreeing:.1%} "
          f"agree to 1e-3 of the largest; {converged:.1%} converged; float64 on {int(checked.sum())} images: max "
          f"|difference| {difference:.1e}; mean profile {ours.sort(1, descending=True).values.mean(0).tolist()[:5]}")
    print(f"speedup: {speedup:.1f}")
    write_json("curvature", {"model": str(args.model), "images": args.n, "valid_images": int(valid.sum()),
                             "device": str(device), **settings, "batched_seconds": batched_seconds,
                             "loop_seconds": loop_seconds, "speedup": speedup, "share_agreeing_float32": agreeing,
                             "share_converged": converged, "float64_check_images": int(checked.sum()),
                             "float64_max_abs_difference": difference}, args.out)


if __name__ == "__main__":
    main()
