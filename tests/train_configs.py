"""The experiment configs (configs/*.yaml; the subfolders hold their parts), the train.py command each one's
header documents, and the config they resolve to."""
from __future__ import annotations

import io
import re
import shlex
import sys
from contextlib import redirect_stdout
from pathlib import Path
from unittest import mock

import yaml

from train import main

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "configs").glob("*.yaml"))
COMMAND = re.compile(r"#\s+python train\.py fit (.+)$")
CIFAR10_FOLDER = "<CIFAR-10 folder>"
IMAGENETTE_FOLDER = "<Imagenette folder>"


def documented_command(config: Path) -> str:
    """The arguments after `python train.py fit` on the header line of `config` (exactly one such line, continued
    on the next comment line where it ends with a backslash)."""
    lines = config.read_text().splitlines()
    (start,) = [i for i, line in enumerate(lines) if COMMAND.match(line)]
    command = COMMAND.match(lines[start]).group(1)
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + " " + lines[start].lstrip("# ")
    return command


def needs_cifar10(config: Path) -> bool:
    """Whether the documented command asks for a CIFAR-10 folder."""
    return CIFAR10_FOLDER in documented_command(config)


def needs_imagenette(config: Path) -> bool:
    """Whether the documented command asks for an Imagenette folder."""
    return IMAGENETTE_FOLDER in documented_command(config)


def documented_args(config: Path, cifar10_root: Path | None = None, imagenette_root: Path | None = None) -> list[str]:
    """The documented arguments, config paths made absolute and the data folder placeholders filled in."""
    command = documented_command(config)
    if cifar10_root is not None:
        command = command.replace(CIFAR10_FOLDER, str(cifar10_root))
    if imagenette_root is not None:
        command = command.replace(IMAGENETTE_FOLDER, str(imagenette_root))
    return [str(REPO / arg) if arg.startswith("configs/") else arg for arg in shlex.split(command)]


def config_args(config: Path) -> list[str]:
    """Only the `--config FILE` pairs of the documented command."""
    args = documented_args(config, cifar10_root=Path("unused"), imagenette_root=Path("unused"))
    return [item for i, arg in enumerate(args) if arg == "--config" for item in (arg, args[i + 1])]


def resolve(args: list[str]) -> dict:
    """What `python train.py fit ARGS --print_config` prints, as a dict."""
    printed = io.StringIO()
    with redirect_stdout(printed), mock.patch.object(sys, "argv", ["train.py"]):
        try:
            main(["fit", *args, "--print_config"])
        except SystemExit as exit_info:
            assert exit_info.code in (0, None), printed.getvalue()
    return yaml.safe_load(printed.getvalue())
