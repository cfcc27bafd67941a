"""`train(cfg)`: fit, test and write the run folder. `train.py` is only its Hydra entry point."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from digits_zoo.errors import ConfigError, check_count
from digits_zoo.leaderboard import markdown
from digits_zoo.module import DigitClassifier
from digits_zoo.weights import load_pretrained

log = logging.getLogger(__name__)


def _callbacks(cfg: DictConfig, validation: bool) -> list[L.Callback]:
    callbacks = []
    for conf in (cfg.get("callbacks") or {}).values():
        if conf is None:
            continue
        target = get_object(conf._target_)  # a class, or a factory such as callbacks.progress_bar
        if not validation and isinstance(target, type) and issubclass(target, ModelCheckpoint):
            # nothing to rank a "best" by: keep last.ckpt, the final weights, only
            callbacks.append(instantiate(conf, monitor=None, save_top_k=0))
        else:
            callbacks.append(instantiate(conf))
    return callbacks


def _drop_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def _tidy_lightning_logging() -> None:
    """`import lightning` adds its own console handler and also propagates to the root logger, so
    where the application configured the root logger (Hydra does) every message printed twice.
    Lightning also advertises a cloud logger on every run."""
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _drop_tips not in rank_zero.filters:
        rank_zero.addFilter(_drop_tips)


def train(cfg: DictConfig) -> dict:
    """Train `cfg.model` on `cfg.data`, test the best checkpoint, write `results.json`.

    Returns {"metrics": results, "trainer", "module", "datamodule"} so callers and tests can look
    further.
    """
    _tidy_lightning_logging()
    check_count("trainer.max_epochs", cfg.trainer.get("max_epochs"))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:  # with DDP, every process runs train(cfg) in the same run folder
        OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    module = DigitClassifier(
        model=cfg.model.name,
        model_kwargs=OmegaConf.to_container(cfg.model, resolve=True).get("kwargs") or {},
        loss=cfg.loss,
        compile=cfg.model.get("compile", False),
        channels_last=cfg.model.get("channels_last", False),
        freeze_features=cfg.model.get("freeze_features", False),
        **cfg.optimizer,
    )
    if module.model.num_classes != datamodule.num_classes:
        raise ConfigError(f"{cfg.model.name} has {module.model.num_classes} classes and {datamodule.dataset_cls.__name__} "
                          f"{datamodule.num_classes}; set model.kwargs.num_classes={datamodule.num_classes}")
    if cfg.model.get("pretrained"):
        load_pretrained(module.model, cfg.model.name, cfg.model.pretrained, fresh_head=cfg.model.get("reset_head", False))
        if cfg.model.get("reset_head"):
            module.model.reset_classifier(module.model.num_classes)
    validation = datamodule.has_validation
    loggers = [instantiate(conf) for conf in (cfg.get("logger") or {}).values() if conf is not None]
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=_callbacks(cfg, validation),
        logger=loggers or False,
        **({} if validation else {"limit_val_batches": 0}),
    )

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_seconds = time.perf_counter() - start

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    # the best checkpoint on val/acc; without validation, the final weights
    (test_metrics,) = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)

    # counted from 1: the epoch after which the tested weights were saved
    best_epoch = torch.load(best, map_location="cpu", weights_only=True)["epoch"] + 1 if best else trainer.current_epoch
    results = {
        "model": cfg.model.name,
        "params": sum(p.numel() for p in module.model.parameters()),
        "epochs": trainer.current_epoch,
        "best_epoch": best_epoch,
        "train_seconds": round(train_seconds, 2),
        "test/acc": test_metrics["test/acc"],
        "test/loss": test_metrics["test/loss"],
        "best_checkpoint": best or None,
        "best_val/acc": float(trainer.checkpoint_callback.best_model_score) if best else None,
        "seed": cfg.seed,
    }
    if trainer.is_global_zero:
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        log.info("Summary\n\n%s\nrun folder: %s", markdown([results]), out_dir)
    return {"metrics": results, "trainer": trainer, "module": module, "datamodule": datamodule}
