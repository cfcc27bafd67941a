"""The mistakes in a command's config that can be found before anything is written, and the Hydra
callbacks (`TrainCheck`, `EvalCheck`, in configs/train.yaml and eval.yaml) that refuse them before
Hydra makes the run folder: a refused command leaves nothing behind.

This module imports neither torch nor Lightning at the top, so that the settings alone are checked in
a fraction of a second; what needs them (the data module, the GPU, the model source) comes after.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from digits_zoo.errors import ConfigError, check_count, check_number
from digits_zoo.training.messages import user_message
from digits_zoo.training.run_folders import refuse

SEEDS = (0, 2**32 - 1)  # the seeds Lightning's seed_everything takes (numpy's)
# Trainer arguments that train() sets itself (a value in cfg.trainer would be silently replaced), and where they come from
SET_BY_TRAIN = {
    "callbacks": "callbacks come from the callbacks group: add one with +callbacks.NAME._target_=CLASS "
    "(and +callbacks.NAME.ARG=VALUE for its arguments)",
    "logger": "loggers come from the logger group: logger=csv, tensorboard or mlflow, logger=[csv,tensorboard], or "
    "~logger for none",
    "plugins": "train.py sets the Trainer's plugins itself (its atomic checkpoint writing)",
}
# what a callback's `monitor` can watch: the epoch metrics DigitClassifier logs (tests/test_command.py checks them)
MONITORED = ("train/loss", "train/acc", "val/loss", "val/acc")
EVAL_TAKES = (
    "model_source",
    "data",
    "trainer",
    "logger",
    "allow_other_dataset",
    "tta",
    "seed",
    "paths",
)  # configs/eval.yaml's


def check_accelerator(accelerator: str | None) -> None:
    """A GPU asked for where torch sees none: one line instead of Lightning's stack trace."""
    if str(accelerator) not in ("gpu", "cuda"):
        return
    import torch

    mps = str(accelerator) == "gpu" and torch.backends.mps.is_available()  # Lightning's "gpu" takes Apple's too
    if not (torch.cuda.is_available() or mps):
        raise ConfigError(
            f"trainer.accelerator={accelerator}, but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use trainer=cpu, "
            "or the default trainer.accelerator=auto, which takes a GPU when there is one"
        )


def check_settings(cfg: DictConfig) -> None:
    """A training run's settings, each a ConfigError: what needs no library beyond Hydra's."""
    if cfg.data.get("benchmark"):
        raise ConfigError(
            f"data={cfg.data.benchmark} is the robustness benchmark, a test set: test a model on it with "
            f"digits-zoo eval model_source=SOURCE data={cfg.data.benchmark}, or add robustness=true to a training run"
        )
    check_count("trainer.max_epochs", cfg.trainer.get("max_epochs"))
    if cfg.trainer.get("limit_test_batches", 1) == 0:  # Lightning would skip trainer.test, which results.json reports
        raise ConfigError(
            "trainer.limit_test_batches=0 would skip the test that every run ends with (results.json and "
            "the leaderboard report it); keep it above 0, and compare recipes by best_val/acc"
        )
    for key, source in SET_BY_TRAIN.items():
        if key in cfg.trainer:
            raise ConfigError(f"trainer.{key} would be ignored: {source}")
    seed, (low, high) = cfg.get("seed"), SEEDS
    if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
        raise ConfigError(f"seed must be a whole number from {low} to {high}, got {seed!r}")
    for key, positive in (("lr", True), ("eps", True), ("weight_decay", False)):  # (as DigitClassifier checks them)
        if key in cfg.optimizer:
            check_number(f"optimizer.{key}", cfg.optimizer[key], positive=positive)
    for name, callback in (cfg.get("callbacks") or {}).items():  # (Lightning would stop after the first epoch)
        if callback is not None and callback.get("monitor") not in (None, *MONITORED):
            raise ConfigError(
                f"callbacks.{name}.monitor={callback.monitor} is not a metric the run logs; choose one of {', '.join(MONITORED)}"
            )


