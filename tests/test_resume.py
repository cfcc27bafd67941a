"""When things go wrong: a run killed with SIGKILL resumes to exactly the result it would have had,
checkpoint saves survive kills, same-seed runs are identical, a diverging run stops with one line,
and loading never runs pickled code. The kills are real signals sent to real processes."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from digits_zoo import create_model
from digits_zoo.models.pretrained import WeightsError
from digits_zoo.predict import load_model
from digits_zoo.training.checkpoints import AtomicCheckpointIO
from digits_zoo.training.module import DivergedError
from digits_zoo.training.resume import ResumeError, load_resume
from digits_zoo.training.run import train
from digits_zoo.training.stops import hydra_override
from tests.conftest import ROOT, run_train_py, tiny_overrides

# dropout, batch-norm, augmentation and a one-cycle schedule: every kind of state a resume must restore
EXACTING = ["model=mlp_bn_dropout", "data.augment={degrees:10,scale:0.1,translate:0.1}", "optimizer.scheduler=onecycle"]


class Pace(L.Callback):
    """Slows training down by sleeping (no computing, so the numbers are untouched) and marks its
    progress in `folder`, so that a test can kill it at a known point in the middle of an epoch."""

    def __init__(self, folder: str, seconds: float = 0.1):
        self.folder, self.seconds = Path(folder), seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"epoch{trainer.current_epoch}-group{batch_idx}").touch()
        time.sleep(self.seconds)
        while (self.folder / "hold").exists():  # a test holds the run here, e.g. while another process tries its folder
            time.sleep(0.05)


class Overdrive(L.Callback):
    """From epoch `epoch` on, an absurd learning rate: the run diverges after a good first epoch."""

    def __init__(self, epoch: int = 1, lr: float = 1e30):
        self.epoch, self.lr = epoch, lr

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.epoch:
            for group in pl_module.optimizers().optimizer.param_groups:
                group["lr"] = self.lr


def start_train(tiny_data: Path, run: Path, *overrides: str) -> subprocess.Popen:
    """`python train.py` on the tiny data, writing to `run`; its output goes to files beside it."""
    args = [
        f"data.data_dir={tiny_data}",
        "data.download=false",
        "data.val_size=200",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
        "logger=csv",
        hydra_override("hydra.run.dir", str(run)),
        *overrides,
    ]
    return popen_train(run.parent, run.name, *args)


def popen_train(cwd: Path, name: str, *args: str) -> subprocess.Popen:
    with open(cwd / f"{name}.stdout", "w") as out, open(cwd / f"{name}.stderr", "w") as err:
        return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, stdout=out, stderr=err)


def finish(process: subprocess.Popen, cwd: Path, name: str) -> str:
    """Wait for `process`; its stderr."""
    process.wait(timeout=300)
    return (cwd / f"{name}.stderr").read_text()


def wait_for(path: Path, alive, timeout: float = 120) -> None:
    """Wait until `path` exists, while `alive()`."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert alive(), f"the process ended before {path.name}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.01)


