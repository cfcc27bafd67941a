"""Stopping a run whose training diverged: `DivergedError`, the checks that raise it (the training
loss after every Lightning step, the weights before each epoch's checkpoints) and its one-line
message, which says where it happened, what to change and which checkpoint is kept.
"""

from __future__ import annotations

import lightning as L
import torch

from digits_zoo.errors import DigitsZooError


class DivergedError(DigitsZooError):
    """The training loss or the weights became NaN or infinite (most often: a learning rate too high)."""


def check_losses(module: L.LightningModule, losses: torch.Tensor) -> None:
    """`losses` (the latest training batches') are numbers: one value read back to the host."""
    if not torch.isfinite(losses).all():
        raise DivergedError(_message(module, "the training loss"))


def check_weights(module: L.LightningModule) -> None:
    """The model's weights and buffers are numbers (a finite loss can still take a step that overflows them)."""
    tensors = [t for t in module.model.state_dict().values() if t.is_floating_point()]
    if not torch.stack([t.isfinite().all() for t in tensors]).all():
        raise DivergedError(_message(module, "the weights"))


def _message(module: L.LightningModule, what: str) -> str:
    epoch, lr = module.current_epoch, module.hparams.lr
    kept = (
        f"the last good checkpoint (last.ckpt, after epoch {epoch}) is kept"
        if epoch
        else "no epoch had finished, so there is no checkpoint"
    )
    return (
        f"{what} became NaN or infinite in epoch {epoch + 1}, at optimiser step {module.global_step}: "
        f"lower optimizer.lr (now {lr:g}) and train again; {kept}"
    )
