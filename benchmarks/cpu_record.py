"""Every recipe tried for experiment=vgg_bn_minute (99.5% in under a minute of training on a 2-core
CPU): each one trained by train.py in turn, with its training seconds, its best validation accuracy
(what chose the recipe) and its test accuracy (read once per recipe and seed).

    DIGITS_ZOO_DATA_DIR=/path/to/data python benchmarks/cpu_record.py [--seeds 42] [--only NAME ...] [--out DIR]

Prints one Markdown row per run. The recipe is chosen on validation alone: the highest best_val/acc
among the recipes whose training fits in 60 s; the test column is reported, never compared. Run it
by hand on an otherwise idle machine (training seconds rise with any other load). The step times
behind the recipes (precision and memory layout): benchmarks/step_time.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from digits_zoo.leaderboard import markdown_table  # noqa: E402

RECIPES = {  # name: train.py overrides
    "vgg_bn_fast (32-bit)": ["experiment=vgg_bn_fast"],
    "vgg_bn_minute (bf16-mixed)": ["experiment=vgg_bn_minute"],
    "bf16-mixed, 4 epochs": ["experiment=vgg_bn_minute", "trainer.max_epochs=4"],
    "bf16-mixed, batch 256": ["experiment=vgg_bn_minute", "data.batch_size=256"],
    "bf16-mixed, 4 epochs, EMA of the weights": ["experiment=vgg_bn_minute", "trainer.max_epochs=4", "callbacks=ema"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--only", nargs="+", choices=RECIPES, metavar="NAME", help=f"of: {', '.join(RECIPES)}")
    parser.add_argument("--out", type=Path, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="cpu_record_"))
    rows = []
    for name in args.only or RECIPES:
        for seed in args.seeds:
            run_dir = out / f"{name.split()[0].strip(',')}-{len(rows)}-seed{seed}"
            command = [sys.executable, str(ROOT / "train.py"), *RECIPES[name], f"seed={seed}", f"hydra.run.dir={run_dir}"]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r = json.loads((run_dir / "results.json").read_text())
            rows.append([name, f"`{' '.join(RECIPES[name])}`", str(seed), f"{r['train_seconds']:.1f}",
                         f"{100 * r['best_val/acc']:.2f}%", f"{100 * r['test/acc']:.2f}%"])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(markdown_table(["recipe", "overrides", "seed", "training seconds", "validation", "test"], rows))
    print(f"run folders: {out}")


if __name__ == "__main__":
    main()
