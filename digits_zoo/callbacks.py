"""Callbacks that the configs name."""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar


class BatchProgressBar(TQDMProgressBar):
    """Lightning's progress bar, counting batches (optimiser steps) rather than Lightning steps,
    which differ when each Lightning step runs several (`data.steps_per_execution`)."""

    def __init__(self, refresh_rate: int = 20, leave: bool = False):
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self._epoch_start_step = self._shown = 0

    @property
    def total_train_batches(self) -> int | float:
        total = super().total_train_batches  # Lightning steps, after limit_train_batches
        loader = self.trainer.train_dataloader
        per_step = getattr(loader, "steps_per_execution", 1)
        return min(total * per_step, getattr(loader, "num_batches", float("inf")))

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._epoch_start_step = self._shown = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        done, bar = trainer.global_step - self._epoch_start_step, self.train_progress_bar
        if bar is None or bar.disable or not (done - self._shown >= self.refresh_rate or done >= bar.total):
            return
        self._shown = done
        bar.n = done
        bar.refresh()
        bar.set_postfix(self.get_metrics(trainer, pl_module))
