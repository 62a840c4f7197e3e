"""Clean and PGD accuracy of trained checkpoints on the same CIFAR-10 test images, side by side.

    python -m benchmarks.robust_accuracy MODEL [MODEL ...] [--n 2000] [--steps 20] [--eps 8/255 as 0.0314]

MODEL: a zoo model name (`python -m freqmaps.zoo list`) or any checkpoint written by `python train.py fit` (standard, adversarially trained, frequency-masked: the mask is
part of the model, so the attack sees it). PGD L-inf with random start (seeded), step 2/255. Writes
benchmarks/results/robust_accuracy.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import cifar10_root, cifar10_tensors, load_classifier, write_json
from freqmaps.attacks import PGD, attack_in_chunks
from freqmaps.class_maps import predict


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    return (predict(model, x, batch) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="zoo model names or .ckpt paths")
    parser.add_argument("--n", type=int, default=2000, help="test images (seeded draw)")
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y = cifar10_tensors(cifar10_root(), "test", args.n)
    x, y = x.to(device), y.to(device)
    attack = PGD(eps=args.eps, norm="linf", steps=args.steps, step_size=2 / 255, random_start=True)
    rows = []
    for path in args.checkpoints:
        model = load_classifier(path).to(device)
        start = time.perf_counter()
        x_adv = attack_in_chunks(attack, model, x, y, args.batch)
        row = {"checkpoint": str(path), "clean_accuracy": accuracy(model, x, y, args.batch),
               "robust_accuracy": accuracy(model, x_adv, y, args.batch), "seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"{path}: clean {row['clean_accuracy']:.4f}  PGD-{args.steps} (eps {args.eps:.4f}) "
              f"{row['robust_accuracy']:.4f}  ({row['seconds']:.1f} s)")
    write_json("robust_accuracy", {"images": args.n, "eps": args.eps, "steps": args.steps, "device": str(device),
                                   "rows": rows}, args.out)


if __name__ == "__main__":
    main()
