"""Seconds per epoch: digits_zoo's training path, as `train.py` runs it, against a plain PyTorch loop.

    python benchmarks/speed.py [--model flatten_mlp] [--batch-size 32] [--epochs 1] [--repeats 9] [OVERRIDE ...]

Both run in this process, alternating, on the same MNIST training images (in memory), model,
optimiser (Adam, lr 1e-3, eps 1e-7), batch size and number of epochs:
  plain      permute, slice, forward, backward, step; nothing else;
  digits_zoo train(cfg) with the default config: train loss and accuracy logged, progress bar on,
             validation each epoch, checkpoints; timed from the start to the end of training,
             so data loading and the final test are left out of both.
Prints seconds per epoch of each, and the median and range of the ratio digits_zoo / plain.
Any Hydra override of configs/train.yaml may follow (e.g. data.steps_per_execution=1). Data come
from DIGITS_ZOO_DATA_DIR or ./data. Run it by hand on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from digits_zoo import create_model
from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.training.run import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def plain_loop(model_name: str, images: torch.Tensor, labels: torch.Tensor, batch_size: int, epochs: int) -> float:
    """Seconds per epoch of the textbook loop over in-memory tensors."""
    model = create_model(model_name)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels))
        for first in range(0, len(labels), batch_size):
            index = order[first : first + batch_size]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - start) / epochs


class TrainClock(L.Callback):
    """Wall time from the start to the end of training (Lightning's Timer would add the time stored
    in the checkpoint that the final test loads)."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def digits_zoo_run(args: argparse.Namespace, out_dir: str) -> tuple[float, float]:
    """Seconds per epoch of `train(cfg)` and its test accuracy."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"model={args.model}",
                f"data.batch_size={args.batch_size}",
                f"trainer.max_epochs={args.epochs}",
                f"paths.output_dir={out_dir}",
                "+callbacks.clock._target_=__main__.TrainClock",
                *args.overrides,
            ],
        )
    output = train(cfg)
    clock = next(c for c in output["trainer"].callbacks if isinstance(c, TrainClock))
    return clock.seconds / args.epochs, output["metrics"]["test/acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flatten_mlp")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the digits_zoo run")
    args = parser.parse_args()

    datamodule = MNISTDataModule(val_size=5000)  # the same training split that train(cfg) uses
    datamodule.setup()
    images, labels = datamodule.splits["fit"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            plain = plain_loop(args.model, images, labels, args.batch_size, args.epochs)
            ours, accuracy = digits_zoo_run(args, f"{tmp}/run{repeat}")
            rows.append((plain, ours, accuracy))

    print(
        f"\n{args.model}, batch {args.batch_size}, {args.epochs} epochs, {torch.get_num_threads()} threads "
        f"{' '.join(args.overrides)}"
    )
    print("repeat | plain s/epoch | digits_zoo s/epoch | ratio | digits_zoo test acc")
    for repeat, (plain, ours, accuracy) in enumerate(rows):
        print(f"{repeat:6d} | {plain:13.2f} | {ours:18.2f} | {ours / plain:5.2f} | {100 * accuracy:.2f}%")
    ratios = [ours / plain for plain, ours, _ in rows]
    print(
        f"median ratio {statistics.median(ratios):.2f} (range {min(ratios):.2f} to {max(ratios):.2f}); "
        f"median s/epoch: plain {statistics.median(r[0] for r in rows):.2f}, "
        f"digits_zoo {statistics.median(r[1] for r in rows):.2f}"
    )


if __name__ == "__main__":
    main()
