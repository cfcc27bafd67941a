"""DDP's worker processes, watched (`trainer=ddp`): a worker that dies, or does not answer within
`trainer.strategy.timeout_s`, ends the run with one line that names it and gives the command that
continues the run, and no worker is left behind, running or stopped.

torch.distributed waits for a silent worker as long as the process group's timeout (torch's default
is 30 minutes). gloo then reports it, and a dead worker at once, as a RuntimeError with a long stack
trace. On one machine the first process started the others (Lightning's `_SubprocessScriptLauncher`),
so it can tell how each one is: ended, by a signal or with an exit code, or stopped (state T in /proc:
SIGSTOP or Ctrl+Z). `WatchingLauncher` turns the error into `WorkerLost`, after ending the other
workers with SIGKILL (a worker waiting in a collective, or stopped, would not end on SIGTERM).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch.distributed
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from lightning.pytorch.trainer.states import TrainerFn

from digits_zoo.errors import DigitsZooError, check_number
from digits_zoo.training.stops import how_to_go_on, run_state

TIMEOUT_KEY = "trainer.strategy.timeout_s"


class WorkerLost(DigitsZooError):
    """A DDP worker died or did not answer in time, and the run ended."""


class WatchedDDP(DDPStrategy):
    """Lightning's DDP (as `strategy: ddp`), with a worker that does not answer within `timeout_s`
    seconds, or dies, ending the run with one line (`WorkerLost`)."""

    def __init__(self, timeout_s: float = 300, **kwargs: Any):
        self.timeout_s = check_number(TIMEOUT_KEY, timeout_s, positive=True)
        super().__init__(timeout=timedelta(seconds=self.timeout_s), **kwargs)

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is _SubprocessScriptLauncher:  # start_method="popen", the default
            self._launcher = WatchingLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes, self.timeout_s
            )


class WatchingLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher (this process runs the command again for each other worker of the
    machine), which reports a lost worker as `WorkerLost`."""

    def __init__(self, cluster_environment, num_processes: int, num_nodes: int, timeout_s: float):
        super().__init__(cluster_environment, num_processes, num_nodes)
        self.timeout_s = timeout_s
        self.trainer = None
        self.reporting = threading.Lock()  # taken by the one thread (main or observer) that reports

    def launch(self, function: Callable, *args: Any, trainer=None, **kwargs: Any) -> Any:
        # Lightning's launch, with `_Observer` in place of its observer
        self.trainer = trainer
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            _Observer(self).start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        try:
            return function(*args, **kwargs)
        except RuntimeError as error:
            if self.stopping() or not (self.lost_workers(error) or _from_torch_distributed(error)):
                raise
            if not self.reporting.acquire(blocking=False):
                threading.Event().wait()  # the observer is reporting it, and ends the process
            raise WorkerLost(self.lost(error)) from error

    def stopping(self) -> bool:
        """Whether the run is stopping on SIGTERM, which Lightning passed on to the workers."""
        return self.trainer is not None and self.trainer.received_sigterm

    def lost_workers(self, error: RuntimeError | None) -> list[str]:
        """The workers this process started that have ended or are stopped, each as "rank R (pid P)
        <what became of it>"; `error`: what torch.distributed raised, if anything."""
        lost = []
        for rank, proc in self.ranked_workers():
            code = proc.poll()
            if code is not None:
                what = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"ended with exit code {code}"
            elif _process_state(proc.pid) in ("T", "t"):  # stopped (or stopped by a debugger)
                what = f"is stopped (SIGSTOP or Ctrl+Z) and {self.within()}" if _timed_out(error) else "is stopped"
            else:
                continue
            lost.append(f"rank {rank} (pid {proc.pid}) {what}")
        return lost

    def within(self) -> str:
        return f"did not answer within {self.timeout_s:g} s ({TIMEOUT_KEY})"

    def lost(self, error: RuntimeError | None) -> str:
        """The line for a lost worker (`error`: what torch.distributed raised, if anything), once
        the other workers have been ended."""
        lost = self.lost_workers(error)
        self.end_workers()
        if lost:
            who = f"DDP worker {' and '.join(lost)}"
        elif _timed_out(error):
            who = f"a DDP worker {self.within()}"
        else:
            who = f"the connection to another DDP worker was lost ({_first_sentence(error)})"
        trainer = self.trainer
        if not torch.distributed.is_initialized():  # a worker died before it connected
            where = "while the workers were starting"
        elif trainer.state.fn == TrainerFn.TESTING:
            where = "during the test"
        else:
            where = f"during training, in epoch {trainer.current_epoch + 1} of {trainer.max_epochs}"
        state = run_state(trainer.default_root_dir)
        return f"{who} {where}, so the run ended with all its workers; {how_to_go_on(state, trainer.current_epoch)}"

    def ranked_workers(self) -> list[tuple[int, subprocess.Popen]]:
        """The workers this process started, with their global ranks."""
        first = self.cluster_environment.node_rank() * self.num_processes
        return [(first + local_rank, proc) for local_rank, proc in enumerate(self.procs, start=1)]

    def end_workers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # SIGKILL ends a stopped process too
            proc.wait()


class _Observer(_ChildProcessObserver):
    """Lightning's look at the workers every 5 s, which on a worker's death kills every process with
    SIGKILL, silently. Here the main thread reports a death (gloo raises at once in a collective);
    where it has not begun to by the following look (it waits for a worker that died before it
    connected, or NCCL has not noticed), this thread reports it and ends the process."""

    def __init__(self, launcher: WatchingLauncher):
        super().__init__(main_pid=os.getpid(), child_processes=launcher.procs)
        self.launcher, self.seen_death = launcher, False

    def _run(self) -> bool:
        codes = [proc.poll() for proc in self._child_processes]
        if all(code == 0 for code in codes):
            return True
        if all(code in (None, 0) for code in codes) or self.launcher.stopping():
            return False
        if not self.seen_death:  # the main thread's turn first
            self.seen_death = True
            return False
        if not self.launcher.reporting.acquire(blocking=False):
            return True  # the main thread reports it
        line = self.launcher.lost(None)
        if getattr(sys.stdout, "line_open", False):  # a progress bar's (digits_zoo.cli.LineTracker)
            print(flush=True)
        print(f"error: {line}", file=sys.stderr, flush=True)  # as digits_zoo.cli.one_line_errors would
        os._exit(1)


def _from_torch_distributed(error: RuntimeError) -> bool:
    # gloo raises plain RuntimeErrors too: "[.../gloo/...] Read error", "Application timeout caused pair closure"
    text = str(error)
    return isinstance(error, torch.distributed.DistError) or any(
        word in text for word in ("gloo", "NCCL", "pair closure")
    )


def _timed_out(error: RuntimeError | None) -> bool:
    """Whether torch.distributed's `error` says that a wait timed out (gloo: "Application timeout
    caused pair closure", "Timed out waiting ...ms for recv operation")."""
    text = str(error).lower()
    return error is not None and ("timeout" in text or "timed out" in text)


def _first_sentence(error: RuntimeError | None) -> str:
    """gloo's message without its source location (`[.../pair.cc:545] `) and advice."""
    text = " ".join(str(error).split())
    if text.startswith("["):
        text = text.split("] ", 1)[-1]
    return text.split(". ")[0]


def _process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R running, S sleeping, T stopped, ...), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
