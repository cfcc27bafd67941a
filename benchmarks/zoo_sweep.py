"""The whole zoo in one sweep (every registered model, its default config, one seed), run one job after
another and then by the local parallel launcher: the wall time of each and whether the two
leaderboards agree.

    DIGITS_ZOO_DATA_DIR=../shared/data python benchmarks/zoo_sweep.py [--out docs/results/zoo_sweep.json]

Each sweep is a real `python train.py -m ...` process (start-up, every job and the leaderboard
included), in a temporary folder. A sequential job trains on every core; a parallel one on cores / jobs
threads (configs/launcher/parallel.yaml), so their float sums may round differently. NAMEs run only
those sweeps and keep the others' records. docs/distributed.md's tables are generated from the JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from digits_zoo import list_models

ROOT = Path(__file__).resolve().parents[1]

COMPARED = ("test/acc", "best_val/acc", "best_epoch", "test/loss")
# name: the sweep's overrides; at one thread each, one job after another trains as the parallel jobs do
SWEEPS = {"sequential": [], "parallel": ["launcher=parallel"], "sequential_1_thread": ["threads=1"]}


def sweep_command(overrides: list[str]) -> list[str]:
    # the slowest first, so that parallel jobs end close together
    models = sorted(
        list_models(), key=lambda name: ("vgg" not in name, "cnn" not in name and "lenet" not in name, name)
    )
    return ["python", "train.py", "-m", *overrides, f"model={','.join(models)}", "seed=1"]


def timed_sweep(command: list[str], folder: Path) -> tuple[float, dict[str, dict]]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *command[1:], f"hydra.sweep.dir={folder}"], cwd=ROOT, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    with open(folder / "leaderboard.csv", newline="") as file:
        rows = {row["model"]: {key: row[key] for key in COMPARED} for row in csv.DictReader(file)}
    return seconds, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(SWEEPS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "zoo_sweep.json")
    args = parser.parse_args()
    if unknown := [name for name in args.names if name not in SWEEPS]:
        raise SystemExit(f"error: unknown {', '.join(unknown)}; known: {', '.join(SWEEPS)}")
    if not os.environ.get("DIGITS_ZOO_DATA_DIR"):
        raise SystemExit("error: set DIGITS_ZOO_DATA_DIR to the folder that holds MNIST/raw")
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"sweeps": {}}
    record["cores"] = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names or SWEEPS:  # (the others' records stay as they were)
            command = sweep_command(SWEEPS[name])
            seconds, board = timed_sweep(command, Path(tmp) / name)
            record["sweeps"][name] = {"command": " ".join(command), "wall_seconds": round(seconds, 1), "models": board}
            print(f"{name}: {seconds:.1f} s  ({' '.join(command)})", flush=True)
    record["sweeps"] = {name: record["sweeps"][name] for name in SWEEPS if name in record["sweeps"]}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
