"""Milliseconds per training step of each CNN in each precision (32-bit, bf16 autocast) and memory
layout (NCHW, channels-last): forward, cross-entropy, backward and an Adam step on one batch of
random images, all four variants alternating in this process.

    python benchmarks/step_time.py [--batch-size 128] [--steps 20] [--repeats 5]

Prints, for every CNN in the zoo (vgg_bn also at width 16, as experiment=vgg_bn_fast and
vgg_bn_minute train it), the median milliseconds of each variant and each one's median ratio to
32-bit NCHW. bf16 autocast is fast only where the CPU has bf16 instructions (AVX512-BF16 or AMX);
elsewhere it is emulated and slower. Run it by hand on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from digits_zoo import create_model

MODELS = {"keras_cnn": {}, "lenet5": {}, "vgg_bn": {}, "vgg_bn width 16": {"width": 16}}
VARIANTS = {  # label: (bf16 autocast, channels-last)
    "fp32 NCHW": (False, False),
    "fp32 NHWC": (False, True),
    "bf16 NCHW": (True, False),
    "bf16 NHWC": (True, True),
}


def step_ms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, bf16: bool) -> float:
    optimizer = torch.optim.Adam(model.parameters())
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # as Lightning's bf16-mixed
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
    print(
        f"batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, {torch.get_num_threads()} threads; "
        "ms per step (ratio to fp32 NCHW)"
    )
    print(f"{'model':16s}" + "".join(f"{label:>18s}" for label in VARIANTS))
    for label, kwargs in MODELS.items():
        models = {variant: create_model(label.split()[0], **kwargs) for variant in VARIANTS}
        for variant, (bf16, channels_last) in VARIANTS.items():
            if channels_last:
                models[variant].to(memory_format=torch.channels_last)
            step_ms(models[variant], x, y, 2, bf16)  # warm-up: allocator and oneDNN kernels
        times = {variant: [] for variant in VARIANTS}
        for _ in range(args.repeats):
            for variant, (bf16, _) in VARIANTS.items():
                times[variant].append(step_ms(models[variant], x, y, args.steps, bf16))
        cells = []
        for variant in VARIANTS:
            ratio = statistics.median(t / base for t, base in zip(times[variant], times["fp32 NCHW"]))
            cells.append(f"{statistics.median(times[variant]):8.1f} ({ratio:4.2f})")
        print(f"{label:16s}" + "".join(f"{cell:>18s}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
