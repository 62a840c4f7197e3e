"""Long work saved chunk by chunk, so that a killed run, rerun with the same settings, loses at most the chunk it
was on.

A `ChunkStore` is a folder of finished pieces (`<name>.pt`, tensors and plain values only, read back with
`torch.load(weights_only=True)`) and the fingerprint of the settings that produced them (`fingerprint.json`:
anything JSON can hold that decides the results: the model's weights hash, the images, the solver, the attacks,
the seed). A rerun with the same fingerprint reads each finished piece instead of computing it; a rerun with
another fingerprint is refused unless told to start over, which empties the folder. Pieces are written
atomically (`freqmaps.files.write_atomically`): a piece is on disk whole or not at all.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from freqmaps.errors import UserInputError
from freqmaps.files import write_atomically

FINGERPRINT = "fingerprint.json"


class ChunkStore:
    """Finished pieces of one computation in `folder`, valid for `fingerprint` (a JSON-able dict).

    restart: empty a folder whose pieces were made under another fingerprint (otherwise such a folder is a
    UserInputError naming the settings that differ, and `option`, the user's knob that starts over).
    """

    def __init__(self, folder: str | Path, fingerprint: dict, *, restart: bool = False,
                 option: str = "--overwrite true") -> None:
        self.folder = Path(folder)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from the file
        saved = self.folder / FINGERPRINT
        if saved.is_file():
            before = json.loads(saved.read_text())
            if before != self.fingerprint:
                if not restart:
                    differ = sorted(k for k in before.keys() | self.fingerprint.keys()
                                    if before.get(k) != self.fingerprint.get(k))
                    raise UserInputError(f"{self.folder} holds chunks of a run with other settings (differing: "
                                         f"{', '.join(differ)}); pass {option} to start over, or choose another "
                                         "folder")
                shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.fingerprint, indent=1) + "\n"
        write_atomically(saved, lambda path: path.write_text(text))
        self.restart, self.option = restart, option
        self.reused: list[str] = []

    def nested(self, name: str, fingerprint: dict) -> ChunkStore:
        """A store in the subfolder `name` for work that depends on this store's settings and on `fingerprint`
        too (e.g. a later stage with knobs of its own): changing those knobs renews that subfolder only. Its
        reused pieces are counted here too."""
        store = ChunkStore(self.folder / name, {"parent": self.fingerprint, **fingerprint}, restart=self.restart,
                           option=self.option)
        store.reused = self.reused
        return store

    def path(self, name: str) -> Path:
        """Where the piece `name` lives (for a computation that checkpoints itself, e.g. `class_maps`)."""
        return self.folder / f"{name}.pt"

    def get(self, name: str, compute: Callable[[], dict]) -> dict:
        """The piece `name`: read from the folder when a run with this fingerprint finished it, otherwise
        compute() (a dict of tensors and plain values), saved before it is returned. Names read are appended to
        `reused`."""
        path = self.path(name)
        if path.is_file():
            self.reused.append(name)
            return torch.load(path, map_location="cpu", weights_only=True)
        piece = compute()
        write_atomically(path, lambda partial: torch.save(piece, partial))
        return piece


def cached(store: ChunkStore | None, name: str, compute: Callable[[], dict]) -> dict:
    """`store.get(name, compute)`, or compute() when there is no store."""
    return compute() if store is None else store.get(name, compute)


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over named tensors (names, dtypes, shapes and values, in order): `digest(model.state_dict())` is the
    same for the same weights wherever they were loaded from; `digest({"x": x, "y": y})` fingerprints inputs."""
    sha = hashlib.sha256()
    for name, tensor in tensors.items():
        t = tensor.detach().cpu().contiguous()
        sha.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return sha.hexdigest()
