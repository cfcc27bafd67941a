"""`train(cfg)`: fit, test and write the run folder. `train.py` is only its Hydra entry point."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, StochasticWeightAveraging, Timer, WeightAveraging
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from digits_zoo.errors import ConfigError
from digits_zoo.models.pretrained import load_pretrained
from digits_zoo.training import robustness
from digits_zoo.training.callbacks import EpochLines, EpochSeed
from digits_zoo.training.checkpoints import AtomicCheckpointIO
from digits_zoo.training.checks import check_config
from digits_zoo.training.figures import RunFigures
from digits_zoo.training.lr_find import find_learning_rate
from digits_zoo.training.module import DigitClassifier, harmless_warnings_hidden
from digits_zoo.training.pruning import TrialPruning
from digits_zoo.training.results import loggers, markdown, report
from digits_zoo.training.resume import Resume, keep_logged_epochs, load_resume, record_extension
from digits_zoo.training.stops import reporting_stops
from digits_zoo.writes import write_text_atomically

log = logging.getLogger(__name__)


def _callbacks(cfg: DictConfig, validation: bool) -> list[L.Callback]:
    callbacks = []
    for conf in (cfg.get("callbacks") or {}).values():
        if conf is None:
            continue
        target = get_object(conf._target_)  # a class, or a factory such as callbacks.progress_bar
        if not validation and isinstance(target, type) and issubclass(target, ModelCheckpoint) and conf.get("monitor"):
            continue  # nothing to rank a "best" by: last.ckpt, the final weights, is the one to test
        callback = instantiate(conf)
        if callback is None or (isinstance(callback, ProgressBar) and not cfg.trainer.get("enable_progress_bar", True)):
            continue  # (progress_bar's None: no bar in a log; Lightning refuses a bar with enable_progress_bar=false)
        callbacks.append(callback)
    return callbacks


def _drop_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


# Lightning's lines on every run that tell a user nothing the epoch lines do not; train.log keeps them for a bug report
_FILE_ONLY = re.compile(r"(GPU|TPU|HPU) available: |`Trainer.fit` stopped: `max_epochs=")


def _console_shows(record: logging.LogRecord) -> bool:
    """Not the records meant for train.log only: Lightning's device lines, and the epoch lines where a
    progress bar shows the same (`callbacks.EpochLines`)."""
    return not (getattr(record, "file_only", False) or _FILE_ONLY.match(str(record.msg)))


@contextmanager
def tidy_lightning_logging() -> Iterator[None]:
    """`import lightning` gives its loggers console handlers of their own: where the root logger had
    handlers then, it also propagates to them (every message printed twice); where it had none (a
    notebook, a test), it does not (its messages never reach the run's train.log). While it runs, where
    the application configured the root logger (Hydra does), Lightning's records go to the root's
    handlers alone. Lightning's advert for a cloud logger is dropped, and the console (the root's
    handlers but its files: Hydra's train.log is one) shows only what `_console_shows`."""
    root, rank_zero = logging.getLogger(), logging.getLogger("lightning.pytorch.utilities.rank_zero")
    lightning = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch", "lightning.fabric")]
    saved = [(logger.handlers[:], logger.propagate) for logger in lightning]
    consoles = [
        handler
        for handler in root.handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]
    if root.hasHandlers():
        for logger in lightning:
            logger.handlers.clear()
            logger.propagate = True
    rank_zero.addFilter(_drop_tips)
    for console in consoles:
        console.addFilter(_console_shows)
    try:
        yield
    finally:
        for logger, (handlers, propagate) in zip(lightning, saved):
            logger.handlers[:], logger.propagate = handlers, propagate
        rank_zero.removeFilter(_drop_tips)
        for console in consoles:
            console.removeFilter(_console_shows)


@contextmanager
def run_settings() -> Iterator[None]:
    """Around a run in this process (train(), evaluate(), a search's chosen test), so that a notebook
    goes on as it was: Lightning's logging tidied and its harmless warnings hidden while it runs, and
    the environment, where Lightning keeps the seed (PL_GLOBAL_SEED) and DDP its addresses, and torch's
    CPU threads (`threads=`) as they were after it."""
    environ, threads = dict(os.environ), torch.get_num_threads()
    try:
        with tidy_lightning_logging(), harmless_warnings_hidden():
            yield
    finally:
        for key in os.environ.keys() - environ.keys():
            del os.environ[key]
        os.environ.update(environ)
        torch.set_num_threads(threads)


@run_settings()
def train(cfg: DictConfig, stopped: Path | None = None) -> dict:
    """Train `cfg.model` on `cfg.data`, test the best checkpoint, write `results.json`. With
    `cfg.resume` set to a run folder, continue that run from its last checkpoint instead. A trial of
    a search (`cfg.optimized_metric` set) is not tested: the sweep's leaderboard tests the trial
    chosen by validation, once, after the search. `stopped`: the folder of a sweep's job that stopped
    (`sweeps.stopped`), which goes on as `resume=` would continue it.

    Returns {"metrics": results, "trainer", "module", "datamodule"} so callers and tests can look
    further.
    """
    resume = load_resume(cfg.resume) if cfg.get("resume") else None
    if stopped:  # (its own overrides are the job's: nothing to check)
        resume = load_resume(stopped, check_overrides=False)
    if resume:
        cfg = resume.cfg
        log.info("Resuming %s from the end of epoch %d", cfg.paths.output_dir, resume.epoch + 1)
        if resume.extended_from is not None:
            log.info("Extending it from %d to %d epochs", resume.extended_from, cfg.trainer.max_epochs)
    if cfg.get("threads"):  # (a launcher's parallel jobs share the cores: configs/launcher)
        torch.set_num_threads(cfg.threads)
    datamodule = instantiate(cfg.data)
    check_config(cfg, datamodule)
    out_dir = _run_folder(cfg, resume)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = _module(cfg, datamodule, resume)
    trainer, timer = _trainer(cfg, datamodule, resume)
    if cfg.get("lr_find"):
        with reporting_stops(trainer, out_dir):
            return find_learning_rate(cfg, trainer, module, datamodule, out_dir)
    _fit(trainer, module, datamodule, resume, out_dir)
    # read now: testing a checkpoint restores the Timer's state, its training time at that epoch, as an offset
    train_seconds = timer.time_elapsed("train")
    best, ranking = _weights_to_test(trainer, out_dir)
    test_metrics = _test(cfg, trainer, module, datamodule, best, out_dir)
    results = _results(cfg, trainer, module, datamodule, test_metrics, best, ranking, train_seconds)
    if cfg.get("robustness") and test_metrics["test/acc"] is not None and trainer.is_global_zero:
        results.update(robustness.of_run(module.model, datamodule, out_dir))  # (the tested weights, loaded)
    report(trainer, out_dir, results, "Summary", markdown([results]))
    return {"metrics": results, "trainer": trainer, "module": module, "datamodule": datamodule}


def _run_folder(cfg: DictConfig, resume: Resume | None) -> Path:
    """The run folder, made, with the run's resolved config.yaml (a resumed run keeps its own, which
    an extension's trainer.max_epochs=N updates)."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank != 0:  # with DDP every process runs train(cfg) in the same run folder
        return out_dir
    if not resume:
        write_text_atomically(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    elif resume.extended_from is not None:
        record_extension(out_dir, cfg.trainer.max_epochs)
    return out_dir


def _module(cfg: DictConfig, datamodule, resume: Resume | None) -> DigitClassifier:
    """The model to train, with its pretrained weights where `model.pretrained` names them."""
    module = DigitClassifier(
        model=cfg.model.name,
        model_kwargs=OmegaConf.to_container(cfg.model, resolve=True).get("kwargs") or {},
        loss=cfg.loss,
        label_smoothing=cfg.get("label_smoothing", 0.0),  # (a run folder made before it has none)
        compile=cfg.model.get("compile", False),
        channels_last=cfg.model.get("channels_last", False),
        freeze_features=cfg.model.get("freeze_features", False),
        **cfg.optimizer,
    )
    if module.model.num_classes != datamodule.num_classes:
        raise ConfigError(
            f"{cfg.model.name} has {module.model.num_classes} classes and {datamodule.dataset_cls.__name__} "
            f"{datamodule.num_classes}; set model.kwargs.num_classes={datamodule.num_classes}"
        )
    if cfg.model.get("pretrained") and not resume:  # a resumed run's weights come from its checkpoint
        load_pretrained(
            module.model, cfg.model.name, cfg.model.pretrained, fresh_head=cfg.model.get("reset_head", False)
        )
        if cfg.model.get("reset_head"):
            module.model.reset_classifier(module.model.num_classes)
    return module


def _trainer(cfg: DictConfig, datamodule, resume: Resume | None) -> tuple[L.Trainer, Timer]:
    """The Trainer of `cfg.trainer` with the run's callbacks, loggers and checkpoint writing, and its
    Timer (training time, carried over a resume in the checkpoint)."""
    validation = datamodule.has_validation
    if cfg.get("optimized_metric") and (cfg.optimized_metric != "val/acc" or not validation):
        raise ConfigError(
            f"optimized_metric={cfg.optimized_metric}: a search maximises the best epoch's val/acc, "
            "which needs a validation split; keep data.val_size above 0 (the test set never chooses)"
        )
    run_loggers = loggers(cfg)
    if resume:
        keep_logged_epochs(run_loggers, resume.epoch)
    timer = Timer()
    callbacks = _callbacks(cfg, validation)
    # a search's trial (+search.trial=N): each epoch's val/acc to its study, whose pruner may stop it
    trial = [TrialPruning(cfg.search.trial)] if cfg.get("search") and not resume else []
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*callbacks, EpochSeed(cfg.seed), timer, RunFigures(), EpochLines(), *trial],
        # the bar is the callbacks group's: none there (in a log, callbacks.progress_bar=null) is none, not Lightning's own
        enable_progress_bar=any(isinstance(callback, ProgressBar) for callback in callbacks),
        logger=run_loggers or False,
        plugins=[AtomicCheckpointIO()],
        **({} if validation else {"limit_val_batches": 0}),
    )
    return trainer, timer


def _fit(trainer: L.Trainer, module: DigitClassifier, datamodule, resume: Resume | None, out_dir: Path) -> None:
    """Train from the start, or from a resumed run's last checkpoint."""
    with warnings.catch_warnings():
        if resume:  # its folders are meant to exist
            warnings.filterwarnings("ignore", message=".* directory .* exists and is not empty")
        # weights_only: loading a checkpoint never runs pickled code
        with reporting_stops(trainer, out_dir):  # SIGTERM, Ctrl+C: one line that says how to go on
            trainer.fit(
                module, datamodule=datamodule, ckpt_path=resume.checkpoint if resume else None, weights_only=True
            )


def _weights_to_test(trainer: L.Trainer, out_dir: Path) -> tuple[str, ModelCheckpoint | None]:
    """The checkpoint to test ("": the weights in memory) and the callback that chose it by val/acc
    (None: the final or averaged weights, not chosen)."""
    ranking = next((callback for callback in trainer.checkpoint_callbacks if callback.monitor), None)
    best = ranking.best_model_path if ranking else ""
    if any(isinstance(callback, StochasticWeightAveraging) for callback in trainer.callbacks):
        # its averaged weights exist only now, after training: they are the ones to test
        best, ranking = str(out_dir / "checkpoints" / "averaged.ckpt"), None
        trainer.save_checkpoint(best)
        log.info("StochasticWeightAveraging: testing its averaged weights, saved as %s", best)
    return best, ranking


def _test(cfg: DictConfig, trainer: L.Trainer, module: DigitClassifier, datamodule, best: str, out_dir: Path) -> dict:
    """The test's metrics on `best`, or on the weights in memory (a search's trial: None, not tested)."""
    # WeightAveraging (callbacks=ema) keeps its fit-time model, and through it a test would load the
    # checkpoint's raw weights; without it the test loads the averaged ones, which were validated
    averaging = [callback for callback in trainer.callbacks if isinstance(callback, WeightAveraging)]
    trainer.callbacks = [callback for callback in trainer.callbacks if callback not in averaging]
    if cfg.get("optimized_metric"):  # a search's trial: the test set must play no part in the choice
        return {"test/acc": None, "test/loss": None}
    # the best checkpoint on val/acc; without validation, the final weights
    with reporting_stops(trainer, out_dir), warnings.catch_warnings():
        if averaging:  # (Lightning's advice to pass the callback that wrote the checkpoint)
            warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`")
        (test_metrics,) = trainer.test(
            module, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True
        )
    return test_metrics


def _results(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: DigitClassifier,
    datamodule,
    test_metrics: dict,
    best: str,
    ranking: ModelCheckpoint | None,
    train_seconds: float,
) -> dict:
    """The run's results.json."""
    ranked = ranking is not None and bool(best)  # else the final (or averaged) weights were tested
    # counted from 1: the epoch after which the tested weights were saved
    best_epoch = (
        torch.load(best, map_location="cpu", weights_only=True)["epoch"] + 1 if ranked else trainer.current_epoch
    )
    trial = next((callback for callback in trainer.callbacks if isinstance(callback, TrialPruning)), None)
    return {
        "model": cfg.model.name,
        "dataset": datamodule.dataset_cls.__name__,
        "params": sum(p.numel() for p in module.model.parameters()),
        "epochs": trainer.current_epoch,
        "best_epoch": best_epoch,
        "train_seconds": round(train_seconds, 2),
        "test/acc": test_metrics["test/acc"],  # None: a search's trial, not tested
        "test/loss": test_metrics["test/loss"],
        "best_checkpoint": best or None,
        "best_val/acc": float(ranking.best_model_score) if ranked else None,
        "seed": cfg.seed,
        **({"pruned_epoch": trial.pruned_epoch} if trial else {}),  # a search's trial: null, or where it stopped
    }
