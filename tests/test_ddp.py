"""Data-parallel training (trainer=ddp): the loader's share arithmetic, then one real
`python train.py trainer=ddp` run in 2 CPU processes (gloo) on the tiny data set, runs whose
second process is stopped or killed, and the processes of a torchrun job or SLURM step, started
with those launchers' environments, in one run folder."""

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only

from digits_zoo.data.mnist import MNISTDataModule, TensorLoader
from digits_zoo.training import jobs, run_folders
from digits_zoo.training.messages import user_message
from digits_zoo.training.module import DigitClassifier
from digits_zoo.training.run import train
from digits_zoo.training.run_folders import LOCK_NAME, RunFolderGuard
from tests.conftest import ROOT, compose_tiny_run
from tests.test_configs import compose_train
from tests.test_resume import finish, popen_train, start_train, wait_for
from tests.test_run_folders import assert_one_run, train_config


def loaders(n: int, world_size: int, batch_size: int = 4, **kwargs) -> list[TensorLoader]:
    """Every process's loader of n images (labels = image ids), at epoch 3."""
    ids = torch.arange(n)
    every = [
        TensorLoader(ids.float().view(n, 1, 1, 1), ids, batch_size, rank=rank, world_size=world_size, **kwargs)
        for rank in range(world_size)
    ]
    for loader in every:
        if loader.sampler is not None:
            loader.sampler.set_epoch(3)
    return every


def epoch_shares(n: int, world_size: int, batch_size: int = 4, **kwargs) -> list[list[torch.Tensor]]:
    """Each process's batches (of image ids) of one epoch."""
    shares = []
    for loader in loaders(n, world_size, batch_size, **kwargs):
        shares.append([y for _, y in loader])
        assert len(shares[-1]) == loader.num_batches == len(loader)
    return shares


UNEVEN = [1, 3, 7, 30, 37, 41]  # fewer images than processes, and every remainder


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("n", UNEVEN)
def test_training_shares_are_equal_disjoint_and_deal_one_processs_order(n, world_size):
    shares = epoch_shares(n, world_size, shuffle_seed=5)
    per_process = math.ceil(n / world_size)
    assert [len(torch.cat(share)) for share in shares] == [per_process] * world_size  # equal optimiser steps too
    assert len({len(share) for share in shares}) == 1
    # the processes' k-th batches, interleaved, are one process's k-th batch of world_size x 4 images
    (single,) = epoch_shares(n, 1, batch_size=4 * world_size, shuffle_seed=5)
    dealt = torch.cat([torch.stack(batches, dim=1).flatten() for batches in zip(*shares)])
    order = torch.cat(single)
    assert sorted(order.tolist()) == list(range(n))
    # disjoint and covering the epoch, padded with its start (as DistributedSampler pads)
    assert torch.equal(dealt, order.repeat(world_size)[: per_process * world_size])


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("n", UNEVEN)
def test_evaluation_shares_count_every_image_exactly_once(n, world_size):
    shares = [torch.cat(share) if share else torch.zeros(0, dtype=torch.long) for share in epoch_shares(n, world_size)]
    assert sorted(torch.cat(shares).tolist()) == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_groups_of_batches_give_every_process_the_same_number_of_lightning_steps():
    grouped = loaders(37, 3, shuffle_seed=5, steps_per_execution=2)
    assert [len(loader) for loader in grouped] == [len(list(loader)) for loader in grouped] == [2, 2, 2]
    # 13 images each: batches of 4, 4, 4, 1


def test_the_processes_augment_their_shares_as_one_process_augments_the_whole_batch():
    images = torch.rand(40, 1, 28, 28)
    augment = {"degrees": 15, "scale": 0.1, "translate": 0.1}

    def first_batch(rank, world_size):
        loader = TensorLoader(
            images, torch.arange(40), 8 // world_size, shuffle_seed=1, augment=augment, rank=rank, world_size=world_size
        )
        return next(iter(loader))[0]

    halves = torch.stack([first_batch(0, 2), first_batch(1, 2)], dim=1).flatten(0, 1)
    assert torch.allclose(halves, first_batch(0, 1), atol=1e-6)


# --- one real run in 2 processes --------------------------------------------------------------

