"""Training images/s: one Lightning fit epoch (StandardClassifier, torchmetrics, logging) versus a
plain PyTorch loop over the same model, data, batch size and optimizer, alternated in the same run.

    python -m benchmarks.train_throughput [--model resnet20] [--images 2048] [--batch-size 64] [--rounds 3]

Ends by printing `ratio: X` (Lightning over plain; 1.0 = no overhead) and writes benchmarks/results/train_throughput.json.
"""
from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import cifar10_root, cifar10_tensors, fit_seconds, write_json
from lightning_modules import StandardClassifier


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)


def plain_epoch(model: torch.nn.Module, loader: DataLoader) -> float:
    """Seconds for one epoch of the textbook loop (with accuracy counted, as Lightning's module does)."""
    optimizer = sgd(model.parameters())
    model.train()
    start = time.perf_counter()
    correct = 0
    for x, y in loader:
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        correct += (logits.argmax(1) == y).sum().item()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    x, y = cifar10_tensors(cifar10_root(), "train", args.images)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)
    torch.manual_seed(0)
    template = StandardClassifier(args.model, 10, 3, 32, optimizer=sgd)
    plain, lightning = [], []
    for round_ in range(args.rounds):
        plain.append(plain_epoch(copy.deepcopy(template.model), loader))
        lightning.append(fit_seconds(copy.deepcopy(template), loader))
        print(f"round {round_}: plain {args.images / plain[-1]:.1f} img/s, lightning {args.images / lightning[-1]:.1f} img/s")
    plain_ips, lightning_ips = args.images / min(plain), args.images / min(lightning)
    ratio = lightning_ips / plain_ips
    write_json("train_throughput", {
        "model": args.model, "images": args.images, "batch_size": args.batch_size, "rounds": args.rounds,
        "plain_images_per_s": plain_ips, "lightning_images_per_s": lightning_ips, "ratio": ratio,
        "plain_epoch_s": plain, "lightning_epoch_s": lightning,
    }, args.out)
    print(f"plain loop {plain_ips:.1f} img/s, Lightning fit {lightning_ips:.1f} img/s (best of {args.rounds})")
    print(f"ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
