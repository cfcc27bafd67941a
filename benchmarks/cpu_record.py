"""Every recipe tried for experiment=vgg_bn_minute (99.5% in under a minute of training on a 2-core
CPU): each one trained by train.py in turn, with its training seconds, its best validation accuracy
(what chose the recipe) and its test accuracy (read once per recipe and seed).

    DIGITS_ZOO_DATA_DIR=/path/to/data python benchmarks/cpu_record.py [--seeds 1 2 42] [--only NAME ...] [--out DIR]

Prints one Markdown row per run, then each recipe's median seconds and mean accuracies over the
seeds. The recipe is chosen on validation alone (mean best_val/acc over seeds 1, 2 and 42, among the
recipes that train in under 60 s); the test columns are reported, never compared. Run it
by hand on an otherwise idle machine (training seconds rise with any other load). The step times
behind the recipes (precision and memory layout): benchmarks/step_time.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from digits_zoo.leaderboard import markdown_table

ROOT = Path(__file__).resolve().parents[1]

RECIPES = {  # name: (what it changes, train.py overrides)
    "fast-fp32": ("vgg_bn_fast: width 16, channels-last, 5 epochs, 32-bit", ["experiment=vgg_bn_fast"]),
    "minute": ("vgg_bn_minute: the same in bf16-mixed", ["experiment=vgg_bn_minute"]),
    "minute-4ep": ("bf16-mixed, 4 epochs", ["experiment=vgg_bn_minute", "trainer.max_epochs=4"]),
    "minute-b256": ("bf16-mixed, batch 256", ["experiment=vgg_bn_minute", "data.batch_size=256"]),
    "minute-lr5e-3": ("bf16-mixed, peak learning rate 5e-3", ["experiment=vgg_bn_minute", "optimizer.lr=5e-3"]),
    "minute-ema": (
        "bf16-mixed, EMA of the weights (decay 0.99)",
        ["experiment=vgg_bn_minute", "callbacks=ema", "callbacks.ema.decay=0.99"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 42])
    parser.add_argument("--only", nargs="+", choices=RECIPES, metavar="NAME", help=f"of: {', '.join(RECIPES)}")
    parser.add_argument("--out", type=Path, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="cpu_record_"))
    rows, summary = [], []
    for name in args.only or RECIPES:
        runs, (what, overrides) = [], RECIPES[name]
        for seed in args.seeds:
            run_dir = out / f"{name}-seed{seed}"
            command = [sys.executable, str(ROOT / "train.py"), *overrides, f"seed={seed}", f"hydra.run.dir={run_dir}"]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs.append(r := json.loads((run_dir / "results.json").read_text()))
            rows.append(
                [
                    name,
                    what,
                    str(seed),
                    f"{r['train_seconds']:.1f}",
                    f"{100 * r['best_val/acc']:.2f}%",
                    f"{100 * r['test/acc']:.2f}%",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
        summary.append(
            [
                name,
                str(len(runs)),
                f"{statistics.median(r['train_seconds'] for r in runs):.1f}",
                *(f"{100 * statistics.mean(r[key] for r in runs):.2f}%" for key in ("best_val/acc", "test/acc")),
            ]
        )
    print()
    print(markdown_table(["recipe", "what it changes", "seed", "training seconds", "validation", "test"], rows))
    print(markdown_table(["recipe", "seeds", "median training seconds", "mean validation", "mean test"], summary))
    print(f"run folders: {out}")


if __name__ == "__main__":
    main()
