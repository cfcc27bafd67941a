"""Whole-command wall time: `train.py experiment=seed_parity` against the seed's own Keras script.

    python benchmarks/wall_time.py --keras-python /tmp/tf/bin/python [--model flatten_mlp] [--repeats 3]

Runs the two commands alternately (start-up, training and evaluation included) and prints each
wall time, digits_zoo's training seconds from its results.json (the rest is start-up and test), the
medians and the median ratio digits_zoo / Keras of the alternations; then digits_zoo's start-up in parts (imports, config composition, data loading), each
measured in a fresh interpreter. `--keras-python` is an interpreter with TensorFlow (see benchmarks/seed_keras.py);
without it only digits_zoo is timed. Data come from DIGITS_ZOO_DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STARTUP = f"""
import time
start = time.perf_counter()
import digits_zoo.training.run  # torch, torchvision, lightning, torchmetrics, hydra
imported = time.perf_counter()
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
with initialize_config_dir(config_dir={str(ROOT / "configs")!r}, version_base="1.3"):
    cfg = compose("train", overrides=["experiment=seed_parity", "paths.output_dir=unused"])
composed = time.perf_counter()
datamodule = instantiate(cfg.data)
datamodule.prepare_data()
datamodule.setup()
loaded = time.perf_counter()
print(f"start-up: imports {{imported - start:.2f}} s, config {{composed - imported:.2f}} s, "
      f"data {{loaded - composed:.2f}} s")
"""


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-python", help="a Python with tensorflow, to run benchmarks/seed_keras.py")
    parser.add_argument("--model", default="flatten_mlp")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    ours, fits, keras = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            run_dir = Path(tmp) / str(repeat)
            ours.append(
                wall(
                    [
                        sys.executable,
                        str(ROOT / "train.py"),
                        "experiment=seed_parity",
                        f"model={args.model}",
                        f"hydra.run.dir={run_dir}",
                    ]
                )
            )
            fits.append(json.loads((run_dir / "results.json").read_text())["train_seconds"])
            if args.keras_python:
                keras.append(wall([args.keras_python, str(ROOT / "benchmarks" / "seed_keras.py")]))
            print(
                f"repeat {repeat}: digits_zoo {ours[-1]:.1f} s (training {fits[-1]:.1f} s)"
                + (f", seed Keras {keras[-1]:.1f} s" if keras else "")
            )
    print(
        f"median wall: digits_zoo {statistics.median(ours):.1f} s (training {statistics.median(fits):.1f} s, "
        f"start-up and test {statistics.median(o - f for o, f in zip(ours, fits)):.1f} s)"
        + (f", seed Keras {statistics.median(keras):.1f} s" if keras else "")
    )
    if keras:  # each digits_zoo run against the Keras run after it: the machine's speed drifts
        ratios = [o / k for o, k in zip(ours, keras)]
        print(
            f"digits_zoo / seed Keras: median {statistics.median(ratios):.2f} (range {min(ratios):.2f} to {max(ratios):.2f})"
        )
    subprocess.run([sys.executable, "-c", STARTUP], check=True)


if __name__ == "__main__":
    main()
