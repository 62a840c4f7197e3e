"""Epoch time of adversarial training relative to standard training, same model, data and batch size, in the
same run: PGD-k (expected about k + 1: k attack steps plus the training step) and fast FGSM (about 2).

    python -m benchmarks.adversarial_training [--model resnet20] [--images 1024] [--k 7] [--rounds 2]

Writes benchmarks/results/adversarial_training.json.
"""
from __future__ import annotations

import argparse
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import cifar10_root, cifar10_tensors, fit_seconds, write_json
from freqmaps.attacks import FGSM, PGD
from freqmaps.objectives import FastFGSMTraining, PGDTraining
from lightning_modules import StandardClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--k", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    x, y = cifar10_tensors(cifar10_root(), "train", args.images)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)
    eps = 8 / 255
    make = {
        "standard": lambda: StandardClassifier(args.model, 10, 3, 32),
        f"pgd{args.k}": lambda: StandardClassifier(
            args.model, 10, 3, 32, objective=PGDTraining(PGD(eps=eps, steps=args.k, step_size=2 / 255))),
        "fast_fgsm": lambda: StandardClassifier(
            args.model, 10, 3, 32, objective=FastFGSMTraining(FGSM(eps=eps, random_start=True))),
    }
    seconds = {name: [] for name in make}
    for round_ in range(args.rounds):
        for name, build in make.items():
            torch.manual_seed(0)
            seconds[name].append(fit_seconds(build(), loader))
        print(f"round {round_}: " + ", ".join(f"{n} {s[-1]:.1f} s" for n, s in seconds.items()))
    best = {name: min(s) for name, s in seconds.items()}
    ratios = {name: best[name] / best["standard"] for name in best if name != "standard"}
    write_json("adversarial_training", {
        "model": args.model, "images": args.images, "batch_size": args.batch_size, "k": args.k,
        "epoch_seconds": seconds, "best_epoch_seconds": best, "relative_to_standard": ratios,
        "expected": {f"pgd{args.k}": args.k + 1, "fast_fgsm": 2},
    }, args.out)
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x standard epoch time")


if __name__ == "__main__":
    main()
