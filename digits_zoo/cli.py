"""The Hydra commands (`digits-zoo train|eval`, train.py, eval.py), run so that mistakes a user can fix
end in one line, not a stack trace.

Hydra reports its own errors (an unknown config group option, key or override syntax) over several
lines, and everything else as a stack trace. `one_line_errors` lets Hydra raise instead and prints
one `error: ...` line for the project's own errors, configuration mistakes and file-system
problems, and one `stopped: ...` line for a run stopped by SIGTERM or Ctrl+C; anything else is a
bug and keeps its stack trace. DIGITS_ZOO_DEBUG=1 shows the stack trace of every error.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.utils import env_override
from omegaconf import OmegaConf

from digits_zoo.training import sweeps
from digits_zoo.training.jobs import job_run
from digits_zoo.training.messages import user_message
from digits_zoo.training.stops import RunStopped, Terminated, sigterm_raises, stopped_outside

DEBUG_VARIABLE = "DIGITS_ZOO_DEBUG"


def config_dir() -> Path:
    """The configs train and eval compose: a checkout's configs/ (a clone, an editable install), else the
    copy that an installed wheel carries inside the package (pyproject.toml maps one to the other)."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / "configs"
    return checkout if (checkout / "train.yaml").is_file() else package / "configs"


def train_job(cfg) -> float | None:
    """`digits-zoo train`'s job. Returns the best epoch's val/acc (None without a validation split):
    what a Hydra sweeper such as hparams_search=mlp_optuna maximises."""
    with one_line_errors():
        from digits_zoo.training.run import train

        freeze_imports()
        with sweeps.job_folder() as folder, sweeps.own_gpu(cfg):  # folder: None outside a sweep
            if folder and (results := sweeps.finished(folder)):  # a sweep started again
                return results.get("best_val/acc")
            stopped = folder if folder and sweeps.stopped(folder) else None
            metrics = train(cfg, stopped=stopped).get("metrics")  # (lr_find=true trains nothing)
            return metrics and metrics["best_val/acc"]


def eval_job(cfg) -> None:
    """`digits-zoo eval`'s job."""
    with one_line_errors():
        from digits_zoo.evaluate import evaluate

        freeze_imports()
        evaluate(cfg)


def hydra_command(name: str, argv: list[str]) -> int:
    """`digits-zoo train ARGS` or `digits-zoo eval ARGS` (and train.py, eval.py): Hydra's command line
    (overrides, -m, --help, --cfg job, ...) on `configs/NAME.yaml`; 0 when it ends well."""
    import hydra

    register_resolvers()  # configs/train.yaml's ${if_resume:...}, ${job_run:...}, the launchers' ones
    job = Job({"train": train_job, "eval": eval_job}[name])
    command = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=name)(job)
    saved, sys.argv[1:] = sys.argv[:], argv  # what Hydra reads
    try:
        with one_line_errors():  # mistakes in the command line's config overrides
            command()
    finally:
        sys.argv[:] = saved
    return 0


def if_resume(then, otherwise, _root_):
    """configs/train.yaml's `${if_resume:A,B}`: A for `resume=RUN` where the folder RUN exists, else B
    (a mistyped RUN is then reported, not created as Hydra's run folder)."""
    resume = _root_.get("resume")
    return then if resume and Path(resume).is_dir() else otherwise


def register_resolvers() -> None:
    """The resolvers the configs use (configs/train.yaml's `${if_resume:...}`, `${job_run:...}`, the
    launchers' `${threads_per_job:...}`); called by what composes and runs them (train.py, digits_zoo.fit,
    a launcher's process that receives a `Job`). Registering again changes nothing."""
    OmegaConf.register_new_resolver("if_resume", if_resume, replace=True)
    OmegaConf.register_new_resolver("job_run", job_run, replace=True)
    OmegaConf.register_new_resolver("parallel_jobs", sweeps.parallel_jobs, replace=True)
    OmegaConf.register_new_resolver("threads_per_job", sweeps.threads_per_job, replace=True)


class Job:
    """A Hydra command's job (`train_job`, `eval_job`) as a launcher sends it to the processes that run
    jobs (joblib's workers, submitit's): arriving there (unpickled), it registers the configs' resolvers,
    which Hydra needs to compose the job's config before the job itself runs."""

    def __init__(self, run) -> None:
        self.run = run

    def __call__(self, cfg):
        return self.run(cfg)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        register_resolvers()


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
    stopped by SIGTERM or Ctrl+C (`digits_zoo.training.stops`) with one `stopped: ...` line and 143 or 130.

    Use it around composing the config (where Hydra, told to raise, would otherwise print its own
    report) and inside the job (where Hydra would first announce that the job failed). What it changes
    while it runs (HYDRA_FULL_ERROR, logging.raiseExceptions, sys.stdout) is as it was when it ends."""
    raise_exceptions, stdout = logging.raiseExceptions, sys.stdout
    # a log line that cannot be written (train.log on a full disk) is dropped, not printed as a stack
    # trace; the run's own writes then end it with one line that says what could not be written
    logging.raiseExceptions = False
    if not isinstance(stdout, LineTracker):  # (where the progress bars draw)
        sys.stdout = LineTracker(stdout)
    try:  # HYDRA_FULL_ERROR: Hydra raises instead of printing its own report
        with env_override({"HYDRA_FULL_ERROR": "1"}), sigterm_raises():
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
        sys.stdout, logging.raiseExceptions = stdout, raise_exceptions


def _first_process() -> bool:
    utilities = sys.modules.get("lightning.pytorch.utilities")  # (not imported: no DDP workers either)
    rank_zero_only = getattr(utilities, "rank_zero_only", None)  # (None where Ctrl+C cut its import short)
    return rank_zero_only is None or rank_zero_only.rank == 0
