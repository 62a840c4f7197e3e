"""Files run no code when loaded: a checkpoint carrying a pickled payload, and truncated or foreign files, give
one-line errors through every loader (analyze.py, the zoo export, the Python API) and the payload never runs."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from freqmaps.errors import UserInputError
from freqmaps.zoo import export_checkpoint
from lightning_modules.checkpoint import load_classifier
from tests.wandb_offline import child_env

REPO = Path(__file__).resolve().parents[2]
CHILD_ENV = child_env(WANDB_MODE="disabled")


class Payload:
    """Unpickling this calls os.system: it creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_checkpoint(folder: Path) -> tuple[Path, Path]:
    marker = folder / "payload_ran"
    path = folder / "crafted.ckpt"
    torch.save({"state_dict": {"network.w": torch.zeros(1)}, "hyper_parameters": {"model_name": Payload(marker)}},
               path)
    return path, marker


def test_a_crafted_checkpoint_runs_nothing_in_any_loader(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    for load in (lambda: load_classifier(path), lambda: export_checkpoint(path, "crafted", tmp_path / "zoo")):
        with pytest.raises(UserInputError, match="cannot be read as a weights-only checkpoint") as error:
            load()
        assert "\n" not in str(error.value)
    result = subprocess.run([sys.executable, str(REPO / "analyze.py"), "--config",
                             str(REPO / "configs/reproduce/digits_analyze.yaml"), "--checkpoint", str(path),
                             "--output_dir", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=CHILD_ENV)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "weights-only" in last and "Traceback" not in result.stderr
    assert not marker.exists()  # the payload never ran


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint at all\n", "cannot be read as a weights-only checkpoint"),
    (None, "cannot be read as a weights-only checkpoint"),  # a checkpoint cut short (a full disk)
])
def test_truncated_and_foreign_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    if content is None:
        torch.save({"state_dict": {"network.w": torch.zeros(1000)}, "hyper_parameters": {}}, path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(UserInputError, match=message) as error:
        load_classifier(path)
    assert "\n" not in str(error.value)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(UserInputError, match="not a Lightning checkpoint written by train.py"):
        load_classifier(path)


@pytest.mark.parametrize("name, content, message", [
    ("missing.ckpt", None, "error: no checkpoint at"),
    ("text.ckpt", "not a checkpoint", "error: .*cannot be read as a weights-only checkpoint"),
])
def test_train_py_names_a_bad_ckpt_path_in_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = subprocess.run([sys.executable, str(REPO / "train.py"), "test", "--ckpt_path", str(path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=CHILD_ENV)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert re.match(message, result.stderr.strip().splitlines()[-1])
