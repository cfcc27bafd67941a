"""A search's trial, in the process that trains it: `TrialPruning` reports each epoch's val/acc to its
Optuna trial, and ends the training after an epoch where the study's pruner finds the trial hopeless."""

from __future__ import annotations

import logging

import lightning as L

from digits_zoo.training import search

log = logging.getLogger(__name__)


class TrialPruning(L.Callback):
    """Trial `number` of the sweep's study (`+search.trial=N`, which the sweeper passes): each epoch's
    val/acc is reported to it (step: the epoch, counted from 0, as the pruner's n_warmup_steps counts),
    and where the pruner prunes it, training stops after that epoch as early stopping stops it. The
    run still writes its results, with `pruned_epoch` (counted from 1), and the trial's user
    attribute of that name tells the sweeper to record it as pruned."""

    def __init__(self, number: int) -> None:
        self.number, self.trial, self.pruned_epoch = number, None, None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # (with DDP the first process speaks for all)
            self.trial = search.open_trial(self.number)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if self.trial is not None:
            self.trial.report(float(trainer.callback_metrics["val/acc"]), step=trainer.current_epoch)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):  # every process stops after the same epoch
            self.pruned_epoch = trainer.current_epoch + 1
            if self.trial is not None:
                self.trial.set_user_attr(search.PRUNED_AT, self.pruned_epoch)
            trainer.should_stop = True
            log.info(
                "Trial %d pruned after epoch %d: its val/acc is below what the pruner keeps",
                self.number,
                self.pruned_epoch,
            )
