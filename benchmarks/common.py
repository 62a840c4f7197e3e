"""What the benchmark scripts share: the extracted CIFAR-10 copy, a trained checkpoint, timing, JSON out."""
from __future__ import annotations

import json
import platform
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEFAULT_CIFAR10_ROOT = REPO / "data" / "cifar10"
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "resnet20_cifar10_jpeg.ckpt"
RESULTS = REPO / "benchmarks" / "results"


def cifar10_root(root: Path = DEFAULT_CIFAR10_ROOT) -> Path:
    """The image-folder CIFAR-10 (train/<class>/*.jpg, test/<class>/*.jpg), extracted from ../shared once."""
    if not (root / "test").is_dir():
        if not SHARED_CIFAR10.is_file():
            raise FileNotFoundError(f"no CIFAR-10 at {root} and no archive at {SHARED_CIFAR10} to extract")
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(SHARED_CIFAR10) as tar:
            tar.extractall(root, filter="data")
    return root


def cifar10_tensors(root: Path, split: str = "test", n: int | None = None, seed: int = 0):
    """n images of a split, drawn without replacement with a fixed seed: x (n, 3, 32, 32) in [0, 1], y (n,)."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import to_tensor

    dataset = ImageFolder(str(root / split))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    order = order[: n or len(dataset)]
    xs, ys = zip(*(dataset[i] for i in order.tolist()))
    return torch.stack([to_tensor(img) for img in xs]), torch.tensor(ys)


def load_classifier(checkpoint: Path = DEFAULT_CHECKPOINT) -> nn.Module:
    """The network inside a Lightning checkpoint written by `python train.py fit` (eval mode, CPU)."""
    from lightning_modules.checkpoint import load_network

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {checkpoint}; train one with\n  python train.py fit --config "
            "configs/cifar10_resnet20.yaml --data.root data/cifar10 --trainer.max_epochs 3\n"
            f"and copy its last.ckpt to {checkpoint}"
        )
    return load_network(checkpoint)


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Smallest wall time of `repeats` calls of fn, in seconds (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def machine() -> dict:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"device": device, "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def write_json(name: str, payload: dict, out: Path | None = None) -> Path:
    """Write payload (plus the machine description) to benchmarks/results/<name>.json or `out`."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2) + "\n")
    print(f"wrote {path}")
    return path
