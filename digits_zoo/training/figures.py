"""`RunFigures`: the pictures of a run, drawn from the metrics `DigitClassifier` keeps. The module
only measures; a trainer with this callback also draws."""

from __future__ import annotations

import lightning as L

from digits_zoo.training.plots import (
    confusion_matrix_figure,
    image_loggers,
    log_figures,
    save_run_plots,
)


class RunFigures(L.Callback):
    """After each validation, the confusion matrix to the loggers that store pictures (TensorBoard,
    MLflow); after a test, the run folder's pictures (`plots.save_run_plots`) and the same figures to
    those loggers. The process of rank zero draws: the metrics were gathered from every process.

    The `_end` hooks, not `_epoch_end`: Lightning calls a callback's hook before the module's, and
    the module computes its confusion matrices and mistakes in its `_epoch_end` hooks."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not image_loggers(trainer.loggers):
            return
        figure = confusion_matrix_figure(
            pl_module.confusion["val"], "Validation confusion matrix", classes=class_names(trainer)
        )
        log_figures(trainer.loggers, {"val/confusion_matrix": figure}, trainer.current_epoch)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        figures = save_run_plots(
            trainer.default_root_dir,
            pl_module.confusion["test"],
            pl_module.history,
            pl_module.mistakes,
            class_names(trainer),
        )
        log_figures(trainer.loggers, {f"test/{name}": figure for name, figure in figures.items()}, trainer.global_step)


def class_names(trainer: L.Trainer) -> list[str] | None:
    """The class names of the dataset the trainer's data module reads (None: not known)."""
    dataset = getattr(trainer.datamodule, "dataset_cls", None)
    return list(dataset.classes) if dataset is not None else None
