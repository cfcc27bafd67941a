"""Callbacks: progress bars that count batches, and the per-epoch seeding of torch's generators."""

from __future__ import annotations

import sys

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf

from digits_zoo.data.mnist import batches_per_epoch


class _CountBatches:
    """Count batches rather than Lightning steps, which differ when each Lightning step runs
    several (grouped steps, `data.steps_per_execution`)."""

    _epoch_start_step = 0

    @property
    def total_train_batches(self) -> int | float:
        return batches_per_epoch(self.trainer)

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._epoch_start_step = trainer.global_step

    def get_metrics(self, trainer, pl_module) -> dict:
        # the latest batch's loss, read here at each refresh (self.log would cost ~1 ms a step)
        latest = getattr(pl_module, "latest_loss", None)
        return {
            **({"loss": f"{latest.item():.3g}"} if latest is not None else {}),
            **super().get_metrics(trainer, pl_module),
        }

    def batches_done(self, trainer, batch_idx: int) -> int:
        if getattr(trainer.lightning_module, "takes_groups", False):  # one optimiser step per batch
            return trainer.global_step - self._epoch_start_step
        return batch_idx + 1


def epoch_label(trainer) -> str:
    """ "Epoch 3/5": counted from 1, as results.json, the plots and the checkpoints' names count."""
    total = trainer.max_epochs
    return f"Epoch {trainer.current_epoch + 1}" + (f"/{total}" if total and total > 0 else "")


class BatchProgressBar(_CountBatches, TQDMProgressBar):
    """Lightning's tqdm bar, counting batches and epochs from 1."""

    def __init__(self, refresh_rate: int = 20, leave: bool = False):
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self._shown = 0

    def on_train_epoch_start(self, trainer, *args) -> None:
        # Lightning's, but for the description: its own would first print an "Epoch 0" frame into logs
        self._epoch_start_step = trainer.global_step
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset(convert_inf(self.total_train_batches))
        self.train_progress_bar.initial = 0
        self.train_progress_bar.set_description(epoch_label(trainer))
        self._shown = 0

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # end the bars' line, so that the error: or stopped: line that follows starts a line of its own
        for bar in (
            self._train_progress_bar,
            self._val_progress_bar,
            self._test_progress_bar,
            self._predict_progress_bar,
        ):
            if bar is not None and not bar.disable:
                bar.close()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        done, bar = self.batches_done(trainer, batch_idx), self.train_progress_bar
        if bar is None or bar.disable or not (done - self._shown >= self.refresh_rate or done >= bar.total):
            return
        self._shown = bar.n = done
        bar.refresh()
        bar.set_postfix(self.get_metrics(trainer, pl_module))


class RichBatchProgressBar(_CountBatches, RichProgressBar):
    """Lightning's rich bar, counting batches and epochs from 1."""

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{epoch_label(self.trainer):{len(self.validation_description)}}"  # (padded as Lightning's)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()  # resumed in the middle of an epoch
        self._update(self.train_progress_bar_id, self.batches_done(trainer, batch_idx))
        self._update_metrics(trainer, pl_module)
        self.refresh()


def progress_bar(refresh_rate: int = 20) -> ProgressBar:
    """Lightning's rich bar on a terminal; tqdm's where output goes to a file or a pipe (CI, logs),
    which rich would fill with redrawn frames."""
    if sys.stderr.isatty() and sys.stdout.isatty():
        return RichBatchProgressBar(refresh_rate=1)  # rich redraws at its own pace
    return BatchProgressBar(refresh_rate=refresh_rate)


class EpochSeed(L.Callback):
    """Reseeds torch's global generators (dropout draws from them) at the start of every training
    epoch from (seed, epoch) alone, so that an epoch resumed from a checkpoint draws the same numbers
    as it did in the uninterrupted run. The data order and augmentation have their own generator
    (`data.EpochShuffle`)."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed * 1_000_033 + trainer.current_epoch)  # not the data's seed (1_000_003)