def final_state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow  # real train.py processes, killed and resumed
def test_a_run_killed_mid_epoch_resumes_to_exactly_the_uninterrupted_result(tiny_data, tmp_path):
    # 1,000 training images in batches of 8: 125 batches, 8 groups of 16, a tenth of a second apiece.
    # val/acc is 1.0 from the first epoch on these easy digits; val/loss keeps falling, so the
    # tested checkpoint comes from an epoch trained after the resume
    overrides = [
        *EXACTING,
        "data.batch_size=8",
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.monitor=val/loss",
        "callbacks.model_checkpoint.mode=min",
        "+callbacks.pace._target_=tests.test_resume.Pace",
    ]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    process = start_train(tiny_data, straight, *overrides, f"+callbacks.pace.folder={tmp_path / 'marks-straight'}")
    assert process.wait(timeout=300) == 0, (tmp_path / "straight.stderr").read_text()

    marks = tmp_path / "marks-killed"
    process = start_train(tiny_data, killed, *overrides, f"+callbacks.pace.folder={marks}")
    wait_for(
        marks / "epoch1-group2", lambda: process.poll() is None
    )  # the third of the second epoch's eight groups is done
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    checkpoint = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 0 and not (marks / "epoch1-group7").exists()  # killed inside epoch 2 of 3
    assert not (killed / "results.json").exists()

    resumed = popen_train(tmp_path, "resumed", f"resume={killed}")
    stderr = finish(resumed, tmp_path, "resumed")
    assert resumed.returncode == 0, stderr
    assert "Traceback" not in stderr and "exists and is not empty" not in stderr

    expected, got = (json.loads((run / "results.json").read_text()) for run in (straight, killed))
    for key in ("test/acc", "test/loss", "epochs", "best_epoch", "best_val/acc"):
        assert got[key] == expected[key], key
    assert got["best_epoch"] >= 2  # chosen after the resume, against the best score before it
    assert [p.name for p in (killed / "checkpoints").glob("best-*")] == [Path(got["best_checkpoint"]).name]
    straight_state, resumed_state = final_state(straight), final_state(killed)
    assert straight_state.keys() == resumed_state.keys()
    assert all(torch.equal(straight_state[key], resumed_state[key]) for key in straight_state)

    # the run folder tells the whole run: each epoch once in the CSV and the curves, the log continued
    rows = list(csv.DictReader(open(killed / "csv" / "metrics.csv")))
    assert [float(r["epoch"]) for r in rows if r["train/loss"]] == [0, 1, 2]
    assert [float(r["epoch"]) for r in rows if r["val/acc"]] == [0, 1, 2]
    history = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["history"]
    assert sorted(history) == [0, 1, 2] and all(len(values) == 4 for values in history.values())
    assert (killed / "training_curves.png").is_file()
    assert "Resuming" in (killed / "train.log").read_text()
    assert "resume=" not in (killed / ".hydra" / "overrides.yaml").read_text()  # how the run was started


def save_forever(path: str) -> None:
    """Save checkpoints to `path` without end, each 8 MB filled with its own number."""
    io, n = AtomicCheckpointIO(), 0
    while True:
        n += 1
        io.save_checkpoint({"n": n, "weights": torch.full((2_000_000,), float(n))}, path)


@pytest.mark.slow  # real processes killed in the middle of saves
def test_a_kill_during_a_checkpoint_save_leaves_the_previous_one_whole(tmp_path):
    # real processes, forked from a server that imported everything once (imports take seconds)
    processes = multiprocessing.get_context("forkserver")
    processes.set_forkserver_preload([__name__])
    path, rng, interrupted = tmp_path / "last.ckpt", random.Random(0), 0
    # a kill lands in a save (its temporary file there) or between two, at random: kill until two
    # saves were cut short, every checkpoint left behind checked whole (a busy machine needs more kills)
    for _ in range(60):
        if interrupted == 2:
            break
        for stale in (path, *tmp_path.glob(".last.ckpt.*.tmp")):
            stale.unlink(missing_ok=True)
        saver = processes.Process(target=save_forever, args=(str(path),))
        saver.start()
        wait_for(path, saver.is_alive, timeout=60)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(saver.pid, signal.SIGKILL)
        saver.join(timeout=60)
        assert saver.exitcode == -signal.SIGKILL
        interrupted += any(tmp_path.glob(".last.ckpt.*.tmp"))  # the kill came in the middle of a save
        checkpoint = AtomicCheckpointIO().load_checkpoint(path)
        assert checkpoint["n"] >= 1 and torch.equal(
            checkpoint["weights"], torch.full((2_000_000,), float(checkpoint["n"]))
        )
    assert interrupted > 0  # the test did kill saves half-way


@pytest.mark.slow
def test_two_runs_with_the_same_seed_are_identical(make_cfg):
    first, second, other = (
        train(make_cfg(*EXACTING, *seed, run=name)) for name, seed in (("a", []), ("b", []), ("c", ["seed=7"]))
    )
    assert first["metrics"]["test/acc"] == second["metrics"]["test/acc"]
    assert first["metrics"]["test/loss"] == second["metrics"]["test/loss"]
    states = [output["trainer"].lightning_module.state_dict() for output in (first, second, other)]
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    assert not all(torch.equal(states[0][key], states[2][key]) for key in states[0])  # the seed does matter


@pytest.mark.slow  # real train.py processes, killed and resumed
def test_a_diverging_run_stops_with_one_line_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    run = tmp_path / "run"
    process = start_train(
        tiny_data, run, "trainer.max_epochs=3", "+callbacks.overdrive._target_=tests.test_resume.Overdrive"
    )
    stderr = finish(process, tmp_path, "run")
    assert process.returncode == 1 and "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line == stderr.strip().splitlines()[-1]
    assert "became NaN or infinite in epoch 2" in line and "lower optimizer.lr" in line
    assert "last good checkpoint (last.ckpt, after epoch 1) is kept" in line
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 0
    assert all(value.isfinite().all() for value in checkpoint["state_dict"].values() if value.is_floating_point())
    assert not (run / "results.json").exists()


