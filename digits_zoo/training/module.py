"""`DigitClassifier`: the one LightningModule. It owns the loss, the optimiser and the metrics; the
grouped steps are in digits_zoo.training.loop, the divergence checks in digits_zoo.training.divergence. It draws
nothing: the callback digits_zoo.training.figures.RunFigures draws the pictures from the metrics it keeps."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from digits_zoo.data.contract import RECORD_KEY, DataModule, data_record
from digits_zoo.data.mnist import batches_per_epoch
from digits_zoo.errors import ConfigError, check_number
from digits_zoo.models.pretrained import trained_on
from digits_zoo.models.registry import create_model
from digits_zoo.training.divergence import DivergedError, check_losses, check_weights  # noqa: F401  (imported from here too)
from digits_zoo.training.loop import (
    can_step_directly,
    grouped_steps,
    lightning_loop_reasons,
    log_grouped_step_losses,
)
from digits_zoo.training.losses import LOSSES, training_loss
from digits_zoo.training.metrics import ConfidentMistakes

STAGES = ("train", "val", "test")
_hiding = ContextVar("harmless_warnings_hidden", default=False)  # inside it: a filter added now ends with it


@contextmanager
def harmless_warnings_hidden() -> Iterator[None]:
    """Around a Trainer's work on a DigitClassifier (digits_zoo.training.run's `run_settings`):
    Lightning's warnings that do not apply to it, hidden; the warning filters are as they were after."""
    with warnings.catch_warnings():
        # Lightning 2.6's own pytree helper still uses LeafSpec, which recent torch deprecates; harmless.
        warnings.filterwarnings(
            "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
        )
        # Under DDP Lightning advises reducing epoch-level values across processes (sync_dist=True); ours
        # come from torchmetrics' compute(), which has already reduced them (step and epoch are the same
        # everywhere), and reducing again would only add a collective and rounding.
        warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(train|val|test)/(loss|acc)'")
        hiding = _hiding.set(True)  # (and DigitClassifier.setup adds one where it applies)
        try:
            yield
        finally:
            _hiding.reset(hiding)


