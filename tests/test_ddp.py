"""Data-parallel training (trainer=ddp): the loader's share arithmetic, then one real
`python train.py trainer=ddp` run in 2 CPU processes (gloo) on the tiny data set, and runs whose
second process is stopped or killed."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from digits_zoo.data.mnist import MNISTDataModule, TensorLoader
from digits_zoo.training.messages import user_message
from digits_zoo.training.module import DigitClassifier
from digits_zoo.training.run import train
from tests.conftest import ROOT, compose_tiny_run
from tests.test_configs import compose_train
from tests.test_resume import finish, popen_train, start_train, wait_for


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
