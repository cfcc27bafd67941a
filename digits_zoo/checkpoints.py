"""Checkpoint files that survive a crash: written atomically, read without running pickled code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from fsspec.utils import get_protocol
from lightning.fabric.plugins import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, made crash-safe and pickle-safe.

    Saving writes a temporary file beside the checkpoint, forces it to disk and renames it over the
    old one, so a process killed at any moment leaves the old checkpoint or the new one, never a
    truncated file. (Lightning's own save writes its temporary file in the system's temp folder and
    moves it, which is a copy into the target where that folder is another file system, such as a
    tmpfs; nor does it sync.) Loading defaults to `weights_only=True`: tensors and plain data only.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or get_protocol(str(path)) != "file":
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote stores: Lightning's way
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")  # one writer per checkpoint: a fixed name is enough
        with open(temporary, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _sync_folder(path.parent)

    def load_checkpoint(self, path, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None):
        return super().load_checkpoint(path, map_location, True if weights_only is None else weights_only)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (the folder's entry), where the system allows opening folders."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
