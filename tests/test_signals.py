"""A run stopped by SIGTERM (`timeout`, `docker stop`, SLURM pre-emption) or SIGINT (Ctrl+C) ends with
the shell's exit code, 143 or 130, and one line that says where it stopped, what its last checkpoint
holds and the command that continues it; that command does. Real signals sent to real `train.py`
processes at known points."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.core.hydra_config import HydraConfig

from digits_zoo.cli import one_line_errors
from digits_zoo.training.run import train
from digits_zoo.training.stops import RunStopped, sigterm_raises
from tests.conftest import ROOT
from tests.test_resume import start_train, wait_for

# 1,000 training images in 32 batches, 300 test images in 6
QUICK = ["data.batch_size=32", "data.eval_batch_size=50", "+callbacks.marks._target_=tests.test_signals.Marks"]


class Marks(L.Callback):
    """Marks each training and test batch in `folder` and sleeps a little after it (no computing, so
    the numbers are untouched): a test can send a signal at a known point."""

    def __init__(self, folder: str, seconds: float = 0.03):
        self.folder, self.seconds = Path(folder), seconds

    def _mark(self, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / name).touch()
        time.sleep(self.seconds)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._mark(f"epoch{trainer.current_epoch}-batch{batch_idx}")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._mark(f"test-batch{batch_idx}")


def stop_at(
    tiny_data: Path, tmp_path: Path, mark: str, signum: int, *overrides: str, name: str = "run"
) -> tuple[Path, int, str]:
    """Start a run in tmp_path/`name`, send `signum` once `mark` is there; (run folder, exit code, the one
    line on stderr, checked to be the only one and to start with `stopped: `)."""
    run, marks = tmp_path / name, tmp_path / "marks"
    # (where SIGINT is ignored, as in a script's background job, a process started would inherit that)
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = start_train(tiny_data, run, *QUICK, f"+callbacks.marks.folder={marks}", *overrides)
    finally:
        signal.signal(signal.SIGINT, ignored)
    wait_for(marks / mark, lambda: process.poll() is None)
    before = checkpoint_bytes(run)
    process.send_signal(signum)
    code = process.wait(timeout=120)
    stderr = (tmp_path / f"{name}.stderr").read_text()
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped: "), stderr
    assert checkpoint_bytes(run) == before  # nothing that was written is touched on the way out
    assert not (run / "results.json").exists()
    return run, code, lines[0]


def checkpoint_bytes(run: Path) -> str | None:
    path = run / "checkpoints" / "last.ckpt"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def run_command(line: str, cwd: Path) -> subprocess.CompletedProcess:
    """The `python train.py resume=...` at the end of `line`, run as the user would run it in `cwd`."""
    command = shlex.split(line[line.index("python train.py") :])[:3]
    assert command[2].startswith("resume="), line
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), command[2]], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # real train.py processes and signals
def test_sigterm_in_the_middle_of_an_epoch_says_how_to_resume_and_the_resume_finishes(tiny_data, tmp_path):
    run, code, line = stop_at(tiny_data, tmp_path, "epoch1-batch5", signal.SIGTERM, "trainer.max_epochs=3")
    assert code == 143
    assert line == (
        "stopped: SIGTERM during training, in epoch 2 of 3; checkpoints/last.ckpt holds epoch 1 of 3, "
        "and the run goes on from there with: python train.py resume=run"
    )
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 0 and all(
        value.isfinite().all() for value in checkpoint["state_dict"].values() if value.is_floating_point()
    )

    resumed = run_command(line, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "results.json").read_text())["epochs"] == 3


@pytest.mark.slow  # real train.py processes and signals
def test_ctrl_c_says_the_same_with_exit_code_130(tiny_data, tmp_path):
    _run, code, line = stop_at(tiny_data, tmp_path, "epoch1-batch5", signal.SIGINT, "trainer.max_epochs=2")
    assert code == 130
    assert line == (
        "stopped: SIGINT (Ctrl+C) during training, in epoch 2 of 2; checkpoints/last.ckpt holds epoch 1 "
        "of 2, and the run goes on from there with: python train.py resume=run"
    )


@pytest.mark.slow  # real train.py processes and signals
def test_a_signal_before_any_epoch_finished_says_there_is_no_checkpoint(tiny_data, tmp_path):
    run, code, line = stop_at(tiny_data, tmp_path, "epoch0-batch3", signal.SIGTERM, "trainer.max_epochs=2")
    assert code == 143
    assert line == (
        "stopped: SIGTERM during training, in epoch 1 of 2; no epoch had finished, so there is no "
        "checkpoint to resume from: start the run again"
    )
    assert not (run / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow  # real train.py processes and signals
def test_a_signal_during_the_test_says_that_resuming_only_tests(tiny_data, tmp_path):
    run, code, line = stop_at(tiny_data, tmp_path, "test-batch1", signal.SIGTERM, "trainer.max_epochs=1")
    assert code == 143
    assert line == (
        "stopped: SIGTERM during the test; training had finished (checkpoints/last.ckpt holds epoch 1 of "
        "1), and python train.py resume=run runs the test and writes results.json without training again"
    )

    for mark in (tmp_path / "marks").iterdir():
        mark.unlink()
    resumed = run_command(line, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "results.json").read_text())["epochs"] == 1
    assert sorted(mark.name for mark in (tmp_path / "marks").iterdir()) == [f"test-batch{i}" for i in range(6)]


@pytest.mark.slow  # real train.py processes and signals
def test_a_signal_during_the_test_of_an_early_stopped_run_says_that_resuming_only_tests(tiny_data, tmp_path):
    # the tiny data set is learnt in the first epoch: with patience 1 early stopping ends the run early
    run, code, line = stop_at(
        tiny_data,
        tmp_path,
        "test-batch1",
        signal.SIGTERM,
        "trainer.max_epochs=10",
        "callbacks=early_stopping",
        "callbacks.early_stopping.patience=1",
    )
    epochs = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] + 1
    assert code == 143 and epochs < 10
    assert line == (
        f"stopped: SIGTERM during the test; training had finished (early stopping ended it after epoch "
        f"{epochs}; checkpoints/last.ckpt holds that epoch), and python train.py resume=run runs the test "
        "and writes results.json without training again"
    )

    resumed = run_command(line, cwd=tmp_path)  # (Lightning alone would train on from the checkpoint)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "results.json").read_text())["epochs"] == epochs
    assert not (tmp_path / "marks" / f"epoch{epochs}-batch0").exists()


@pytest.mark.slow  # real train.py processes and signals
def test_the_resume_command_works_pasted_into_a_shell_whatever_the_folder_is_called(tiny_data, tmp_path):
    name = "sp ace, ü 数=[1]"  # each of these would break a plain resume=... for Hydra or the shell
    run, code, line = stop_at(tiny_data, tmp_path, "test-batch1", signal.SIGTERM, "trainer.max_epochs=1", name=name)
    command = line[line.index("python train.py") : line.index(" runs the test")]
    assert code == 143 and command == """python train.py 'resume="sp ace, ü 数=[1]"'"""

    pasted = command.replace("python train.py", f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'train.py'))}")
    resumed = subprocess.run(["bash", "-c", pasted], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "results.json").read_text())["epochs"] == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["marks", name, f"{name}.stderr", f"{name}.stdout"]
    )  # no other run folder


class CtrlCTwiceWhileSaving(L.Callback):
    """Ctrl+C in the run's first checkpoint save, and again while Lightning shuts down after it."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow  # real train.py processes and signals
