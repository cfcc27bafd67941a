"""Running a Hydra entry point so that mistakes a user can fix end in one line, not a stack trace.

Hydra reports its own errors (an unknown config group option, key or override syntax) over several
lines, and everything else as a stack trace. `one_line_errors` lets Hydra raise instead and prints
one `error: ...` line for the project's own errors, configuration mistakes and file-system
problems, and one `stopped: ...` line for a run stopped by SIGTERM or Ctrl+C; anything else is a
bug and keeps its stack trace. DIGITS_ZOO_DEBUG=1 shows the stack trace of every error.
"""

from __future__ import annotations

import difflib
import gc
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import HydraException, InstantiationException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from digits_zoo.errors import DigitsZooError, one_line
from digits_zoo.stops import RunStopped, Terminated, sigterm_raises, stopped_outside
from digits_zoo.writes import failure_message, size, write_failure

DEBUG_VARIABLE = "DIGITS_ZOO_DEBUG"


def if_resume(then, otherwise, _root_):
    """configs/train.yaml's `${if_resume:A,B}`: A for `resume=RUN` where the folder RUN exists, else B
    (a mistyped RUN is then reported, not created as Hydra's run folder)."""
    resume = _root_.get("resume")
    return then if resume and Path(resume).is_dir() else otherwise


OmegaConf.register_new_resolver("if_resume", if_resume, replace=True)


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f"did you mean {close[0]}? " if close else ""


PLUGIN_EXTRAS = {"hydra/sweeper/optuna": "hparams"}  # Hydra plugins that an optional extra installs


def _missing_option(error: MissingConfigException) -> str:
    group, _, option = (error.missing_cfg_file or "").rpartition("/")
    if not group or error.options is None:  # a missing primary config, not a group option
        return one_line(error).split(" Config search path:")[0]
    if (extra := PLUGIN_EXTRAS.get(error.missing_cfg_file)) is not None:
        return f"{group}={option} is a Hydra plugin that is not installed; pip install -e \".[{extra}]\""
    hint = _did_you_mean(option, error.options)
    return f"unknown {group}={option}; {hint}{group} options: {', '.join(error.options)}"


def _unknown_key(error: ConfigKeyError | ConfigAttributeError) -> str:
    parent, _, key = (error.full_key or "").rpartition(".")
    siblings = error.parent_node.keys() if error.parent_node is not None else []
    hint = _did_you_mean(f"{parent}.{key}" if parent else key,
                         [f"{parent}.{k}" if parent else k for k in siblings])
    return f"unknown config key {error.full_key}; {hint}(to add a new key, write +{error.full_key}=...)"


def user_message(error: BaseException) -> str | None:
    """The one line to print for an error the user can fix, or None for a bug."""
    if isinstance(error, DigitsZooError):
        return one_line(error)
    if (failure := write_failure(error)) is not None:  # a full disk, a quota, a read-only file system
        return failure_message(failure, _run_folder())
    if (memory := _out_of_memory(error)) is not None:
        return memory
    if isinstance(error, MissingConfigException):
        return _missing_option(error)
    if isinstance(error, HydraException):
        if isinstance(error.__cause__, (ConfigKeyError, ConfigAttributeError)) and "not in struct" in str(error.__cause__):
            return _unknown_key(error.__cause__)
        if match := re.match(r"Could not override '([\w/]+)'\. No match in the defaults list", str(error)):
            return (f"{match[1]}= is not a config group of this command (eval.py takes a model only as model_source=); "
                    "--help lists the groups it takes")
        if isinstance(error, InstantiationException) and error.__cause__ is not None:
            cause = user_message(error.__cause__)  # e.g. a ConfigError raised by the data module
            if cause is not None:
                return cause
        # Hydra's own messages end with a link or a search path listing: keep the first sentence
        return one_line(error).split(" See https://")[0].split(" Config search path:")[0]
    if isinstance(error, ValueError) and "Config group override must be a string or a list. Got NoneType" in str(error):
        return "a config group cannot be set to null on the command line (e.g. logger=null); drop it with ~GROUP (e.g. ~logger)"
    lightning_errors = sys.modules.get("lightning.fabric.utilities.exceptions")  # (not imported: not raised)
    if lightning_errors and isinstance(error, lightning_errors.MisconfigurationException):
        return f"Lightning: {one_line(error)}"  # its own word for a setting it refuses
    if isinstance(error, ValueError) and _raised_by_lightning(error):  # its other word for one (val_check_interval, ...)
        return f"Lightning: {one_line(error)}"
    if isinstance(error, OmegaConfBaseException):
        key = getattr(error, "full_key", None)
        return f"{key}: {str(error).splitlines()[0]}" if key else str(error).splitlines()[0]
    if isinstance(error, OSError) and error.filename is not None:
        return (f"cannot use {error.filename}: {error.strerror or one_line(error)} (check the path and its "
                "permissions; a run's output folder is chosen with hydra.run.dir=DIR)")
    return None


