"""`DigitClassifier`: the one LightningModule. It owns the loss, the optimiser and the metrics."""

from __future__ import annotations

import warnings

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.utilities.distributed import gather_all_tensors

from digits_zoo.data import batches_per_epoch
from digits_zoo.errors import ConfigError, DigitsZooError, check_number
from digits_zoo.losses import LOSSES
from digits_zoo.registry import create_model

STAGES = ("train", "val", "test")
MISTAKES_SHOWN = 20
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
NO_SCALER_PRECISIONS = ("32-true", "64-true", "bf16-mixed", "bf16-true")

# Lightning 2.6's own pytree helper still uses LeafSpec, which recent torch deprecates; harmless.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
# Under DDP Lightning advises reducing epoch-level values across processes (sync_dist=True); ours
# come from torchmetrics' compute(), which has already reduced them (step and epoch are the same
# everywhere), and reducing again would only add a collective and rounding.
warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('((train|val|test)/(loss|acc)|step|epoch)'")


def most_confident(*candidates: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The MISTAKES_SHOWN rows with the highest score (each candidate's first tensor) among all
    candidates' rows; empty candidates are skipped."""
    merged = tuple(torch.cat(parts) for parts in zip(*(c for c in candidates if c)))
    keep = merged[0].topk(min(MISTAKES_SHOWN, len(merged[0]))).indices
    return tuple(t[keep] for t in merged)


class DivergedError(DigitsZooError):
    """The training loss or the weights became NaN or infinite (most often: a learning rate too high)."""


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
        lr: float = 1e-3,
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        scheduler: str | None = None,
        compile: bool = False,
        channels_last: bool = False,
        freeze_features: bool = False,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if scheduler not in (None, "onecycle"):
            raise ConfigError(f"unknown optimizer.scheduler {scheduler!r}; choose null or onecycle")
        check_number("optimizer.lr", lr, positive=True)
        check_number("optimizer.eps", eps, positive=True)
        check_number("optimizer.weight_decay", weight_decay, positive=False)
        self.save_hyperparameters()
        self.model = create_model(model, **(model_kwargs or {}))
        self.loss_fn = LOSSES[loss]
        if freeze_features:  # a linear probe: only the head learns
            for name, parameter in self.model.named_parameters():
                parameter.requires_grad_(name.startswith("head."))
        if channels_last:  # NHWC convolutions: a CNN step takes 0.72-0.91 of the time on this CPU
            self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model.compile()  # in place: the state dict keeps its plain keys
        # One optimiser step per batch, however many batches a training step is given (see
        # TensorLoader's steps_per_execution): the same training, less of Lightning's per-step cost.
        self.automatic_optimization = False
        self._direct_steps = False  # decided in on_train_start
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
        self.history: dict[int, dict[str, float]] = {}  # epoch -> {"train/loss": ..., "val/acc": ...}
        self._mistakes: tuple[torch.Tensor, ...] = ()  # the test's most confident mistakes so far

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """`batch` is one (x, y) batch or a list of consecutive ones: one optimiser step each."""
        batches = batch if isinstance(batch[0], (list, tuple)) else [batch]
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        losses, weights, logits, targets = [], [], [], []
        for x, y in batches:
            out = self.model(x)
            loss = self.loss_fn(out, y)
            if self._direct_steps:
                # What Lightning's own step would do here, without its per-step dispatch (which
                # costs more than a small model's step); its step counter (global_step) still counts.
                optimizer._on_before_step()
                optimizer.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.optimizer.step()
                optimizer._on_after_step()
            else:  # under DDP manual_backward readies the gradient averaging for each backward
                optimizer.zero_grad(set_to_none=True)
                self.manual_backward(loss)
                optimizer.step()
            if scheduler is not None:  # per optimiser step (manual optimisation steps it by hand)
                scheduler.step()
            losses.append(loss.detach())
            weights.append(torch.full_like(losses[-1], len(y)))
            logits.append(out.detach())
            targets.append(y)
        self._group_losses = torch.stack(losses)  # checked in on_train_batch_end
        self._accumulate("train", self._group_losses, torch.stack(weights), torch.cat(logits), torch.cat(targets))
        self.log("loss", losses[-1], prog_bar=True, logger=False)  # the latest batch's, on the bar
        return losses[-1]

    def _accumulate(self, stage: str, loss: torch.Tensor, weight: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add batches to the epoch's mean loss (weighted by batch size) and accuracy."""
        self.metrics[f"{stage}_loss"].update(loss, weight=weight)
        self.metrics[f"{stage}_acc"].update((logits.argmax(dim=1) == y).float())

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # one value read back per Lightning step (a group of steps_per_execution batches), outside the
        # step itself: a diverging run stops within a group of batches, long before its next checkpoint
        if not torch.isfinite(self._group_losses).all():
            raise DivergedError(self._diverged("the training loss"))

    def _diverged(self, what: str) -> str:
        epoch, lr = self.current_epoch, self.hparams.lr
        kept = (f"the last good checkpoint (last.ckpt, after epoch {epoch}) is kept" if epoch
                else "no epoch had finished, so there is no checkpoint")
        return (f"{what} became NaN or infinite in epoch {epoch + 1}, at optimiser step {self.global_step}: "
                f"lower optimizer.lr (now {lr:g}) and train again; {kept}")

    def on_train_epoch_start(self) -> None:
        if self.hparams.freeze_features:  # frozen features: batch-norm statistics and dropout too
            for name, module in self.model.named_children():
                if name != "head":
                    module.eval()

    def on_train_start(self) -> None:
        """Optimiser steps can skip Lightning's dispatch only where it would do nothing: one device,
        no gradient scaler, and no callback or subclass that listens to the per-step hooks."""
        trainer = self.trainer
        listeners = [self, *trainer.callbacks]
        self._direct_steps = (
            type(trainer.strategy) is SingleDeviceStrategy
            and trainer.precision in NO_SCALER_PRECISIONS
            and not any(is_overridden(hook, obj, L.Callback if obj is not self else None)
                        for hook in STEP_HOOKS for obj in listeners)
        )

    def _evaluation_step(self, batch, stage: str) -> None:
        x, y = batch
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        self._accumulate(stage, loss, torch.full_like(loss, len(y)), logits, y)
        self.metrics[f"{stage}_confusion"].update(logits, y)
        if stage == "test":
            self._keep_confident_mistakes(x, y, logits)

    def _keep_confident_mistakes(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        """Keep the MISTAKES_SHOWN wrong answers given with the highest probability (no host reads:
        right answers score -1 instead of being filtered out)."""
        confidence, pred = self.model.probabilities(logits.float()).max(dim=1)
        score = torch.where(pred != y, confidence, -1.0)
        self._mistakes = most_confident(self._mistakes, (score, x, y, pred))

    def _all_confident_mistakes(self) -> tuple[torch.Tensor, ...]:
        """The most confident mistakes of every process (each tested only its share): a collective."""
        if self.trainer.world_size == 1:
            return self._mistakes
        return most_confident(*zip(*(gather_all_tensors(t) for t in self._mistakes)))

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
        # the loggers' x axis in optimiser steps; Lightning would count its own steps, fewer with
        # groups of batches, and adds "epoch" only when it picks the step itself
        self.log_dict({"step": float(self.global_step), "epoch": float(self.current_epoch)})

    def on_train_epoch_end(self) -> None:
        # the epoch's checkpoints are written after this hook: never of weights that are not numbers
        # (a finite loss can still take a step that overflows them)
        tensors = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        if not torch.stack([t.isfinite().all() for t in tensors]).all():
            raise DivergedError(self._diverged("the weights"))
        self._log_epoch("train")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = self.history  # so that a resumed run's curves start at its first epoch

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # epochs already in memory are as new as the checkpoint's or newer: testing the best
        # checkpoint after training loads the history of an earlier epoch
        for epoch, values in checkpoint.get("history", {}).items():
            self.history.setdefault(epoch, values)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")
        confusion = self._compute_and_reset("val_confusion")
        if not self.trainer.sanity_checking and self._tensorboard is not None and self.trainer.is_global_zero:
            from digits_zoo.plots import confusion_matrix_figure

            figure = confusion_matrix_figure(confusion, "Validation confusion matrix")
            self._tensorboard.experiment.add_figure("val/confusion_matrix", figure, self.current_epoch)

    def on_test_epoch_start(self) -> None:
        self._mistakes = ()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        confusion = self._compute_and_reset("test_confusion")
        mistakes = self._all_confident_mistakes()
        if self.trainer.is_global_zero:
            from digits_zoo.plots import save_run_plots

            score, images, true, pred = mistakes
            wrong = score >= 0
            figures = save_run_plots(self.trainer.default_root_dir, confusion, self.history,
                                     (images[wrong], true[wrong], pred[wrong], score[wrong]))
            if self._tensorboard is not None:
                for name, figure in figures.items():
                    self._tensorboard.experiment.add_figure(f"test/{name}", figure, self.global_step)

    def _compute_and_reset(self, name: str) -> torch.Tensor:
        value = self.metrics[name].compute()
        self.metrics[name].reset()
        return value

    @property
    def _tensorboard(self) -> TensorBoardLogger | None:
        return next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)

    def configure_optimizers(self):
        hp = self.hparams
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=hp.lr, eps=hp.eps, weight_decay=hp.weight_decay)
        if hp.scheduler is None:
            return optimizer
        # one cycle over all optimiser steps, peaking at lr
        self.trainer.estimated_stepping_batches  # (loads the training loader that batches_per_epoch reads)
        total = self.trainer.max_epochs * batches_per_epoch(self.trainer)
        onecycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": onecycle, "interval": "step"}}
