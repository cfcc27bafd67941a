"""Runs stopped by a signal say so: SIGTERM (what `timeout`, `docker stop` and SLURM pre-emption send)
and SIGINT (Ctrl+C) end `train.py` with the shell's exit code (143, 130) and one line that says where
the run was, what its last checkpoint holds and the command that continues it.

Inside `trainer.fit` and `trainer.test` Lightning stops gracefully by itself: after SIGTERM at the end
of the batch, raising `SIGTERMException` (a `SystemExit` without a code, which would exit with 0), and
after Ctrl+C with `sys.exit(1)` from its `except KeyboardInterrupt`. `reporting_stops` turns both into
`RunStopped`. Outside them, `sigterm_raises` makes SIGTERM raise `Terminated`, as SIGINT raises
KeyboardInterrupt, and `stopped_outside` describes either; `digits_zoo.cli.one_line_errors` prints the
line. Checkpoints are written atomically, so a stop never leaves a damaged one.

(Lightning is imported only where it is needed: `digits_zoo.cli` imports this module before Hydra
has even read the command line.)
"""

from __future__ import annotations

import re
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from digits_zoo.errors import DigitsZooError
from digits_zoo.writes import shown


class RunStopped(DigitsZooError):
    """A run stopped by a signal; `exit_code` is the shell's 128 + the signal's number."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """SIGTERM outside Lightning's fit and test (raised as KeyboardInterrupt is for SIGINT)."""


def _raise_terminated(signum, frame) -> None:
    # Lightning's own SIGTERM handler, installed during fit and test, calls this one too: then it is
    # not the installed handler, and Lightning stops by itself at the end of the batch
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        raise Terminated


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread (instead of ending the process silently)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _signal_of(stop: BaseException) -> int | None:
    """The signal behind an exception that ended `trainer.fit` or `trainer.test`, or None."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(stop, (SIGTERMException, Terminated)):
        return signal.SIGTERM
    if isinstance(stop, KeyboardInterrupt) or (
        isinstance(stop, SystemExit) and isinstance(stop.__context__, KeyboardInterrupt)
    ):
        return signal.SIGINT  # Lightning's sys.exit(1) after its graceful shutdown, or Ctrl+C outside its guard
    return None


@contextmanager
def reporting_stops(trainer, run_dir: str | Path) -> Iterator[None]:
    """Around `trainer.fit(...)` or `trainer.test(...)`: a stop by SIGTERM or SIGINT raises `RunStopped`,
    which tells where in the run it came and how the run folder `run_dir` can go on."""
    try:
        yield
    except (SystemExit, KeyboardInterrupt, Terminated) as stop:
        signum = _signal_of(stop)
        if signum is None:
            raise
        raise _stopped_trainer(signum, trainer, run_dir) from stop
    if trainer.received_sigterm:  # too late for Lightning to stop early: in the last test batch, or as training ended
        raise _stopped_trainer(signal.SIGTERM, trainer, run_dir)


def _stopped_trainer(signum: int, trainer, run_dir: str | Path) -> RunStopped:
    from lightning.pytorch.trainer.states import TrainerFn

    if trainer.state.fn == TrainerFn.TESTING:
        return _stopped(signum, run_dir, "during the test", trainer.current_epoch)
    return _stopped(signum, run_dir, "during training", trainer.current_epoch, trainer.max_epochs, _ending(trainer))


def _ending(trainer) -> bool:
    """Whether the trainer's epoch has run all its training batches and is ending (its validation, its
    checkpoints): Lightning counts it in `current_epoch` only once its end's hooks have run."""
    epochs, batches = trainer.fit_loop.epoch_progress.current, trainer.fit_loop.epoch_loop.batch_progress
    if epochs.started <= epochs.completed:  # between epochs
        return False
    return epochs.processed > epochs.completed or (
        batches.is_last_batch and batches.current.completed == batches.current.ready
    )


def stopped_outside(stop: KeyboardInterrupt | Terminated) -> RunStopped:
    """`RunStopped` for Ctrl+C or SIGTERM outside Lightning's fit and test (e.g. while the run starts)."""
    from hydra.core.hydra_config import HydraConfig

    signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
    if not HydraConfig.initialized():  # still reading the command line
        return RunStopped(f"{_name(signum)} before the run started", 128 + signum)
    folder = Path(HydraConfig.get().runtime.output_dir)
    if (folder / "results.json").is_file():
        return RunStopped(
            f"{_name(signum)} after the run had finished; its results are in {folder / 'results.json'}", 128 + signum
        )
    try:
        return _stopped(signum, folder, "outside training and the test")
    except Exception:  # the signal came in the middle of an import, and what it left half-done fails now
        return RunStopped(
            f"{_name(signum)} while the run was starting; checkpoints/last.ckpt is as it was, and "
            f"{_command(folder)} continues from it",
            128 + signum,
        )


def _name(signum: int) -> str:
    return "SIGINT (Ctrl+C)" if signum == signal.SIGINT else signal.Signals(signum).name