def _out_of_memory(error: BaseException) -> str | None:
    """The line for a run that ran out of memory (torch's OutOfMemoryError for a GPU, a RuntimeError of
    its CPU allocator): what ran out, what needs less, and how the run goes on; None for other errors."""
    torch = sys.modules.get("torch")  # (not imported: not raised)
    text = str(error)
    gpu = torch is not None and isinstance(error, torch.OutOfMemoryError)
    if not (gpu or isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)):
        return None
    what = "out of CPU memory" if "DefaultCPUAllocator" in text else "out of GPU memory"
    if amount := re.search(r"[Tt]ried to allocate (\d+) bytes", text):
        what += f" (it asked for {size(int(amount[1]))} more)"
    elif amount := re.search(r"[Tt]ried to allocate ([\d.]+ \w+)", text):
        what += f" (it asked for {amount[1]} more)"
    smaller = "a smaller data.batch_size or data.eval_batch_size"
    if (run_dir := _run_folder()) is None:
        return f"{what}; {smaller} needs less"
    from digits_zoo.stops import how_to_go_on, run_state

    state = run_state(run_dir)
    if state.done is None or state.problem is not None:
        return f"{what}; {smaller} needs less, and {how_to_go_on(state, finished=None)}"
    # a resumed run keeps its own config: a smaller batch takes a new run
    return f"{what}; {how_to_go_on(state, finished=None, fix='free memory')}; or start a new run with {smaller}"


def _raised_by_lightning(error: BaseException) -> bool:
    """Whether `error` was raised by Lightning's own code (its innermost frame is in its package)."""
    lightning = sys.modules.get("lightning")
    traceback = error.__traceback__
    if lightning is None or traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return Path(traceback.tb_frame.f_code.co_filename).is_relative_to(Path(lightning.__file__).parent)


def _run_folder() -> str | None:
    """The Hydra job's run folder, or None before the job has started."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None


def freeze_imports() -> None:
    """Once per process, before the first job creates anything: take what is alive now (mostly the
    imported libraries, millions of objects that live as long as the process) out of the garbage
    collector's walks (`gc.freeze`). Python's exit then takes about 0.3 s instead of 1.5 s here."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()


class LineTracker:
    """A stream (sys.stdout) that remembers whether its last write left a line open: progress bars
    end each frame with a carriage return, and a line printed after one would be glued to it."""

    def __init__(self, stream):
        self.stream, self.line_open = stream, False

    def write(self, text: str) -> int:
        if text:
            self.line_open = not text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _end_open_line() -> None:
    if getattr(sys.stdout, "line_open", False):
        sys.stdout.write("\n")
        sys.stdout.flush()


@contextmanager
def one_line_errors() -> Iterator[None]:
    """An error the user can fix ends the process with one `error: ...` line and exit code 1; a run
    stopped by SIGTERM or Ctrl+C (`digits_zoo.stops`) with one `stopped: ...` line and 143 or 130.

    Use it around composing the config (where Hydra, told to raise, would otherwise print its own
    report) and inside the job (where Hydra would first announce that the job failed)."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its own report
    # a log line that cannot be written (train.log on a full disk) is dropped, not printed as a stack
    # trace; the run's own writes then end it with one line that says what could not be written
    logging.raiseExceptions = False
    stdout = sys.stdout
    if not isinstance(stdout, LineTracker):  # (where the progress bars draw)
        sys.stdout = LineTracker(stdout)
    try:
        with sigterm_raises():
            yield
    except (Exception, KeyboardInterrupt, Terminated) as caught:
        error = caught if isinstance(caught, Exception) else stopped_outside(caught)
        message = None if os.environ.get(DEBUG_VARIABLE) else user_message(error)
        if message is None:
            raise
        if _first_process():  # under DDP every process meets it; the first one says so
            _end_open_line()
            print(f"{'stopped' if isinstance(error, RunStopped) else 'error'}: {message}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 1))
    finally:
        sys.stdout = stdout


def _first_process() -> bool:
    try:
        from lightning.pytorch.utilities import rank_zero_only
    except Exception:  # Ctrl+C in the middle of importing Lightning leaves it half-imported
        return True
    return rank_zero_only.rank == 0
