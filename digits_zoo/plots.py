"""Pictures and tables of results. matplotlib is imported here only, on first use."""

from __future__ import annotations

import csv
from pathlib import Path

import torch


def confusion_matrix_figure(confusion: torch.Tensor, title: str = "Confusion matrix"):
    """Counts with true class on the rows and predicted class on the columns, digits on both axes."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    counts = confusion.cpu().long()
    n = counts.shape[0]
    accuracy = counts.diag().sum().item() / max(counts.sum().item(), 1)
    fig = Figure(figsize=(6.4, 5.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts.numpy(), cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    threshold = counts.max().item() / 2
    for true in range(n):
        for pred in range(n):
            value = counts[true, pred].item()
            ax.text(pred, true, str(value), ha="center", va="center", fontsize=7 if value >= 1000 else 8,
                    color="white" if value > threshold else "black")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted digit", ylabel="true digit",
           title=f"{title} (accuracy {100 * accuracy:.2f}%)")
    return fig


def save_confusion_matrix(confusion: torch.Tensor, out_dir: str | Path, stem: str = "confusion_matrix", title: str = "Confusion matrix"):
    """Write `<stem>.csv` and `<stem>.png` to `out_dir`; returns the figure (e.g. for TensorBoard)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = confusion.cpu().long().tolist()
    with open(out_dir / f"{stem}.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["true\\predicted", *range(len(counts))])
        writer.writerows([true, *row] for true, row in enumerate(counts))
    fig = confusion_matrix_figure(confusion, title)
    fig.savefig(out_dir / f"{stem}.png")
    return fig
