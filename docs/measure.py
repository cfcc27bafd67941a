"""The documented commands whose results the docs quote, run on the real data: their results go to
docs/results/measured.json, which the docs' numbers are generated from (`python docs/tables.py`),
and the flatten_mlp run's pictures to docs/images/.

    DIGITS_ZOO_DATA_DIR=../shared/data python docs/measure.py [NAME ...]   # default: all (hours: robust_vgg's
                                                                          # take 20 to 40 minutes each)
    python docs/measure.py NAME --run FOLDER   # record a run of NAME's command made by hand (the long ones)

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

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

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
    # docs/robustness.md: the shipped robust_vgg's command on both cores (torch's default threads), alone on the machine
    "robust_vgg_both_cores": "python train.py experiment=robust_vgg seed=1 robustness=true",
    # docs/robustness.md: robust_vgg_base (augment=handwritten, 20 epochs at batch 128, the recipes' base), the earlier
    # recipe (augment=affine), a heavier augmentation, and steps from the earlier one towards the base
    "robust_vgg_base": "python train.py experiment=robust_vgg_base seed=1 threads=1 robustness=true",
    "robust_vgg_affine": "python train.py experiment=robust_vgg_base augment=affine seed=1 robustness=true",
    "robust_vgg_heavy_augmentation": "python train.py experiment=robust_vgg_base augment=robust "
    "+data.augment.noise=0.15 trainer.max_epochs=30 seed=1 robustness=true",
    "robust_vgg_noise": "python train.py experiment=robust_vgg_base augment=affine +data.augment.noise=0.1 seed=1 robustness=true",
    "robust_vgg_noise_thickness": "python train.py experiment=robust_vgg_base augment=affine +data.augment.noise=0.1 "
    "+data.augment.thickness=1 seed=1 robustness=true",
    "robust_vgg_noise_erase10": "python train.py experiment=robust_vgg_base augment=affine +data.augment.noise=0.1 "
    "+data.augment.erase=0.1 seed=1 robustness=true",
    "robust_vgg_noise_erase20_thickness": "python train.py experiment=robust_vgg_base augment=affine +data.augment.noise=0.1 "
    "+data.augment.erase=0.2 +data.augment.thickness=1 seed=1 robustness=true",
    # the base with a stronger affine transform (rotation 15 degrees, zoom 0.15, an x-shear; shifts 0.15) for 30 epochs,
    # the same without the wider shifts for 40, and for 30 with 40 channels in the first stage instead of 32; with the
    # wider shifts, validated and tested on an exponential moving average of the weights, and that with smoothed labels
    # (robust_vgg is that at batch 64)
    "robust_vgg_geometry": "python train.py experiment=robust_vgg_base data.augment.degrees=15 data.augment.scale=0.15 "
    "+data.augment.shear=10 trainer.max_epochs=30 seed=1 robustness=true",
    "robust_vgg_geometry_translate": "python train.py experiment=robust_vgg_base data.augment.degrees=15 "
    "data.augment.scale=0.15 data.augment.translate=0.15 +data.augment.shear=10 trainer.max_epochs=30 seed=1 "
    "robustness=true",
    "robust_vgg_geometry_40_epochs": "python train.py experiment=robust_vgg_base data.augment.degrees=15 "
    "data.augment.scale=0.15 +data.augment.shear=10 trainer.max_epochs=40 seed=1 robustness=true",
    "robust_vgg_wide_geometry": "python train.py experiment=robust_vgg_base data.augment.degrees=15 "
    "data.augment.scale=0.15 +data.augment.shear=10 trainer.max_epochs=30 model.kwargs.width=40 seed=1 "
    "robustness=true",
    "robust_vgg_geometry_translate_ema": "python train.py experiment=robust_vgg_base callbacks=ema data.augment.degrees=15 "
    "data.augment.scale=0.15 data.augment.translate=0.15 +data.augment.shear=10 trainer.max_epochs=30 seed=1 "
    "robustness=true",
    "robust_vgg_geometry_translate_ema_smoothing": "python train.py experiment=robust_vgg_base callbacks=ema "
    "label_smoothing=0.1 data.augment.degrees=15 data.augment.scale=0.15 data.augment.translate=0.15 "
    "+data.augment.shear=10 trainer.max_epochs=30 seed=1 robustness=true",
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


def configuration(name: str) -> dict:
    """The configuration COMMANDS[name] composes (interpolations unresolved)."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=shlex.split(COMMANDS[name])[2:]), resolve=False)


