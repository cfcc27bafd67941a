"""A full disk (or a used-up quota, a read-only file system) ends train.py with one `error:` line that
names the file it could not write, the space that needed and what was free, what checkpoints/last.ckpt
still holds and the `resume=` command that goes on after freeing space; no temporary file is left and
nothing written before is damaged; that command finishes the run.

The first tests give a real train.py a real small file system (a tmpfs of a few MB, mounted as root)
that its keras_cnn checkpoints (6.1 MB each, with Adam's state) fill in the second epoch, or in the
first; where this process cannot mount one they skip, and the later tests make the writes themselves
fail (`digits_zoo.writes`, Lightning's CSV writer), in this process, through train.py's real entry point.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from digits_zoo import writes
from digits_zoo.training import messages
from digits_zoo.training.resume import _complete_rows
from tests.conftest import ROOT, run_train_py, tiny_overrides
from tests.test_signals import run_command

# keras_cnn's checkpoints are 6.1 MB: a best-epochNN.ckpt and a last.ckpt, and the new last.ckpt's
# temporary file beside the old one while it is written
KERAS = ["model=keras_cnn", "data.batch_size=32", "trainer.max_epochs=3"]
SIZES = r"\(it needs (?P<needed>[\d.]+) MB; (?P<free>[\d.]+) MB free\)"


def train_process(tiny_data: Path, cwd: Path, run: str, *overrides: str) -> subprocess.CompletedProcess:
    args = [
        *tiny_overrides(tiny_data),
        "+trainer.enable_model_summary=false",
        f"hydra.run.dir={run}",
        *overrides,
    ]
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def the_line(stderr: str) -> str:
    """The one line on stderr, checked to be the only one and to start with `error: `."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(str(path) for path in folder.rglob("*.tmp"))


def last_epoch(run: Path) -> int:
    """The epoch (counted from 1) that checkpoints/last.ckpt holds; it loads."""
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] + 1


@pytest.fixture
def small_disk(tmp_path):
    """`mount(megabytes)`: a tmpfs of that size at tmp_path/disk, unmounted after the test."""
    mounted = []

    def mount(megabytes: int) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip(
                "the real full-disk tests mount a small tmpfs, which needs root and mount(8); the simulated "
                "ones still run"
            )
        folder = tmp_path / "disk"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True, text=True
        )
        if done.returncode:
            pytest.skip(
                f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}), so the real "
                "full-disk tests cannot run; the simulated ones still run"
            )
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)  # lazily, if something holds it


@pytest.mark.slow  # real train.py processes on a small real file system
def test_a_disk_that_fills_in_epoch_2_ends_with_one_line_and_the_resume_finishes(tiny_data, tmp_path, small_disk):
    disk = small_disk(24)
    filler = disk / "filler"
    filler.write_bytes(bytes(8 * 2**20))  # 16 MB left: epoch 1's two checkpoints fit, epoch 2's new last.ckpt does not
    result = train_process(tiny_data, tmp_path, "disk/run", *KERAS)
    assert result.returncode == 1
    line = the_line(result.stderr)
    match = re.fullmatch(
        rf"error: cannot write disk/run/checkpoints/(last|best-epoch02)\.ckpt: no space left on the "
        rf"device {SIZES}; what was written before is whole, and checkpoints/last.ckpt holds epoch 1 "
        r"of 3; free space, then the run goes on from there with: python train.py resume=disk/run",
        line,
    )
    assert match, line
    run = disk / "run"
    assert float(match["needed"]) == round((run / "checkpoints" / "last.ckpt").stat().st_size / 1e6, 1)
    assert float(match["free"]) < float(match["needed"])
    assert leftovers(disk) == []
    assert last_epoch(run) == 1 and not (run / "results.json").exists()

    filler.unlink()  # free space
    resumed = run_command(line, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "results.json").read_text())["epochs"] == 3
    assert last_epoch(run) == 3 and leftovers(disk) == []
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    assert [float(row["epoch"]) for row in rows if row["val/acc"]] == [0, 1, 2]


@pytest.mark.slow  # real train.py processes on a small real file system
def test_a_disk_too_small_for_the_first_checkpoint_says_there_is_nothing_to_resume(tiny_data, tmp_path, small_disk):
    disk = small_disk(4)
    result = train_process(tiny_data, tmp_path, "disk/run", *KERAS)
    assert result.returncode == 1
    line = the_line(result.stderr)
    assert re.fullmatch(
        rf"error: cannot write disk/run/checkpoints/best-epoch01\.ckpt: no space left on the device "
        rf"{SIZES}; what was written before is whole, and no checkpoints/last.ckpt was written, so "
        r"there is nothing to resume: free space and start the run again",
        line,
    ), line
    assert leftovers(disk) == [] and not list((disk / "run" / "checkpoints").iterdir())