@pytest.mark.parametrize("checkpoint", ["best", "last"])
def test_ctrl_c_twice_while_the_first_checkpoint_is_saved_says_the_epoch_had_ended(tiny_data, tmp_path, checkpoint):
    # the best checkpoint is saved after the epoch's validation, last.ckpt after that (or first, without the best)
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)  # (a background job's children ignore it)
    try:
        process = start_train(
            tiny_data,
            tmp_path / "run",
            "trainer.max_epochs=2",
            "+callbacks.ctrl_c._target_=tests.test_signals.CtrlCTwiceWhileSaving",
            *(["~callbacks.model_checkpoint"] if checkpoint == "last" else []),
        )
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert process.wait(timeout=300) == 130
    stderr = (tmp_path / "run.stderr").read_text()
    assert stderr.strip().splitlines() == [
        "stopped: SIGINT (Ctrl+C) during training, at the end of epoch 1 of 2, before its checkpoint was written; "
        "no checkpoints/last.ckpt was written, so there is nothing to resume: start the run again"
    ], stderr
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


class SigtermIn(L.Callback):
    """Sends this process SIGTERM in `setup` of the fit (before Lightning has its own handler) or in the
    last batch of the test (where Lightning no longer stops early)."""

    def __init__(self, where: str):
        self.where = where

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.where == "setup" and stage == "fit":
            os.kill(os.getpid(), signal.SIGTERM)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.where == "last test batch" and trainer.test_loop.batch_progress.is_last_batch:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_where_lightning_would_not_stop_is_reported_too(make_cfg, tmp_path):
    for where, expected in (
        ("setup", "SIGTERM during training, in epoch 1 of 2; no epoch had finished"),
        (
            "last test batch",
            "SIGTERM during the test; training had finished (checkpoints/last.ckpt holds epochs 1-2 of 2)",
        ),
    ):
        cfg = make_cfg(
            "+callbacks.sigterm._target_=tests.test_signals.SigtermIn", f"+callbacks.sigterm.where={where}", run=where
        )
        with sigterm_raises(), pytest.raises(RunStopped, match=re.escape(expected)) as stopped:
            train(cfg)
        assert stopped.value.exit_code == 143
        assert not (tmp_path / where / "results.json").exists()


def test_ctrl_c_before_the_run_is_one_line_too(monkeypatch, capsys):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "")  # restored after the test: one_line_errors sets it
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # no Hydra job has started
    with pytest.raises(SystemExit) as exit_info, one_line_errors():
        raise KeyboardInterrupt
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "stopped: SIGINT (Ctrl+C) before the run started\n"


@pytest.mark.slow  # real train.py processes and signals
@pytest.mark.parametrize("command", [["train.py"], ["eval.py", "model_source=vgg_bn"]])
def test_sigterm_while_python_imports_is_one_line_too(tmp_path, command):
    script, *args = command
    process = subprocess.Popen(
        [sys.executable, str(ROOT / script), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    maps, deadline = Path(f"/proc/{process.pid}/maps"), time.monotonic() + 60
    while "libtorch" not in maps.read_text():  # torch's library is loading: a second or more of imports to go
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    assert stderr == "stopped: SIGTERM before the run started\n"
    assert list(tmp_path.iterdir()) == []
