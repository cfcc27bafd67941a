"""The one line that a user can act on for each error they can fix (`user_message`); None for a bug.

Hydra reports its own errors (an unknown config group option, key or override syntax) over several
lines, Lightning and torch theirs as stack traces, a full disk as an OSError deep in a write: each
becomes one `error: ...` line that says what was wrong and how to go on (`digits_zoo.cli` prints it).
"""

from __future__ import annotations

import difflib
import errno
import re
import sys
import traceback
from pathlib import Path

from hydra.errors import HydraException, InstantiationException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from digits_zoo.errors import DigitsZooError, one_line
from digits_zoo.training.stops import how_to_go_on, run_state
from digits_zoo.writes import FAILURES, NotWritten, free_bytes, shown, size, write_failure


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f"did you mean {close[0]}? " if close else ""


PLUGIN_EXTRAS: dict[str, str] = {}  # Hydra plugins that an optional extra installs: "hydra/GROUP/OPTION": "extra"


def _missing_option(error: MissingConfigException) -> str:
    group, _, option = (error.missing_cfg_file or "").rpartition("/")
    if not group or error.options is None:  # a missing primary config, not a group option
        return one_line(error).split(" Config search path:")[0]
    if (extra := PLUGIN_EXTRAS.get(error.missing_cfg_file)) is not None:
        return f'{group}={option} is a Hydra plugin that is not installed; pip install -e ".[{extra}]"'
    hint = _did_you_mean(option, error.options)
    return f"unknown {group}={option}; {hint}{group} options: {', '.join(error.options)}"


def _unknown_key(error: ConfigKeyError | ConfigAttributeError) -> str:
    parent, _, key = (error.full_key or "").rpartition(".")
    if parent.startswith("data.augment"):  # also where data.augment is null: its own keys, which a + cannot add
        from digits_zoo.data.augment import unknown_key  # (torch)

        if (augment_error := unknown_key(error.full_key)) is not None:
            return one_line(augment_error)
    siblings = error.parent_node.keys() if error.parent_node is not None else []
    hint = _did_you_mean(f"{parent}.{key}" if parent else key, [f"{parent}.{k}" if parent else k for k in siblings])
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
        if isinstance(error.__cause__, (ConfigKeyError, ConfigAttributeError)) and "not in struct" in str(
            error.__cause__
        ):
            return _unknown_key(error.__cause__)
        if match := re.match(r"Could not override '([\w/]+)'\. No match in the defaults list", str(error)):
            return (
                f"{match[1]}= is not a config group of this command (eval.py takes a model only as model_source=); "
                "--help lists the groups it takes"
            )
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
    if isinstance(error, ValueError) and _raised_by_lightning(
        error
    ):  # its other word for one (val_check_interval, ...)
        return f"Lightning: {one_line(error)}"
    if isinstance(error, OmegaConfBaseException):
        key = getattr(error, "full_key", None)
        return f"{key}: {str(error).splitlines()[0]}" if key else str(error).splitlines()[0]
    if isinstance(error, OSError) and error.filename is not None:
        return (
            f"cannot use {error.filename}: {error.strerror or one_line(error)} (check the path and its "
            "permissions; a run's output folder is chosen with hydra.run.dir=DIR)"
        )
    return None


def _out_of_memory(error: BaseException) -> str | None:
    """The line for a run that ran out of memory (torch's OutOfMemoryError for a GPU, a RuntimeError of
    its CPU allocator): what ran out, what needs less, and how the run goes on; None for other errors."""
    torch = sys.modules.get("torch")  # (not imported: not raised)
    text = str(error)
    gpu = torch is not None and isinstance(error, torch.OutOfMemoryError)
    if not (gpu or (isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))):
        return None
    what = "out of CPU memory" if "DefaultCPUAllocator" in text else "out of GPU memory"
    if amount := re.search(r"[Tt]ried to allocate (\d+) bytes", text):
        what += f" (it asked for {size(int(amount[1]))} more)"
    elif amount := re.search(r"[Tt]ried to allocate ([\d.]+ \w+)", text):
        what += f" (it asked for {amount[1]} more)"
    smaller = "a smaller data.batch_size or data.eval_batch_size"
    if (run_dir := _run_folder()) is None:
        return f"{what}; {smaller} needs less"
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


def _what(error: OSError, run_dir: Path | None) -> str:
    """The file that could not be written. An OSError from a write call carries no file name: Lightning's
    CSV logger (csv/metrics.csv) is recognised by where in its code the error came."""
    if error.filename:
        return shown(error.filename)
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    if any(Path(frame.filename).parts[-2:] == ("loggers", "csv_logs.py") for frame in frames):
        logs = sorted(run_dir.glob("*/metrics.csv")) + sorted(run_dir.glob("metrics.csv")) if run_dir else []
        return f"Lightning's CSV log {shown(logs[0]) if len(logs) == 1 else '(metrics.csv)'}"
    return "a file"


def failure_message(error: OSError, run_dir: str | Path | None) -> str:
    """The one line for a write that failed (`write_failure`) in the run whose folder is `run_dir`: what
    could not be written, why, the bytes it needed and those free, what the run's checkpoints/last.ckpt
    still holds and the `resume=` command that continues it."""
    run_dir = Path(run_dir) if run_dir else None
    reason, fix = FAILURES[error.errno]
    needed, free = (error.needed, error.free) if isinstance(error, NotWritten) else (None, None)
    sizes = []
    if needed is not None and error.errno in (errno.ENOSPC, errno.EDQUOT):
        sizes.append(f"it needs {size(needed)}")
    if error.errno == errno.ENOSPC:  # (a quota is not what the file system has free)
        if free is not None:
            sizes.append(f"{size(free)} free")
        elif run_dir is not None and (now := free_bytes(run_dir)) is not None:  # not our write: after the fact
            sizes.append(f"{size(now)} free in {shown(run_dir)} now")
    sizes = f" ({'; '.join(sizes)})" if sizes else ""
    line = f"cannot write {_what(error, run_dir)}: {reason}{sizes}"
    if run_dir is None:  # (outside a Hydra job: Hydra itself could not write the job's files)
        return f"{line}; the run had not started: {fix} and start it again"
    return f"{line}; what was written before is whole, and {how_to_go_on(run_state(run_dir), finished=None, fix=fix)}"
