"""Does `python train.py lr_find=true` suggest a rate that trains well? Test accuracy after training
at its suggestion against training at the default rate (Adam, lr 1e-3).

    DIGITS_ZOO_DATA_DIR=/work/shared/data python benchmarks/lr_find_check.py [MODEL ...]

For each model (default: flatten_mlp lenet5 vgg_bn): the range test (`lr_find=true`), then a run
at the suggested rate as printed (`optimizer.lr=SUGGESTED`) and one at `optimizer.lr=1e-3`,
everything else the default config (5 epochs, seed 42, the official test set). Prints a table:
model, suggestion, test accuracy at it and at 1e-3, and their difference in points. Run it by
hand (vgg_bn takes about 5-8 minutes per run on a 2-core CPU); each run's folder is temporary.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from digits_zoo.training import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODELS = ("flatten_mlp", "lenet5", "vgg_bn")
DEFAULT_LR = 1e-3


def run(out_dir: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return train(compose("train", overrides=[f"paths.output_dir={out_dir}", *overrides]))


def check(model: str, work: Path) -> tuple[float | None, float | None, float]:
    suggestion = run(work / f"{model}_lr_find", f"model={model}", "lr_find=true")["lr_find"]["suggestion"]
    suggested = None
    if suggestion is not None:  # the rate as printed (two significant digits)
        suggested = run(work / f"{model}_suggested", f"model={model}", f"optimizer.lr={suggestion:.2g}")["metrics"]["test/acc"]
    default = run(work / f"{model}_default", f"model={model}", f"optimizer.lr={DEFAULT_LR}")["metrics"]["test/acc"]
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
            print(f"| {model} | {suggestion:.2g} | {100 * suggested:.2f}% | {100 * default:.2f}% | "
                  f"{100 * (suggested - default):+.2f} |")


if __name__ == "__main__":
    main()
