"""Which training loop a run uses, decided in one place (`DigitClassifier.setup`), and the grouped steps.

Grouped steps: each Lightning step gets `data.steps_per_execution` consecutive batches and takes
one optimiser step per batch, without Lightning's per-step dispatch (which costs more than a small
model's step). The batches, their order and every optimiser step are those of Lightning's own
loop; only what Lightning does *between* its steps happens once per group instead of once per
batch. So whatever counts or listens to single batches (gradient clipping and accumulation, batch
limits, step-based checkpoints and schedules, per-batch callbacks, profilers) gets Lightning's own
loop: automatic optimisation, one batch per step, every documented behaviour.

`grouped_steps` takes a group's optimiser steps; `log_grouped_step_losses` then logs the losses
that Lightning's own loop would have logged, at the same steps.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    BatchSizeFinder,
    GradientAccumulationScheduler,
    LearningRateFinder,
    ModelCheckpoint,
    StochasticWeightAveraging,
    Timer,
)
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden

# the hooks Lightning calls for every batch or optimiser step (not once per epoch)
PER_BATCH_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)
# callbacks that drive Lightning's own loop from the inside (skipped backward passes, trial runs,
# a changing accumulate_grad_batches)
NEED_LIGHTNINGS_LOOP = (StochasticWeightAveraging, LearningRateFinder, BatchSizeFinder, GradientAccumulationScheduler)
# the precisions that train without a gradient scaler
NO_SCALER_PRECISIONS = ("32-true", "64-true", "bf16-mixed", "bf16-true")


def lightning_loop_reasons(trainer: L.Trainer, module: L.LightningModule, module_base: type) -> list[str]:
    """What in this trainer counts or listens to single batches, so that the run needs Lightning's own
    loop; empty where grouped steps train exactly the same. `module_base`: the LightningModule class
    whose own per-batch hooks are known to work with groups."""
    reasons = []
    if trainer.gradient_clip_val:
        reasons.append(f"trainer.gradient_clip_val={trainer.gradient_clip_val}")
    if trainer.accumulate_grad_batches != 1:
        reasons.append(f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}")
    if trainer.fast_dev_run:
        reasons.append("trainer.fast_dev_run")
    counted = {  # settings that count single batches
        "max_steps": trainer.max_steps != -1,
        "min_steps": bool(trainer.fit_loop.min_steps),
        "limit_train_batches": _counts_batches(trainer.limit_train_batches),
        "val_check_interval": _counts_batches(trainer.val_check_interval),
        "overfit_batches": trainer.overfit_batches > 0,
    }
    reasons += [f"trainer.{key}" for key, used in counted.items() if used]
    if not isinstance(trainer.profiler, PassThroughProfiler):
        reasons.append(f"trainer.profiler ({type(trainer.profiler).__name__}: it reports per-batch hooks)")
    for callback in trainer.callbacks:
        if reason := _callback_reason(callback):
            reasons.append(reason)
    reasons += [
        f"{type(module).__name__}.{hook}" for hook in PER_BATCH_HOOKS if is_overridden(hook, module, module_base)
    ]
    return reasons


def _counts_batches(value: int | float) -> bool:
    """An int counts batches; a float other than 1.0 is a share of the epoch's batches."""
    return isinstance(value, int) or value != 1.0


def _callback_reason(callback: L.Callback) -> str | None:
    name = type(callback).__name__
    if isinstance(callback, NEED_LIGHTNINGS_LOOP):
        return name
    if isinstance(callback, ModelCheckpoint):  # its per-batch hook saves only on these settings
        # (private attributes: Lightning is pinned to 2.6, and tests/test_lightning_features.py checks them)
        if callback._every_n_train_steps:
            return f"ModelCheckpoint(every_n_train_steps={callback._every_n_train_steps})"
        if callback._train_time_interval:
            return f"ModelCheckpoint(train_time_interval={callback._train_time_interval})"
        return None
    if isinstance(callback, Timer):  # checks its duration after every batch
        return "trainer.max_time (Timer with a duration)" if callback.time_remaining() is not None else None
    if isinstance(callback, ProgressBar):  # shows progress; whatever it counts, training is the same
        return None
    if any(is_overridden(hook, callback, L.Callback) for hook in PER_BATCH_HOOKS):
        return name
    return None


def can_step_directly(trainer: L.Trainer) -> bool:
    """Whether grouped steps can skip Lightning's optimiser-step dispatch, where it would do nothing:
    one device, no gradient scaler."""
    return type(trainer.strategy) is SingleDeviceStrategy and trainer.precision in NO_SCALER_PRECISIONS


def grouped_steps(module: L.LightningModule, batches: list, direct: bool) -> tuple[torch.Tensor, ...]:
    """One optimiser step per (x, y) batch of `batches`, each as Lightning's own loop would take it
    (`direct`: without its dispatch, see `can_step_directly`); returns the batches' losses and
    sizes, and their logits and labels together, for the metrics."""
    optimizer, scheduler = module.optimizers(), module.lr_schedulers()
    losses, sizes, logits, targets = [], [], [], []
    for x, y in batches:
        out = module.model(x)
        loss = module.train_loss_fn(out, y)
        if direct:
            # What Lightning's own step would do here, without its per-step dispatch (which
            # costs more than a small model's step); its step counter (global_step) still counts.
            optimizer._on_before_step()
            optimizer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.optimizer.step()
            optimizer._on_after_step()
        else:  # under DDP manual_backward readies the gradient averaging for each backward
            optimizer.zero_grad(set_to_none=True)
            module.manual_backward(loss)
            optimizer.step()
        if scheduler is not None:  # per optimiser step (manual optimisation steps it by hand)
            scheduler.step()
        losses.append(loss.detach())
        sizes.append(torch.full_like(losses[-1], len(y)))
        logits.append(out.detach())
        targets.append(y)
    # the loggers' x axis counts optimiser steps (Lightning adds one per Lightning step itself);
    # a private counter, like the step hooks above (Lightning is pinned to 2.6, and tested)
    module.trainer.fit_loop.epoch_loop._batches_that_stepped += len(batches) - 1
    return torch.stack(losses), torch.stack(sizes), torch.cat(logits), torch.cat(targets)


def log_grouped_step_losses(module: L.LightningModule, losses: torch.Tensor) -> None:
    """`train/loss_step` of the group's batches (their `losses`) that Lightning's own loop would log:
    every trainer.log_every_n_steps-th optimiser step, at its step on the loggers' axis."""
    every, done = module.trainer.log_every_n_steps, module.global_step  # optimiser steps, this group's included
    first = done - len(losses)
    steps = [step for step in range(first, done) if every and (step + 1) % every == 0]
    if not steps or not module.loggers:
        return
    values = losses[[step - first for step in steps]].tolist()
    for logger in module.loggers:
        for step, value in zip(steps, values):
            logger.log_metrics({"train/loss_step": value, "epoch": module.current_epoch}, step=step)
        logger.save()
