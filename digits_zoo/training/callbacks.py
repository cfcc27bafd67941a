"""Callbacks: progress bars that count batches, a line per epoch in the log, and the per-epoch seeding
of torch's generators."""

from __future__ import annotations

import logging
import sys
import time
from typing import ClassVar

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf

from digits_zoo.data.mnist import batches_per_epoch

log = logging.getLogger(__name__)


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


def epoch_label(trainer, epoch: int | None = None) -> str:
    """ "Epoch 3/5" (of `epoch`, else the current one): counted from 1, as results.json, the plots and
    the checkpoints' names count."""
    total = trainer.max_epochs
    epoch = trainer.current_epoch if epoch is None else epoch
    return f"Epoch {epoch + 1}" + (f"/{total}" if total and total > 0 else "")


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


def progress_bar(refresh_rate: int = 1) -> ProgressBar | None:
    """Lightning's rich bar on a terminal, updated every `refresh_rate` batches; none where output goes
    to a file or a pipe (CI, logs), which a bar would fill with redrawn frames: there `EpochLines`
    says what it would, once an epoch. (The one place that looks for a terminal.)"""
    if sys.stderr.isatty() and sys.stdout.isatty():
        return RichBatchProgressBar(refresh_rate=refresh_rate)
    return None


class EpochLines(L.Callback):
    """A line per epoch, as Keras prints them: `Epoch 3/5 - 2.1s - loss: 0.1234 - acc: 0.9612 -
    val_loss: 0.1100 - val_acc: 0.9650` (the epoch's means, its time with validation and checkpoints),
    logged by rank zero. Always in train.log; on the console only where no progress bar draws (in a
    log or a pipe, or with the bar switched off): a bar shows the same numbers, and a line written
    under it would break it (`file_only`, which digits_zoo.training.run's console filter reads).

    Written once the epoch is complete: Lightning calls a callback's on_train_epoch_end before the
    module's, which computes the epoch's training means, so at the next epoch's start or the end."""

    NAMES: ClassVar = {"train/loss": "loss", "train/acc": "acc", "val/loss": "val_loss", "val/acc": "val_acc"}

    def __init__(self):
        self._epoch: int | None = None  # the epoch under way
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module)
        self._epoch, self._start = trainer.current_epoch, time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module)

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        values = getattr(pl_module, "history", {}).get(self._epoch)
        if values and trainer.is_global_zero:
            parts = [epoch_label(trainer, self._epoch), f"{time.perf_counter() - self._start:.1f}s"]
            parts += [f"{name}: {values[key]:.4f}" for key, name in self.NAMES.items() if key in values]
            bar = trainer.progress_bar_callback
            log.info(" - ".join(parts), extra={"file_only": bar is not None and getattr(bar, "is_enabled", True)})
        self._epoch = None


class EpochSeed(L.Callback):
    """Reseeds torch's global generators (dropout draws from them) at the start of every training
    epoch from (seed, epoch) alone, so that an epoch resumed from a checkpoint draws the same numbers
    as it did in the uninterrupted run. The data order and augmentation have their own generator
    (`data.EpochShuffle`)."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed * 1_000_033 + trainer.current_epoch)  # not the data's seed (1_000_003)
