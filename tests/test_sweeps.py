"""Sweeps under Hydra's launchers (configs/launcher): one folder per sweep and per job, a sweep started
again, and the same leaderboard whichever launcher ran the jobs."""

import copy
import csv
import shutil
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from digits_zoo.training import run_folders, sweeps
from tests.conftest import CONFIGS, ROOT, tiny_overrides


def sweep(*overrides, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", *overrides], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def tiny_sweep(tiny_data, folder, *overrides, cwd):
    """Two models on the tiny data, one epoch each, in the sweep folder `folder`."""
    common = [*tiny_overrides(tiny_data), "trainer.max_epochs=1", f"hydra.sweep.dir={folder}"]
    return sweep("model=single_dense,keras_cnn", *common, *overrides, cwd=cwd)


def test_threads_per_job_shares_the_cores(monkeypatch):
    monkeypatch.setattr(sweeps.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert [sweeps.threads_per_job(jobs) for jobs in (-1, 1, 2, 3, 8, 16)] == [1, 8, 4, 2, 1, 1]


def test_two_sweeps_of_one_second_get_two_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        config = compose("train", return_hydra_config=True)
    before = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)  # (its sweep folder's ${now:...} is resolved once, here)
    first, second = copy.deepcopy(config), copy.deepcopy(config)
    guard = sweeps.SweepFolderGuard()
    try:
        guard.on_multirun_start(first)
        guard.on_multirun_start(second)
        folders = [first.hydra.sweep.dir, second.hydra.sweep.dir]
        assert folders[1] == folders[0] + "_2"
        for config in (first, second):  # the jobs' configs are composed from these overrides
            assert config.hydra.overrides.hydra[-1] == f"hydra.sweep.dir={config.hydra.sweep.dir}"
            assert (tmp_path / config.hydra.sweep.dir / run_folders.LOCK_NAME).is_file()
    finally:
        guard.on_multirun_end(first)
        guard.on_multirun_end(second)
        HydraConfig.instance().cfg = before


@pytest.mark.slow
def test_a_sweep_started_again_skips_finished_jobs_and_continues_stopped_ones(tiny_data, tmp_path):
    folder = tmp_path / "sweep"
    assert tiny_sweep(tiny_data, folder, cwd=tmp_path).returncode == 0
    finished = (folder / "0_single_dense" / "results.json").read_bytes()
    (folder / "1_keras_cnn" / "results.json").unlink()  # as if stopped after its last epoch's checkpoint

    again = tiny_sweep(tiny_data, folder, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0_single_dense: finished before (its results.json), skipped" in again.stderr
    assert "Resuming" in again.stdout and (folder / "1_keras_cnn" / "results.json").is_file()
    assert (folder / "0_single_dense" / "results.json").read_bytes() == finished

    other = sweep("model=lenet5", *tiny_overrides(tiny_data), f"hydra.sweep.dir={folder}", cwd=tmp_path)
    assert other.returncode == 1
    (line,) = other.stderr.strip().splitlines()
    assert line.startswith(f"error: {folder} holds a sweep of other overrides (model=single_dense,keras_cnn")


def _rows(folder):
    """The leaderboard's rows without what differs from one launch to another (time, folder)."""
    with open(folder / "leaderboard.csv", newline="") as file:
        return [{k: v for k, v in row.items() if k not in ("train_seconds", "run")} for row in csv.DictReader(file)]


@pytest.mark.slow
def test_parallel_and_submitit_sweeps_give_the_leaderboard_of_a_sequential_one(tiny_data, tmp_path):
    """joblib's processes and submitit's jobs train what one process trains, bit for bit, at one thread
    each; and the leaderboard gathers runs from sweeps copied from anywhere by their folders alone."""
    results = {
        "sequential": tiny_sweep(tiny_data, tmp_path / "sequential", "threads=1", "seed=1,2", cwd=tmp_path),
        "parallel": tiny_sweep(tiny_data, tmp_path / "parallel", "launcher=parallel", "seed=1,2", cwd=tmp_path),
        "submitit": tiny_sweep(tiny_data, tmp_path / "submitit", "launcher=submitit_local", "seed=1,2", cwd=tmp_path),
    }
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
    assert _rows(tmp_path / "parallel") == _rows(tmp_path / "submitit") == _rows(tmp_path / "sequential")
    assert len(_rows(tmp_path / "parallel")) == 4 and (tmp_path / "submitit" / ".submitit").is_dir()

    elsewhere = tmp_path / "elsewhere"  # as if gathered from two machines
    shutil.copytree(tmp_path / "parallel", elsewhere / "machine_a" / "parallel")
    shutil.copytree(tmp_path / "submitit", elsewhere / "machine_b" / "submitit")
    gathered = subprocess.run(
        [sys.executable, "-m", "digits_zoo.leaderboard", str(elsewhere)], capture_output=True, text=True, cwd=ROOT
    )
    assert gathered.returncode == 0, gathered.stderr
    # one group per model, over the 4 runs of both launchers (the launcher is not part of the recipe)
    groups = [line for line in gathered.stdout.splitlines() if line.startswith(("| single_dense |", "| keras_cnn |"))]
    assert groups[:2] and all(line.startswith(("| single_dense | 4 |", "| keras_cnn | 4 |")) for line in groups[:2])
    assert "machine_a/parallel/0_single_dense" in gathered.stdout


def test_parallel_jobs_take_a_gpu_each(tmp_path):
    """Each job of launcher=parallel holds the lock of the GPU it trains on; the next job takes the next."""
    first, second = sweeps._free_gpu(2, tmp_path), sweeps._free_gpu(2, tmp_path)
    assert (first[0], second[0]) == (0, 1) and sweeps._free_gpu(2, tmp_path) is None  # all taken: wait
    sweeps.os.close(first[1])
    third = sweeps._free_gpu(2, tmp_path)
    assert third[0] == 0
    for descriptor in (second[1], third[1]):
        sweeps.os.close(descriptor)


def test_a_launcher_without_a_sweep_is_refused_in_one_line(run_cli, tmp_path):
    code, err = run_cli("launcher=parallel")
    assert code == 1
    assert err.strip() == (
        "error: launcher=parallel runs the jobs of a sweep: add -m (python train.py -m launcher=parallel ...), "
        "or leave it out for one run"
    )
    assert not (tmp_path / "run").exists()
