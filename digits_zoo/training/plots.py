"""The pictures and tables of a run. matplotlib is imported here only, on first use."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from digits_zoo.writes import write_atomically, write_csv_atomically


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def class_labels(classes: list[str] | None, n: int) -> tuple[str, list[str]]:
    """What the classes are called on a plot ("digit", or "class" for another dataset) and each one's
    label: 0-9 for digits (torchvision names MNIST's "0 - zero", ...), else the dataset's class names."""
    if classes is None or all(name.startswith(str(i)) for i, name in enumerate(classes)):
        return "digit", [str(i) for i in range(n)]
    return "class", list(classes)


def confusion_matrix_figure(
    confusion: torch.Tensor, title: str = "Confusion matrix", normalize: bool = False, classes: list[str] | None = None
):
    """True class on the rows, predicted class on the columns; counts, or shares of each row."""
    counts = confusion.cpu().double()
    n = counts.shape[0]
    accuracy = counts.diag().sum().item() / max(counts.sum().item(), 1)
    values = counts / counts.sum(dim=1, keepdim=True).clamp(min=1) if normalize else counts
    fig = new_figure(6.4, 5.6)
    ax = fig.subplots()
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8)
    threshold = values.max().item() / 2
    for true in range(n):
        for pred in range(n):
            value = values[true, pred].item()
            text = f"{value:.2f}".lstrip("0") if normalize else f"{value:.0f}"
            if normalize and value == 0:
                text = "0"
            ax.text(
                pred,
                true,
                text,
                ha="center",
                va="center",
                fontsize=7 if len(text) > 3 else 8,
                color="white" if value > threshold else "black",
            )
    noun, labels = class_labels(classes, n)
    kind = f" (share of each true {noun})" if normalize else ""
    ax.set(
        xticks=range(n),
        yticks=range(n),
        xlabel=f"predicted {noun}",
        ylabel=f"true {noun}",
        title=f"{title}{kind}, accuracy {100 * accuracy:.2f}%",
    )
    ax.set_xticklabels(labels, rotation=45 if noun == "class" else 0, ha="right" if noun == "class" else "center")
    ax.set_yticklabels(labels)
    return fig


def per_class_accuracy_figure(confusion: torch.Tensor, classes: list[str] | None = None):
    """Share of each true class classified right, with the overall accuracy as a line."""
    counts = confusion.cpu().double()
    per_class = counts.diag() / counts.sum(dim=1).clamp(min=1)
    overall = counts.diag().sum().item() / max(counts.sum().item(), 1)
    fig = new_figure(6.4, 3.6)
    ax = fig.subplots()
    bars = ax.bar(range(len(per_class)), 100 * per_class.numpy(), color="tab:blue")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.axhline(100 * overall, color="tab:red", linestyle="--", linewidth=1, label=f"overall {100 * overall:.2f}%")
    low = max(0.0, 100 * per_class.min().item() - 5)
    noun, labels = class_labels(classes, len(per_class))
    ax.set(
        xticks=range(len(per_class)),
        xlabel=f"true {noun}",
        ylabel="accuracy (%)",
        ylim=(low, 100.5),
        title=f"Test accuracy per {noun}",
    )
    ax.set_xticklabels(labels, rotation=45 if noun == "class" else 0, ha="right" if noun == "class" else "center")
    ax.legend(loc="lower right")
    return fig


def training_curves_figure(history: dict[int, dict[str, float]]):
    """Loss and accuracy per epoch, training and (where there is one) validation."""
    epochs = sorted(history)
    fig = new_figure(9.0, 3.6)
    for ax, metric, label in zip(fig.subplots(1, 2), ("loss", "acc"), ("loss", "accuracy")):
        for stage, style in (("train", "o-"), ("val", "s--")):
            points = [(e + 1, history[e][f"{stage}/{metric}"]) for e in epochs if f"{stage}/{metric}" in history[e]]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, label={"train": "training", "val": "validation"}[stage])
        ax.set(xlabel="epoch", ylabel=label, title=f"{label.capitalize()} per epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
        ax.grid(alpha=0.3)
    return fig


def mistakes_figure(
    images: torch.Tensor,
    true: torch.Tensor,
    pred: torch.Tensor,
    confidence: torch.Tensor,
    classes: list[str] | None = None,
):
    """The test images the model got wrong most confidently, in a grid with their labels. One
    picture of all the tiles on one set of axes: a set of axes per tile took 0.5 s to lay out and draw."""
    count = len(images)
    columns = max(min(count, 5), 1)
    rows = max(-(-count // columns), 1)
    height, width = images.shape[-2:]
    band, gap = round(0.4 * height), round(0.2 * width)  # room for each tile's label, space between tiles
    cell_h, cell_w = height + band, width + gap
    mosaic = torch.zeros(rows * cell_h, columns * cell_w)
    noun, labels = class_labels(classes, max([*true.tolist(), *pred.tolist(), 9]) + 1)
    fig = new_figure(max(1.7 * columns, 5.2), 1.95 * rows, layout=None)  # (at least the title's width)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.98 - 0.35 / (1.95 * rows)))  # above it: the title
    fig.suptitle("Most confident mistakes (true → predicted, confidence)", y=1 - 0.08 / rows)
    for i, (image, t, p, c) in enumerate(zip(images.cpu(), true.tolist(), pred.tolist(), confidence.tolist())):
        top, left = (i // columns) * cell_h + band, (i % columns) * cell_w + gap // 2
        image = image.squeeze(0).float()
        image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-12)  # as imshow scales each image
        mosaic[top : top + height, left : left + width] = image
        ax.text(
            left + width / 2,
            top - 1,
            f"{labels[t]} → {labels[p]}, {c:.2f}",
            ha="center",
            va="bottom",
            fontsize=9 if noun == "digit" else 6,
        )
    ax.imshow(mosaic.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if not count:
        ax.text(cell_w / 2, cell_h / 2, "no mistakes", ha="center", va="center")
    return fig


def write_confusion_csv(confusion: torch.Tensor, path: Path) -> None:
    counts = confusion.cpu().long().tolist()
    write_csv_atomically(
        path, [["true\\predicted", *range(len(counts))], *([true, *row] for true, row in enumerate(counts))]
    )


def save_figure(figure, path: Path) -> None:
    """`figure` as a PNG file, written atomically (a full disk leaves no half-written picture)."""
    buffer = io.BytesIO()
    # its titles also as the PNG's Title: what the picture says (its accuracy, say) can be read back
    titles = [figure.get_suptitle()] if figure.get_suptitle() else []
    titles += [ax.get_title() for ax in figure.axes if ax.get_title()]
    figure.savefig(buffer, format="png", metadata={"Title": " | ".join(titles)})
    write_atomically(path, buffer.getbuffer())


def save_run_plots(
    out_dir: str | Path, confusion: torch.Tensor, history: dict, mistakes: tuple, classes: list[str] | None = None
) -> dict:
    """Write the run folder's pictures (PNG) and the confusion matrix (CSV); returns the figures
    by name (e.g. for TensorBoard). `mistakes` is (score, images, true, pred) as
    `digits_zoo.training.metrics.ConfidentMistakes` computes it: the rows that score -1 are right answers.
    `classes`: the dataset's class names (None: digits)."""
    score, images, true, pred = mistakes
    wrong = score >= 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_confusion_csv(confusion, out_dir / "confusion_matrix.csv")
    figures = {
        "confusion_matrix": confusion_matrix_figure(confusion, "Test confusion matrix", classes=classes),
        "confusion_matrix_normalized": confusion_matrix_figure(confusion, "Test confusion matrix", True, classes),
        "per_class_accuracy": per_class_accuracy_figure(confusion, classes),
        "mistakes": mistakes_figure(images[wrong], true[wrong], pred[wrong], score[wrong], classes),
    }
    if history:
        figures["training_curves"] = training_curves_figure(history)
    for name, figure in figures.items():
        save_figure(figure, out_dir / f"{name}.png")
    return figures


def image_loggers(loggers) -> list:
    """The run's loggers that store pictures: TensorBoard and MLflow (CSV does not)."""
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger  # neither imports its backend

    return [logger for logger in loggers if isinstance(logger, (TensorBoardLogger, MLFlowLogger))]


def log_figures(loggers, figures: dict, step: int) -> None:
    """Each figure, under its tag, to every logger that stores pictures: to TensorBoard at `step`,
    to MLflow as the artifact `<tag>_step<step>.png` (one file per step, so that the validation
    confusion matrix of each epoch is kept)."""
    from lightning.pytorch.loggers import MLFlowLogger

    for logger in image_loggers(loggers):
        for tag, figure in figures.items():
            if isinstance(logger, MLFlowLogger):
                logger.experiment.log_figure(logger.run_id, figure, f"{tag}_step{step:04d}.png")
            else:
                logger.experiment.add_figure(tag, figure, step)