# The same, with the failures made in this process, where no file system can be mounted. One short
# epoch of single_dense at a time: 1,000 training images in 32 batches.
TINY = ["model=single_dense", "trainer.max_epochs=2", "data.batch_size=32"]


@pytest.fixture
def run_cli(monkeypatch, capsys, tiny_data, tmp_path):
    """Run train.py's __main__ in tmp_path with these overrides (on the tiny data, in tmp_path/run);
    returns (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*overrides: str) -> tuple[int, str]:
        args = [
            *tiny_overrides(tiny_data),
            "+trainer.enable_model_summary=false",
            "hydra.run.dir=run",
            *overrides,
        ]
        if overrides and overrides[0].startswith("resume="):
            args = list(overrides)
        return run_train_py(monkeypatch, capsys, *args)

    return run


def fail_writes(monkeypatch, name: str, number: int, error: int) -> dict:
    """The `number`th write of a file called `name` writes half its bytes, then fails with `error`;
    returns {"needed": its size} once it has."""
    real, seen, failed = writes._write, [], {}

    def write(file, data) -> None:
        if Path(file.name).name == writes.temporary_beside(Path(name)).name:
            seen.append(file.name)
            if len(seen) == number:
                failed["needed"] = len(data)
                file.write(memoryview(data)[: len(data) // 2])
                file.flush()
                raise OSError(error, os.strerror(error))
        real(file, data)

    monkeypatch.setattr(writes, "_write", write)
    return failed


def resume_in_this_process(run_cli, monkeypatch, tmp_path) -> dict:
    """Writes work again: `python train.py resume=run` must finish; its results.json."""
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    code, stderr = run_cli("resume=run")
    assert code == 0, stderr
    assert leftovers(tmp_path) == []
    return json.loads((tmp_path / "run" / "results.json").read_text())


def test_a_save_that_fails_half_way_removes_its_temporary_file_and_says_how_to_go_on(run_cli, tmp_path, monkeypatch):
    failed = fail_writes(monkeypatch, "last.ckpt", 2, errno.EDQUOT)  # a quota, met in epoch 2's last.ckpt
    code, stderr = run_cli(*TINY)
    assert code == 1
    assert the_line(stderr) == (
        f"error: cannot write run/checkpoints/last.ckpt: the disk quota is used up (it needs "
        f"{writes.size(failed['needed'])}); what was written before is whole, and checkpoints/last.ckpt holds epoch 1 "
        "of 2; free space within the quota, then the run goes on from there with: python train.py resume=run"
    )
    assert leftovers(tmp_path) == [] and last_epoch(tmp_path / "run") == 1
    assert resume_in_this_process(run_cli, monkeypatch, tmp_path)["epochs"] == 2


@pytest.mark.pictures
@pytest.mark.parametrize(
    "name, error, why, fix",
    [
        ("results.json", errno.EROFS, "the file system is read-only", "make it writable"),
        ("confusion_matrix.png", errno.ENOSPC, "no space left on the device", "free space"),
    ],
)
def test_results_and_plots_that_cannot_be_written_say_that_resuming_only_tests(
    run_cli, tmp_path, monkeypatch, name, error, why, fix
):
    failed = fail_writes(monkeypatch, name, 1, error)
    code, stderr = run_cli(*TINY)
    assert code == 1
    sizes = ""
    if error == errno.ENOSPC:  # the real free space of tmp_path's disk, before the write
        sizes = rf" \(it needs {re.escape(writes.size(failed['needed']))}; [\d.]+ [kMG]?B free\)"
    assert re.fullmatch(
        rf"error: cannot write run/{re.escape(name)}: {why}{sizes}; what was written before is whole, and training had "
        rf"finished \(checkpoints/last.ckpt holds epochs 1-2 of 2\); {fix}, then python train.py resume=run runs the "
        r"test and writes results.json without training again",
        the_line(stderr),
    ), stderr
    assert not (tmp_path / "run" / name).exists() and leftovers(tmp_path) == []
    assert resume_in_this_process(run_cli, monkeypatch, tmp_path)["epochs"] == 2
    assert (tmp_path / "run" / name).is_file()


def test_lightnings_csv_log_that_cannot_be_written_is_named(run_cli, tmp_path, monkeypatch):
    real, failed = csv.DictWriter.writerows, []

    def writerows(self, rows):  # Lightning's CSV writer meets a full disk once rows of epoch 2 come
        rows = list(rows)
        if any(row.get("epoch") == 1 for row in rows):
            failed.append(True)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, rows)

    folder_free = writes.free_bytes
    monkeypatch.setattr(csv.DictWriter, "writerows", writerows)
    monkeypatch.setattr(messages, "free_bytes", lambda folder: 0 if failed else folder_free(folder))
    code, stderr = run_cli(*TINY)
    assert code == 1
    assert the_line(stderr) == (
        "error: cannot write Lightning's CSV log run/csv/metrics.csv: no space left on the device (0 bytes free in run "
        "now); what was written before is whole, and checkpoints/last.ckpt holds epoch 1 of 2; free space, then the "
        "run goes on from there with: python train.py resume=run"
    )

    assert resume_in_this_process(run_cli, monkeypatch, tmp_path)["epochs"] == 2
    rows = list(csv.DictReader(open(tmp_path / "run" / "csv" / "metrics.csv")))
    assert [float(row["epoch"]) for row in rows if row["val/acc"]] == [0, 1]


def test_a_csv_row_cut_short_by_a_full_disk_is_left_out_on_resume(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,val/acc,val/loss\r\n0,31,1.0,0.0054\r\n1,63,1.0,0.00\r\n")
    assert _complete_rows(path) == [
        {"epoch": "0", "step": "31", "val/acc": "1.0", "val/loss": "0.0054"},
        {"epoch": "1", "step": "63", "val/acc": "1.0", "val/loss": "0.00"},
    ]
    for cut in ("1,63,1.0,0.00", "1,63", "1"):  # the last row's line never ended, or its fields are missing
        path.write_text(f"epoch,step,val/acc,val/loss\r\n0,31,1.0,0.0054\r\n{cut}")
        assert [row["epoch"] for row in _complete_rows(path)] == ["0"]
    path.write_text("epoch,step,val/acc,val/loss\r\n0,31,1.0,0.0054\r\n1,63\r\n")
    assert [row["epoch"] for row in _complete_rows(path)] == ["0"]


def test_a_write_that_cannot_fit_fails_before_it_begins_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"old")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f".last.ckpt.{socket.gethostname()}.{dead.stdout.strip()}.tmp"  # a process that has ended
    killed.write_bytes(b"left by a kill")
    monkeypatch.setattr(writes, "free_bytes", lambda folder: 10)
    with pytest.raises(writes.NotWritten) as failure:
        writes.write_atomically(path, b"x" * 100)
    assert (failure.value.errno, failure.value.needed, failure.value.free) == (errno.ENOSPC, 100, 10)
    assert failure.value.filename == str(path)
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_writers_of_one_file_in_other_processes_keep_their_temporary_files(tmp_path):
    path = tmp_path / "leaderboard.csv"
    live = tmp_path / f".leaderboard.csv.{socket.gethostname()}.{os.getppid()}.tmp"  # a process still writing it
    elsewhere = tmp_path / ".leaderboard.csv.another-machine.1.tmp"
    for other in (live, elsewhere):
        other.write_bytes(b"being written")
    writes.write_atomically(path, b"new")
    writes.write_atomically(path, b"newer")
    assert path.read_bytes() == b"newer" and live.read_bytes() == elsewhere.read_bytes() == b"being written"


def test_processes_that_write_one_file_at_once_each_leave_it_whole(tmp_path):
    """(A sweep's workers write its leaderboard together; runs fill the benchmark's cache together.)"""
    script = (
        "import sys\nfrom digits_zoo import writes\n"
        "for _ in range(200): writes.write_atomically(sys.argv[1], sys.argv[2].encode() * 100_000)"
    )
    path = tmp_path / "shared.npy"
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path), mark]) for mark in "ab"]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    assert path.read_bytes() in (b"a" * 100_000, b"b" * 100_000) and leftovers(tmp_path) == []


def test_a_log_line_that_cannot_be_written_prints_no_stack_trace(capsys):
    import io
    import logging

    from digits_zoo.cli import one_line_errors

    class FullDisk(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    logger, handler = logging.getLogger("digits_zoo.tests.full_log"), logging.StreamHandler(FullDisk())
    logger.addHandler(handler)
    try:
        with one_line_errors():
            logger.warning("a line for train.log")
    finally:
        logger.removeHandler(handler)
    assert capsys.readouterr().err == ""
