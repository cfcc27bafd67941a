"""Milliseconds per training step of each CNN with its convolutions in the default (NCHW) and the
channels-last (NHWC) memory layout: forward, cross-entropy, backward and an Adam step on one batch
of random images, the two layouts alternating in this process.

    python benchmarks/channels_last.py [--batch-size 128] [--steps 20] [--repeats 5]

Prints the median milliseconds of each layout and the median ratio channels-last / default for
every CNN in the zoo (vgg_bn also at width 16, as experiment=vgg_bn_fast trains it). Run it by
hand on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from digits_zoo import create_model

MODELS = {"keras_cnn": {}, "lenet5": {}, "vgg_bn": {}, "vgg_bn width 16": {"width": 16}}


def step_ms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters())
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x, y = torch.rand(args.batch_size, 1, 28, 28), torch.randint(0, 10, (args.batch_size,))
    print(f"batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, {torch.get_num_threads()} threads")
    print(f"{'model':18s} {'NCHW ms':>8s} {'NHWC ms':>8s} {'ratio':>6s}")
    for label, kwargs in MODELS.items():
        name = label.split()[0]
        models = {layout: create_model(name, **kwargs) for layout in ("default", "channels_last")}
        models["channels_last"].to(memory_format=torch.channels_last)
        for model in models.values():
            step_ms(model, x, y, 2)  # warm-up: allocator and oneDNN kernels
        times = {layout: [] for layout in models}
        for _ in range(args.repeats):
            for layout, model in models.items():
                times[layout].append(step_ms(model, x, y, args.steps))
        ratio = statistics.median(c / d for c, d in zip(times["channels_last"], times["default"]))
        default, nhwc = (statistics.median(times[layout]) for layout in models)
        print(f"{label:18s} {default:8.1f} {nhwc:8.1f} {ratio:6.2f}", flush=True)


if __name__ == "__main__":
    main()
