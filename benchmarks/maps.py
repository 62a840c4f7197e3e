"""The map solvers side by side, in one run: the paper's rule (batched), the fast rule (batched; also under
bfloat16 autocast with --autocast) and the paper's own one-image-at-a-time loop, on the same model and the same
correctly classified CIFAR-10 test images.

    python -m benchmarks.maps [--checkpoint ZOO_NAME|PATH] [--n 256] [--baseline-n 4] [--batch-size 256]
                              [--attack-steps 100] [--autocast] [--threads T] [--out PATH]

Prints the load average at the start, then
* the hardware limit: one forward + backward (gradient w.r.t. the input, parameters frozen) per image at batch
  1 and at the working batch;
* the loop baseline (torch.optim.Adam on one mask, the paper's loss and stopping rule): ms per step, to set
  beside the batch-1 forward + backward, and its maps against the batched paper rule's;
* FMN L-inf (the paper's attack) on the n images, then the essential maps of all n and the adversarial maps
  of the fooled ones, solved together by each rule: image-steps, wall time, maps/s;
* the fast rule judged by its maps against the paper rule's: per-image cosine (median, 10th percentile, over
  essential and adversarial maps), kept agreement, sparsity (mean map value, share of entries > 0.5);
* IdCor (p), SVCCA, CKA and mean cosine between the kept essential and adversarial maps under each rule, with
  the paper rule's 95% bootstrap interval of IdCor over pairs (its spread from the sample of images).
Ends with `fast vs paper: X fewer image-steps, Y less wall time`. Writes benchmarks/results/maps.json.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import DEFAULT_MODEL, best_time, cifar10_root, cifar10_tensors, load_classifier, write_json
from freqmaps.attacks import FMN, attack_in_chunks
from freqmaps.bootstrap import bootstrap_idcor
from freqmaps.correlation import correlate_maps, map_cosines, pool_and_flatten
from freqmaps.errors import UserInputError
from freqmaps.maps import FrequencyMaps, MapProblem, MapSettings, solve_maps


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


def forward_backward_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Best time of one forward + backward of the classifier on x w.r.t. the input (parameters frozen)."""
    def run():
        inp = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(inp), y), [inp])

    return best_time(run, repeats=5)


def timed_solve(model: nn.Module, problems: list[MapProblem], settings: MapSettings) -> tuple[list[FrequencyMaps], float]:
    start = time.perf_counter()
    solved = solve_maps(model, problems, settings, progress=False)
    return solved, time.perf_counter() - start


def correlation(solved: list[FrequencyMaps]) -> dict:
    """IdCor, SVCCA, CKA and mean cosine of the kept essential vs adversarial maps (`correlate_maps`, 100
    permutations), and the pooled, flattened pairs (A, E) for the bootstrap."""
    essential, adversarial = (maps.kept_only() for maps in solved)
    result = correlate_maps(essential.maps, adversarial.maps, essential.index, adversarial.index)
    rows = {kind: maps.index.argsort()[torch.searchsorted(maps.index.sort().values, result.index)]
            for kind, maps in (("e", essential), ("a", adversarial))}
    pairs = (pool_and_flatten(adversarial.maps[rows["a"]]), pool_and_flatten(essential.maps[rows["e"]]))
    return {"scalars": result.scalars(), "pairs": pairs}


