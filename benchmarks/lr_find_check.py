"""Does `python train.py lr_find=true` suggest a rate that trains well? Test accuracy after training
at its suggestion against training at the default rate (Adam, lr 1e-3).

    DIGITS_ZOO_DATA_DIR=/work/shared/data python benchmarks/lr_find_check.py [MODEL ...]

For each model (default: flatten_mlp lenet5 vgg_bn): the range test (`lr_find=true`), then a run
at the suggested rate as printed (`optimizer.lr=SUGGESTED`) and one at `optimizer.lr=1e-3`,
everything else the default config (5 epochs, seed 42, the official test set). Prints a table:
model, suggestion, test accuracy at it and at 1e-3, and their difference in points. Run it by
hand (vgg_bn takes about 5-8 minutes per run on an idle 2-core CPU); every step is `python train.py` in
its own process, as a user runs it; each run's folder is temporary.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from digits_zoo.training.lr_find import suggest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("flatten_mlp", "lenet5", "vgg_bn")
DEFAULT_LR = 1e-3


def train_py(run_dir: Path, *overrides: str) -> Path:
    """`python train.py OVERRIDES`, each in its own process as a user runs it; its run folder."""
    subprocess.run(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return run_dir


def test_accuracy(run_dir: Path) -> float:
    return json.loads((run_dir / "results.json").read_text())["test/acc"]


def check(model: str, work: Path) -> tuple[float | None, float | None, float]:
    with open(train_py(work / f"{model}_lr_find", f"model={model}", "lr_find=true") / "lr_find.csv") as file:
        curve = list(csv.DictReader(file))
    # the rate the range test printed (the rule applied to the curve it wrote)
    suggestion = suggest([float(row["lr"]) for row in curve], [float(row["loss"]) for row in curve])
    default = test_accuracy(train_py(work / f"{model}_default", f"model={model}", f"optimizer.lr={DEFAULT_LR}"))
    suggested = None
    if suggestion is not None and suggestion == float(f"{DEFAULT_LR:.2g}"):
        suggested = default  # the same command: training is deterministic
    elif suggestion is not None:
        suggested = test_accuracy(
            train_py(work / f"{model}_suggested", f"model={model}", f"optimizer.lr={suggestion:.2g}")
        )
    print(f"{model}: suggested {suggestion}, test/acc {suggested} (at {DEFAULT_LR}: {default})", flush=True)
    return suggestion, suggested, default


def main() -> None:
    models = sys.argv[1:] or MODELS
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model in models:
            rows.append((model, *check(model, Path(work))))
    print("\n| model | suggested lr | test acc at it | test acc at 1e-3 | difference (points) |")
    print("|---|---|---|---|---|")
    for model, suggestion, suggested, default in rows:
        if suggestion is None:
            print(f"| {model} | none | | {100 * default:.2f}% | |")
        else:
            print(
                f"| {model} | {suggestion:.2g} | {100 * suggested:.2f}% | {100 * default:.2f}% | "
                f"{100 * (suggested - default):+.2f} |"
            )


if __name__ == "__main__":
    main()
