"""Continuing a run that stopped: `python train.py resume=outputs/<model>/<date>_<time>`.

The run goes on in its own folder, with its own `config.yaml`, from `checkpoints/last.ckpt`, which
is written at the end of every epoch. The epoch that was cut short starts again from its beginning;
everything random in an epoch (data order, augmentation, dropout) derives from the seed and the
epoch alone, so it replays exactly, and the run ends as it would have without the interruption.
`trainer.max_epochs=N` (the one override a resume takes) extends a run, finished or not, to N epochs:
training goes on from last.ckpt as if the run had been started with N, and the run folder's configs
record N (`record_extension`).
The folder may come from someone else: its checkpoint is read weights-only and its records checked,
and its config.yaml builds only the targets of an allow-list (`check_targets`, docs/security.md).
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf

from digits_zoo.errors import DigitsZooError, one_line
from digits_zoo.models.pretrained import WeightsError, holds_code, trained_on
from digits_zoo.writes import write_text_atomically

EXAMPLE = "outputs/flatten_mlp/2026-11-23_22-30-00"


class ResumeError(DigitsZooError):
    """A run folder that cannot be resumed."""


@dataclass(frozen=True)
class Resume:
    cfg: DictConfig  # the run's own configuration (trainer.max_epochs: where its training ends)
    checkpoint: Path  # its last.ckpt
    epoch: int  # the last finished epoch, counted from 0 as Lightning does
    stopped_early: bool = False  # an early-stopping callback ended its training (only its test is left)
    extended_from: int | None = None  # its trainer.max_epochs before `trainer.max_epochs=N` extended it


def load_resume(run: str | Path, *, check_overrides: bool = True) -> Resume:
    """The configuration and last checkpoint of the run folder `run`, checked before any training.
    `check_overrides=False`: only whether the folder can be resumed, not this process's command line
    (a run that stopped asks it about itself)."""
    folder = Path(run).expanduser()
    if not folder.is_dir():
        raise ResumeError(f"resume={run}: no such folder; give the run folder of a train.py run, e.g. {EXAMPLE}")
    others, max_epochs = _overrides() if check_overrides else ([], None)
    if others:
        raise ResumeError(
            f"resume={run} continues the run with its own config.yaml (only trainer.max_epochs=N, to extend it, "
            f"may change); drop the other overrides ({' '.join(others)})"
        )
    config, checkpoint = folder / "config.yaml", folder / "checkpoints" / "last.ckpt"
    if not config.is_file():
        raise ResumeError(f"resume={run}: no config.yaml in this folder, so it is not a train.py run folder")
    if not checkpoint.is_file():
        raise ResumeError(
            f"resume={run}: no checkpoints/last.ckpt, which is written when an epoch ends, so "
            "there is nothing to resume; train again without resume="
        )
    state = _read(checkpoint, lambda path: torch.load(path, map_location="cpu", weights_only=True))
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
        raise ResumeError(
            f"resume={run}: {checkpoint} is not a Lightning checkpoint (no epoch); train again without resume="
        )
    try:  # what predict, eval.py and export will read back from its checkpoints
        trained_on(state, checkpoint)
    except WeightsError as error:
        raise ResumeError(str(error)) from None
    # resolved now, so that what is checked is what is built (an interpolation could make a _target_)
    cfg = _read(config, lambda path: OmegaConf.create(OmegaConf.to_container(OmegaConf.load(path), resolve=True)))
    if not isinstance(cfg, DictConfig):
        raise ResumeError(f"resume={run}: its config.yaml is not a train.py configuration; train again without resume=")
    cfg = saved_config(cfg, f"resume={run}: its config.yaml")
    if Path(cfg.paths.output_dir).resolve() != folder.resolve():
        raise ResumeError(
            f"resume={run}: this run was made in {cfg.paths.output_dir}, and its configuration names "
            "that folder for checkpoints and logs; move it back there to resume it"
        )
    epoch, stopped_early = state["epoch"], _stopped_early(state)
    planned = cfg.trainer.max_epochs
    extended = max_epochs is not None and _extension(cfg, run, epoch + 1, stopped_early, max_epochs)
    if extended:
        cfg.trainer.max_epochs = extended
    elif stopped_early:  # Lightning would train on from the checkpoint: its training ended there
        cfg.trainer.max_epochs = epoch + 1
    return Resume(cfg, checkpoint, epoch, stopped_early, planned if extended else None)


def _extension(cfg: DictConfig, run: str | Path, done: int, stopped_early: bool, max_epochs: str) -> int | None:
    """The N of `trainer.max_epochs=N` that extends the run `run` (`done` epochs trained), or None
    where N is already its own (the command given again, or run again by DDP's other processes);
    refused where the run would not end as if it had been started with N."""
    planned = cfg.trainer.max_epochs
    command = f"resume={run} trainer.max_epochs={max_epochs}"
    if not max_epochs.isdigit():
        raise ResumeError(f"{command}: give the number of epochs the run should have, e.g. trainer.max_epochs=10")
    if stopped_early:  # Lightning would restore the stopped callback, which ends the run again at its first chance
        raise ResumeError(
            f"{command}: early stopping ended this run after epoch {done} of its {planned} (its patience had run "
            f"out), not its limit of epochs, so a higher limit does not train it on; to train on from its weights, "
            f"start a new run with model.pretrained={run} trainer.max_epochs={max_epochs}"
        )
    epochs = int(max_epochs)
    if epochs <= done or epochs < planned:
        has = (
            f"has {done} epochs"
            if epochs <= done
            else f"runs to {planned} epochs ({done} done; resume={run} finishes them)"
        )
        raise ResumeError(
            f"{command}: the run already {has}; to train it further give more epochs, e.g. "
            f"trainer.max_epochs={2 * planned}"
        )
    if epochs == planned:
        return None
    if cfg.optimizer.get("scheduler") == "onecycle":  # its total steps are in the checkpoint's scheduler
        raise ResumeError(
            f"{command}: its one-cycle learning-rate schedule (optimizer.scheduler=onecycle) spans the {planned} "
            f"epochs it was started with and cannot be stretched; train a new run with trainer.max_epochs="
            f"{max_epochs}, or from this run's weights with model.pretrained={run}"
        )
    return epochs


def record_extension(folder: Path, max_epochs: int) -> None:
    """Write `trainer.max_epochs=max_epochs` into the run folder's configs: its config.yaml (what
    `resume=` and the leaderboard read), `.hydra/config.yaml` and `.hydra/overrides.yaml` (the
    command that makes the run as it now is: training on from last.ckpt equals training to N at once)."""
    for path in (folder / "config.yaml", folder / ".hydra" / "config.yaml"):
        if path.is_file():
            config = OmegaConf.load(path)
            OmegaConf.update(config, "trainer.max_epochs", max_epochs)
            write_text_atomically(path, OmegaConf.to_yaml(config))
    overrides = folder / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        lines, given = list(OmegaConf.load(overrides)), f"trainer.max_epochs={max_epochs}"
        where = [n for n, line in enumerate(lines) if _key(line) == "trainer.max_epochs"]
        lines = [given if n in where else line for n, line in enumerate(lines)] if where else [*lines, given]
        write_text_atomically(overrides, OmegaConf.to_yaml(OmegaConf.create(lines)))


TRUSTED_VARIABLE = "DIGITS_ZOO_TRUSTED_TARGETS"
# What a saved config.yaml may build: the targets of configs/ (a test checks that this holds them all)...
TRUSTED_TARGETS = frozenset(
    {
        "digits_zoo.training.callbacks.progress_bar",
        "digits_zoo.training.checkpoints.ModelCheckpoint",
        "digits_zoo.data.MNISTDataModule",
        "digits_zoo.leaderboard.LeaderboardCallback",
        "digits_zoo.training.run_folders.RunFolderGuard",
        "digits_zoo.training.sweeps.SweepFolderGuard",
        "digits_zoo.training.checks.TrainCheck",
        "digits_zoo.training.checks.EvalCheck",
        "digits_zoo.training.workers.WatchedDDP",
        "lightning.pytorch.Trainer",
        "datetime.timedelta",  # (ModelCheckpoint's train_time_interval)
    }
)
# Where the targets of run folders made before the engine moved into digits_zoo.training now live:
# a saved config.yaml that names the old place builds the same class from the new one
MOVED_TARGETS = {
    "digits_zoo.callbacks.progress_bar": "digits_zoo.training.callbacks.progress_bar",
    "digits_zoo.checkpoints.ModelCheckpoint": "digits_zoo.training.checkpoints.ModelCheckpoint",
    "digits_zoo.run_folders.RunFolderGuard": "digits_zoo.training.run_folders.RunFolderGuard",
    "digits_zoo.training.ConfigCheck": "digits_zoo.training.checks.TrainCheck",
    "digits_zoo.training.run.ConfigCheck": "digits_zoo.training.checks.TrainCheck",
    "digits_zoo.workers.WatchedDDP": "digits_zoo.training.workers.WatchedDDP",
}
# ...and each callback and logger that Lightning exports from these modules, by that name
TRUSTED_MODULES = ("lightning.pytorch.callbacks", "lightning.pytorch.loggers")


class UntrustedConfigError(ResumeError):
    """A saved configuration that names a class or function outside the allow-list."""


def saved_config(cfg: DictConfig, source: str) -> DictConfig:
    """A configuration read from the file `source`, ready to build: its moved targets renamed
    (`MOVED_TARGETS`), then checked against the allow-list (`check_targets`)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for node in _nodes(container):
        if isinstance(node, dict) and node.get("_target_") in MOVED_TARGETS:
            node["_target_"] = MOVED_TARGETS[node["_target_"]]
    cfg = OmegaConf.create(container)
    check_targets(cfg, source)
    return cfg