def agreement(paper: list[FrequencyMaps], other: list[FrequencyMaps]) -> dict:
    """`other`'s maps judged against the paper rule's, essential and adversarial maps together."""
    cos = torch.cat([map_cosines(o.maps, p.maps) for o, p in zip(other, paper)])
    kept = torch.cat([o.kept == p.kept for o, p in zip(other, paper)])
    maps = {name: torch.cat([m.maps.flatten(1) for m in solved]) for name, solved in (("paper", paper),
                                                                                      ("other", other))}
    return {"cosine_median": cos.median().item(), "cosine_p10": cos.quantile(0.1).item(),
            "cosine_min": cos.min().item(), "kept_agreement": kept.float().mean().item(),
            "mean_map_value": maps["other"].mean().item(), "paper_mean_map_value": maps["paper"].mean().item(),
            "active_share": (maps["other"] > 0.5).float().mean().item(),
            "paper_active_share": (maps["paper"] > 0.5).float().mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=DEFAULT_MODEL, help="a zoo model name or a .ckpt path")
    parser.add_argument("--n", type=int, default=256, help="clean images (all classified correctly)")
    parser.add_argument("--baseline-n", type=int, default=4, help="images the one-at-a-time loop maps")
    parser.add_argument("--batch-size", type=int, default=256, help="the batched solvers' working batch")
    parser.add_argument("--attack-steps", type=int, default=100, help="FMN steps (the paper's: 100)")
    parser.add_argument("--autocast", action="store_true", help="also time the fast rule under bf16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    paper_rule = MapSettings(batch_size=args.batch_size)
    rules = {"paper": paper_rule, "fast": replace(paper_rule, solver="fast")}
    if args.autocast:
        rules["fast_autocast"] = replace(rules["fast"], autocast=True)

    model = load_classifier(args.checkpoint).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = cifar10_tensors(cifar10_root(), "test", 2 * args.n + 64)
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x, y = x[correct][:args.n], y[correct][:args.n]
    if len(x) < args.n:
        raise SystemExit(f"only {len(x)} of {2 * args.n + 64} test images are classified correctly; need {args.n}")
    print(f"checkpoint {args.checkpoint}  device {device}  torch threads {torch.get_num_threads()}  load average "
          f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} (1, 5, 15 min)  clean accuracy on the "
          f"drawn images {correct.float().mean():.3f}")

    B = min(args.batch_size, args.n)
    fb = {1: forward_backward_time(model, x[:1], y[:1]), B: forward_backward_time(model, x[:B], y[:B]) / B}
    print(f"one forward+backward w.r.t. the input: {fb[1] * 1e3:.2f} ms at batch 1, {fb[B] * 1e3:.3f} ms per "
          f"image at batch {B}")

    start = time.perf_counter()
    loop = [loop_map(model, x[i:i + 1], y[i:i + 1], paper_rule) for i in range(args.baseline_n)]
    loop_s = time.perf_counter() - start
    loop_steps = [steps for _, steps in loop]
    loop_ms = loop_s / sum(loop_steps) * 1e3
    print(f"paper's loop: {args.baseline_n} maps in {loop_s:.1f} s = {args.baseline_n / loop_s:.3f} maps/s, "
          f"{loop_ms:.2f} ms/step ({loop_ms / (fb[1] * 1e3):.2f}x one forward+backward at batch 1), steps "
          f"{loop_steps}")

    start = time.perf_counter()
    x_adv = attack_in_chunks(FMN(norm="linf", steps=args.attack_steps), model, x, y, 256)
    with torch.no_grad():
        y_adv = model(x_adv).argmax(1)
    fooled = y_adv != y
    print(f"FMN L-inf ({args.attack_steps} steps): {int(fooled.sum())}/{args.n} fooled in "
          f"{time.perf_counter() - start:.1f} s")
    index = torch.arange(args.n)
    problems = [MapProblem("essential", x, y, index=index),
                MapProblem("adversarial", x_adv[fooled], y_adv[fooled], labels=y[fooled], index=index[fooled.cpu()])]

    results, solved_by = {}, {}
    for name, rule in rules.items():
        solved, seconds = timed_solve(model, problems, rule)
        solved_by[name] = solved
        steps = torch.cat([maps.steps for maps in solved])
        corr = correlation(solved)
        results[name] = {"settings": asdict(rule), "seconds": seconds, "maps": len(steps),
                         "maps_per_s": len(steps) / seconds, "image_steps": int(steps.sum()),
                         "ms_per_image_step": seconds / int(steps.sum()) * 1e3,
                         "steps_min_median_max": [int(steps.min()), int(steps.median()), int(steps.max())],
                         "kept": [int(maps.kept.sum()) for maps in solved], "correlation": corr["scalars"]}
        if name == "paper":
            try:
                interval = bootstrap_idcor(*corr["pairs"], resamples=200, seed=0)
                results[name]["idcor_interval_95"] = [interval.low, interval.high]
            except UserInputError as error:  # too few distinct pairs in some resample (a small --n)
                print(f"no bootstrap interval: {error}")
                results[name]["idcor_interval_95"] = [math.nan, math.nan]
        else:
            results[name]["versus_paper"] = agreement(solved_by["paper"], solved)
        c = corr["scalars"]
        print(f"{name:13s}: {len(steps)} maps in {seconds:.1f} s = {len(steps) / seconds:.3f} maps/s, "
              f"{int(steps.sum())} image-steps ({results[name]['ms_per_image_step']:.3f} ms each; steps min "
              f"{int(steps.min())} median {int(steps.median())} max {int(steps.max())}); kept essential "
              f"{results[name]['kept'][0]} adversarial {results[name]['kept'][1]}; pairs {c['n_pairs']}, IdCor "
              f"{c['idcor']:.3f} (p {c['idcor_p']:.2f}), SVCCA {c['svcca']:.3f}, CKA {c['cka']:.3f}, cosine "
              f"{c['cosine_mean']:.3f}")
    low, high = results["paper"]["idcor_interval_95"]
    print(f"paper rule IdCor 95% bootstrap interval over pairs: [{low:.3f}, {high:.3f}]")
    for name in rules:
        if name == "paper":
            continue
        v = results[name]["versus_paper"]
        inside = low <= results[name]["correlation"]["idcor"] <= high
        results[name]["idcor_inside_paper_interval"] = inside
        results[name]["image_step_ratio"] = results["paper"]["image_steps"] / results[name]["image_steps"]
        results[name]["wall_ratio"] = results["paper"]["seconds"] / results[name]["seconds"]
        print(f"{name} vs paper: per-image cosine median {v['cosine_median']:.4f}, 10th percentile "
              f"{v['cosine_p10']:.4f}, min {v['cosine_min']:.4f}; kept agreement {v['kept_agreement']:.3f}; mean "
              f"map value {v['mean_map_value']:.5f} vs {v['paper_mean_map_value']:.5f}; IdCor inside the paper "
              f"rule's interval: {inside}")

    paper_loop = torch.stack([m for m, _ in loop]).cpu()
    versus_loop = map_cosines(solved_by["paper"][0].maps[:args.baseline_n], paper_loop)
    same_steps = sum(int(a) == b for a, b in zip(solved_by["paper"][0].steps[:args.baseline_n], loop_steps))
    print(f"batched paper rule vs the loop: mean cosine {versus_loop.mean():.4f}, same step count "
          f"{same_steps}/{args.baseline_n}; batched paper rule {results['paper']['maps_per_s'] / (args.baseline_n / loop_s):.1f}x "
          f"the loop's maps/s")
    write_json("maps", {
        "checkpoint": str(args.checkpoint), "device": str(device), "images": args.n,
        "load_average_start": list(load_before), "load_average_end": list(os.getloadavg()),
        "forward_backward_ms_per_image": {"batch_1": fb[1] * 1e3, f"batch_{B}": fb[B] * 1e3},
        "loop": {"images": args.baseline_n, "seconds": loop_s, "maps_per_s": args.baseline_n / loop_s,
                 "steps": loop_steps, "ms_per_step": loop_ms, "versus_batched_paper_mean_cosine":
                 versus_loop.mean().item(), "same_step_count": same_steps},
        "attack": {"name": "FMN", "norm": "linf", "steps": args.attack_steps, "fooled": int(fooled.sum())},
        "rules": results,
    }, args.out)
    for name in rules:
        if name != "paper":
            print(f"{name} vs paper: {results[name]['image_step_ratio']:.1f}x fewer image-steps, "
                  f"{results[name]['wall_ratio']:.1f}x less wall time")


if __name__ == "__main__":
    main()
