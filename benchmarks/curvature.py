"""Top-k principal curvatures of the decision boundary (freqmaps.geometry): batched Lanczos over all images vs a
loop calling it image by image (the authors' per-image `eigs`), on the same boundary points and start vectors.

    python -m benchmarks.curvature [--model cifar10_resnet20] [--n 64] [--k 20] [--steps 60] [--h 0.05]
    python -m benchmarks.curvature --n 4 --k 4 --steps 8 --out /tmp/curvature.json      (a tiny check)

The boundary points (L2 DeepFool + bisection) are found once, batched, outside the timing; both sides then run
the same finite-difference Hessian-vector products (step h) and Lanczos steps, and their curvatures are asserted
equal (relative 1e-3: batched and single-image convolutions round differently). Prints `speedup: X` and writes
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
    parser.add_argument("--cifar-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y = cifar10_tensors(cifar10_root(args.cifar_root), "test", args.n)
    x, y = x.to(device), y.to(device)
    model = load_classifier(args.model).to(device).eval()
    boundary = boundary_points(model, x, y)
    settings = {"k": args.k, "steps": args.steps, "h": args.h, "method": "finite"}

    start = time.perf_counter()
    batched = principal_curvatures(model, x, y, boundary=boundary, **settings).curvatures
    batched_seconds = time.perf_counter() - start
    start = time.perf_counter()
    looped = torch.cat([principal_curvatures(model, x[i:i + 1], y[i:i + 1], boundary=boundary[i:i + 1], seed=i,
                                             **settings).curvatures for i in range(len(x))])
    loop_seconds = time.perf_counter() - start

    valid = boundary.valid
    torch.testing.assert_close(batched[valid], looped[valid], rtol=1e-3, atol=1e-3 * float(batched[valid].abs().max()))
    difference = (batched[valid] - looped[valid]).abs().max().item() if valid.any() else 0.0
    speedup = loop_seconds / batched_seconds
    print(f"{int(valid.sum())}/{len(x)} images with a boundary point; top-{args.k} curvatures, {args.steps} Lanczos "
          f"steps: batched {batched_seconds:.1f} s, per-image loop {loop_seconds:.1f} s; max |difference| "
          f"{difference:.2e}; mean profile {batched[valid].sort(1, descending=True).values.mean(0).tolist()[:5]} ...")
    print(f"speedup: {speedup:.1f}")
    write_json("curvature", {"model": str(args.model), "images": args.n, "valid_images": int(valid.sum()),
                             "device": str(device), **settings, "batched_seconds": batched_seconds,
                             "loop_seconds": loop_seconds, "speedup": speedup, "max_abs_difference": difference},
               args.out)


if __name__ == "__main__":
    main()
