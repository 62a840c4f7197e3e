"""Essential maps per second: the batched solver (freqmaps.maps.essential_maps) versus a one-image-at-a-time
loop as in the paper's code (torch.optim.Adam on one mask, the same loss and stopping rule), same model, same
images (correctly classified CIFAR-10 test images), same run.

    python -m benchmarks.maps [--checkpoint ZOO_NAME|PATH] [--n 64] [--baseline-n 6] [--batch-size 64]
                              [--stability-n 24] [--threads T] [--max-steps 5000] [--out PATH]

Also reports
* the per-step cost ratio: time per image-step of the solver divided by the time per image of one forward +
  backward (gradient w.r.t. the input, parameters frozen, as the solver needs) of the classifier on a batch of
  the same size; measured on a full working batch ("steady") and over the whole solve (including the tail,
  when the queue is empty and the batch shrinks);
* map stability: the mean cosine between the maps of the same images from two batched solves that differ only
  in batch composition (other order, other batch size), and between the batched maps and the loop's maps.
Ends with `speedup: X` (batched maps/s over loop maps/s). Writes benchmarks/results/maps.json.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import DEFAULT_MODEL, best_time, cifar10_root, cifar10_tensors, load_classifier, write_json
from freqmaps.maps import MapSettings, essential_maps


def loop_map(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: MapSettings) -> tuple[torch.Tensor, int]:
    """The baseline: one image's essential map as the paper's code computes it. x: (1, C, H, W), y: (1,).
    Returns the fftshift-ed map (C, H, W) and the steps taken."""
    mask = torch.ones_like(x, requires_grad=True)
    opt = torch.optim.Adam([mask], lr=s.lr, betas=s.betas, eps=s.eps)
    spectrum = torch.fft.fft2(x)
    losses = []
    for step in range(1, s.max_steps + 1):
        loss = F.cross_entropy(model(torch.fft.ifft2(mask * spectrum).real), y) + s.lam * mask.abs().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            mask.clamp_(0, 1)
        losses.append(loss.item())
        recent = losses[-s.window:]
        if step > s.min_steps and abs(losses[-1] - sum(recent) / len(recent)) < s.tol:
            break
    return torch.fft.fftshift(mask.detach()[0], dim=(-2, -1)), step


def forward_backward_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wrt_input: bool) -> float:
    """Best time of one forward + backward of the classifier on x: w.r.t. the input (parameters frozen), or
    w.r.t. the parameters (a training step's gradient)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(not wrt_input)

    def run():
        inp = x.clone().requires_grad_(wrt_input)
        loss = F.cross_entropy(model(inp), y)
        torch.autograd.grad(loss, [inp] if wrt_input else [p for p, _ in flags])

    try:
        return best_time(run, repeats=5)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row cosine of two (n, ...) map sets (1 where both maps are zero)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    both_zero = (a.norm(dim=1) == 0) & (b.norm(dim=1) == 0)
    return torch.where(both_zero, 1.0, F.cosine_similarity(a, b, dim=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=DEFAULT_MODEL, help="a zoo model name or a .ckpt path")
    parser.add_argument("--n", type=int, default=64, help="images the batched solver maps")
    parser.add_argument("--baseline-n", type=int, default=6, help="images the one-at-a-time loop maps")
    parser.add_argument("--batch-size", type=int, default=64, help="the batched solver's working batch")
    parser.add_argument("--stability-n", type=int, default=24, help="images solved again in another batch")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the paper's 5000 (smoke runs only)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    settings = MapSettings(batch_size=args.batch_size)
    if args.max_steps is not None:
        settings = MapSettings(batch_size=args.batch_size, max_steps=args.max_steps,
                               min_steps=min(settings.min_steps, args.max_steps))
    load_before = os.getloadavg()[0]

    model = load_classifier(args.checkpoint).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    pool = max(args.n, args.baseline_n)
    x, y = cifar10_tensors(cifar10_root(), "test", 2 * pool + 64)
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x, y = x[correct][:pool], y[correct][:pool]
    if len(x) < pool:
        raise SystemExit(f"only {len(x)} of {2 * pool + 64} test images are classified correctly; need {pool}")
    print(f"checkpoint {args.checkpoint}  device {device}  torch threads {torch.get_num_threads()}  "
          f"load average {load_before:.2f}  clean accuracy on the drawn images {correct.float().mean():.3f}")

    # One forward + backward on a batch of the working-batch size: the hardware reference.
    B = min(args.batch_size, args.n)
    fb_input = forward_backward_time(model, x[:B], y[:B], wrt_input=True)
    fb_params = forward_backward_time(model, x[:B], y[:B], wrt_input=False)
    # Steady state: a full working batch for a fixed number of steps (no image stops early).
    steady_steps = 20
    steady = MapSettings(batch_size=B, min_steps=steady_steps, max_steps=steady_steps)
    steady_s = best_time(lambda: essential_maps(model, x[:B], y[:B], steady, progress=False), repeats=2)
    steady_step = steady_s / (steady_steps * B)
    print(f"one forward+backward, batch {B}: {fb_input / B * 1e3:.3f} ms/image w.r.t. the input, "
          f"{fb_params / B * 1e3:.3f} ms/image w.r.t. the parameters; solver on a full batch: "
          f"{steady_step * 1e3:.3f} ms per image-step -> ratio {steady_step / (fb_input / B):.2f}")

    # Baseline: the paper's one-image-at-a-time loop.
    baseline_maps, baseline_steps = [], []
    start = time.perf_counter()
    for i in range(args.baseline_n):
        m, steps = loop_map(model, x[i:i + 1], y[i:i + 1], settings)
        baseline_maps.append(m)
        baseline_steps.append(steps)
    loop_s = time.perf_counter() - start
    loop_rate = args.baseline_n / loop_s
    print(f"one-at-a-time loop: {args.baseline_n} maps in {loop_s:.1f} s = {loop_rate:.3f} maps/s, "
          f"{sum(baseline_steps)} steps ({loop_s / sum(baseline_steps) * 1e3:.2f} ms/step), steps {baseline_steps}")

    # The batched solver.
    start = time.perf_counter()
    batched = essential_maps(model, x[:args.n], y[:args.n], settings, progress=False)
    batched_s = time.perf_counter() - start
    batched_rate = args.n / batched_s
    total_steps = int(batched.steps.sum())
    per_step = batched_s / total_steps
    print(f"batched solver    : {args.n} maps in {batched_s:.1f} s = {batched_rate:.3f} maps/s, {total_steps} "
          f"image-steps ({per_step * 1e3:.3f} ms/image-step; steps min {int(batched.steps.min())} median "
          f"{int(batched.steps.median())} max {int(batched.steps.max())}), converged "
          f"{int(batched.converged.sum())}/{args.n}, kept {int(batched.kept.sum())}/{args.n}")

    # Stability: the same images in another batch composition (reversed order, half the working batch).
    k = min(args.stability_n, args.n)
    order = torch.arange(k - 1, -1, -1)
    again = essential_maps(model, x[order], y[order], settings, batch_size=max(1, B // 2), progress=False)
    stability = cosines(batched.maps[order], again.maps)
    versus_loop = cosines(batched.maps[:args.baseline_n], torch.stack(baseline_maps).cpu())
    same_steps = sum(int(a) == b for a, b in zip(batched.steps[:args.baseline_n], baseline_steps))
    print(f"map stability: mean cosine {stability.mean():.4f} (min {stability.min():.4f}) over {k} images solved "
          f"again in reverse order with batch {max(1, B // 2)}; batched vs loop: mean cosine "
          f"{versus_loop.mean():.4f} (min {versus_loop.min():.4f}), same step count for {same_steps}/"
          f"{args.baseline_n}")

    speedup = batched_rate / loop_rate
    ratio_whole = per_step / (fb_input / B)
    print(f"per-step cost / forward+backward: {steady_step / (fb_input / B):.2f} steady, {ratio_whole:.2f} over "
          f"the whole solve")
    write_json("maps", {
        "checkpoint": str(args.checkpoint), "device": str(device), "settings": asdict(settings),
        "baseline": {"images": args.baseline_n, "seconds": loop_s, "maps_per_s": loop_rate,
                     "steps": baseline_steps, "ms_per_step": loop_s / sum(baseline_steps) * 1e3},
        "batched": {"images": args.n, "batch_size": args.batch_size, "seconds": batched_s,
                    "maps_per_s": batched_rate, "image_steps": total_steps, "ms_per_image_step": per_step * 1e3,
                    "steps_min_median_max": [int(batched.steps.min()), int(batched.steps.median()),
                                             int(batched.steps.max())],
                    "converged": int(batched.converged.sum()), "kept": int(batched.kept.sum())},
        "speedup": speedup,
        "forward_backward_ms_per_image": {"batch": B, "wrt_input": fb_input / B * 1e3,
                                          "wrt_parameters": fb_params / B * 1e3},
        "per_step_cost_ratio": {"steady": steady_step / (fb_input / B), "whole_solve": ratio_whole,
                                "steady_ms_per_image_step": steady_step * 1e3},
        "stability": {"images": k, "other_batch_size": max(1, B // 2), "mean_cosine": stability.mean().item(),
                      "min_cosine": stability.min().item()},
        "batched_vs_loop": {"images": args.baseline_n, "mean_cosine": versus_loop.mean().item(),
                            "min_cosine": versus_loop.min().item(), "same_step_count": same_steps},
        "load_average_before_after": [load_before, os.getloadavg()[0]],
    }, args.out)
    print(f"speedup: {speedup:.1f}")


if __name__ == "__main__":
    main()
