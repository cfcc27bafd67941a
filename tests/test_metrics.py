"""`ConfidentMistakes`: the running top k equals the top k of all rows at once, right answers come
only after every mistake, and compute() under 2 gloo processes keeps the top k of both processes' rows."""

import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from digits_zoo.training.metrics import STATES, ConfidentMistakes


def rows(n: int, seed: int, right: float = 0.1) -> tuple[torch.Tensor, ...]:
    """n images, labels and probabilities; about `right` of the answers are right."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 4, 4, generator=generator)
    probabilities = torch.rand(n, 10, generator=generator).softmax(dim=1)
    preds = probabilities.argmax(dim=1)
    targets = torch.where(torch.rand(n, generator=generator) < right, preds, (preds + 1) % 10)
    return images, targets, probabilities


def expected(images, targets, probabilities, k: int = 20) -> tuple[torch.Tensor, ...]:
    """The k rows with the highest score, sorted by hand."""
    confidence, preds = probabilities.max(dim=1)
    score = torch.where(preds != targets, confidence, -1.0)
    order = score.argsort(descending=True)[:k]
    return score[order], images[order], targets[order], preds[order]


def assert_same(got, want):
    assert len(got) == len(want) == 4
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_the_running_top_k_is_the_top_k_of_all_rows_and_stays_k_rows():
    images, targets, probabilities = rows(200, seed=0)
    metric = ConfidentMistakes()
    for start, stop in [(0, 7), (7, 64), (64, 65), (65, 130), (130, 200)]:
        metric.update(images[start:stop], targets[start:stop], probabilities[start:stop])
        assert all(len(getattr(metric, name)) == 1 and len(getattr(metric, name)[0]) <= 20 for name in STATES)
    assert_same(metric.compute(), expected(images, targets, probabilities))
    at_once = ConfidentMistakes()
    at_once.update(images, targets, probabilities)
    assert_same(at_once.compute(), metric.compute())


def test_right_answers_never_show_while_there_are_k_mistakes():
    images, targets, probabilities = rows(100, seed=1, right=0.7)
    probabilities[targets == probabilities.argmax(dim=1)] *= 2  # right answers more confident than any mistake
    metric = ConfidentMistakes(k=20)
    for part in range(0, 100, 16):
        metric.update(images[part : part + 16], targets[part : part + 16], probabilities[part : part + 16])
    score, _, true, pred = metric.compute()
    assert (true != pred).sum() >= 20
    assert len(score) == 20 and (score >= 0).all() and (true != pred).all()


def test_fewer_mistakes_than_k_leave_right_answers_scoring_minus_one_after_them():
    images, targets, probabilities = rows(10, seed=2, right=1.0)
    targets[[2, 5, 7]] = (targets[[2, 5, 7]] + 1) % 10  # three mistakes
    metric = ConfidentMistakes(k=5)
    metric.update(images[:6], targets[:6], probabilities[:6])
    metric.update(images[6:], targets[6:], probabilities[6:])
    score, _, true, pred = metric.compute()
    assert len(score) == 5
    assert (score[:3] >= 0).all() and (true[:3] != pred[:3]).all()
    assert (score[3:] == -1).all() and (true[3:] == pred[3:]).all()
    few = ConfidentMistakes(k=20)
    few.update(images[:4], targets[:4], probabilities[:4])
    assert len(few.compute()[0]) == 4  # fewer rows only where fewer images were seen


def test_reset_forgets_the_rows():
    metric = ConfidentMistakes()
    metric.update(*rows(30, seed=3))
    metric.reset()
    images, targets, probabilities = rows(8, seed=4)
    metric.update(images, targets, probabilities)
    assert_same(metric.compute(), expected(images, targets, probabilities))


# --- 2 processes -------------------------------------------------------------------------------

SHARES = {0: 45, 1: 7}  # uneven, and one process with fewer rows than k


def _process(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)  # as in DataLoader's forked workers: no OpenMP team after a fork
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=timedelta(seconds=60)
    )
    try:
        images, targets, probabilities = rows(SHARES[rank], seed=10 + rank)
        metric = ConfidentMistakes()
        for part in range(0, len(images), 10):
            metric.update(images[part : part + 10], targets[part : part + 10], probabilities[part : part + 10])
        torch.save(metric.compute(), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_compute_keeps_the_top_k_of_every_processs_rows(tmp_path):
    # forked: the processes start with this one's imports (spawned ones import torchmetrics again, ~8 s)
    mp.start_processes(_process, args=(free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    both = [torch.cat(parts) for parts in zip(rows(SHARES[0], seed=10), rows(SHARES[1], seed=11))]
    want = expected(*both)
    assert (want[0] >= 0).all() and not torch.equal(want[0], expected(*rows(SHARES[0], seed=10))[0])  # rank 1's count
    for rank in (0, 1):
        assert_same(torch.load(tmp_path / f"rank{rank}.pt", weights_only=True), want)
