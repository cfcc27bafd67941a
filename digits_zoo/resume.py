"""Continuing a run that stopped: `python train.py resume=outputs/<model>/<date>_<time>`.

The run goes on in its own folder, with its own `config.yaml`, from `checkpoints/last.ckpt`, which
is written at the end of every epoch. The epoch that was cut short starts again from its beginning;
everything random in an epoch (data order, augmentation, dropout) derives from the seed and the
epoch alone, so it replays exactly, and the run ends as it would have without the interruption.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf

from digits_zoo.errors import DigitsZooError, one_line

EXAMPLE = "outputs/flatten_mlp/2026-11-23_22-30-00"


class ResumeError(DigitsZooError):
    """A run folder that cannot be resumed."""


@dataclass(frozen=True)
class Resume:
    cfg: DictConfig  # the run's own configuration (trainer.max_epochs: where its training ends)
    checkpoint: Path  # its last.ckpt
    epoch: int  # the last finished epoch, counted from 0 as Lightning does
    stopped_early: bool = False  # an early-stopping callback ended its training (only its test is left)


def load_resume(run: str | Path, *, check_overrides: bool = True) -> Resume:
    """The configuration and last checkpoint of the run folder `run`, checked before any training.
    `check_overrides=False`: only whether the folder can be resumed, not this process's command line
    (a run that stopped asks it about itself)."""
    folder = Path(run).expanduser()
    if not folder.is_dir():
        raise ResumeError(f"resume={run}: no such folder; give the run folder of a train.py run, e.g. {EXAMPLE}")
    if check_overrides and (others := _other_overrides()):
        raise ResumeError(f"resume={run} continues the run with its own config.yaml; drop the other overrides "
                          f"({' '.join(others)})")
    config, checkpoint = folder / "config.yaml", folder / "checkpoints" / "last.ckpt"
    if not config.is_file():
        raise ResumeError(f"resume={run}: no config.yaml in this folder, so it is not a train.py run folder")
    if not checkpoint.is_file():
        raise ResumeError(f"resume={run}: no checkpoints/last.ckpt, which is written when an epoch ends, so "
                          "there is nothing to resume; train again without resume=")
    state = _read(checkpoint, lambda path: torch.load(path, map_location="cpu", weights_only=True))
    cfg = _read(config, OmegaConf.load)
    if Path(cfg.paths.output_dir).resolve() != folder.resolve():
        raise ResumeError(f"resume={run}: this run was made in {cfg.paths.output_dir}, and its configuration names "
                          "that folder for checkpoints and logs; move it back there to resume it")
    epoch, stopped_early = state["epoch"], _stopped_early(state)
    if stopped_early:  # Lightning would train on from the checkpoint: its training ended there
        cfg.trainer.max_epochs = epoch + 1
    return Resume(cfg, checkpoint, epoch, stopped_early)


def _stopped_early(checkpoint: dict) -> bool:
    """Whether an EarlyStopping callback (its state is in the checkpoint) had stopped the training."""
    states = (checkpoint.get("callbacks") or {}).values()
    return any(isinstance(s, dict) and (s.get("stopping_reason") or s.get("stopped_epoch")) for s in states)


def _read(path: Path, read):
    try:
        return read(path)
    except Exception as error:  # zip, pickle, key and YAML errors alike
        raise ResumeError(f"cannot read {path} ({one_line(error)}); train again without resume=") from None


def _other_overrides() -> list[str]:
    """Command-line overrides besides resume= (only where train.py runs under Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]


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
