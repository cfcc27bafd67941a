"""`ConfidentMistakes`, the one metric of our own (beside torchmetrics' mean loss, accuracy and
confusion matrix in `DigitClassifier.metrics`): the test's wrong answers given with the highest
probability, for the run folder's mistakes picture. Each process keeps only its running top k, on
the device; torchmetrics gathers every process's rows in compute(), which keeps the top k of them all.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

STATES = ("scores", "images", "targets", "preds")  # one row per image, in this order


class ConfidentMistakes(Metric):
    """The `k` wrong answers with the highest probability: compute() returns (score, images, true,
    pred), highest score first. A right answer scores -1 instead of being left out (leaving it out
    would read the values back to the host), so where fewer than `k` answers were wrong, right ones
    fill the rest; there are fewer than `k` rows only where fewer images were seen."""

    def __init__(self, k: int = 20):
        super().__init__()
        self.k = k
        for name in STATES:  # lists: torchmetrics gathers them across processes, whatever each one's count
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, images: torch.Tensor, targets: torch.Tensor, probabilities: torch.Tensor) -> None:
        confidence, preds = probabilities.max(dim=1)
        new = (torch.where(preds != targets, confidence, -1.0), images, targets, preds)
        # the rows kept so far, then the new ones: one top-k tensor per state, so memory stays at k rows
        merged = [dim_zero_cat([*getattr(self, name), rows]) for name, rows in zip(STATES, new)]
        for name, kept in zip(STATES, self._top_k(merged)):
            setattr(self, name, [kept])

    def compute(self) -> tuple[torch.Tensor, ...]:
        states = [getattr(self, name) for name in STATES]
        if isinstance(states[0], list):  # not gathered: the running top k as kept (ranking it again could reorder ties)
            return tuple(state[0] for state in states)
        return self._top_k(states)  # gathered: each process's top k, in process order

    def _top_k(self, rows: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        keep = rows[0].topk(min(self.k, len(rows[0]))).indices
        return tuple(t[keep] for t in rows)