class Poison(L.Callback):
    """After the last batch of the first epoch, a weight that is no longer a number (its loss was fine)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            with torch.no_grad():
                pl_module.model.head.weight[0, 0] = float("inf")


def test_weights_that_overflow_are_never_checkpointed(make_cfg, tmp_path):
    with pytest.raises(DivergedError, match=r"the weights became NaN or infinite in epoch 1.*no checkpoint"):
        train(make_cfg("trainer.max_epochs=2", "+callbacks.poison._target_=tests.test_resume.Poison"))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow  # real train.py processes
def test_resume_explains_what_is_missing(make_cfg, tmp_path, tiny_data):
    with pytest.raises(ResumeError, match="no such folder"):
        train(make_cfg(f"resume={tmp_path / 'nowhere'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResumeError, match=r"no config.yaml"):
        train(make_cfg(f"resume={tmp_path / 'empty'}"))
    (tmp_path / "empty" / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(ResumeError, match=r"no checkpoints/last.ckpt"):
        train(make_cfg(f"resume={tmp_path / 'empty'}"))

    for args, message in (
        (["resume=typo"], "no such folder"),
        ([f"resume={tmp_path / 'empty'}", "seed=3"], "drop the other overrides (seed=3)"),
    ):
        result = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: resume=") and message in line
    assert not (tmp_path / "typo").exists()  # not made into a run folder by Hydra


class Payload:
    """Unpickling this runs code: it creates the file `path`."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_checkpoints_from_files_never_run_pickled_code(tmp_path):
    ran = tmp_path / "code-ran"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"paths:\n  output_dir: {run}\n")
    torch.save({"epoch": 0, "state_dict": {}, "payload": Payload(ran)}, run / "checkpoints" / "last.ckpt")

    refused = "last.ckpt holds pickled objects besides tensors and plain data .* so it was not loaded"
    with pytest.raises(WeightsError, match=refused):  # Lightning's loading in fit and test
        AtomicCheckpointIO().load_checkpoint(run / "checkpoints" / "last.ckpt")
    with pytest.raises(ResumeError, match=refused):
        load_resume(run)
    with pytest.raises(WeightsError):
        load_model(run)  # predict --model
    with pytest.raises(WeightsError):
        create_model("flatten_mlp", pretrained=run)  # and model.pretrained=
    assert not ran.exists()

    torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)  # the unsafe way does run it
    assert ran.exists()


