"""The documented commands whose results the docs quote, run on the real data: their results go to
docs/results/measured.json, which the docs' numbers are generated from (`python docs/tables.py`),
and the flatten_mlp run's pictures to docs/images/.

    DIGITS_ZOO_DATA_DIR=../shared/data python docs/measure.py [NAME ...]   # default: all (about 10 minutes)

The quick ones (QUICK) are run again by the real-data tier (tests/test_doc_snippets.py), which checks
that they still give the accuracies recorded here; training seconds are recorded, never checked.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "docs" / "results" / "measured.json"
PICTURES = ("training_curves", "per_class_accuracy", "confusion_matrix", "confusion_matrix_normalized", "mistakes")
TRANSFER = "python train.py experiment=transfer_fashion"
COMMANDS = {
    "flatten_mlp": "python train.py model=flatten_mlp",  # docs/training.md's run folder and pictures
    **{
        f"seed_parity_{model}": f"python train.py experiment=seed_parity model={model}"
        for model in ("single_dense", "two_layer_mlp", "flatten_mlp", "softmax_mlp")
    },
    "transfer_probe_1000": f"{TRANSFER} model.freeze_features=true",
    "transfer_finetune_1000": TRANSFER,
    "transfer_scratch_1000": f"{TRANSFER} model.pretrained=null",
    "transfer_probe_60000": f"{TRANSFER} model.freeze_features=true data.train_size=null",
    "transfer_finetune_60000": f"{TRANSFER} data.train_size=null",
    "transfer_scratch_60000": f"{TRANSFER} model.pretrained=null data.train_size=null",
    # docs/robustness.md: a heavier augmentation than robust_vgg's recipe, which read worse
    "robust_vgg_heavy_augmentation": "python train.py experiment=robust_vgg augment=robust "
    "+data.augment.noise=0.15 trainer.max_epochs=30 seed=1 robustness=true",
    # docs/robustness.md: the recipe with salt-and-pepper noise in training
    "robust_vgg_noise": "python train.py experiment=robust_vgg +data.augment.noise=0.1 seed=1 robustness=true",
    "robust_vgg_noise_thickness": "python train.py experiment=robust_vgg +data.augment.noise=0.1 "
    "+data.augment.thickness=1 seed=1 robustness=true",
}
QUICK = (
    "flatten_mlp",
    "seed_parity_flatten_mlp",
    "transfer_probe_1000",
    "transfer_finetune_1000",
    "transfer_scratch_1000",
)


def run(name: str, run_dir: Path) -> dict:
    """Run COMMANDS[name] into `run_dir` (which must not exist yet); its results.json."""
    words = shlex.split(COMMANDS[name])
    result = subprocess.run(
        [sys.executable, str(ROOT / words[1]), *words[2:], f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if result.returncode != 0:
        raise SystemExit(f"error: {COMMANDS[name]} failed:\n{result.stderr[-2000:]}")
    return json.loads((run_dir / "results.json").read_text())


def measured() -> dict[str, dict]:
    return json.loads(MEASURED.read_text()) if MEASURED.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the documented commands whose results the docs quote.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(COMMANDS)}")
    args = parser.parse_args(argv)
    if unknown := [name for name in args.names if name not in COMMANDS]:
        print(f"error: unknown {', '.join(unknown)}; known: {', '.join(COMMANDS)}", file=sys.stderr)
        return 1
    if not os.environ.get("DIGITS_ZOO_DATA_DIR"):
        print("error: set DIGITS_ZOO_DATA_DIR to the folder that holds MNIST/raw and FashionMNIST/raw", file=sys.stderr)
        return 1
    records = measured()
    with tempfile.TemporaryDirectory() as folder:
        for name in args.names or COMMANDS:
            results = run(name, Path(folder) / name)
            kept = [key for key in results if key in ("test/acc", "train_seconds") or key.startswith("mnist_c/")]
            records[name] = {
                "command": COMMANDS[name],
                **{key: results[key] for key in kept},
            }  # (mnist_c/: robustness=true)
            print(f"{name}: {COMMANDS[name]}: {100 * results['test/acc']:.2f}% in {results['train_seconds']:.1f} s")
            if name == "flatten_mlp":
                for picture in PICTURES:
                    shutil.copyfile(Path(folder) / name / f"{picture}.png", ROOT / "docs" / "images" / f"{picture}.png")
    MEASURED.write_text(json.dumps(dict(sorted(records.items())), indent=2) + "\n")
    print(f"wrote {MEASURED.relative_to(ROOT)}; now run python docs/tables.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