def differences(wanted: object, ran: object, key: str = "") -> list[str]:
    """The keys whose values in a run's configuration `ran` are not those of `wanted`, but for the folders
    and values derived from others (interpolations) and the threads it ran on."""
    if (isinstance(wanted, str) and "${" in wanted) or key == ".threads":
        return []
    if isinstance(wanted, dict) and isinstance(ran, dict):
        return [found for k in {*wanted, *ran} for found in differences(wanted.get(k), ran.get(k), f"{key}.{k}")]
    return [] if wanted == ran else [f"{key[1:]}: {ran!r}, not {wanted!r}"]


def made_by(name: str, folder: Path) -> dict:
    """The results.json of `folder`, a finished run of COMMANDS[name]'s configuration (made by hand: it may have
    run on other threads, or from overrides that compose the same); else one line that says why not."""
    try:
        ran = yaml.safe_load((folder / "config.yaml").read_text())
        results = json.loads((folder / "results.json").read_text())
    except OSError as error:
        raise SystemExit(f"error: {folder} is not a finished run folder ({error.strerror}: {error.filename})") from None
    if different := differences(configuration(name), ran):
        raise SystemExit(f"error: {folder} was not made by {name}'s command: {'; '.join(different)}")
    return results


def record(name: str, results: dict) -> dict:
    kept = [key for key in results if key in ("test/acc", "train_seconds") or key.startswith("mnist_c/")]
    return {"command": COMMANDS[name], **{key: results[key] for key in kept}}  # (mnist_c/: robustness=true)


def measured() -> dict[str, dict]:
    return json.loads(MEASURED.read_text()) if MEASURED.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the documented commands whose results the docs quote.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(COMMANDS)}")
    parser.add_argument("--run", type=Path, metavar="FOLDER", help="record one NAME from this run of its command")
    args = parser.parse_args(argv)
    if unknown := [name for name in args.names if name not in COMMANDS]:
        print(f"error: unknown {', '.join(unknown)}; known: {', '.join(COMMANDS)}", file=sys.stderr)
        return 1
    if args.run:
        if len(args.names) != 1:
            print("error: --run FOLDER records one NAME: give its name", file=sys.stderr)
            return 1
        save({**measured(), args.names[0]: record(args.names[0], made_by(args.names[0], args.run))})
        return 0
    if not os.environ.get("DIGITS_ZOO_DATA_DIR"):
        print("error: set DIGITS_ZOO_DATA_DIR to the folder that holds MNIST/raw and FashionMNIST/raw", file=sys.stderr)
        return 1
    records = measured()
    with tempfile.TemporaryDirectory() as folder:
        for name in args.names or COMMANDS:
            results = run(name, Path(folder) / name)
            records[name] = record(name, results)
            print(f"{name}: {COMMANDS[name]}: {100 * results['test/acc']:.2f}% in {results['train_seconds']:.1f} s")
            if name == "flatten_mlp":
                for picture in PICTURES:
                    shutil.copyfile(Path(folder) / name / f"{picture}.png", ROOT / "docs" / "images" / f"{picture}.png")
    save(records)
    return 0


def save(records: dict[str, dict]) -> None:
    MEASURED.write_text(json.dumps(dict(sorted(records.items())), indent=2) + "\n")
    print(f"wrote {MEASURED}; now run python docs/tables.py")


if __name__ == "__main__":
    sys.exit(main())
