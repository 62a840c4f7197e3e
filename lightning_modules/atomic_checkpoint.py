"""AtomicCheckpointIO: Lightning checkpoints that are whole or absent under their final name.

Lightning's TorchCheckpointIO writes a checkpoint into a file in the system temp folder and then moves it onto
the target; when the temp folder is on another file system (a small tmpfs `/tmp`, a node-local disk) the move is
a copy, which a full disk or a kill can cut short under the final name, and a temp folder too small for the
checkpoint fails every save. This plugin writes local checkpoints to `<name>.partial` beside the target and
renames it onto the target once complete (`freqmaps.files.write_atomically`: one file system, an atomic rename);
remote paths (`s3://...`) keep Lightning's writer. Configs install it with `trainer.plugins`
(configs/default.yaml).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from freqmaps.files import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda partial: torch.save(checkpoint, partial))
