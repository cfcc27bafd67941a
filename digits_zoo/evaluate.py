"""`evaluate(cfg)`: test a trained model without training. `eval.py` is its Hydra entry point.

    python eval.py model_source=SOURCE [data=fashion_mnist] [trainer=gpu] [logger=tensorboard]

SOURCE is what `predict --model` takes: a checkpoint, a run folder or a shipped model's name. The
test images are prepared as the model's were in training (standardised with the mean and std its
checkpoint recorded, where they were). The run folder gets `results.json` and the test's pictures
(confusion matrices, per-digit accuracy, most confident mistakes; no training curves: nothing is
trained), and the summary is printed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from digits_zoo.callbacks import progress_bar
from digits_zoo.errors import ConfigError
from digits_zoo.module import DigitClassifier
from digits_zoo.predict import load_trained
from digits_zoo.training import check_accelerator, tidy_lightning_logging
from digits_zoo.writes import write_text_atomically

log = logging.getLogger(__name__)
SUMMARY = ("model", "source", "dataset", "test images", "test accuracy", "test loss")


def evaluate(cfg: DictConfig) -> dict:
    """Test `cfg.model_source` on `cfg.data`'s test set; returns {"metrics", "trainer", "module"}."""
    tidy_lightning_logging()
    check_accelerator(cfg.trainer.get("accelerator"))
    out_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, verbose=False)
    trained = load_trained(cfg.model_source)
    # the test images as the model's were in training, whatever data.standardize says; no hold-out
    datamodule = instantiate(cfg.data, standardize=False, normalization=trained.normalization, val_size=0, train_size=None)
    if trained.network.num_classes != datamodule.num_classes:
        raise ConfigError(f"{cfg.model_source} classifies {trained.network.num_classes} classes and "
                          f"{datamodule.dataset_cls.__name__} has {datamodule.num_classes}; choose a dataset it was trained for")
    module = DigitClassifier(**{**trained.hparams, "compile": False})
    module.model.load_state_dict(trained.network.state_dict())
    loggers = [instantiate(conf) for conf in (cfg.get("logger") or {}).values() if conf is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[progress_bar()],
                                     enable_checkpointing=False)
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    results = {
        "model": trained.name,
        "source": str(cfg.model_source),
        "dataset": datamodule.dataset_cls.__name__,
        "test_images": len(datamodule.splits["test"][1]),
        "test/acc": metrics["test/acc"],
        "test/loss": metrics["test/loss"],
        "normalization": list(trained.normalization) if trained.normalization else None,
    }
    if trainer.is_global_zero:
        write_text_atomically(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
        row = [results["model"], results["source"], results["dataset"], f"{results['test_images']:,}",
               f"{100 * results['test/acc']:.2f}%", f"{results['test/loss']:.4f}"]
        table = "| " + " | ".join(SUMMARY) + " |\n|" + "---|" * len(SUMMARY) + "\n| " + " | ".join(row) + " |\n"
        log.info("Evaluation\n\n%s\nrun folder: %s", table, out_dir)
    return {"metrics": results, "trainer": trainer, "module": module}
