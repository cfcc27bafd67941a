"""`digits_zoo.fit`: a training run from Python (a notebook, a script), configured exactly as
`python train.py` is.

    run = digits_zoo.fit("lenet5", ["trainer.max_epochs=3"])
    run.metrics["test/acc"], run.run_dir, run.module, run.history

Hydra's compose API builds the configuration from `configs/` with the same overrides the command
line takes, and Hydra's own `run_job` runs it, so the run folder holds what a `train.py` run leaves
(`.hydra/`, `train.log`, checkpoints, pictures, `results.json`), claimed by the same run-folder guard.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from hydra import compose, initialize_config_dir
from hydra.core.utils import run_job
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from digits_zoo.cli import config_dir, register_resolvers
from digits_zoo.errors import ConfigError
from digits_zoo.models import list_models
from digits_zoo.training.messages import user_message


@dataclass
class Fit:
    """What one run made: its results (as in `results.json`), the run folder and the live objects."""

    metrics: dict
    run_dir: Path
    cfg: DictConfig
    module: L.LightningModule
    trainer: L.Trainer
    datamodule: L.LightningDataModule

    @property
    def history(self) -> list[dict]:
        """Keras' `History`: per epoch, counted from 1, its mean `train/loss`, `train/acc` and, where
        there is a validation split, `val/loss`, `val/acc`: what the epoch lines and the curves show."""
        epochs = sorted(self.module.history.items())
        return [{"epoch": epoch + 1, **dict(sorted(values.items()))} for epoch, values in epochs]


def compose_train_config(overrides: Sequence[str] = ()) -> DictConfig:
    """`configs/train.yaml` with Hydra overrides, its `hydra` node included, as `digits-zoo train` composes it."""
    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="train"):
            return compose("train", overrides=list(overrides), return_hydra_config=True)
    except Exception as error:  # an unknown option or key, bad override syntax: the command line's one line
        message = user_message(error)
        if message is None:
            raise
        raise ConfigError(message) from None


@contextmanager
def root_logger_kept() -> Iterator[None]:
    """Hydra's job logging takes the root logger over for a run (its console and train.log, as in
    train.py); after it the caller's handlers and level are back, and the run's are closed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:], root.level = handlers, level


def _compose(model: str | None, overrides: Sequence[str]) -> DictConfig:
    """The run's configuration: `model=MODEL` and the overrides; a registered model without a
    `configs/model/` file of its own (one registered in a notebook) goes by its name, with no arguments."""
    if not model:
        return compose_train_config(overrides)
    try:
        return compose_train_config([f"model={model}", *overrides])
    except ConfigError as error:
        if model not in list_models() or not str(error).startswith(f"unknown model={model};"):
            raise
    return compose_train_config(["~model", f"+model.name={model}", "+model.kwargs={}", *overrides])


def _quiet(cfg: DictConfig) -> None:
    """No progress bar, model summary or log lines on the console; train.log keeps the log."""
    with open_dict(cfg):
        if cfg.get("callbacks"):
            cfg.callbacks.progress_bar = None
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False  # (rich prints it, not the log)
        root = OmegaConf.select(cfg, "hydra.job_logging.root")
        if root is not None and root.get("handlers"):
            root.handlers = [handler for handler in root.handlers if handler != "console"]


def fit(model: str | None = None, overrides: Sequence[str] = (), *, quiet: bool = False) -> Fit:
    """Train and test like `python train.py model=MODEL OVERRIDES...`, in this process.

    `model` is any registered model (`list_models()`), also one registered here without a
    `configs/model/` file. `overrides` are Hydra overrides, e.g. `["trainer.max_epochs=3",
    "data.batch_size=128"]`; a sweep (several values, an `hparams_search` preset) is for
    `python train.py -m`. `quiet=True` shows no progress bar, model summary or log lines (the run's
    train.log still has the log). Errors the user can fix are raised as
    `digits_zoo.errors.DigitsZooError` with the command line's message.
    """
    from hydra._internal.callbacks import Callbacks  # what Hydra's own run calls; not exported

    from digits_zoo.training.run import train

    cfg = _compose(model, overrides)
    if cfg.hydra.mode == RunMode.MULTIRUN:  # (Hydra itself refuses a,b and range(...) without -m)
        raise ConfigError(
            "fit runs one job; for a sweep or an hparams_search preset use digits-zoo train -m ... (python train.py -m in a checkout)"
        )
    if cfg.get("lr_find"):
        raise ConfigError("fit trains and tests; for the learning-rate range test use digits-zoo train lr_find=true")
    if quiet:
        _quiet(cfg)
    with open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.RUN
    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name="train")  # the run-folder guard claims the folder
    with root_logger_kept():
        job = run_job(
            task_function=train,
            config=cfg,
            job_dir_key="hydra.run.dir",
            job_subdir_key=None,
            hydra_context=HydraContext(config_loader=None, callbacks=callbacks),
        )
        callbacks.on_run_end(config=cfg, config_name="train", job_return=job)
    out = job.return_value  # (raises the run's exception, as Hydra's run does)
    return Fit(
        metrics=out["metrics"],
        run_dir=Path(job.hydra_cfg.hydra.runtime.output_dir),
        cfg=job.cfg,
        module=out["module"],
        trainer=out["trainer"],
        datamodule=out["datamodule"],
    )