@pytest.fixture
def train_py(monkeypatch, capsys, tiny_data, tmp_path):
    """`python train.py ARGS` in this process, in tmp_path; a first argument other than resume= starts
    a quiet run on the tiny data (its folder: tmp_path / that argument). Returns (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(first: str, *args: str) -> tuple[int, str]:
        if not first.startswith("resume="):
            quiet = ["+trainer.enable_model_summary=false", "trainer.log_every_n_steps=1"]
            args = (*tiny_overrides(tiny_data), *quiet, f"hydra.run.dir={first}", *args)
        else:
            args = (first, *args)
        return run_train_py(monkeypatch, capsys, *args)

    return run


# dropout, batch-norm and augmentation: the randomness that must go on as in a run started with more epochs
RANDOM = ["model=mlp_bn_dropout", "data.augment={degrees:10,scale:0.1,translate:0.1}"]


def test_a_finished_run_extended_with_more_epochs_is_the_run_started_with_them(train_py, tmp_path, monkeypatch):
    assert train_py("straight", *RANDOM, "trainer.max_epochs=3")[0] == 0
    assert train_py("run", *RANDOM, "trainer.max_epochs=2")[0] == 0
    drawn = []  # the pictures are drawn again, from every epoch's metrics
    monkeypatch.setattr(
        "digits_zoo.training.figures.save_run_plots", lambda _, __, history, *a: drawn.append(history) or {}
    )
    code, stderr = train_py("resume=run", "trainer.max_epochs=3")
    assert code == 0, stderr

    run = tmp_path / "run"
    expected, got = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("straight", "run"))
    for key in ("test/acc", "test/loss", "epochs", "best_epoch", "best_val/acc"):
        assert got[key] == expected[key], key
    assert got["epochs"] == 3
    straight_state, extended_state = final_state(tmp_path / "straight"), final_state(run)
    assert all(torch.equal(straight_state[key], extended_state[key]) for key in straight_state)
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    assert [float(r["epoch"]) for r in rows if r["train/loss"]] == [0, 1, 2]  # the first two kept, each once
    assert len([r for r in rows if r["test/acc"]]) == 1
    assert sorted(drawn[-1]) == [0, 1, 2]
    # the run folder says 3 epochs wherever it records them: a later resume= and the leaderboard read them
    for config in (run / "config.yaml", run / ".hydra" / "config.yaml"):
        assert "max_epochs: 3\n" in config.read_text()
    overrides = (run / ".hydra" / "overrides.yaml").read_text()
    assert "- trainer.max_epochs=3\n" in overrides and "max_epochs=2" not in overrides
    assert "Extending it from 2 to 3 epochs" in (run / "train.log").read_text()
    assert load_resume(run, check_overrides=False).cfg.trainer.max_epochs == 3


def test_extending_a_run_is_refused_in_one_line_where_it_would_not_be_exact(train_py, tmp_path):
    def refused(*args: str) -> str:
        code, stderr = train_py(*args)
        assert code == 1 and "Traceback" not in stderr, stderr
        (line,) = stderr.strip().splitlines()
        return line

    assert train_py("run", "trainer.max_epochs=2")[0] == 0
    before = {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()}
    assert refused("resume=run", "trainer.max_epochs=2") == (
        "error: resume=run trainer.max_epochs=2: the run already has 2 epochs; to train it further give more "
        "epochs, e.g. trainer.max_epochs=4"
    )
    assert "drop the other overrides (seed=3)" in refused("resume=run", "trainer.max_epochs=4", "seed=3")
    assert {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()} == before

    # what an extension to 4 leaves where it stopped before its first new epoch ended: config.yaml says 4
    config = tmp_path / "run" / "config.yaml"
    config.write_text(config.read_text().replace("  max_epochs: 2\n", "  max_epochs: 4\n"))
    assert refused("resume=run", "trainer.max_epochs=3") == (
        "error: resume=run trainer.max_epochs=3: the run already runs to 4 epochs (2 done; resume=run finishes "
        "them); to train it further give more epochs, e.g. trainer.max_epochs=8"
    )
    assert train_py("resume=run", "trainer.max_epochs=4")[0] == 0  # the same command again (DDP's workers run it)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["epochs"] == 4

    # a one-cycle schedule's steps were laid out over the epochs it started with
    assert train_py("onecycle", "trainer.max_epochs=1", "optimizer.scheduler=onecycle")[0] == 0
    line = refused("resume=onecycle", "trainer.max_epochs=2")
    assert line.startswith("error: resume=onecycle trainer.max_epochs=2: its one-cycle learning-rate schedule")
    assert "spans the 1 epochs it was started with" in line and "model.pretrained=onecycle" in line

    # val/acc is 1.0 from the first epoch on these digits: patience 1 ends the run after epoch 2 of 4
    stopped = ["trainer.max_epochs=4", "callbacks=early_stopping", "callbacks.early_stopping.patience=1"]
    assert train_py("stopped", *stopped)[0] == 0
    assert json.loads((tmp_path / "stopped" / "results.json").read_text())["epochs"] == 2
    assert refused("resume=stopped", "trainer.max_epochs=8") == (
        "error: resume=stopped trainer.max_epochs=8: early stopping ended this run after epoch 2 of its 4 (its "
        "patience had run out), not its limit of epochs, so a higher limit does not train it on; to train on from "
        "its weights, start a new run with model.pretrained=stopped trainer.max_epochs=8"
    )


@pytest.mark.slow  # real train.py processes, two DDP workers each
def test_a_ddp_run_is_extended_by_all_its_workers(tiny_data, tmp_path):
    ddp = ["trainer=ddp", "trainer.devices=2", "model=single_dense"]
    assert start_train(tiny_data, tmp_path / "run", *ddp, "trainer.max_epochs=1").wait(timeout=300) == 0
    extended = popen_train(tmp_path, "extended", f"resume={tmp_path / 'run'}", "trainer.max_epochs=2")
    stderr = finish(extended, tmp_path, "extended")  # the second worker runs the same command, its config then says 2
    assert extended.returncode == 0, stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["epochs"] == 2
