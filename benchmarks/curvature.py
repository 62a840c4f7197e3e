"""Top-k principal curvatures of the decision boundary (freqmaps.geometry): batched Lanczos over all images vs a
loop calling it image by image (the authors' per-image `eigs`), on the same boundary points and start vectors.

    python -m benchmarks.curvature [--model cifar10_resnet20] [--n 64] [--k 20] [--steps 60] [--h 0.05]
    python -m benchmarks.curvature --n 4 --k 4 --steps 8 --out /tmp/curvature.json      (a tiny check)

The boundary points (L2 DeepFool + bisection) are found once, batched, outside the timing; both sides then run
the same finite-difference Hessian-vector products (step h) and Lanczos steps. In float64 (the default) their
curvatures are asserted equal (relative 1e-6). In float32 (`--dtype float32`) they are not asserted: the
difference quotient of a ReLU network's gradients with a macroscopic step changes when rounding flips a unit
near zero, batched and single-image convolutions round differently, and Lanczos amplifies such differences into
the inner Ritz values; the share agreeing to 1e-3 is printed instead. Prints the share of curvatures Lanczos
reports converged (residual <= 1% of the image's largest), `speedup: X`, and writes
benchmarks/results/curvature.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import DEFAULT_MODEL, cifar10_root, cifar10_tensors, load_classifier, write_json
from freqmaps.geometry import boundary_points, principal_curvatures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="zoo model name or .ckpt path")
    parser.add_argument("--n", type=int, default=64, help="CIFAR-10 test images (seeded draw)")
    parser.add_argument("--k", type=int, default=20, help="principal curvatures per image")
    parser.add_argument("--steps", type=int, default=60, help="Lanczos steps")
    parser.add_argument("--h", type=float, default=0.05, help="finite-difference step (L2, pixels in [0, 1])")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="model and images (float64: both sides must agree; see the module docstring)")
    parser.add_argument("--cifar-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device, dtype = torch.device("cuda" if torch.cuda.is_available() else "cpu"), getattr(torch, args.dtype)
    x, y = cifar10_tensors(cifar10_root(args.cifar_root), "test", args.n)
    x, y = x.to(device, dtype), y.to(device)
    model = load_classifier(args.model).to(device, dtype).eval()
    boundary = boundary_points(model, x, y)
    settings = {"k": args.k, "steps": args.steps, "h": args.h, "method": "finite"}

    start = time.perf_counter()
    batched = principal_curvatures(model, x, y, boundary=boundary, **settings)
    batched_seconds = time.perf_counter() - start
    start = time.perf_counter()
    looped = torch.cat([principal_curvatures(model, x[i:i + 1], y[i:i + 1], boundary=boundary[i:i + 1], seed=i,
                                             **settings).curvatures for i in range(len(x))])
    loop_seconds = time.perf_counter() - start

    valid = boundary.valid
    ours, theirs = batched.curvatures[valid], looped[valid]
    scale = float(ours.abs().max()) if valid.any() else 1.0
    if args.dtype == "float64":
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6 * scale)
    difference = (ours - theirs).abs().max().item() if valid.any() else 0.0
    agreeing = ((ours - theirs).abs() <= 1e-3 * scale).float().mean().item() if valid.any() else 1.0
    converged = batched.converged()[valid].float().mean().item() if valid.any() else 1.0
    speedup = loop_seconds / batched_seconds
    print(f"{int(valid.sum())}/{len(x)} images with a boundary point; top-{args.k} curvatures, {args.steps} Lanczos "
          f"steps, {args.dtype}: batched {batched_seconds:.1f} s, per-image loop {loop_seconds:.1f} s; max "
          f"|difference| {difference:.2e}, {agreeing:.1%} agree to 1e-3 of the largest; {converged:.1%} converged; "
          f"mean profile {ours.sort(1, descending=True).values.mean(0).tolist()[:5]} ...")
    print(f"speedup: {speedup:.1f}")
    write_json("curvature", {"model": str(args.model), "images": args.n, "valid_images": int(valid.sum()),
                             "device": str(device), "dtype": args.dtype, **settings,
                             "batched_seconds": batched_seconds, "loop_seconds": loop_seconds, "speedup": speedup,
                             "max_abs_difference": difference, "share_agreeing": agreeing,
                             "share_converged": converged}, args.out)


if __name__ == "__main__":
    main()
