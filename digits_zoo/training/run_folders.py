"""One run per run folder: a run claims its folder before anything is written in it, atomically.

The claim is an exclusive OS lock (`flock`) on `<run folder>/.run.lock`, taken by `RunFolderGuard`
(a Hydra callback) before Hydra writes its `.hydra/` files and held until the process ends, so the
system releases it however the process ends (even SIGKILL). Of two processes aiming at one folder
exactly one gets it; the other stops at once with one `error:` line. A resume claims its folder the
same way, so two resumes of one run cannot interleave. A default folder name (`outputs/<model>/
<date>_<time>`) that another run of the same second holds gets a suffix instead: `..._2`, `..._3`. The
processes of a torchrun job or a SLURM step share one folder (`digits_zoo.training.jobs`), which the
first one claims.

The lock file also marks a folder as a run's: a folder that is not empty and has none holds someone
else's files (or is `/`), and a run is refused there before it writes anything. A folder that a
refused start left holds only a run's own files and its lock file, so a retry may use it.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from digits_zoo.errors import ConfigError
from digits_zoo.training.jobs import launcher, shared_run_name
from digits_zoo.training.messages import user_message
from digits_zoo.training.stops import hydra_override

LOCK_NAME = ".run.lock"
_held: dict[Path, int] = {}  # folder -> the descriptor whose lock this process holds


class FolderTaken(Exception):
    """Another process holds the folder's lock; its message names that process."""


def claim(folder: Path) -> None:
    """Take `folder`'s lock for this process (again, if it already has it), or raise FolderTaken."""
    folder = folder.resolve()
    if folder in _held:
        return
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(descriptor)
        os.close(descriptor)
        raise FolderTaken(holder) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"train.py, pid {os.getpid()} on {socket.gethostname()}\n".encode())
    _held[folder] = descriptor


def in_use_by(folder: Path) -> str | None:
    """Which other process holds `folder`'s lock now, or None; creates nothing."""
    if folder.resolve() in _held:  # this process (e.g. a failed run in it, resumed by the same process)
        return None
    try:
        descriptor = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None  # (closing the descriptor lets go again)
    except BlockingIOError:
        return _holder(descriptor)
    finally:
        os.close(descriptor)


def _holder(descriptor: int) -> str:
    """Who holds the lock, as the holder wrote it right after taking it (so wait a moment for it)."""
    for _ in range(50):
        if text := os.pread(descriptor, 200, 0).decode(errors="replace").strip():
            return text
        time.sleep(0.01)
    return "another process"


def release(folder: Path) -> None:
    """Give up this process's lock on `folder` (the lock file stays: removing it would race)."""
    descriptor = _held.pop(folder.resolve(), None)
    if descriptor is not None:
        os.close(descriptor)  # closing the descriptor releases the lock


def holds_run(folder: Path) -> bool:
    return (folder / "results.json").exists() or any((folder / "checkpoints").glob("*.ckpt"))


def foreign(folder: Path) -> bool:
    """Whether `folder` holds files that are not of a run: it is not empty, and no run ever claimed it
    (the claim's lock file is the first thing a run writes in its folder, and stays there)."""
    return folder.exists() and not (folder / LOCK_NAME).exists() and any(folder.iterdir())