def check_config(cfg: DictConfig, datamodule) -> None:
    """Everything a training run can be refused for before it writes anything: its settings, its data
    module (or the data module's DataError for missing files that download=false will not fetch), its GPU."""
    from lightning.pytorch import Trainer

    from digits_zoo.data.contract import check_data_module  # (Lightning)
    from digits_zoo.training.losses import training_loss  # (torch)

    check_settings(cfg)
    training_loss(cfg.loss, cfg.get("label_smoothing", 0.0))  # (as DigitClassifier checks it)
    takes = inspect.signature(Trainer).parameters
    for key in cfg.trainer:
        if key != "_target_" and key not in takes:
            hint = difflib.get_close_matches(key, takes, n=1)
            raise ConfigError(
                f"trainer.{key} is not an argument of Lightning's Trainer; "
                f"{f'did you mean trainer.{hint[0]}? ' if hint else ''}see its documentation for the arguments it takes"
            )
    check_data_module(datamodule)
    if cfg.get("robustness") and datamodule.dataset_cls.__name__ != "MNIST":
        raise ConfigError(
            f"robustness=true tests on MNIST-C, which is made from MNIST's test set, and this run trains on "
            f"{datamodule.dataset_cls.__name__}; drop robustness=true"
        )
    check_accelerator(cfg.trainer.get("accelerator"))
    datamodule.check_files()


def check_eval_keys(cfg: DictConfig, groups: list[str]) -> None:
    """Refuse what eval.py would silently ignore: a key or config group (`groups`: the ones chosen) outside
    configs/eval.yaml's (`+model=lenet5` would otherwise exit 0 having evaluated model_source's model)."""
    added = [group for group in groups if not group.startswith("hydra/") and group not in EVAL_TAKES]
    added += [key for key in cfg if key not in EVAL_TAKES and key != "hydra" and key not in added]
    if added:
        hint = (
            " (the model is model_source's: a shipped model's name, a run folder or a checkpoint)"
            if "model" in added
            else ""
        )
        raise ConfigError(
            f"eval.py does not use {', '.join(added)}{hint}; it takes model_source, data=, trainer=, logger=, "
            "allow_other_dataset, tta, seed (see python eval.py --help)"
        )


def check_model_source(cfg: DictConfig) -> None:
    """eval.py's model_source: given, and a shipped model's name or an existing checkpoint or run folder."""
    if OmegaConf.is_missing(cfg, "model_source"):
        raise ConfigError(
            "eval needs model_source=SOURCE: a shipped model's name (digits-zoo weights list), "
            "a run folder of train.py or a checkpoint"
        )
    from digits_zoo.models.pretrained import list_pretrained, resolve_checkpoint, shipped_names  # (torch)

    source = str(cfg.model_source)
    if Path(source).expanduser().exists():
        resolve_checkpoint(source)  # a run folder without a checkpoint is refused here
    elif source not in list_pretrained():
        raise ConfigError(f"{source}: no such checkpoint file, run folder or shipped model; {shipped_names(source)}")


class _Check(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            self.check(config)
        except Exception as error:
            if (message := user_message(error)) is None:
                raise  # a bug: Hydra warns, and the run meets it again
            refuse(message)

    def check(self, config: DictConfig) -> None:
        raise NotImplementedError


class TrainCheck(_Check):
    """configs/train.yaml's Hydra callback. (`train` checks a resumed run's own config.)"""

    def check(self, config: DictConfig) -> None:
        if config.get("resume"):
            return
        if launcher := config.hydra.runtime.choices.get("launcher"):  # (a run's threads would be a sweep job's)
            raise ConfigError(
                f"launcher={launcher} runs the jobs of a sweep: add -m (python train.py -m launcher={launcher} ...), "
                "or leave it out for one run"
            )
        check_settings(config)  # the quick ones first: a typo is refused before torch is imported
        check_config(config, instantiate(config.data))
        from digits_zoo.models.registry import check_arguments  # (torch)

        check_arguments(config.model.name, config.model.get("kwargs") or {})


class EvalCheck(_Check):
    """configs/eval.yaml's Hydra callback."""

    def check(self, config: DictConfig) -> None:
        check_eval_keys(config, list(config.hydra.runtime.choices))
        check_model_source(config)
        check_accelerator(config.trainer.get("accelerator"))