DDP_RUN = ("model=flatten_mlp", "optimizer.lr=1e-4", "data.val_size=200", "trainer.max_epochs=2")  # test acc < 100%


def as_rows(images: torch.Tensor) -> torch.Tensor:
    """Images as rows of bytes, to compare what the processes saw with the data set."""
    return (images * 255).round().to(torch.uint8).flatten(1)


class RecordShares(L.Callback):
    """Saves what this process trained and tested on, and its final weights, as
    <run folder>/shares/rank<global rank>.pt (run by `train.py` inside every DDP process)."""

    def __init__(self):
        self.train, self.test, self.weights = {}, [], {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        batches = batch if isinstance(batch[0], (list, tuple)) else [batch]
        self.train.setdefault(trainer.current_epoch, []).extend(as_rows(x) for x, _ in batches)

    def on_train_end(self, trainer, pl_module):
        self.weights = {name: value.clone() for name, value in pl_module.state_dict().items()}

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.test.append(as_rows(batch[0]))

    def on_test_end(self, trainer, pl_module):
        folder = Path(trainer.default_root_dir) / "shares"
        folder.mkdir(exist_ok=True)
        record = {
            "train": {epoch: torch.cat(rows) for epoch, rows in self.train.items()},
            "test": torch.cat(self.test),
            "weights": self.weights,
        }
        torch.save(record, folder / f"rank{trainer.global_rank}.pt")


def run_ddp(*overrides, cwd):
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            *overrides,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def ddp_run(tiny_data, tmp_path_factory):
    """`python train.py trainer=ddp ...` in 2 CPU processes; groups of 5 batches per Lightning step."""
    tmp = tmp_path_factory.mktemp("ddp")
    result = run_ddp(
        *DDP_RUN,
        f"data.data_dir={tiny_data}",
        "data.download=false",
        "data.steps_per_execution=5",
        "trainer.log_every_n_steps=1",
        "+callbacks.record._target_=tests.test_ddp.RecordShares",
        f"hydra.run.dir={tmp / 'run'}",
        cwd=tmp,
    )
    assert result.returncode == 0, result.stderr
    run = tmp / "run"
    return result, run, [torch.load(run / "shares" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.fixture(scope="module")
def tiny_splits(tiny_data):
    dm = MNISTDataModule(tiny_data, val_size=200, seed=42, download=False)
    dm.setup()
    return dm


def image_set(rows: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in rows.numpy()}


@pytest.mark.slow  # real DDP runs of two processes
def test_both_processes_work_in_one_run_folder_and_one_writes_it(ddp_run):
    result, run, _ = ddp_run
    assert "Traceback" not in result.stderr and "sync_dist" not in result.stderr
    assert {
        "train.log",
        "train_ddp_process_1.log",
        "results.json",
        "config.yaml",
        "confusion_matrix.png",
        "mistakes.png",
    } <= {p.name for p in run.iterdir()}
    assert sorted(p.name for p in (run / "shares").iterdir()) == ["rank0.pt", "rank1.pt"]
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and checkpoints[0].startswith("best-epoch") and checkpoints[1] == "last.ckpt"
    assert result.stdout.count("| flatten_mlp | 79,510 | 2 |") == 1  # one summary
    log = (run / "train.log").read_text()  # each epoch's line once, from the first process
    assert [log.count(f"Epoch {n}/2 - ") for n in (1, 2)] == [1, 1]
    assert "Epoch" not in (run / "train_ddp_process_1.log").read_text()
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    assert len([r for r in rows if r["train/acc"]]) == 2 and len([r for r in rows if r["val/acc"]]) == 2


@pytest.mark.slow  # real DDP runs of two processes
def test_each_process_trains_and_tests_on_its_own_share(ddp_run, tiny_splits):
    _, _, (rank0, rank1) = ddp_run
    fit_images = image_set(as_rows(tiny_splits.splits["fit"][0]))
    for epoch in (0, 1):
        first, second = rank0["train"][epoch], rank1["train"][epoch]
        assert len(first) == len(second) == 500  # 1,000 training images, no padding needed
        assert not image_set(first) & image_set(second)
        assert image_set(first) | image_set(second) == fit_images
    assert not torch.equal(rank0["train"][0], rank0["train"][1])  # a new order every epoch
    first, second = rank0["test"], rank1["test"]
    assert len(first) + len(second) == 300 and not image_set(first) & image_set(second)
    assert image_set(first) | image_set(second) == image_set(as_rows(tiny_splits.splits["test"][0]))


@pytest.mark.slow  # real DDP runs of two processes
def test_gradients_are_averaged_at_every_optimiser_step(ddp_run, tiny_data, tmp_path):
    """Identical weights in both processes, and those of one process training on the two shares'
    batches together (batch 2 x 32): every backward of a group of batches was averaged."""
    _, _, (rank0, rank1) = ddp_run
    for name, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][name]), name
    single = train(compose_tiny_run(tiny_data, tmp_path / "single", *DDP_RUN, "data.batch_size=64", "~logger"))
    for name, value in single["module"].state_dict().items():
        assert torch.allclose(value, rank0["weights"][name], rtol=0, atol=1e-5), name


@pytest.mark.slow  # real DDP runs of two processes
def test_test_metrics_equal_a_single_process_evaluation_of_the_checkpoint(ddp_run, tiny_splits, tmp_path):
    _, run, _ = ddp_run
    results = json.loads((run / "results.json").read_text())
    assert 0.5 < results["test/acc"] < 1  # not saturated, so a wrong evaluation would show
    module = DigitClassifier.load_from_checkpoint(results["best_checkpoint"], map_location="cpu")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    (single,) = trainer.test(module, datamodule=tiny_splits, verbose=False)
    assert results["test/acc"] == single["test/acc"]
    assert results["test/loss"] == pytest.approx(single["test/loss"], rel=1e-6)
    counts = [[int(v) for v in row[1:]] for row in list(csv.reader(open(run / "confusion_matrix.csv")))[1:]]
    assert sum(map(sum, counts)) == 300  # every test image counted once, across both processes


@pytest.mark.slow  # real DDP runs of two processes
def test_an_error_every_process_meets_is_one_line(tiny_data, tmp_path):
    result = run_ddp(
        f"data.data_dir={tiny_data}",
        "data.download=false",
        "data.val_size=5000",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: data.val_size must be in [0, 1200), got 5000"]


# --- a worker that dies or stops answering ----------------------------------------------------


def start_ddp(tiny_data: Path, run: Path, marks: Path, *overrides: str) -> subprocess.Popen:
    """`python train.py trainer=ddp` in 2 CPU processes on the tiny data, slowed down by
    tests.test_resume.Pace (which marks each group of batches in `marks`); output in files beside `run`."""
    return start_train(
        tiny_data,
        run,
        "trainer=ddp",
        "trainer.devices=2",
        "model=flatten_mlp",
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "+callbacks.pace._target_=tests.test_resume.Pace",
        f"+callbacks.pace.folder={marks}",
        *overrides,
    )


def worker_pid(process: subprocess.Popen, timeout: float = 120) -> int:
    """The pid of the worker (rank 1) that the first process of a 2-process run started (Lightning
    starts it with LOCAL_RANK=1 in its environment; the first process runs other programs too)."""
    deadline = time.monotonic() + timeout
    while True:
        for child in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split():
            try:
                if b"\0LOCAL_RANK=1\0" in b"\0" + Path(f"/proc/{child}/environ").read_bytes():
                    return int(child)
            except OSError:  # ended meanwhile
                pass
        assert process.poll() is None and time.monotonic() < deadline, "no worker was started"
        time.sleep(0.01)


def is_running(pid: int, run: Path) -> bool:
    """Whether `pid` is still a process of the run in `run` (not ended, not a zombie, not reused)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" and str(run) in Path(f"/proc/{pid}/cmdline").read_text()
    except (OSError, IndexError):
        return False


def one_error_line(process: subprocess.Popen, run: Path) -> str:
    stderr = finish(process, run.parent, run.name)
    assert process.returncode == 1, stderr
    (line,) = stderr.strip().splitlines()
    return line


def resume_command(run: Path) -> str:
    """How the line goes on after a worker was lost in epoch 2 (the folder as seen from its parent,
    where the run was started)."""
    return f"checkpoints/last.ckpt holds epoch 1 of 2, and the run goes on from there with: python train.py resume={run.name}"


# each of these runs 2 processes for 15-35 s: what a lost worker takes (a kill half-way through a
# short run; then the timeout, or Lightning's 5 s looks at its workers, or the resumed run)
@pytest.mark.slow  # real DDP runs of two processes
def test_a_worker_that_stops_answering_ends_the_run_after_the_timeout_with_one_line(tiny_data, tmp_path):
    run, marks = tmp_path / "run", tmp_path / "marks"
    process = start_ddp(tiny_data, run, marks, "trainer.strategy.timeout_s=10")
    worker = worker_pid(process)
    try:
        wait_for(marks / "epoch1-group2", lambda: process.poll() is None)
        os.kill(worker, signal.SIGSTOP)
        line = one_error_line(process, run)
        assert line == (
            f"error: DDP worker rank 1 (pid {worker}) is stopped (SIGSTOP or Ctrl+Z) and did not answer "
            "within 10 s (trainer.strategy.timeout_s) during training, in epoch 2 of 2, so the run ended "
            f"with all its workers; {resume_command(run)}"
        )
        assert not is_running(worker, run)  # ended by the first process, not left stopped
    finally:
        if is_running(worker, run):
            os.kill(worker, signal.SIGKILL)
        process.kill()


@pytest.mark.slow  # real DDP runs of two processes
def test_a_worker_killed_mid_training_ends_the_run_with_one_line_and_the_run_resumes(tiny_data, tmp_path):
    run, marks = tmp_path / "run", tmp_path / "marks"
    process = start_ddp(tiny_data, run, marks)
    worker = worker_pid(process)
    try:
        wait_for(marks / "epoch1-group2", lambda: process.poll() is None)
        os.kill(worker, signal.SIGKILL)
        line = one_error_line(process, run)
    finally:
        process.kill()
    assert line == (
        f"error: DDP worker rank 1 (pid {worker}) was killed by SIGKILL during training, in epoch 2 of 2, "
        f"so the run ended with all its workers; {resume_command(run)}"
    )
    resumed = popen_train(tmp_path, "resumed", f"resume={run}")
    stderr = finish(resumed, tmp_path, "resumed")
    assert resumed.returncode == 0 and "Traceback" not in stderr, stderr
    assert json.loads((run / "results.json").read_text())["epochs"] == 2


@pytest.mark.slow  # real DDP runs of two processes
def test_a_worker_that_dies_before_it_connects_ends_the_run_with_one_line(tiny_data, tmp_path):
    # the first process waits for it to connect (for trainer.strategy.timeout_s); Lightning's look
    # at its workers, every 5 s, finds it dead
    run = tmp_path / "run"
    process = start_ddp(tiny_data, run, tmp_path / "marks")
    try:
        worker = worker_pid(process)
        os.kill(worker, signal.SIGKILL)
        line = one_error_line(process, run)
    finally:
        process.kill()
    assert line == (
        f"error: DDP worker rank 1 (pid {worker}) was killed by SIGKILL while the workers were starting, "
        "so the run ended with all its workers; no epoch had finished, so there is no checkpoint to "
        "resume from: start the run again"
    )


def test_the_timeout_is_checked():
    cfg = compose_train("trainer=ddp", "trainer.strategy.timeout_s=0")
    with pytest.raises(Exception) as caught:
        instantiate(cfg.trainer.strategy)
    assert user_message(caught.value) == "trainer.strategy.timeout_s must be a finite number above 0, got 0"


# --- under torchrun or SLURM: one run folder ----------------------------------------------------

LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_env(**variables: str) -> dict[str, str]:
    """This process's environment without any launcher's variables, and with `variables`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLURM_", "TORCHELASTIC_", "ROLE_", "GROUP_")) and key not in LAUNCH_VARIABLES
    }
    return {**env, **variables}


def torchrun_env(rank: int, run_id: str, port: int = 29500, restart: int = 0) -> dict[str, str]:
    """What torchrun's agent gives worker `rank` of 2 on one machine (LocalElasticAgent._start_workers)."""
    return launched_env(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        GROUP_RANK="0",
        ROLE_RANK=str(rank),
        ROLE_NAME="default",
        LOCAL_WORLD_SIZE="2",
        WORLD_SIZE="2",
        GROUP_WORLD_SIZE="1",
        ROLE_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        TORCHELASTIC_RESTART_COUNT=str(restart),
        TORCHELASTIC_MAX_RESTARTS="0",
        TORCHELASTIC_RUN_ID=run_id,
        TORCHELASTIC_USE_AGENT_STORE="False",
    )


def slurm_env(rank: int, job_id: str = "4242", port: int = 29500, job_name: str = "train") -> dict[str, str]:
    """What srun gives task `rank` of a step of 2 tasks on one node (Lightning's SLURMEnvironment reads them)."""
    return launched_env(
        SLURM_JOB_ID=job_id,
        SLURM_JOB_NAME=job_name,
        SLURM_STEP_ID="0",
        SLURM_NTASKS="2",
        SLURM_NTASKS_PER_NODE="2",
        SLURM_NNODES="1",
        SLURM_NODEID="0",
        SLURM_PROCID=str(rank),
        SLURM_LOCALID=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )


@pytest.mark.parametrize(
    "env, name",
    [
        (torchrun_env(0, "3f2a9c1e-uuid"), "torchrun-3f2a9c1e-uuid"),
        (torchrun_env(1, "my/job", restart=2), "torchrun-my_job"),  # a restart keeps the folder
        (launched_env(TORCHELASTIC_RUN_ID="abc", WORLD_SIZE="1", RANK="0"), None),  # one process: a dated folder
        (slurm_env(1), "slurm-4242.0"),
        ({**slurm_env(0), "SLURM_STEP_ID": "3"}, "slurm-4242.3"),  # each srun of a batch script its own
        (slurm_env(0, job_name="interactive"), None),  # Lightning starts the processes (salloc, srun --pty)
        ({**slurm_env(0), "SLURM_NTASKS": "1"}, None),  # srun of one task: a dated folder per run
        ({k: v for k, v in slurm_env(0).items() if k != "SLURM_STEP_ID"}, None),  # a batch script's own command
        (launched_env(), None),
    ],
    ids=[
        "torchrun",
        "torchrun restarted",
        "torchrun of one",
        "srun",
        "srun step",
        "interactive",
        "srun of one",
        "sbatch",
        "none",
    ],
)
def test_the_processes_of_a_job_derive_one_run_folder_name(env, name, monkeypatch):
    monkeypatch.setattr(os, "environ", env)
    assert jobs.shared_run_name() == name
    assert jobs.job_run("2026-01-01_00-00-00") == (name or "2026-01-01_00-00-00")


def train_config_under(env: dict[str, str], monkeypatch, *overrides: str):
    monkeypatch.setattr(os, "environ", env)
    return train_config(*overrides)


def test_a_torchrun_job_without_a_run_id_is_refused_unless_its_folder_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for rank in (0, 1):
        monkeypatch.setattr(rank_zero_only, "rank", rank)
        with pytest.raises(SystemExit) as exit_info:
            RunFolderGuard().on_run_start(config=train_config_under(torchrun_env(rank, "none"), monkeypatch))
        assert exit_info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [  # from the first process alone
        "error: torchrun's processes share no run id (its static rendezvous without --rdzv-id), so they cannot "
        "agree on a run folder; give torchrun --rdzv-id=ID (e.g. the scheduler's job id), or name the folder "
        "with hydra.run.dir=DIR"
    ]
    assert not (tmp_path / "outputs").exists()
    cfg = train_config_under(torchrun_env(0, "none"), monkeypatch, f"hydra.run.dir={tmp_path / 'named'}")
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    guard = RunFolderGuard()
    guard.on_run_start(config=cfg)
    guard.on_run_end(config=cfg)
    assert cfg.hydra.run.dir == str(tmp_path / "named")


def test_a_process_started_before_the_first_marks_the_job_folder_for_it(tmp_path, monkeypatch):
    """torchrun and srun start all processes at once: what the second one writes first (Hydra's .hydra/)
    is not taken for a user's files by the first, which claims the shared folder, not a `_2`."""
    monkeypatch.chdir(tmp_path)
    cfg = train_config_under(slurm_env(1), monkeypatch)
    folder = tmp_path / "outputs" / "flatten_mlp" / "slurm-4242.0"
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    RunFolderGuard().on_run_start(config=cfg)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("seed: 42\n")
    cfg = train_config_under(slurm_env(0), monkeypatch)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    guard = RunFolderGuard()
    guard.on_run_start(config=cfg)
    try:
        assert cfg.hydra.run.dir == "outputs/flatten_mlp/slurm-4242.0"
        assert folder.resolve() in run_folders._held
    finally:
        guard.on_run_end(config=cfg)


def test_a_restarted_job_whose_folder_holds_a_run_is_refused_with_how_to_resume_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "outputs" / "flatten_mlp" / "torchrun-job7"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / LOCK_NAME).touch()
    (folder / "checkpoints" / "last.ckpt").write_text("")
    for rank in (1, 0):
        monkeypatch.setattr(rank_zero_only, "rank", rank)
        with pytest.raises(SystemExit) as exit_info:
            RunFolderGuard().on_run_start(config=train_config_under(torchrun_env(rank, "job7", restart=1), monkeypatch))
        assert exit_info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: outputs/flatten_mlp/torchrun-job7, the run folder of this torchrun job, already holds a run (of an "
        "attempt before a restart or requeue, which keep the folder); continue it with "
        "resume=outputs/flatten_mlp/torchrun-job7, or choose a new folder with hydra.run.dir=DIR"
    ]
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME, "checkpoints"]  # nothing written
    assert not (folder.parent / "torchrun-job7_2").exists()


