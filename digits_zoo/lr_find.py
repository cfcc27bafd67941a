"""`python train.py lr_find=true`: Lightning's learning-rate range test instead of a training run.

Lightning's Tuner trains from the run's starting weights for `num_training` steps while raising the
learning rate from `min_lr` to `max_lr` (exponentially), records the smoothed loss, and suggests
the rate where the loss falls fastest. The weights are restored afterwards; nothing is trained.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from digits_zoo.writes import write_csv_atomically

log = logging.getLogger(__name__)


def find_learning_rate(cfg: DictConfig, trainer: L.Trainer, module: L.LightningModule,
                       datamodule: L.LightningDataModule, out_dir: Path) -> dict:
    """Run the range test, write `lr_find.png` and `lr_find.csv` into `out_dir`, print the suggestion."""
    from digits_zoo.plots import new_figure, save_figure

    finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False, **cfg.lr_find_range)
    suggestion = finder.suggestion()
    points = len(finder.results["lr"])
    if trainer.is_global_zero:
        write_csv_atomically(out_dir / "lr_find.csv", [["lr", "loss"], *zip(finder.results["lr"], finder.results["loss"])])
        figure = new_figure(6.4, 4.8)
        finder.plot(suggest=suggestion is not None, ax=figure.subplots())
        figure.axes[0].set_title(f"Learning-rate range test, {cfg.model.name}: "
                                 + (f"suggested {suggestion:.2g}" if suggestion else "no suggestion"))
        save_figure(figure, out_dir / "lr_find.png")
        if suggestion is None:
            log.info("Learning-rate range test: no suggestion from %d points (the loss diverged too early); "
                     "see %s and lower lr_find_range.max_lr", points, out_dir / "lr_find.png")
        else:
            log.info("Learning-rate range test over %d steps: suggested optimizer.lr=%.2g (curve: %s); train with: "
                     "python train.py model=%s optimizer.lr=%.2g", points, suggestion, out_dir / "lr_find.png",
                     cfg.model.name, suggestion)
    return {"lr_find": {"suggestion": suggestion, "points": points}, "trainer": trainer,
            "module": module, "datamodule": datamodule}
