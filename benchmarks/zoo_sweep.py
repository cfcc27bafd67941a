"""The whole zoo in one sweep (every registered model, its default config, one seed), run one job after
another and then by the local parallel launcher: the wall time of each and whether the two
leaderboards agree.

    DIGITS_ZOO_DATA_DIR=../shared/data python benchmarks/zoo_sweep.py [--out docs/results/zoo_sweep.json]

Each sweep is a real `python train.py -m ...` process (start-up, every job and the leaderboard
included), in a temporary folder. A sequential job trains on every core; a parallel one on cores / jobs
threads (configs/launcher/parallel.yaml), so their float sums may round differently: the comparison
says which figures are equal. docs/distributed.md's table is generated from the JSON.
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


def sweep_command(launcher: str | None) -> list[str]:
    # the slowest first, so that parallel jobs end close together
    models = sorted(
        list_models(), key=lambda name: ("vgg" not in name, "cnn" not in name and "lenet" not in name, name)
    )
    launch = [f"launcher={launcher}"] if launcher else []
    return ["python", "train.py", "-m", *launch, f"model={','.join(models)}", "seed=1"]


def timed_sweep(command: list[str], folder: Path) -> tuple[float, dict[str, dict]]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *command[1:], f"hydra.sweep.dir={folder}"], cwd=ROOT, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    with open(folder / "leaderboard.csv", newline="") as file:
        rows = {row["model"]: row for row in csv.DictReader(file)}
    return seconds, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "zoo_sweep.json")
    args = parser.parse_args()
    if not os.environ.get("DIGITS_ZOO_DATA_DIR"):
        raise SystemExit("error: set DIGITS_ZOO_DATA_DIR to the folder that holds MNIST/raw")
    record = {"cores": len(os.sched_getaffinity(0)), "sweeps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        boards = {}
        for name, launcher in (("sequential", None), ("parallel", "parallel")):
            command = sweep_command(launcher)
            seconds, boards[name] = timed_sweep(command, Path(tmp) / name)
            record["sweeps"][name] = {"command": " ".join(command), "wall_seconds": round(seconds, 1)}
            print(f"{name}: {seconds:.1f} s  ({' '.join(command)})", flush=True)
    sequential, parallel = boards["sequential"], boards["parallel"]
    record["models"] = {
        model: {key: [sequential[model][key], parallel[model][key]] for key in COMPARED} for model in sequential
    }
    record["equal"] = {
        key: all(sequential[m][key] == parallel[m][key] for m in sequential) and set(sequential) == set(parallel)
        for key in COMPARED
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["equal"]), f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
