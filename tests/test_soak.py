"""A soak of the faults together: short trainings in random order, each hit by a random fault
(SIGKILL, SIGTERM, a full disk, a second process on its folder, a user's own folder as the run
folder, a stopped DDP worker, or none), resumed where they can be, and then every run folder
checked: complete and consistent (config, checkpoints, results.json, CSV and plots all of one run,
with the test metrics of an uninterrupted run), or clearly incomplete and not resumable, a user's
folder untouched, and the leaderboard of them all, with a malformed results.json beside the runs.
Real processes, real signals, a real small file system (as root)."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from matplotlib.image import imread

from digits_zoo.training.resume import ResumeError, load_resume
from tests.test_ddp import is_running, worker_pid
from tests.test_resume import finish, popen_train, wait_for
from tests.test_run_folders import contents, user_folder
from tests.test_untrusted import write_malformed

pytestmark = pytest.mark.slow  # minutes of real processes, signals and DDP

SEED = int(os.environ.get("DIGITS_ZOO_SOAK_SEED", "2026"))  # the order and the faults; printed on failure
RUNS = 8
EPOCHS = 3
FAULTS = ("none", "sigkill", "sigterm", "disk_full", "second_process", "users_folder", "stopped_ddp_worker")
DDP = ("trainer=ddp", "trainer.devices=2", "trainer.strategy.timeout_s=10")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs for the run folders (as root), else a plain folder and no disk-full faults."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        == 0
    ):
        yield mount, True
        subprocess.run(["umount", str(mount)], check=True)
    else:
        yield mount, False


def paced(tiny_data: Path, run: Path, marks: Path, *extra: str) -> list[str]:
    return [
        f"data.data_dir={tiny_data}",
        "data.download=false",
        "data.val_size=200",
        "trainer.accelerator=cpu",
        f"trainer.max_epochs={EPOCHS}",
        "trainer.log_every_n_steps=10",
        "logger=csv",
        f"hydra.run.dir={run}",
        "+callbacks.pace._target_=tests.test_resume.Pace",
        f"+callbacks.pace.folder={marks}",
        "+callbacks.pace.seconds=0.03",
        *extra,
    ]


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` free bytes."""
    filler = disk / "filler"
    with open(filler, "wb") as file:
        file.write(b"\0" * max(shutil.disk_usage(disk).free - leave, 0))
    return filler


