"""Tiny MNIST-like data sets that the tests write themselves, in torchvision's raw IDX layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic (0, 0, type 0x08 = ubyte, number of dimensions), big-endian sizes, the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 images: class k is a bright 6x6 square at its own place, jittered, on noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28))
    for image, label in zip(images, labels):
        row, col = 2 + 8 * (label // 4), 2 + 6 * (label % 4)
        dr, dc = rng.integers(-1, 2, size=2)
        image[row + dr + 1 : row + dr + 7, col + dc + 1 : col + dc + 7] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_dataset(root: Path, n_train: int = 1200, n_test: int = 300, name: str = "MNIST") -> Path:
    """Write `root/<name>/raw/*-ubyte` and return `root`."""
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for train, n in ((True, n_train), (False, n_test)):
        images, labels = synthetic_digits(n, seed=int(train))
        write_idx(raw / FILES[train][0], images)
        write_idx(raw / FILES[train][1], labels)
    return root
