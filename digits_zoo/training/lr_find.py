"""`python train.py lr_find=true`: Lightning's learning-rate range test instead of a training run.

Lightning's Tuner trains from the run's starting weights for `num_training` steps, one batch and
one optimiser step each (Lightning's own loop), while raising the learning rate from `min_lr` to
`max_lr` exponentially. The weights are restored afterwards; nothing is trained.

The curve kept here is each step's own loss at the rate it was taken with (`step_losses`), and
the suggestion is the lower of the rate where its centred mean falls fastest against the rate's
logarithm and a tenth of the rate at its lowest point (`suggest`). Lightning's own curve is an
exponential average that trails the rate, and its own suggestion (the steepest fall against the
rate itself, not its logarithm) picks rates far too low for these models: see docs/training.md
and benchmarks/lr_find_check.py for what each trains to.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from digits_zoo.training.stops import train_command
from digits_zoo.writes import write_csv_atomically

log = logging.getLogger(__name__)

BETA = 0.98  # the smoothing of Lightning 2.6's _LRCallback, which records the curve
HALF_WINDOW = 5  # points on each side of the centred mean that the suggestion reads


def step_losses(recorded: list[float], first_step: int = 0) -> list[float]:
    """Each step's own loss, recovered exactly from the curve Lightning recorded.

    Lightning 2.6 records avg / (1 - BETA ** (global_step + 1)), avg an exponential average of the
    losses, but global_step already counts the step just taken: the first point is 0.02 / (1 - 0.98**2)
    = 0.505 of the first loss, and the average trails the rate by about 50 steps (three decades
    at 100 steps over six). `first_step`: the trainer's global_step when the test began.
    """
    losses, previous = [], 0.0
    for step, value in enumerate(recorded, start=first_step + 1):
        average = value * (1 - BETA ** (step + 1))
        losses.append((average - BETA * previous) / (1 - BETA))
        previous = average
    return losses


def smooth(losses, half: int = HALF_WINDOW) -> list[float]:
    """Centred means over 2 * half + 1 points (fewer at the ends): less noise, and no lag."""
    windows = (losses[max(0, i - half) : i + half + 1] for i in range(len(losses)))
    return [sum(window) / len(window) for window in windows]


def suggest(lrs, losses) -> float | None:
    """The lower of two rates (two significant digits): where the smoothed loss falls fastest
    against the rate's logarithm, before its lowest point, and a tenth of the rate at that lowest
    point. Either alone trained some of the zoo's models more than 0.3 points worse than lr 1e-3
    (steepest: lenet5 at 0.004; a tenth of the lowest: vgg_bn at 6.3e-3, whose curve stays low
    late). Read over the points before the loss stopped being a number; None with too few."""
    finite = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), len(losses))
    if finite < 2 * HALF_WINDOW + 1:
        return None
    curve = smooth(list(losses[:finite]))
    lowest = min(range(finite), key=curve.__getitem__)
    logs = [math.log(lr) for lr in lrs[:finite]]
    # central differences (one-sided at the ends) against log(rate): equal steps on the plot's axis
    slopes = [
        (curve[min(i + 1, lowest)] - curve[max(i - 1, 0)]) / (logs[min(i + 1, lowest)] - logs[max(i - 1, 0)])
        for i in range(lowest)
    ]
    if not slopes:  # lowest at the first point: the loss never fell
        return None
    steepest = min(range(lowest), key=slopes.__getitem__)
    return float(f"{min(lrs[steepest], lrs[lowest] / 10):.2g}")


def curve_figure(lrs, losses, suggestion: float | None, model_name: str):
    """The losses against the rate (log scale), their centred means, and the suggestion marked."""
    import numpy as np

    from digits_zoo.training.plots import new_figure

    curve = smooth(list(losses))
    figure = new_figure(6.4, 4.8)
    ax = figure.subplots()
    ax.plot(lrs, losses, color="0.75", linewidth=0.8, label="loss of each step")
    ax.plot(lrs, curve, color="C0", label=f"centred mean of {2 * HALF_WINDOW + 1} steps")
    if suggestion is not None:
        at = np.interp(math.log(suggestion), np.log(lrs), curve)
        ax.plot(
            [suggestion],
            [at],
            marker="o",
            markersize=8,
            color="red",
            linestyle="none",
            label=f"suggested: {suggestion:.2g}",
        )
    ax.set_xscale("log")
    ax.set_ylim(0, 2 * max(curve[0], 0.1))  # the diverging end would flatten the rest
    ax.set_xlabel("Learning rate")
    ax.set_ylabel("Training loss")
    ax.legend(loc="lower left")
    ax.set_title(
        f"Learning-rate range test, {model_name}: " + (f"suggested {suggestion:.2g}" if suggestion else "no suggestion")
    )
    return figure


def find_learning_rate(
    cfg: DictConfig, trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, out_dir: Path
) -> dict:
    """Run the range test, write `lr_find.png` and `lr_find.csv` into `out_dir`, print the suggestion."""
    from digits_zoo.training.plots import save_figure

    first_step = trainer.global_step  # (the test restores it)
    finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False, **cfg.lr_find_range)
    lrs, losses = finder.results["lr"], step_losses(finder.results["loss"], first_step)
    suggestion = suggest(lrs, losses)
    points = len(lrs)
    if trainer.is_global_zero:
        write_csv_atomically(out_dir / "lr_find.csv", [["lr", "loss", "smoothed"], *zip(lrs, losses, smooth(losses))])
        save_figure(curve_figure(lrs, losses, suggestion, cfg.model.name), out_dir / "lr_find.png")
        if suggestion is None:
            log.info(
                "Learning-rate range test: no suggestion from %d points (the loss never fell, or it "
                "diverged too early); see %s and widen lr_find_range",
                points,
                out_dir / "lr_find.png",
            )
        else:
            log.info(
                "Learning-rate range test over %d steps: suggested optimizer.lr=%.2g (curve: %s); train with: "
                "%s model=%s optimizer.lr=%.2g",
                points,
                suggestion,
                out_dir / "lr_find.png",
                train_command(),
                cfg.model.name,
                suggestion,
            )
    return {
        "lr_find": {"suggestion": suggestion, "points": points},
        "trainer": trainer,
        "module": module,
        "datamodule": datamodule,
    }