class DigitClassifier(L.LightningModule):
    """Trains the registered model `model` (built from its name and `model_kwargs`).

    Only plain data goes into the hyperparameters, so `DigitClassifier.load_from_checkpoint(path)`
    rebuilds the network without the training config. Defaults are Keras' Adam (lr 1e-3, eps 1e-7).
    """

    def __init__(
        self,
        model: str,
        model_kwargs: dict | None = None,
        loss: str = "cross_entropy",
        label_smoothing: float = 0.0,
        lr: float = 1e-3,
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        scheduler: str | None = None,
        compile: bool = False,
        channels_last: bool = False,
        freeze_features: bool = False,
    ):
        super().__init__()
        # what training minimises (smoothed targets where asked) and what validation and the test report
        # (plain: their losses stay comparable across runs)
        self.train_loss_fn, self.loss_fn = training_loss(loss, label_smoothing), LOSSES[loss]
        if scheduler not in (None, "onecycle"):
            raise ConfigError(f"unknown optimizer.scheduler {scheduler!r}; choose null or onecycle")
        check_number("optimizer.lr", lr, positive=True)
        check_number("optimizer.eps", eps, positive=True)
        check_number("optimizer.weight_decay", weight_decay, positive=False)
        self.save_hyperparameters()
        self.model = create_model(model, **(model_kwargs or {}))
        if freeze_features:  # a linear probe: only the head learns
            for name, parameter in self.model.named_parameters():
                parameter.requires_grad_(name.startswith("head."))
        if channels_last:  # NHWC convolutions: a CNN step takes 0.72-0.91 of the time on this CPU
            self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model.compile()  # in place: the state dict keeps its plain keys
        # one image, as every zoo model takes: Lightning's model summary counts FLOPs (and sizes) with it
        self.example_input_array = torch.zeros(1, 1, 28, 28)
        # Lightning's own loop, or grouped steps where they train the same: decided in setup()
        self._direct_steps = False
        num_classes = self.model.num_classes
        # Keyed "<stage>_<name>" (a bare "train" key would clash with nn.Module.train). Accuracy is
        # the mean of right answers: micro-averaged like Keras' "accuracy", and unlike
        # MulticlassAccuracy's bincount it never reads values back from the device. NaN checks
        # would do that too, so they are off.
        self.metrics = nn.ModuleDict()
        for stage in STAGES:
            self.metrics[f"{stage}_loss"] = MeanMetric(nan_strategy="disable")
            self.metrics[f"{stage}_acc"] = MeanMetric(nan_strategy="disable")
        for stage in ("val", "test"):
            self.metrics[f"{stage}_confusion"] = MulticlassConfusionMatrix(num_classes, validate_args=False)
        self.metrics["test_mistakes"] = ConfidentMistakes()
        # what the pictures show (digits_zoo.training.figures): the last validation's and test's confusion
        # matrices, the last test's most confident mistakes (every process's) and the epochs' means
        self.confusion: dict[str, torch.Tensor] = {}  # "val", "test" -> counts, true class x predicted
        self.mistakes: tuple[torch.Tensor, ...] = ()  # (score, images, true, pred), as ConfidentMistakes computes them
        self.history: dict[int, dict[str, float]] = {}  # epoch -> {"train/loss": ..., "val/acc": ...}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._choose_loop()

    def _choose_loop(self) -> None:
        """Grouped steps where they train exactly as Lightning's own loop would, else Lightning's loop
        (see digits_zoo.training.loop); said in one line."""
        trainer = self.trainer
        reasons = lightning_loop_reasons(trainer, self, DigitClassifier)
        group = getattr(trainer.datamodule, "steps_per_execution", 1)
        self.automatic_optimization = bool(reasons)
        self._direct_steps = not reasons and can_step_directly(trainer)
        if reasons:
            unused = f"; data.steps_per_execution={group} is not used" if group > 1 else ""
            rank_zero_info(f"Training loop: Lightning's own, one batch per step, for {', '.join(reasons)}{unused}")
        else:  # Lightning compares log_every_n_steps with its own steps (ours are batches) and warns
            if _hiding.get():  # (outside harmless_warnings_hidden() the filter would stay for good)
                warnings.filterwarnings(
                    "ignore", message=r"The number of training batches \(\d+\) is smaller than the logging"
                )
            rank_zero_info(
                f"Training loop: {group} batch{'es' if group > 1 else ''} per Lightning step "
                "(data.steps_per_execution), one optimiser step each"
            )

    @property
    def latest_loss(self) -> torch.Tensor | None:
        """The latest training batch's loss (the progress bar shows it)."""
        losses = getattr(self, "_group_losses", None)
        return None if losses is None else losses[-1]

    @property
    def takes_groups(self) -> bool:
        """Whether training steps take lists of consecutive batches (grouped steps)."""
        return not self.automatic_optimization

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        """Lightning's own loop: one (x, y) batch, whose loss Lightning minimises. Grouped steps: a
        list of consecutive batches (or one), one optimiser step each, taken here."""
        grouped = isinstance(batch[0], (list, tuple))
        if self.automatic_optimization:
            if grouped:
                raise ConfigError(
                    "the training loader yields groups of batches, which only grouped steps take; "
                    "give this run's MNISTDataModule steps_per_execution=1"
                )
            x, y = batch
            logits = self.model(x)
            loss = self.train_loss_fn(logits, y)
            self._group_losses = loss.detach()[None]  # checked in on_train_batch_end
            self._accumulate(
                "train", self._group_losses, torch.full_like(self._group_losses, len(y)), logits.detach(), y
            )
            every = self.trainer.log_every_n_steps
            if every and (self.global_step + 1) % every == 0:  # only where Lightning will log it: a call costs ~1 ms
                self.log("train/loss_step", self._group_losses[0], on_step=True, on_epoch=False)
            return loss
        # (the losses are checked in on_train_batch_end)
        self._group_losses, sizes, logits, y = grouped_steps(self, batch if grouped else [batch], self._direct_steps)
        self._accumulate("train", self._group_losses, sizes, logits, y)
        return None

    def _accumulate(
        self, stage: str, loss: torch.Tensor, weight: torch.Tensor, logits: torch.Tensor, y: torch.Tensor
    ) -> None:
        """Add batches to the epoch's mean loss (weighted by batch size) and accuracy."""
        self.metrics[f"{stage}_loss"].update(loss, weight=weight)
        self.metrics[f"{stage}_acc"].update((logits.argmax(dim=1) == y).float())

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # one value read back per Lightning step (a group of steps_per_execution batches), outside the
        # step itself: a diverging run stops within a group of batches, long before its next checkpoint
        check_losses(self, self._group_losses)
        if self.takes_groups:
            log_grouped_step_losses(self, self._group_losses)

    def on_train_epoch_start(self) -> None:
        if self.hparams.freeze_features:  # frozen features: batch-norm statistics and dropout too
            for name, module in self.model.named_children():
                if name != "head":
                    module.eval()

    def _evaluation_step(self, batch, stage: str) -> None:
        x, y = batch
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        self._accumulate(stage, loss, torch.full_like(loss, len(y)), logits, y)
        self.metrics[f"{stage}_confusion"].update(logits, y)
        if stage == "test":
            self.metrics["test_mistakes"].update(x, y, self.model.probabilities(logits.float()))

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Probabilities through the model's output activation (sigmoid for the seed's models)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.model.probabilities(self.model(x))

    def _log_epoch(self, stage: str) -> None:
        """Epoch means, computed (and synchronised across processes) once per epoch, not per step."""
        for name in ("loss", "acc"):
            value = self._compute_and_reset(f"{stage}_{name}")
            self.log(f"{stage}/{name}", value, prog_bar=True)
            if stage != "test" and not self.trainer.sanity_checking:
                self.history.setdefault(self.current_epoch, {})[f"{stage}/{name}"] = value.item()

    def on_train_epoch_end(self) -> None:
        # the epoch's checkpoints are written after this hook: never of weights that are not numbers
        check_weights(self)
        self._log_epoch("train")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = self.history  # so that a resumed run's curves start at its first epoch
        if isinstance(self.trainer.datamodule, DataModule):  # how predict, eval.py and export will feed the network
            checkpoint[RECORD_KEY] = data_record(self.trainer.datamodule)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # epochs already in memory are as new as the checkpoint's or newer: testing the best
        # checkpoint after training loads the history of an earlier epoch
        for epoch, values in checkpoint.get("history", {}).items():
            self.history.setdefault(epoch, values)
        self.trained_on = trained_on(checkpoint)  # (dataset, input normalization): how predict and export feed it

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")
        self.confusion["val"] = self._compute_and_reset("val_confusion")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        # every process's (each tested its share): compute() gathers them, a collective
        self.confusion["test"] = self._compute_and_reset("test_confusion")
        self.mistakes = self._compute_and_reset("test_mistakes")

    def _compute_and_reset(self, name: str) -> torch.Tensor | tuple[torch.Tensor, ...]:
        value = self.metrics[name].compute()
        self.metrics[name].reset()
        return value

    def configure_optimizers(self):
        hp = self.hparams
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=hp.lr, eps=hp.eps, weight_decay=hp.weight_decay)
        if hp.scheduler is None:
            return optimizer
        # one cycle over all optimiser steps, peaking at lr (Lightning counts its own steps: groups)
        total = self.trainer.estimated_stepping_batches  # (also loads the loader that batches_per_epoch reads)
        if self.takes_groups:
            total = self.trainer.max_epochs * batches_per_epoch(self.trainer)
        onecycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": onecycle, "interval": "step"}}
