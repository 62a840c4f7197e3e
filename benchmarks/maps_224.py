"""The map solver at 224 px: ResNet-18 (the paper's Imagenette model), a handful of images, on CPU or a GPU.

    python -m benchmarks.maps_224 [--checkpoint PATH] [--root IMAGENETTE_FOLDER] [--n 8] [--steps 20]
                                  [--loop-n 2] [--batch-size 8] [--autocast] [--threads T] [--out PATH]

A map's cost is its steps times one step, so this times steps, not whole maps: every map runs exactly `--steps`
steps of the paper's rule at lam 0.1 (min_steps = max_steps), once by the paper's one-image loop
(torch.optim.Adam on one mask; `benchmarks.maps.loop_map`) and once by the batched solver. Prints the load
average, then
* the hardware limit: one forward + backward w.r.t. the input per image at batch 1 and at the working batch;
* the loop: ms per step, and that over one forward + backward at batch 1;
* the batched solver: ms per image-step, that over one forward + backward per image at the working batch, and
  the maps/s it makes at `--steps` steps a map; its maps against the loop's (same steps: the same maps);
* with --autocast, the batched solver under bfloat16 autocast as well.
Ends with `batched vs loop: X per step`. Writes benchmarks/results/maps_224.json.

Images: the `val` folder of an Imagenette-layout `--root` (resized to 224 x 224, the paper's preprocessing), or
without one CIFAR-10 test images upscaled to 224 (bicubic; a stand-in: only the cost is measured). Model: a
`train.py` checkpoint, or without one a randomly initialised ResNet-18 (the cost of a step does not depend on the
weights). Targets are the model's own predictions, so every map is a real essential map of its prediction.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import cifar10_root, cifar10_tensors, load_classifier, write_json
from benchmarks.maps import forward_backward_time, loop_map
from freqmaps.correlation import map_cosines
from freqmaps.maps import MapProblem, MapSettings, solve_maps
from freqmaps.models import create_model


def images_224(root: Path | None, n: int) -> tuple[torch.Tensor, str]:
    """n images (n, 3, 224, 224) in [0, 1] and where they came from."""
    if root is not None:
        from torchvision import transforms as T
        from torchvision.datasets import ImageFolder

        from freqmaps.sampling import seeded_indices, take

        dataset = ImageFolder(str(Path(root) / "val"), transform=T.Compose([T.Resize((224, 224)), T.ToTensor()]))
        x, _ = take(dataset, seeded_indices(len(dataset), n, 0))
        return x, f"{root}/val"
    x, _ = cifar10_tensors(cifar10_root(), "test", n)
    return F.interpolate(x, size=224, mode="bicubic", align_corners=False).clamp(0, 1), "CIFAR-10 test, upscaled"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="a train.py checkpoint (default: random ResNet-18)")
    parser.add_argument("--root", type=Path, default=None, help="an Imagenette-layout folder (uses val/)")
    parser.add_argument("--n", type=int, default=8, help="images the batched solver maps")
    parser.add_argument("--steps", type=int, default=20, help="steps every map runs")
    parser.add_argument("--loop-n", type=int, default=2, help="images the one-image loop maps")
    parser.add_argument("--batch-size", type=int, default=8, help="the batched solver's working batch")
    parser.add_argument("--autocast", action="store_true", help="also time the solver under bf16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = (load_classifier(args.checkpoint) if args.checkpoint else create_model("resnet18", 10, 3, 224)).eval()
    model = model.to(device).requires_grad_(False)
    x, source = images_224(args.root, args.n)
    x = x.to(device)
    with torch.no_grad():
        y = model(x).argmax(1)
    print(f"model {args.checkpoint or 'resnet18 (random init)'}  images {source}  device {device}  torch threads "
          f"{torch.get_num_threads()}  load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")

    B = min(args.batch_size, args.n)
    fb = {1: forward_backward_time(model, x[:1], y[:1]), B: forward_backward_time(model, x[:B], y[:B]) / B}
    print(f"one forward+backward w.r.t. the input at 224 px: {fb[1] * 1e3:.1f} ms at batch 1, {fb[B] * 1e3:.1f} ms "
          f"per image at batch {B}")

    rule = MapSettings(lam=0.1, min_steps=args.steps, max_steps=args.steps, batch_size=B)
    start = time.perf_counter()
    loop = [loop_map(model, x[i:i + 1], y[i:i + 1], rule) for i in range(args.loop_n)]
    loop_s = time.perf_counter() - start
    loop_ms = loop_s / sum(steps for _, steps in loop) * 1e3
    print(f"paper's loop: {loop_ms:.1f} ms/step ({loop_ms / (fb[1] * 1e3):.2f}x one forward+backward at batch 1)")

    solvers = {"batched": rule, **({"batched_autocast": replace(rule, autocast=True)} if args.autocast else {})}
    problem = MapProblem("essential", x, y, index=torch.arange(args.n))
    loop_maps = torch.stack([m for m, _ in loop]).cpu()
    results = {}
    for name, settings in solvers.items():
        start = time.perf_counter()
        (maps,) = solve_maps(model, [problem], settings, progress=False)
        seconds = time.perf_counter() - start
        image_steps = int(maps.steps.sum())
        ms = seconds / image_steps * 1e3
        cosine = map_cosines(maps.maps[:args.loop_n], loop_maps)
        results[name] = {"seconds": seconds, "maps": args.n, "image_steps": image_steps, "ms_per_image_step": ms,
                         "over_forward_backward": ms / (fb[B] * 1e3), "maps_per_s": args.n / seconds,
                         "versus_loop": loop_ms / ms, "cosine_to_loop_min": cosine.min().item()}
        print(f"{name}: {ms:.1f} ms per image-step ({ms / (fb[B] * 1e3):.2f}x one forward+backward per image at "
              f"batch {B}), {args.n / seconds:.3f} maps/s at {args.steps} steps a map; maps vs the loop's: min "
              f"cosine {cosine.min():.5f}")
    write_json("maps_224", {
        "model": args.checkpoint or "resnet18 random init", "images": source, "device": str(device),
        "torch_threads": torch.get_num_threads(), "steps_per_map": args.steps, "batch": B,
        "load_average_start": list(load_before), "load_average_end": list(os.getloadavg()),
        "forward_backward_ms_per_image": {"batch_1": fb[1] * 1e3, f"batch_{B}": fb[B] * 1e3},
        "loop": {"images": args.loop_n, "ms_per_step": loop_ms}, "solvers": results,
    }, args.out)
    for name, result in results.items():
        print(f"{name} vs loop: {result['versus_loop']:.2f}x per step")


if __name__ == "__main__":
    main()
