"""What a run prints and what its train.log keeps: a line per epoch (as Keras prints them) in a log or
a pipe, no progress-bar frames there, the bar on a terminal, and no library lines that tell nothing."""

from __future__ import annotations

import re
import subprocess
import sys

import lightning as L
import pytest

import digits_zoo
from digits_zoo.training.callbacks import RichBatchProgressBar, progress_bar
from tests.conftest import ROOT, tiny_overrides

EPOCH_LINE = re.compile(
    r"Epoch (\d+)/(\d+) - \d+\.\ds - loss: \d+\.\d{4} - acc: \d\.\d{4} - val_loss: \d+\.\d{4} - val_acc: \d\.\d{4}$"
)
DEVICE_LINES = ("GPU available", "TPU available")


def epochs(text: str) -> list[tuple[int, int]]:
    """(epoch, of) of each epoch line in `text`, in order."""
    return [(int(m[1]), int(m[2])) for line in text.splitlines() if (m := EPOCH_LINE.search(line))]


def fit(tiny_data, run, *overrides: str) -> digits_zoo.api.Fit:
    """digits_zoo.fit of a tiny run (2 epochs) in `run`, in this process, its console captured (not a terminal)."""
    tiny = [*tiny_overrides(tiny_data), "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    return digits_zoo.fit(
        "flatten_mlp", [*tiny, "+trainer.enable_model_summary=false", f"hydra.run.dir={run}", *overrides]
    )


@pytest.mark.slow  # a real train.py process
def test_a_piped_run_prints_a_line_per_epoch_and_no_bar_frames(tiny_data, tmp_path):
    # (as in python train.py ... 2>&1 | cat > log)
    overrides = [*tiny_overrides(tiny_data), "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    assert "\r" not in result.stdout and "it/s" not in result.stdout  # no bar's frames
    assert epochs(result.stdout) == [(1, 2), (2, 2)]
    assert not any(line in result.stdout for line in DEVICE_LINES)
    log = (tmp_path / "run" / "train.log").read_text()
    assert epochs(log) == [(1, 2), (2, 2)] and "GPU available" in log  # (for a bug report)


def test_train_log_and_the_console_of_a_run_in_a_log_show_each_epoch_once(tiny_data, tmp_path, capsys):
    run = fit(tiny_data, tmp_path / "run")
    console = capsys.readouterr()
    assert epochs(console.out) == [(1, 2), (2, 2)]
    assert "\r" not in console.out + console.err  # no bar
    assert not any(line in console.out + console.err for line in DEVICE_LINES)
    log = (run.run_dir / "train.log").read_text()
    assert epochs(log) == [(1, 2), (2, 2)] and "GPU available" in log


@pytest.mark.parametrize("no_bar", ["callbacks.progress_bar=null", "+trainer.enable_progress_bar=false"])
def test_a_run_told_to_draw_no_bar_draws_none_and_prints_the_epoch_lines(tiny_data, tmp_path, capsys, no_bar):
    fit(tiny_data, tmp_path / "run", no_bar, "trainer.max_epochs=1")
    console = capsys.readouterr()
    assert epochs(console.out) == [(1, 1)]
    assert "\r" not in console.out + console.err and "it/s" not in console.out + console.err


def test_where_a_bar_draws_the_epoch_lines_go_to_train_log_only(tiny_data, tmp_path, capsys):
    # a bar chosen explicitly draws also in a log, and shows the epoch's metrics itself
    bar = "callbacks.progress_bar._target_=digits_zoo.training.callbacks.BatchProgressBar"
    run = fit(tiny_data, tmp_path / "run", bar, "trainer.max_epochs=1")
    console = capsys.readouterr()
    assert "Epoch 1/1: 100%" in console.out  # the bar
    assert epochs(console.out + console.err) == []
    assert epochs((run.run_dir / "train.log").read_text()) == [(1, 1)]


def test_the_bar_is_rich_on_a_terminal_and_none_in_a_log_or_a_pipe(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert progress_bar() is None
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert isinstance(progress_bar(), RichBatchProgressBar)


class StopInSecondEpoch(L.Callback):
    """Ends a run in the middle of its second epoch (a resumed run goes on)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == 1 and batch_idx == 1 and not trainer.ckpt_path:
            raise RuntimeError("stopped in the second epoch")


def test_a_resumed_run_goes_on_with_its_epoch_numbers_in_train_log(tiny_data, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stopped in the second epoch"):
        fit(tiny_data, run, f"+callbacks.stop._target_={__name__}.StopInSecondEpoch")
    assert epochs((run / "train.log").read_text()) == [(1, 2)]
    digits_zoo.fit(overrides=[f"resume={run}"])
    assert epochs((run / "train.log").read_text()) == [(1, 2), (2, 2)]
