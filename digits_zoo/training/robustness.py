"""The robustness benchmark: how well a trained model reads digits that are noisier, blurrier, moved
or drawn with other strokes than MNIST's (`digits_zoo.data.corruptions`, made from MNIST's test set).

    python eval.py model_source=SOURCE data=mnist_c [data.corruptions=[fog,zigzag]] [data.limit=500]
    python train.py ... robustness=true       (the tested weights, after the test)

Each corruption's accuracy, the clean test set's, and the mean accuracy over MNIST-C's fifteen
(`mnist_c/mean`, recorded only when all fifteen were measured on the whole test set) go to
results.json, the log's table and robustness.png.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

import torch

from digits_zoo.data.corruptions import MNIST_C
from digits_zoo.data.mnist_c import default_cache_dir, test_sets
from digits_zoo.training.plots import new_figure, save_figure
from digits_zoo.training.results import markdown_table

log = logging.getLogger(__name__)
PREFIX = "mnist_c/"  # results.json: mnist_c/<corruption> accuracies, mnist_c/mean


@torch.inference_mode()
def accuracy(
    network: torch.nn.Module,
    normalization: tuple[float, float] | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
) -> float:
    """The share of uint8 `images` (N, 28, 28) that `network` (in eval mode) reads as their `labels`, the
    pixels / 255 standardised with `normalization` (mean, std) where the network was trained so."""
    device = next(network.parameters()).device
    mean, std = normalization or (0.0, 1.0)
    right = 0
    for start in range(0, len(labels), batch_size):
        pixels = images[start : start + batch_size].to(device).unsqueeze(1).float().div_(255).sub_(mean).div_(std)
        right += int((network(pixels).argmax(1) == labels[start : start + batch_size].to(device)).sum())
    return right / len(labels)


def measure(
    network: torch.nn.Module,
    normalization: tuple[float, float] | None,
    test_images: torch.Tensor,
    labels: torch.Tensor,
    corruptions: list[str] | None = None,
    limit: int | None = None,
    cache_dir: Path | None = None,
    batch_size: int = 1000,
) -> dict:
    """`network`'s results.json entries (in eval mode, on its own device; `normalization` as `accuracy`'s):
    `test/acc` on the clean images, `mnist_c/<corruption>` for each corruption, and `mnist_c/mean` over
    MNIST-C's fifteen where all of them were measured on all images."""
    count = len(labels) if limit is None else min(limit, len(labels))
    labels = labels[:count]
    results = {
        "test_images": count,
        "test/acc": accuracy(network, normalization, test_images[:count], labels, batch_size),
    }
    for name, images in test_sets(test_images, corruptions, limit, cache_dir).items():
        results[PREFIX + name] = accuracy(network, normalization, images, labels, batch_size)
        log.info("%-14s %.2f%%", name, 100 * results[PREFIX + name])
    if count == len(test_images) and all(PREFIX + name in results for name in MNIST_C):
        results[PREFIX + "mean"] = statistics.fmean(results[PREFIX + name] for name in MNIST_C)
    return results


def measure_mnist(
    network: torch.nn.Module,
    normalization: tuple[float, float] | None,
    data_dir: str | Path | None = None,
    download: bool = True,
    **options,
) -> dict:
    """`measure` on MNIST's test set where the data module finds it (`data_dir`, else $DIGITS_ZOO_DATA_DIR or
    ./data; downloaded where missing, if `download`); `options` are `measure`'s."""
    from digits_zoo.data.mnist import MNISTDataModule

    data = MNISTDataModule(data_dir, download=download)
    data.prepare_data()
    images, labels = data.read_split(train=False)
    return measure(network, normalization, images, labels, **options)


def corruptions_of(results: dict) -> list[str]:
    return [key.removeprefix(PREFIX) for key in results if key.startswith(PREFIX) and key != PREFIX + "mean"]


def markdown(results: dict) -> str:
    """The table of one model's results: accuracy and error per corruption, clean first, the mean last."""
    rows = [("clean", results["test/acc"])] + [(name, results[PREFIX + name]) for name in corruptions_of(results)]
    if PREFIX + "mean" in results:
        rows.append(("MNIST-C mean (the first 15)", results[PREFIX + "mean"]))
    return markdown_table(["test set", "accuracy", "error"], [[n, f"{a:.2%}", f"{1 - a:.2%}"] for n, a in rows])


def figure(results: dict, title: str):
    """Accuracy per corruption, clean at the top, as horizontal bars."""
    names = ["clean", *corruptions_of(results)]
    values = [results["test/acc"], *(results[PREFIX + name] for name in names[1:])]
    fig = new_figure(6.4, 0.3 * len(names) + 1.2)
    ax = fig.subplots()
    bars = ax.barh(range(len(names)), [100 * v for v in values], color=["tab:green"] + ["tab:blue"] * (len(names) - 1))
    ax.bar_label(bars, labels=[f"{100 * v:.1f}" for v in values], padding=2, fontsize=8)
    ax.set(yticks=range(len(names)), yticklabels=names, xlim=(0, 108), xlabel="accuracy (%)", title=title)
    ax.invert_yaxis()
    return fig


def save(results: dict, out_dir: Path, title: str) -> None:
    save_figure(figure(results, title), out_dir / "robustness.png")


def of_run(network: torch.nn.Module, datamodule, out_dir: Path) -> dict:
    """`train.py robustness=true`: the benchmark of the run's tested weights (on the whole test set, cached
    in the default place), its picture in the run folder; returns the mnist_c/ entries of results.json."""
    images, labels = datamodule.read_split(train=False)
    measured = measure(network.eval(), datamodule.normalization, images, labels, cache_dir=default_cache_dir())
    save(measured, out_dir, "the tested weights on MNIST-C")
    return {key: value for key, value in measured.items() if key.startswith(PREFIX)}


def examples_figure(clean: torch.Tensor, sets: dict[str, torch.Tensor], count: int = 10):
    """The first `count` digits as they are (top row) and through each corruption of `sets` (a row each)."""
    rows = {"clean": clean, **sets}
    fig = new_figure(count * 0.55 + 1.4, len(rows) * 0.55 + 0.2, layout=None)
    axes = fig.subplots(len(rows), count, squeeze=False)
    fig.subplots_adjust(left=1.3 / (count * 0.55 + 1.4), right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    for row, (name, images) in zip(axes, rows.items()):
        for ax, image in zip(row, images[:count]):
            ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set(xticks=[], yticks=[])
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    return fig
