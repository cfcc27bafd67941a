"""Does reading pictures differently help a model? Each way is measured on the benchmark's test sets
(digits_zoo.data.mnist_c) for one model: the pictures as they are (what predict does: MNIST's own
preparation); deskewed (the shear that makes the ink's principal axis vertical, as in LeCun's
deskewed MNIST); with the stroke width brought back into MNIST's range (grey erosion or dilation of
pictures whose estimated stroke width is far from MNIST's median); through robust_vgg's input stage
(`InkOnly`: a top-hat that keeps only the strokes) in front of the model; and with test-time
augmentation (`digits_zoo.models.tta`).

    DIGITS_ZOO_DATA_DIR=../shared/data python benchmarks/reading.py [--model robust_vgg] [--limit 2000] [--out FILE]

Writes the accuracies (clean, each corruption, MNIST-C's mean) per preparation as JSON, by default to
docs/results/reading_MODEL.json, whose table docs/robustness.md shows (python docs/tables.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from digits_zoo.data.corruptions import MNIST_C
from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.data.mnist_c import default_cache_dir, test_sets
from digits_zoo.models.cnn import InkOnly
from digits_zoo.models.tta import TestTimeAugmentation
from digits_zoo.predict import load_trained
from digits_zoo.training.robustness import accuracy


def deskewed(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) sheared so that each digit's ink has no skew (second moments), about its centre of mass."""
    x = images.float() / 255
    n, size = len(x), x.shape[-1]
    rows, cols = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    mass = x.sum((1, 2)).clamp(min=1e-6)
    cy, cx = (x * rows).sum((1, 2)) / mass, (x * cols).sum((1, 2)) / mass
    var_y = (x * (rows - cy[:, None, None]) ** 2).sum((1, 2)) / mass
    cov = (x * (rows - cy[:, None, None]) * (cols - cx[:, None, None])).sum((1, 2)) / mass
    skew = cov / var_y.clamp(min=1e-6)
    # output (col, row) reads input col + skew * (row - cy): in grid_sample's [-1, 1] units (align_corners=True)
    half = (size - 1) / 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = 1, skew
    theta[:, 0, 2] = skew * (half - cy) / half
    theta[:, 1, 1] = 1
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=True)
    out = F.grid_sample(x.unsqueeze(1), grid, align_corners=True)[:, 0]
    return (out * 255).round().clamp(0, 255).to(torch.uint8)


def stroke_widths(images: np.ndarray) -> np.ndarray:
    """Each picture's mean stroke width in pixels: its ink's area over the length of its skeleton."""
    from skimage.morphology import skeletonize

    ink = images > 127
    return np.array([i.sum() / max(skeletonize(i).sum(), 1) for i in ink])


def width_normalised(images: torch.Tensor, typical: float) -> torch.Tensor:
    """Pictures whose strokes are over 1.5 times MNIST's typical width eroded, under 2/3 of it dilated."""
    x = images.numpy()
    widths = stroke_widths(x)
    cross = ndimage.generate_binary_structure(2, 1)
    out = x.copy()
    for i in np.nonzero(widths > 1.5 * typical)[0]:
        out[i] = ndimage.grey_erosion(x[i], footprint=cross)
    for i in np.nonzero(widths < typical / 1.5)[0]:
        out[i] = ndimage.grey_dilation(x[i], footprint=cross)
    return torch.from_numpy(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="robust_vgg")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="default: docs/results/reading_MODEL.json")
    args = parser.parse_args()
    args.out = args.out or Path(__file__).resolve().parent.parent / f"docs/results/reading_{args.model}.json"
    trained = load_trained(args.model)
    data = MNISTDataModule(download=False)
    images, labels = data.read_split(train=False)
    labels = labels[: args.limit]
    sets = {"clean": images[: args.limit], **test_sets(images, None, args.limit, default_cache_dir())}
    typical = float(np.median(stroke_widths(images[: args.limit].numpy())))
    same = trained.network
    readings = {  # name: (how the pictures are prepared, the network that reads them)
        "as MNIST (predict's)": (lambda x: x, same),
        "deskewed": (deskewed, same),
        "stroke width normalised": (lambda x: width_normalised(x, typical), same),
        "InkOnly in front": (lambda x: x, torch.nn.Sequential(InkOnly(), same)),
        "test-time augmentation": (lambda x: x, TestTimeAugmentation(same)),
    }
    results = {"model": args.model, "images": len(labels), "typical_stroke_width": typical, "preparations": []}
    if any(isinstance(layer, InkOnly) for layer in same.modules()):  # (robust_vgg has it already)
        del readings["InkOnly in front"]
    for name, (prepare, network) in readings.items():
        accuracies = {s: accuracy(network, trained.normalization, prepare(x), labels, 1000) for s, x in sets.items()}
        mean = statistics.fmean(accuracies[s] for s in MNIST_C)
        results["preparations"].append({"name": name, "accuracy": accuracies, "mnist_c_mean": mean})
        print(f"{name}: {100 * accuracies['clean']:.2f}% clean, {100 * mean:.2f}% MNIST-C mean", flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
