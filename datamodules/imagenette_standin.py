"""A 224-px stand-in for Imagenette that needs no download: CIFAR-10 JPEGs upscaled into Imagenette's layout.

    python -m datamodules.imagenette_standin --source data/cifar10 --output data/imagenette_standin \\
        --size 224 --train_per_class 200 --val_per_class 50

reads `<source>/{train,test}/<class>/*.jpg` (the CIFAR-10 image folder) and writes
`<output>/{train,val}/<class>/<name>.JPEG` (CIFAR-10's test images go to `val`, as Imagenette's held-out split),
each image resized from 32 to `size` px (bicubic), the first files of each class in sorted order. It is a
different dataset from Imagenette (10 CIFAR-10 classes, 32-px detail blown up): numbers on it are stand-in
numbers, and `STANDIN.txt` in the output says so.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from datamodules.base import open_rgb, require_image_folder
from freqmaps.errors import UserInputError, exit_on_user_error
from freqmaps.files import check_writable

SPLITS = {"train": "train", "test": "val"}  # CIFAR-10 split -> Imagenette split


def build_standin(source: str | Path, output: str | Path, size: int = 224, train_per_class: int = 200,
                  val_per_class: int = 50, progress: bool = True) -> dict[str, int]:
    """Write the stand-in folder; returns images written per Imagenette split. An existing output folder is
    refused (UserInputError), so a stand-in is never mixed into real data."""
    source, output = Path(source), Path(output)
    require_image_folder(source, tuple(SPLITS), "imagenette_standin --source")
    for name, value in (("size", size), ("train_per_class", train_per_class), ("val_per_class", val_per_class)):
        if value < 1:
            raise UserInputError(f"imagenette_standin: {name} must be >= 1, got {value}")
    if output.exists():
        raise UserInputError(f"imagenette_standin: {output} exists; give a new folder")
    check_writable(output.parent, "imagenette_standin --output")
    counts = {"train": train_per_class, "val": val_per_class}
    jobs = []
    for cifar_split, split in SPLITS.items():
        for folder in sorted(p for p in (source / cifar_split).iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.is_file())[:counts[split]]
            jobs += [(path, output / split / folder.name / f"{path.stem}.JPEG") for path in files]
    written = {"train": 0, "val": 0}
    for path, target in tqdm(jobs, desc="stand-in images", unit="image", disable=not progress):
        target.parent.mkdir(parents=True, exist_ok=True)
        open_rgb(str(path)).resize((size, size), Image.BICUBIC).save(target, quality=95)
        written[target.parent.parent.name] += 1
    (output / "STANDIN.txt").write_text(
        f"Not Imagenette: CIFAR-10 images from {source} upscaled from 32 to {size} px (bicubic), in Imagenette's "
        f"layout, by datamodules/imagenette_standin.py. {written['train']} train / {written['val']} val images. "
        "Label numbers from it as stand-in numbers.\n")
    return written


def main(argv: list[str] | None = None) -> None:
    """The command line; a UserInputError exits with a one-line `error: ...` (`exit_on_user_error`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="CIFAR-10 image folder: train/<class>/*.jpg, test/...")
    parser.add_argument("--output", required=True, help="a new folder for the stand-in")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--train_per_class", type=int, default=200)
    parser.add_argument("--val_per_class", type=int, default=50)
    args = parser.parse_args(argv)
    exit_on_user_error(lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    written = build_standin(args.source, args.output, args.size, args.train_per_class, args.val_per_class)
    print(f"wrote {written['train']} train and {written['val']} val images under {args.output}")


if __name__ == "__main__":
    main()
