"""Read back what a W&B offline run wrote: its `.wandb` transaction log (the file `wandb sync` uploads); and the
environment for a child process that logs offline.

The log is a LevelDB-style record stream (7-byte file header ':W&B' + magic 0xBEE1 + version; 32 KiB blocks;
each record: crc32 (4), length (2), type (1) = full / first / middle / last) of `wandb_internal_pb2.Record`s.
"""
from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child that logs to W&B offline, quietly, on one thread, with `extra` on
    top; without WANDB_SERVICE, so that the child does not attach to (and at its exit tear down) the W&B service
    of this process, which an in-process run started, and which a later in-process run still needs."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return env | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", **extra}


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError(f"{path} is not a W&B transaction log")
    records, pending, pos = [], b"", _HEADER
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # block tail too short for a header: zero padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if (kind == 0 and length == 0) or pos + _HEADER + length > len(data):  # end, or a record being written
            break
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _items(items) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


@dataclass
class OfflineRun:
    """history: one dict per logged step; summary: last values; config: the run config; files: names under files/."""

    directory: Path
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def values(self, key: str) -> list:
        """Every logged value of `key`, in step order."""
        return [row[key] for row in self.history if key in row]


def read_offline_run(directory: Path, timeout: float = 120.0) -> OfflineRun:
    """Parse `offline-run-*/run-*.wandb` of one finished run directory, once the log exists and holds the exit
    record. `wandb.finish()` returns before the W&B service has flushed the log: it only informs the service that
    the run is done, and the service closes (and flushes) the run's writer afterwards, so a log read at once may
    still be empty on a busy machine."""
    directory = Path(directory)
    deadline = time.monotonic() + timeout
    while not list(directory.glob("run-*.wandb")):
        assert time.monotonic() < deadline, f"{directory} has no run-*.wandb after {timeout} s"
        time.sleep(0.5)
    (log,) = directory.glob("run-*.wandb")
    records = read_records(log)
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        assert time.monotonic() < deadline, f"{log} has no exit record after {timeout} s"
        time.sleep(0.5)
        records = read_records(log)
    run = OfflineRun(directory)
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "files":
            run.files.extend(f.path for f in record.files.files)
    return run


def offline_runs(save_dir: Path) -> list[Path]:
    """All offline run directories under a WandbLogger save_dir, oldest first."""
    return sorted((Path(save_dir) / "wandb").glob("offline-run-*"))
