"""Checkpoints are whole or absent: a save whose write fails half way (the process may write files of at most
64 KiB, so the operating system refuses the rest of a 4 MB checkpoint, as a full disk does) leaves the previous
checkpoint under the final name, loadable, and no partial file; and the checkpoint is written beside its target,
not in the system temp folder that Lightning's own TorchCheckpointIO writes to and then moves from (a copy, not
an atomic rename, when that folder is on another file system; a failure when it cannot hold the file)."""
from __future__ import annotations

import resource
import tempfile
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_modules.atomic_checkpoint import AtomicCheckpointIO

LIMIT = 64 * 1024


@contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """Writes past `size` bytes of any file fail with EFBIG (SIGXFSZ ignored, so it is an error, not a kill)."""
    old_limit, old_handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "run" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.zeros(3)}}, path)
    with file_size_limit(LIMIT), pytest.raises((OSError, RuntimeError)):  # torch.save reports EFBIG as either
        io.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.ones(1 << 20)}}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("io, saves", [(AtomicCheckpointIO(), True), (TorchCheckpointIO(), False)])
def test_the_checkpoint_is_written_beside_its_target(tmp_path, monkeypatch, io, saves):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no_temp_folder"))  # the system temp folder unusable
    path = tmp_path / "last.ckpt"
    if saves:
        io.save_checkpoint({"epoch": 3}, path)
        assert torch.load(path, weights_only=True)["epoch"] == 3
    else:
        with pytest.raises(FileNotFoundError, match="no_temp_folder"):
            io.save_checkpoint({"epoch": 3}, path)