def check_complete(run: Path, reference: dict | None) -> None:
    """Everything in `run` is of one whole run, which ended as the uninterrupted one did (`reference`'s
    test metrics; None for a DDP run, whose processes see the data in other batches)."""
    results = json.loads((run / "results.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert results["model"] == config["model"]["name"] == "flatten_mlp" and results["epochs"] == EPOCHS
    if reference is not None:
        assert (results["test/acc"], results["test/loss"]) == (reference["test/acc"], reference["test/loss"])
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == EPOCHS - 1 and last["hyper_parameters"]["model"] == "flatten_mlp"
    assert len(list((run / "checkpoints").glob("best-epoch*.ckpt"))) == 1
    assert not list(run.rglob("*.tmp"))
    with open(run / "csv" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(float(r["epoch"])) for r in rows if r.get("val/acc")] == list(range(EPOCHS))  # each epoch once
    assert [int(float(r["epoch"])) for r in rows if r.get("train/acc")] == list(range(EPOCHS))
    for name in ("confusion_matrix", "training_curves", "mistakes"):
        assert imread(run / f"{name}.png").ndim == 3


def test_random_faults_end_in_complete_runs_or_clearly_incomplete_ones(tiny_data, tmp_path, small_disk):
    disk, real_disk = small_disk
    rng = random.Random(SEED)
    faults = [FAULTS[i % len(FAULTS)] for i in range(RUNS)]
    rng.shuffle(faults)
    if not real_disk:  # (not root, or no tmpfs: the full disk is tested in tests/test_disk_full.py)
        faults = [f if f != "disk_full" else "sigkill" for f in faults]

    reference_run = tmp_path / "reference"
    process = popen_train(tmp_path, "reference", *paced(tiny_data, reference_run, tmp_path / "reference_marks"))
    assert "error" not in finish(process, tmp_path, "reference") and process.returncode == 0
    reference = json.loads((reference_run / "results.json").read_text())

    outcomes = []
    for number, fault in enumerate(faults):
        run, marks, name = disk / f"run{number}", tmp_path / f"marks{number}", f"run{number}"
        if fault == "users_folder":  # refused before anything is written, and left as it was
            before = user_folder(run)
            process = popen_train(tmp_path, name, *paced(tiny_data, run, marks))
            stderr = finish(process, tmp_path, name)
            assert (
                process.returncode == 1
                and stderr.startswith(f"error: {run} is not empty and is not a train.py run folder")
                and len(stderr.splitlines()) == 1
            ), stderr
            assert contents(run) == before
            print(f"{run.name}: {fault}: refused, the user's files untouched")
            continue
        ddp = fault == "stopped_ddp_worker"
        process = popen_train(tmp_path, name, *paced(tiny_data, run, marks), *(DDP if ddp else ()))
        worker = worker_pid(process) if ddp else None
        epoch, batch = rng.randrange(EPOCHS), rng.randrange(8 if ddp else 32)  # (each DDP process has a share)
        where = f"{fault} in epoch {epoch + 1} after batch {batch + 1}"
        if fault != "none":
            wait_for(marks / f"epoch{epoch}-group{batch}", lambda process=process: process.poll() is None)
        filler = None
        if fault == "stopped_ddp_worker":
            os.kill(worker, signal.SIGSTOP)
        elif fault == "sigkill":
            process.send_signal(signal.SIGKILL)
        elif fault == "sigterm":
            process.send_signal(signal.SIGTERM)
        elif fault == "disk_full":
            filler = fill(disk, leave=100_000)  # less than one checkpoint
        elif fault == "second_process":
            (marks / "hold").touch()  # the run waits until the other process has tried: it cannot finish first
            other = popen_train(tmp_path, f"{name}_other", *paced(tiny_data, run, marks), "model=lenet5")
            stderr = finish(other, tmp_path, f"{name}_other")
            (marks / "hold").unlink()
            assert other.returncode == 1 and f"{run} is in use by train.py, pid {process.pid}" in stderr, where
        stderr = finish(process, tmp_path, name)
        expected = {
            "none": 0,
            "sigkill": -signal.SIGKILL,
            "sigterm": 143,
            "disk_full": 1,
            "second_process": 0,
            "stopped_ddp_worker": 1,
        }
        assert process.returncode == expected[fault], (where, stderr)
        if ddp:  # the first process waited trainer.strategy.timeout_s, and ended the stopped worker too
            assert (
                stderr.startswith(
                    f"error: DDP worker rank 1 (pid {worker}) is stopped (SIGSTOP or Ctrl+Z) and did "
                    "not answer within 10 s"
                )
                and len(stderr.splitlines()) == 1
            ), (where, stderr)
            assert not is_running(worker, run), where
        if fault == "disk_full":
            assert stderr.strip().splitlines()[-1].startswith("error: cannot write ") and "Traceback" not in stderr, (
                where,
                stderr,
            )
            filler.unlink()  # space again: the run can go on
        # resume what stopped, as the user would
        for attempt in range(2):
            if (run / "results.json").exists():
                break
            try:
                load_resume(run, check_overrides=False)
            except ResumeError:  # stopped in its first epoch: nothing to resume
                break
            resumed = popen_train(tmp_path, f"{name}_resume{attempt}", f"resume={run}")
            stderr = finish(resumed, tmp_path, f"{name}_resume{attempt}")
            assert resumed.returncode == 0, (where, stderr)
        outcomes.append((run, where, ddp))

    complete = 0
    for run, where, ddp in outcomes:
        if (run / "results.json").exists():
            check_complete(run, None if ddp else reference)
            complete += 1
            same = "" if ddp else ", the uninterrupted run's test metrics"
            print(f"{run.name}: {where}: complete{same}")
        else:  # clearly incomplete: no results, no last checkpoint, and resume= says so
            assert not (run / "checkpoints" / "last.ckpt").exists(), where
            with pytest.raises(ResumeError, match=r"no checkpoints/last.ckpt"):
                load_resume(run, check_overrides=False)
            print(f"{run.name}: {where}: incomplete, nothing to resume")
    assert complete >= RUNS // 2, outcomes

    # the leaderboard of them all stands, with a results.json beside them that train.py did not write
    malformed = write_malformed(disk / "copied_by_hand", b"{not json")
    board = subprocess.run(
        [sys.executable, "-m", "digits_zoo.leaderboard", str(disk)], capture_output=True, text=True, timeout=120
    )
    assert board.returncode == 0, board.stderr
    assert board.stderr.strip().splitlines() == [
        f"warning: skipped {malformed}: not JSON (Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1))"
    ], board.stderr
    assert sum(line.startswith("| flatten_mlp ") for line in board.stdout.splitlines()) == complete, board.stdout
