"""The fragility sweep (nodal dropout of every filter of a layer under FGSM over an eps grid) batched over filters,
against the straightforward per-filter loop: a hook zeroing channel k, then one FGSM attack per eps. Both must give
the same accuracies; prints `speedup: X` and writes benchmarks/results/fragility.json.

    python -m benchmarks.fragility [--model cifar10_resnet20] [--images 256] [--eps 1 2 4 8] [--repeats 1]

Default: the zoo's CIFAR-10 ResNet-20, its first convolution (16 filters), 256 seeded test images, eps k/255. The
batched sweep runs in both of its layouts: all K + 1 networks in one replicated pass (filters_per_pass None) and
one network per pass (filters_per_pass 1; the FGSM gradient still shared over the eps grid); `speedup` is the
faster layout's against the loop (the one to configure on the machine), the other's is printed beside it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import best_time, cifar10_root, cifar10_tensors, load_classifier, write_json
from freqmaps.attacks import FGSM
from freqmaps.fragility import conv_layer, fragility


def per_filter_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float],
                    layer: str | None, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) clean and (K, E) FGSM accuracies, one filter at a time: a hook zeros channel k, FGSM(eps) per eps."""
    _, conv = conv_layer(model, layer)
    clean, adversarial = torch.zeros(conv.out_channels), torch.zeros(conv.out_channels, len(eps))
    for k in range(conv.out_channels):
        keep = (torch.arange(conv.out_channels, device=x.device) != k).to(x.dtype)[:, None, None]
        handle = conv.register_forward_hook(lambda module, inputs, out: out * keep)
        try:
            for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
                with torch.no_grad():
                    clean[k] += (model(xb).argmax(1) == yb).sum().cpu()
                for e, radius in enumerate(eps):
                    x_adv = FGSM(radius, channels_last=False)(model, xb, yb)
                    with torch.no_grad():
                        adversarial[k, e] += (model(x_adv).argmax(1) == yb).sum().cpu()
        finally:
            handle.remove()
    return clean / len(x), adversarial / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="cifar10_resnet20", help="zoo name or .ckpt (CIFAR-10)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--eps", type=float, nargs="+", default=[1, 2, 4, 8], help="in units of 1/255")
    parser.add_argument("--layer", default=None, help="convolution name (default: the first)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs each (best kept), after a warm-up")
    parser.add_argument("--cifar-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_classifier(args.model).to(device).eval()
    x, y = cifar10_tensors(cifar10_root(args.cifar_root), "test", args.images)
    x, y = x.to(device), y.to(device)
    eps = [e / 255 for e in args.eps]

    def batched():
        return fragility(model, x, y, eps, args.layer, args.batch_size, progress=False)

    def batched_one_filter_per_pass():
        return fragility(model, x, y, eps, args.layer, args.batch_size, filters_per_pass=1, progress=False)

    result = batched()
    clean, adversarial = per_filter_loop(model, x, y, eps, args.layer, args.batch_size)
    # equal up to a sign flip of an exactly-zero gradient entry between batch layouts: at most one image a cell
    assert (result.clean - clean).abs().max() <= 1 / len(x) + 1e-6, "batched and looped clean accuracies differ"
    assert (result.adversarial - adversarial).abs().max() <= 1 / len(x) + 1e-6, "batched and looped FGSM differ"
    identical = float((result.adversarial == adversarial).float().mean())
    seconds = {"batched": best_time(batched, args.repeats),
               "one_filter_per_pass": best_time(batched_one_filter_per_pass, args.repeats),
               "per_filter_loop": best_time(lambda: per_filter_loop(model, x, y, eps, args.layer, args.batch_size),
                                            args.repeats)}
    ratios = {layout: seconds["per_filter_loop"] / seconds[layout] for layout in ("batched", "one_filter_per_pass")}
    fastest = max(ratios, key=ratios.get)  # the layout to configure (filters_per_pass) on this machine
    speedup = ratios[fastest]
    print(f"{result.layer}: {len(result.fragility)} filters, {len(x)} images, eps {args.eps}/255")
    print(f"per-filter loop {seconds['per_filter_loop']:.2f} s, batched {seconds['batched']:.2f} s, one filter per "
          f"pass {seconds['one_filter_per_pass']:.2f} s; identical cells {identical:.3f}")
    print(f"speedup: {speedup:.2f} ({fastest.replace('_', ' ')}; the other layout {min(ratios.values()):.2f}x)")
    write_json("fragility", {"model": args.model, "layer": result.layer, "filters": len(result.fragility),
                             "images": len(x), "eps": eps, "device": str(device), "seconds": seconds,
                             "speedup": speedup, "fastest_layout": fastest, "speedups": ratios,
                             "identical_cells": identical,
                             "fragility": result.fragility.tolist(), "ranking": result.ranking.tolist(),
                             "spearman": result.spearman.tolist()}, args.out)


if __name__ == "__main__":
    main()