def tiny_ddp(tiny_data: Path) -> list[str]:
    """`train.py`'s arguments for one short epoch in 2 CPU processes on the tiny data."""
    return [
        *("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "model=flatten_mlp", "trainer.max_epochs=1"),
        *(f"data.data_dir={tiny_data}", "data.download=false", "data.val_size=200", "data.train_size=320"),
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_process(tiny_data: Path, cwd: Path, name: str, env: dict[str, str]) -> subprocess.Popen:
    """One process of `python train.py trainer=ddp` on 2 CPUs, as a launcher starts it with `env`."""
    with open(cwd / f"{name}.stdout", "w") as out, open(cwd / f"{name}.stderr", "w") as err:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *tiny_ddp(tiny_data)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
        )


def start_a_second_apart(tiny_data: Path, cwd: Path, envs: dict[str, dict[str, str]]) -> list[str]:
    """Starts the processes of `envs` (name: environment) in turn, each once the one before has made its
    run folder and a second has passed (so that their start times differ); their stderr."""
    processes = []
    try:
        for name, env in envs.items():
            if processes:
                wait_for(cwd / "outputs" / "flatten_mlp", lambda: processes[-1].poll() is None)
                time.sleep(1.1)
            processes.append(start_process(tiny_data, cwd, name, env))
        errors = [finish(process, cwd, name) for process, name in zip(processes, envs)]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert [process.returncode for process in processes] == [0] * len(envs), errors
    return errors


def the_one_run_folder(cwd: Path) -> Path:
    (folder,) = (cwd / "outputs" / "flatten_mlp").iterdir()
    assert_one_run(folder)
    return folder


@pytest.mark.slow  # real DDP runs of two processes
def test_the_processes_of_a_torchrun_job_work_in_one_run_folder(tiny_data, tmp_path):
    port = free_port()
    # the second process first: it makes the folder, writes Hydra's files in it, then waits for the first
    start_a_second_apart(
        tiny_data, tmp_path, {"rank1": torchrun_env(1, "job-17", port), "rank0": torchrun_env(0, "job-17", port)}
    )
    assert the_one_run_folder(tmp_path).name == "torchrun-job-17"


@pytest.mark.slow  # real DDP runs of two processes
def test_the_processes_of_a_slurm_step_work_in_one_run_folder(tiny_data, tmp_path):
    port = free_port()
    start_a_second_apart(tiny_data, tmp_path, {"rank0": slurm_env(0, port=port), "rank1": slurm_env(1, port=port)})
    assert the_one_run_folder(tmp_path).name == "slurm-4242.0"


@pytest.mark.slow  # a real torchrun of two processes
def test_torchrun_standalone_makes_one_run_folder(tiny_data, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    result = subprocess.run(
        [*torchrun, str(ROOT / "train.py"), *tiny_ddp(tiny_data)],
        cwd=tmp_path,
        env=launched_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert the_one_run_folder(tmp_path).name.startswith("torchrun-")
