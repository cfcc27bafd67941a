"""Seconds that each preset of configs/augment/ adds to a training epoch on this machine's CPU: the augmentation
alone (`digits_zoo.data.augment.augment_batch`) of 55,000 28 x 28 images in batches of 128, as a run with
`data.batch_size=128` and the default hold-out of 5,000 draws and changes them.

    python benchmarks/augment_cost.py [--repeats 3] [--threads N] [--images 55000] [--batch-size 128]

Prints a Markdown table: each preset, the median seconds of its epochs and torch's threads. The images are
random (the cost does not depend on what they show). Run it by hand on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from digits_zoo.data.augment import augment_batch, check_settings

PRESETS = Path(__file__).resolve().parent.parent / "configs" / "augment"


def epoch_seconds(settings: dict, images: torch.Tensor, batch_size: int) -> float:
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        batch = images[first : first + batch_size]
        augment_batch(batch, settings, generator, len(batch))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=55_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, help="torch's intra-op threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = torch.rand(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    presets = {path.stem: check_settings(OmegaConf.load(path)) for path in sorted(PRESETS.glob("*.yaml"))}
    seconds = {name: [] for name in presets}
    for _ in range(args.repeats):  # the presets alternate, so that a slower moment costs each of them alike
        for name, settings in presets.items():
            seconds[name].append(epoch_seconds(settings, images, args.batch_size))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} epochs\n")
    print("| preset | seconds per epoch of augmentation |")
    print("|---|---|")
    for name, times in seconds.items():
        print(f"| `augment={name}` | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
