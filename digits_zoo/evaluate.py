"""`evaluate(cfg)`: test a trained model without training. `eval.py` is its Hydra entry point.

    python eval.py model_source=SOURCE [data=NAME [allow_other_dataset=true]] [trainer=gpu] [logger=tensorboard]
    python eval.py model_source=SOURCE data=mnist_c [tta=true]   (the robustness benchmark: training/robustness.py)

SOURCE is what `predict --model` takes: a checkpoint, a run folder or a shipped model's name. The
test set is that of the dataset the model was trained on (its checkpoint's or manifest's record); a
`data=` that names another is refused unless `allow_other_dataset=true`. The test images are
prepared as the model's were in training (standardised with the mean and std its checkpoint
recorded, where they were). The run folder gets `results.json` and the test's pictures
(confusion matrices, per-digit accuracy, most confident mistakes; no training curves: nothing is
trained), and the summary is printed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from digits_zoo.data.contract import check_data_module
from digits_zoo.data.mnist_c import default_cache_dir
from digits_zoo.errors import ConfigError
from digits_zoo.models.tta import TestTimeAugmentation
from digits_zoo.predict import load_trained
from digits_zoo.training import robustness
from digits_zoo.training.callbacks import progress_bar
from digits_zoo.training.checks import check_accelerator, check_eval_keys
from digits_zoo.training.figures import RunFigures
from digits_zoo.training.module import DigitClassifier
from digits_zoo.training.results import evaluation_markdown, loggers, report, write_results
from digits_zoo.training.run import run_settings

log = logging.getLogger(__name__)


def datamodule_for(cfg: DictConfig, trained):
    """The data module of the test set (data=NAME's own class, else MNISTDataModule): the model's own dataset
    unless `cfg.data` names one, read as the model's inputs were in training (whatever data.standardize says),
    with no hold-out."""
    settings = OmegaConf.to_container(cfg.data, resolve=True)
    dataset = settings.get("dataset") or trained.dataset
    if dataset != trained.dataset and not cfg.get("allow_other_dataset"):
        raise ConfigError(
            f"{cfg.model_source} was trained on {trained.dataset}, not {dataset}; drop data= to test it on "
            f"{trained.dataset}, or add allow_other_dataset=true to test it on {dataset} anyway"
        )
    settings = {
        "_target_": "digits_zoo.data.MNISTDataModule",
        **settings,
        "dataset": dataset,
        "standardize": False,
        "normalization": trained.normalization,
        "val_size": 0,
        "train_size": None,
    }
    datamodule = instantiate(settings)
    check_data_module(datamodule)
    return datamodule


@run_settings()
def evaluate(cfg: DictConfig) -> dict:
    """Test `cfg.model_source` on the test set of its own dataset (or, with `allow_other_dataset`,
    of `cfg.data`'s); returns {"metrics", "trainer", "module"}."""
    check_eval_keys(cfg, list(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else [])
    check_accelerator(cfg.trainer.get("accelerator"))
    out_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, verbose=False)
    trained = load_trained(cfg.model_source)
    if cfg.data.get("benchmark") == "mnist_c":
        return {"metrics": benchmark(cfg, trained.with_tta() if cfg.get("tta") else trained, out_dir)}
    datamodule = datamodule_for(cfg, trained)
    if trained.network.num_classes != datamodule.num_classes:
        raise ConfigError(
            f"{cfg.model_source} classifies {trained.network.num_classes} classes and "
            f"{datamodule.dataset_cls.__name__} has {datamodule.num_classes}; choose a dataset it was trained for"
        )
    module = DigitClassifier(**{**trained.hparams, "compile": False})
    module.model.load_state_dict(trained.network.state_dict())
    if cfg.get("tta"):
        module.model, trained = TestTimeAugmentation(module.model), trained.with_tta()
    bar = progress_bar() if cfg.trainer.get("enable_progress_bar", True) else None  # (none in a log or a pipe)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=loggers(cfg) or False,
        callbacks=[RunFigures(), *([bar] if bar else [])],
        enable_progress_bar=bar is not None,
        enable_checkpointing=False,
    )
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    results = {
        "model": trained.name,
        "source": str(cfg.model_source),
        "tta": bool(cfg.get("tta")),
        "dataset": datamodule.dataset_cls.__name__,  # the test set's
        "trained_on": trained.dataset,
        "test_images": len(datamodule.splits["test"][1]),
        "test/acc": metrics["test/acc"],
        "test/loss": metrics["test/loss"],
        "normalization": list(trained.normalization) if trained.normalization else None,
    }
    report(trainer, out_dir, results, "Evaluation", evaluation_markdown([results]))
    return {"metrics": results, "trainer": trainer, "module": module}


def benchmark(cfg: DictConfig, trained, out_dir: Path) -> dict:
    """`data=mnist_c`: the robustness benchmark of `trained` (an MNIST model) in the run folder: results.json,
    robustness.png, the table in the log, and the numbers in the run's loggers."""
    if trained.dataset != "MNIST":
        raise ConfigError(
            f"data=mnist_c is made from MNIST's test set and {cfg.model_source} was trained on {trained.dataset}; "
            "test it on its own test set without data="
        )
    cuda = cfg.trainer.get("accelerator") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    limit, cache = cfg.data.get("limit"), cfg.data.get("cache_dir")
    measured = robustness.measure_mnist(
        trained.network.to("cuda" if cuda else "cpu"),
        trained.normalization,
        cfg.data.get("data_dir"),
        cfg.data.get("download", True),
        corruptions=OmegaConf.to_container(cfg.data.corruptions) if cfg.data.get("corruptions") else None,
        limit=limit,
        cache_dir=Path(cache).expanduser() if cache else default_cache_dir(),
        batch_size=cfg.data.get("eval_batch_size", 1000),
    )
    results = {
        "model": trained.name,
        "source": str(cfg.model_source),
        "tta": bool(cfg.get("tta")),
        "dataset": "MNIST-C",
        "trained_on": trained.dataset,
        **measured,
    }
    write_results(out_dir, results)
    robustness.save(results, out_dir, f"{trained.name} ({cfg.model_source}) on MNIST-C")
    for logger in loggers(cfg):
        logger.log_metrics({key: value for key, value in measured.items() if key != "test_images"}, step=0)
        logger.finalize("success")
    log.info("Robustness\n\n%s\nrun folder: %s", robustness.markdown(results), out_dir)
    return results
