"""Checkpoint files that survive a crash: written atomically, read without running pickled code."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from fsspec.utils import get_protocol
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import callbacks

from digits_zoo.models.pretrained import holds_code
from digits_zoo.writes import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, made crash-safe, full-disk-safe and pickle-safe.

    Saving serialises the checkpoint in memory (so its size is known: a save that the disk has no room
    for fails before it writes anything), writes it to a temporary file beside the checkpoint, forces
    it to disk and renames it over the old one, so a process killed at any moment leaves the old
    checkpoint or the new one, never a truncated file; a save that fails removes its temporary file
    (`digits_zoo.writes.write_atomically`). (Lightning's own save writes its temporary file in the
    system's temp folder and moves it, which is a copy into the target where that folder is another
    file system, such as a tmpfs; nor does it sync; and torch's writer, when the disk fills, raises a
    RuntimeError that hides the cause.) Loading defaults to `weights_only=True`: tensors and plain data only.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or get_protocol(str(path)) != "file":
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote stores: Lightning's way
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomically(path, buffer.getbuffer())

    def load_checkpoint(self, path, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None):
        try:
            return super().load_checkpoint(path, map_location, True if weights_only is None else weights_only)
        except Exception as error:  # a file with pickled code: one line that does not advise loading it unsafely
            if (refused := holds_code(path, error)) is None:
                raise
            raise refused from None


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint with `{epoch}` in file names counted from 1, as the progress bar,
    results.json and the plots count epochs (`best-epoch03.ckpt` holds the weights after the third)."""

    def format_checkpoint_name(
        self, metrics: dict, filename: str | None = None, ver: int | None = None, prefix: str | None = None
    ) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)