def _command(folder: Path) -> str:
    """The command that resumes `folder`, with the folder as the user would type it here (relative to
    the working directory where it lies in it), quoted for Hydra and then for the shell, so that
    pasting it works whatever the folder's name."""
    return f"{train_command()} {shlex.quote(hydra_override('resume', shown(folder)))}"


def train_command() -> str:
    """The training command as the user typed it: `python train.py` in a checkout, else `digits-zoo train`
    (also what a run started from Python, with digits_zoo.fit, goes on with)."""
    return "python train.py" if Path(sys.argv[0]).name == "train.py" else "digits-zoo train"


def hydra_override(key: str, value: str) -> str:
    """`key=value` as Hydra's override grammar reads it back: `value` in Hydra's quotes where its plain
    form would read as something else (spaces, `,`, `=`, `[`, non-ASCII letters, `123`, `null`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        if OverridesParser.create().parse_override(f"{key}={value}").value() == value:
            return f"{key}={value}"
    except HydraException:
        pass
    # a quoted string: a backslash escapes a quote, and so do the backslashes before one or at the end
    escaped = re.sub(r'(\\*)"', lambda match: match[1] * 2 + '\\"', value)
    return f'{key}="' + re.sub(r"\\+$", lambda match: match[0] * 2, escaped) + '"'


@dataclass(frozen=True)
class RunState:
    """What a run folder holds for `resume=`: `done` of `total` epochs in its checkpoints/last.ckpt
    (None: there is no last.ckpt), or the `problem` that keeps it from being resumed."""

    folder: Path
    done: int | None = None
    total: int | None = None
    problem: str | None = None
    stopped_early: bool = False  # training ended by early stopping, after epoch `done`


def run_state(run_dir: str | Path) -> RunState:
    """What `resume=run_dir` would find (it checks the folder as `resume=` will)."""
    folder = Path(run_dir)
    if not (folder / "checkpoints" / "last.ckpt").is_file():
        return RunState(folder)
    from digits_zoo.training.resume import ResumeError, load_resume

    try:
        resume = load_resume(folder, check_overrides=False)  # what `resume=` will check
    except ResumeError as error:
        return RunState(folder, problem=str(error))
    return RunState(folder, resume.epoch + 1, resume.cfg.trainer.max_epochs, stopped_early=resume.stopped_early)


def how_to_go_on(state: RunState, finished: int | None = 0, fix: str = "") -> str:
    """The end of the line for a run that ended early: what its checkpoints/last.ckpt holds and the
    command that continues it, or why it cannot go on. `finished`: the epochs the trainer had finished
    (None: not known); `fix`: what to do first (e.g. "free space"), if anything."""
    if state.problem is not None:
        return f"the run folder cannot be resumed: {state.problem}"
    restart = f"{fix} and start the run again" if fix else "start the run again"
    if state.done is None:
        if finished is None:
            return f"no checkpoints/last.ckpt was written, so there is nothing to resume: {restart}"
        if not finished:
            return f"no epoch had finished, so there is no checkpoint to resume from: {restart}"
        return f"no checkpoints/last.ckpt was written (callbacks.last_checkpoint), so it cannot be resumed: {restart}"
    done, total = state.done, state.total
    held = f"checkpoints/last.ckpt holds epoch{'s 1-' if done > 1 else ' '}{done} of {total}"
    if state.stopped_early:
        held = f"early stopping ended it after epoch {done}; checkpoints/last.ckpt holds that epoch"
    then = f"; {fix}, then" if fix else ", and"
    command = _command(state.folder)
    if done >= total:  # resume= then skips the training (Lightning: max_epochs reached) and tests
        return (
            f"training had finished ({held}){then} {command} runs the test and writes results.json without "
            "training again"
        )
    return f"{held}{then} the run goes on from there with: {command}"


def _stopped(
    signum: int, run_dir: str | Path, where: str, finished: int = 0, max_epochs: int | None = None, ending: bool = False
) -> RunStopped:
    """The line for a stop by `signum` of the run in `run_dir`, `where` it came. `finished`: the epochs
    the trainer had finished; `max_epochs` for a stop in training, whose epoch the line then names;
    `ending`: that epoch's training had run, and it was ending (its validation, its checkpoints)."""
    state, training = run_state(run_dir), max_epochs is not None
    if training and state.problem is None:
        if ending and (state.done or 0) <= finished:  # its last.ckpt not written yet
            where = (
                f"during training, at the end of epoch {finished + 1} of {max_epochs}, before its checkpoint "
                "was written"
            )
            finished = None  # (the epoch had finished, but nothing holds it)
        elif state.done is None:
            where = f"during training, in epoch {finished + 1} of {max_epochs}"
        elif state.done >= state.total:
            where = "at the end of training"
        else:  # (a resumed run can stop before its trainer has read the epoch from the checkpoint)
            where = f"during training, in epoch {max(finished, state.done) + 1} of {state.total}"
    return RunStopped(f"{_name(signum)} {where}; {how_to_go_on(state, finished)}", 128 + signum)
