"""The robustness benchmark's test sets: MNIST's test set through each corruption of
`digits_zoo.data.corruptions`, made here (no download) and cached on disk after the first time.

Image k of a corruption is the same whether 100 or all 10,000 are asked for: the images are made in
whole chunks of CHUNK, each chunk from its own seed (SEED, the corruption's number, the chunk's
number), and a slice is cut from the chunks that hold it.
A full set is cached as `<cache>/mnist_c-v<VERSION>/<corruption>.npy` (7.8 MB, uint8); a slice is
made afresh (a few seconds) and cached only as part of a full set.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from digits_zoo.data.corruptions import CORRUPTIONS, corrupt
from digits_zoo.errors import ConfigError
from digits_zoo.writes import write_atomically

SEED = 2019  # the paper's year: any fixed number would do
CHUNK = 1000
VERSION = 1  # raise it when a corruption's images change, so that no cache of the old ones is read
CACHE_ENV = "DIGITS_ZOO_CACHE"


def default_cache_dir() -> Path:
    """$DIGITS_ZOO_CACHE, else $XDG_CACHE_HOME/digits_zoo, else ~/.cache/digits_zoo."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digits_zoo"


def check_corruptions(names: list[str] | None) -> list[str]:
    """The corruptions asked for (None: all of them), each checked."""
    if names is None:
        return list(CORRUPTIONS)
    unknown = [name for name in names if name not in CORRUPTIONS]
    if unknown or not names:
        raise ConfigError(
            f"unknown corruption {', '.join(map(repr, unknown)) or '(none given)'}; choose among {', '.join(CORRUPTIONS)}"
        )
    return list(names)


def corrupted(name: str, images: np.ndarray) -> np.ndarray:
    """`images` (uint8, MNIST's test set from its first image on) through corruption `name`, chunk by chunk."""
    number = list(CORRUPTIONS).index(name)
    chunks = [
        corrupt(name, images[start : start + CHUNK], np.random.default_rng([SEED, number, start // CHUNK]))
        for start in range(0, len(images), CHUNK)
    ]
    return np.concatenate(chunks)


def corrupted_test_set(name: str, images: np.ndarray, limit: int | None, cache_dir: Path | None) -> np.ndarray:
    """The first `limit` (None: all) of `images` through `name`: from the cache where it holds the full set,
    else made (and cached, when the full set was made and `cache_dir` is given)."""
    count = len(images) if limit is None else min(limit, len(images))
    file = cache_dir / f"mnist_c-v{VERSION}" / f"{name}.npy" if cache_dir else None
    if file is not None and file.is_file():
        cached = np.load(file)
        if len(cached) == len(images):
            return cached[:count]
    made = corrupted(name, images[: -(-count // CHUNK) * CHUNK])[:count]  # whole chunks: the same images
    if file is not None and count == len(images):
        file.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, made)
        write_atomically(file, buffer.getbuffer())
    return made


def test_sets(
    test_images: torch.Tensor, names: list[str] | None, limit: int | None, cache_dir: Path | None
) -> dict[str, torch.Tensor]:
    """uint8 images (N, 28, 28) of MNIST's test set through each corruption in `names` (None: all)."""
    if limit is not None and limit < 1:
        raise ConfigError(f"data.limit must be a positive number of test images, or null for all; got {limit}")
    images = test_images.numpy()
    return {
        name: torch.from_numpy(corrupted_test_set(name, images, limit, cache_dir)) for name in check_corruptions(names)
    }
