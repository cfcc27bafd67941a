"""Sweeps (`python train.py -m ...`) under any Hydra launcher: one folder per sweep, one per job, and a
stopped sweep that goes on where it stopped.

A sweep's default folder (`multirun/<date>_<time>`) is claimed with an exclusive `mkdir`, so two sweeps
started in the same second get two folders (`..._2`); the claimed name is added to the sweep's Hydra
overrides, from which every launcher (in this process, joblib's workers, submitit's jobs) composes
each job's config. The sweep's process holds the folder's lock (`run_folders.claim`) while it runs,
and each job the lock of its own folder, as a run does. The workers of one Optuna study may share a sweep
folder (`shares_its_folder`): their jobs' folders are named by trial numbers, which the study hands out.

A sweep started again in its folder (`hydra.sweep.dir=multirun/...`) with the same overrides skips
the jobs that finished (their results.json) and continues those that stopped from their last
checkpoint; with other overrides it is refused, since its jobs' folders would mean other runs.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, read_write

from digits_zoo.errors import ConfigError
from digits_zoo.training.run_folders import FolderTaken, claim, foreign, refuse, release

log = logging.getLogger(__name__)

RECORD = "multirun.yaml"  # Hydra's record of the sweep's config, in its folder


def parallel_jobs() -> int:
    """configs/launcher/parallel.yaml's default number of jobs at once: one per GPU, else one per core (-1)."""
    import torch

    return torch.cuda.device_count() or -1


def threads_per_job(jobs: int) -> int:
    """The `threads=` of each of `jobs` jobs at once on this machine's cores (-1: a job per core), so
    that the jobs do not fight over the cores: configs/launcher/parallel.yaml."""
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // (cores if jobs == -1 else max(1, jobs)))


def _named(config: DictConfig) -> bool:
    return any(o.lstrip("+").startswith("hydra.sweep.dir=") for o in config.hydra.overrides.hydra)


def _free_folder(folder: Path) -> Path:
    """The first of `folder`, `folder_2`, ... that did not exist, made by this process (mkdir is atomic)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 10_000):
        candidate = folder if number == 1 else folder.with_name(f"{folder.name}_{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise ConfigError(f"{folder} and 9,999 more like it exist; name the sweep's folder with hydra.sweep.dir=DIR")


def _check_same_sweep(config: DictConfig, folder: Path) -> None:
    """A named sweep folder that holds a sweep: only the same sweep may go on there."""
    record = folder / RECORD
    if not record.is_file():
        if foreign(folder):
            refuse(
                f"{folder} is not empty and holds no sweep; choose a new or empty folder with hydra.sweep.dir=DIR "
                "(by default each sweep gets its own dated folder)"
            )
        return
    before = OmegaConf.to_container(OmegaConf.load(record).hydra.overrides.task)
    now = OmegaConf.to_container(config.hydra.overrides.task)
    if before != now:
        refuse(
            f"{folder} holds a sweep of other overrides ({' '.join(before)}); start it again with the same ones "
            "to finish it, or choose a new folder with hydra.sweep.dir=DIR"
        )
    log.info("Sweep %s goes on: jobs that finished are skipped, stopped ones continue", folder)


class SweepFolderGuard(Callback):
    """Gives a sweep a folder of its own (Hydra callback; `RunFolderGuard` does the same for a run)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        folder = Path(config.hydra.sweep.dir)
        try:
            if _named(config):
                if folder.exists():
                    _check_same_sweep(config, folder)
            else:
                folder = _free_folder(folder)
            if not getattr(get_class(config.hydra.sweeper._target_), "shares_its_folder", False):
                claim(folder)
        except FolderTaken as holder:
            refuse(f"{folder} is in use by the sweep of {holder}; wait for it to end, or choose another folder")
        except (OSError, ConfigError) as error:
            refuse(str(error) if isinstance(error, ConfigError) else f"{folder}: {error.strerror or error}")
        with read_write(config.hydra):  # every launcher composes its jobs' configs from these overrides
            config.hydra.sweep.dir = str(folder)
            config.hydra.overrides.hydra.append(f"hydra.sweep.dir={folder}")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        release(Path(config.hydra.sweep.dir))


def _in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def job_folder() -> Iterator[Path | None]:
    """This sweep job's folder, claimed for this process while the job runs, or None outside a sweep. A
    ConfigError where another process holds it."""
    if not _in_sweep():
        yield None
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    try:
        claim(folder)
    except FolderTaken as holder:
        raise ConfigError(f"the sweep job's folder {folder} is in use by {holder} (one run per folder)") from None
    try:
        yield folder
    finally:  # (a launcher's worker process goes on to other jobs)
        release(folder)


@contextmanager
def own_gpu(cfg: DictConfig) -> Iterator[None]:
    """A job of `launcher=parallel` on a machine with several GPUs trains on one of them that no other job
    holds (`trainer.devices=[N]`), waiting for one where all are taken: its lock, in the machine's temporary
    folder, is held while the job runs. Jobs that choose their devices (`trainer.devices` other than 1)
    are left as they are."""
    import torch

    launcher = HydraConfig.get().launcher.get("_target_", "") if _in_sweep() else ""
    if "joblib" not in launcher or str(cfg.trainer.devices) != "1" or torch.cuda.device_count() < 2:
        yield
        return
    while (taken := _free_gpu(torch.cuda.device_count())) is None:
        time.sleep(1)
    number, descriptor = taken
    with read_write(cfg.trainer):
        cfg.trainer.devices = [number]
    try:
        yield
    finally:
        os.close(descriptor)  # (releases the lock)


def _free_gpu(count: int, folder: Path | None = None) -> tuple[int, int] | None:
    """(GPU number, the descriptor whose lock holds it) for the first of `count` GPUs no process holds."""
    folder = folder or Path(tempfile.gettempdir())
    for number in range(count):
        descriptor = os.open(folder / f"digits_zoo_gpu_{number}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return number, descriptor
        except BlockingIOError:
            os.close(descriptor)
    return None


def finished(folder: Path) -> dict | None:
    """The results of the run that finished in `folder` (a job of a sweep started again), or None."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    print(f"{folder.name}: finished before (its results.json), skipped", file=sys.stderr)
    return json.loads(path.read_text())


def stopped(folder: Path) -> bool:
    """Whether `folder` holds a run that stopped before it finished: it continues from its last.ckpt."""
    return (folder / "checkpoints" / "last.ckpt").is_file() and (folder / "config.yaml").is_file()