def _nodes(node):
    """`node` and every dict and list inside it, however deep."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _nodes(child)


def check_targets(cfg: DictConfig, source: str) -> None:
    """Refuse, before anything is built, a configuration read from a file (not composed from this
    process's command line) that names a `_target_` outside the allow-list: building it would run
    code of the file's choosing (`{_target_: shutil.copy, src: ..., dst: ...}` writes any file).
    The allow-list is `TRUSTED_TARGETS`, Lightning's callbacks and loggers, and the names in the
    environment variable DIGITS_ZOO_TRUSTED_TARGETS (comma-separated; one that ends with "." trusts
    what the modules under it define)."""
    found = _targets(OmegaConf.to_container(cfg, resolve=True), "")
    refused = [f"{key}={target}" for key, target in found if not trusted(target)]
    if refused:
        raise UntrustedConfigError(
            f"{source} names {', '.join(refused)}, which {'is' if len(refused) == 1 else 'are'} not on the list of what "
            "digits_zoo builds from a saved config (building it could run any code); use only run folders that you "
            f"made, and to trust a target that you wrote, add it to {TRUSTED_VARIABLE} (docs/security.md)"
        )


def _targets(node, key: str):
    """(key, target) for every `_target_` in a config's containers, however deep, lists included."""
    if isinstance(node, dict):
        for name, value in node.items():
            path = f"{key}.{name}" if key else str(name)
            if name == "_target_":
                yield path, value
            else:
                yield from _targets(value, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _targets(value, f"{key}[{index}]")


def trusted(target: object) -> bool:
    """Whether a saved config may build `target` (see `check_targets`)."""
    if not isinstance(target, str) or any(part.startswith("__") for part in target.split(".")):
        return False
    if target in TRUSTED_TARGETS:
        return True
    module, _, name = target.rpartition(".")
    if module in TRUSTED_MODULES:
        return name in importlib.import_module(module).__all__
    entries = [entry.strip() for entry in os.environ.get(TRUSTED_VARIABLE, "").split(",") if entry.strip()]
    if target in entries:
        return True
    prefixes = [entry for entry in entries if entry.endswith(".") and target.startswith(entry)]
    if not prefixes:
        return False
    # defined there, not only reachable from there (`mine.os.system` is os.system): imports the trusted module
    from hydra.utils import get_object

    try:
        defined = f"{get_object(target).__module__}."
    except Exception:  # not there (Hydra would fail to build it too), or no module of its own
        return False
    return any(defined.startswith(prefix) for prefix in prefixes)


def _stopped_early(checkpoint: dict) -> bool:
    """Whether an EarlyStopping callback (its state is in the checkpoint) had stopped the training."""
    states = (checkpoint.get("callbacks") or {}).values()
    return any(isinstance(s, dict) and (s.get("stopping_reason") or s.get("stopped_epoch")) for s in states)


def _read(path: Path, read):
    try:
        return read(path)
    except Exception as error:  # zip, pickle, key and YAML errors alike
        if refused := holds_code(path, error):
            raise ResumeError(str(refused)) from None
        raise ResumeError(f"cannot read {path} ({one_line(error)}); train again without resume=") from None


def _key(override: str) -> str:
    """`trainer.max_epochs` of `+trainer.max_epochs=10`."""
    return override.partition("=")[0].lstrip("+~")


def _overrides() -> tuple[list[str], str | None]:
    """The command-line overrides besides resume= and trainer.max_epochs=, and the value of that one
    (None: not given), where train.py runs under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return [], None
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    max_epochs = [o.partition("=")[2] for o in overrides if o.startswith("trainer.max_epochs=")]
    others = [o for o in overrides if not o.startswith("trainer.max_epochs=")]
    return others, max_epochs[-1] if max_epochs else None


def keep_logged_epochs(loggers: list[Logger], last_epoch: int) -> None:
    """Carry the CSV rows of the finished epochs into the resumed run's CSV logger, which would
    otherwise start `metrics.csv` afresh; rows of the epoch that was cut short are dropped, and so is
    a row that a full disk cut short."""
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        path = Path(logger.log_dir) / "metrics.csv"
        rows = _complete_rows(path) if path.is_file() else []
        with warnings.catch_warnings():  # "...exists and is not empty": expected here
            warnings.simplefilter("ignore")
            logger.experiment  # noqa: B018 (starts the writer, which removes the old file)
        for row in rows:
            if row.get("epoch") and float(row["epoch"]) <= last_epoch:
                logger.log_metrics({k: float(v) for k, v in row.items() if v != "" and k != "step"}, int(row["step"]))
        logger.save()


def _complete_rows(path: Path) -> list[dict[str, str]]:
    """The rows of the CSV file `path` that were written whole: each ends its line, and has a field for
    every column of the header (a write cut short by a full disk leaves a partial last line)."""
    with path.open(newline="") as file:
        text = file.read()
    whole = text[: text.rfind("\n") + 1]  # up to the end of the last line that has one
    rows = csv.DictReader(io.StringIO(whole, newline=""))
    return [row for row in rows if None not in row and None not in row.values()]