def refuse(message: str) -> None:
    """End the process with one `error:` line: Hydra turns a callback's exceptions into warnings."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _check_resumable(config: DictConfig) -> None:
    """Refuse, in one line, a `resume=` folder that `load_resume` would refuse (it only reads)."""
    from hydra.core.hydra_config import HydraConfig

    from digits_zoo.training.resume import ResumeError, load_resume

    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    hydra_config.set_config(config)  # as the job will have it (load_resume checks its overrides), for now
    try:
        load_resume(config.resume)
    except ResumeError as error:
        refuse(user_message(error))
    finally:  # (Hydra sets it for the job, and puts back what was there before when the job ends)
        hydra_config.cfg = before


class RunFolderGuard(Callback):
    """Claims the run folder before Hydra writes in it: refuses a folder that another process holds,
    that already holds a finished run (Hydra would overwrite its `.hydra/` configs, Lightning its
    logs and checkpoints) or that holds files of no run (a user's folder, `/`), and a `resume=` folder
    that cannot be resumed; gives a default-named folder a free name instead."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from lightning.pytorch.utilities import rank_zero_only

        first = rank_zero_only.rank == 0  # DDP: the other processes work in the folder process zero claims
        named = config.get("resume") or any(
            o.lstrip("+").startswith("hydra.run.dir=") for o in config.hydra.overrides.hydra
        )
        try:
            job = None if named else shared_run_name()  # torchrun's or SLURM's processes: one folder they share
            folder = Path(config.hydra.run.dir)
            if not first:
                self._claim_none(config, folder)
            elif named or job:
                self._claim_named(config, folder, job and launcher())
            else:
                self._claim_default(config, folder)
        except (ConfigError, OSError) as error:  # OSError: e.g. a path through a file, or no permission
            if first:
                refuse(user_message(error))
            sys.exit(1)  # (the first process says why)

    @staticmethod
    def _claim_none(config: DictConfig, folder: Path) -> None:
        """Another process of a DDP run claims nothing: the first one claims the folder, and says why where
        it refuses it. Started before it (by torchrun or srun), this one marks the folder as a run's, so that
        what Hydra writes in it now is not taken for someone else's files."""
        if not config.get("resume") and (holds_run(folder) or foreign(folder)):
            sys.exit(1)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / LOCK_NAME).touch()

    @staticmethod
    def _claim_named(config: DictConfig, folder: Path, launched_by: str | None = None) -> None:
        resume = config.get("resume")

        def taken(holder) -> str:
            return (
                f"{folder} is in use by {holder} (one run per folder); wait for it to end, or choose another "
                "folder with hydra.run.dir=DIR"
            )

        go_on = shlex.quote(hydra_override("resume", str(folder)))
        finished = (
            f"{folder} already holds a run; choose a new folder with hydra.run.dir=DIR (by default "
            f"each run gets its own dated folder), or continue a stopped run with {go_on}"
            if launched_by is None
            else f"{folder}, the run folder of this {launched_by} job, already holds a run (of an attempt before a "
            f"restart or requeue, which keep the folder); continue it with {go_on}, or choose a new folder "
            "with hydra.run.dir=DIR"
        )
        # looked at before the claim, which writes its lock file
        if holder := in_use_by(folder):
            refuse(taken(holder))
        if resume:  # only a folder that resume= can continue: nothing is written in any other
            _check_resumable(config)
        elif holds_run(folder):
            refuse(finished)
        elif foreign(folder):
            names = sorted(path.name for path in folder.iterdir())
            held = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            refuse(
                f"{folder} is not empty and is not a train.py run folder (it holds {held}); a run writes its "
                "config.yaml, checkpoints and logs there, so choose a new or empty folder with hydra.run.dir=DIR "
                "(by default each run gets its own dated folder)"
            )
        try:
            claim(folder)
        except FolderTaken as holder:
            refuse(taken(holder))
        if holds_run(folder) and not resume:  # finished between the look and the claim
            release(folder)
            refuse(finished)

    @staticmethod
    def _claim_default(config: DictConfig, folder: Path) -> None:
        for number in itertools.count(1):  # the first free one of name, name_2, ...
            candidate = folder if number == 1 else folder.with_name(f"{folder.name}_{number}")
            if holds_run(candidate) or foreign(candidate):  # (looked at before the claim, which writes its lock file)
                continue
            try:
                claim(candidate)
            except FolderTaken:
                continue
            if not holds_run(candidate):  # (nor finished between the look and the claim)
                break
            release(candidate)
        if candidate != folder:
            with read_write(config.hydra.run):
                config.hydra.run.dir = str(candidate)

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        release(Path(config.hydra.run.dir))
