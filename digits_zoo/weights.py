"""Shipping a trained model's weights with the package (maintainers; docs/contributing.md):

    digits-zoo weights export RUN_FOLDER   # a run's tested weights, with their record
    digits-zoo weights benchmark [MODEL ...] # add the robustness benchmark to shipped models' records

`ship_run` writes `digits_zoo/models/weights/<model>.safetensors` and its manifest entry (the
recipe, from the run folder, and what `describe` measures); `digits_zoo.models.pretrained` reads them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save

from digits_zoo import arguments
from digits_zoo.errors import DigitsZooError, one_line
from digits_zoo.models import pretrained
from digits_zoo.models.pretrained import (
    manifest,
    pretrained_info,
    read_checkpoint,
    resolve_checkpoint,
    run_state_dict,
    sha256,
    shipped_state_dict,
    trained_on,
)
from digits_zoo.models.registry import create_model
from digits_zoo.writes import write_atomically, write_text_atomically


def describe(name: str, dataset: str = "MNIST", normalization: tuple[float, float] | None = None) -> dict:
    """What a model's weights are for: classes, input, parameters and multiply-adds (those of the
    convolutions and dense layers for one image, by torch's own flop counter: flops / 2)."""
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(name).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    mean, std = normalization or (None, None)
    return {
        "dataset": dataset,
        "classes": list(getattr(torchvision.datasets, dataset).classes),
        "input": {
            "shape": [1, 28, 28],
            "scaling": "pixels / 255, in [0, 1]",
            "mean": mean,
            "std": std,
            "output": f"logits; probabilities through {model.output_activation}",
        },
        "params": sum(p.numel() for p in model.parameters()),
        "macs": counter.get_total_flops() // 2,
    }


def ship(name: str, state: dict[str, torch.Tensor], record: dict) -> dict:
    """Write `<name>.safetensors` (its record also in the file's metadata, so that a copy describes
    itself) and its manifest entry; returns the entry."""
    record = {"file": f"{name}.safetensors", **record}
    data = save({k: v.contiguous() for k, v in state.items()}, metadata={"digits_zoo": json.dumps({name: record})})
    path = pretrained.SHIPPED / record["file"]
    write_atomically(path, data)
    entries = manifest()
    entries[name] = {**record, "sha256": sha256(path)}
    write_text_atomically(pretrained.MANIFEST, json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    return entries[name]


def ship_run(run_dir: Path) -> dict:
    """Ship the tested weights of a train.py run folder: `<model>.safetensors` and its record."""
    results = json.loads((run_dir / "results.json").read_text())
    overrides = run_dir / ".hydra" / "overrides.yaml"
    args = (
        [line.removeprefix("- ").strip() for line in overrides.read_text().splitlines()] if overrides.is_file() else []
    )
    args = [a for a in args if not a.startswith(("hydra.", "data.data_dir"))]
    checkpoint = resolve_checkpoint(run_dir)
    dataset, normalization = trained_on(read_checkpoint(checkpoint), checkpoint)
    recipe = {
        "command": " ".join(["python train.py", *args]),
        "seed": results["seed"],
        "epochs": results["epochs"],
        "train_seconds": results["train_seconds"],
        "test_acc": results["test/acc"],
        "test_loss": results["test/loss"],
        **benchmark_record(results),  # (a run made with robustness=true)
    }
    return ship(
        results["model"], run_state_dict(run_dir), {**recipe, **describe(results["model"], dataset, normalization)}
    )


def benchmark_record(results: dict) -> dict:
    """A manifest's robustness entries from results.json's (none where the benchmark was not run)."""
    from digits_zoo.training.robustness import PREFIX

    if PREFIX + "mean" not in results:
        return {}
    measured = {key.removeprefix(PREFIX): value for key, value in results.items() if key.startswith(PREFIX)}
    return {"mnist_c_mean": measured.pop("mean"), "mnist_c": measured}


def benchmark_shipped(name: str) -> dict:
    """Measure shipped model `name` on the robustness benchmark (the MNIST files where the data module finds
    them) and write the result into its record (in the manifest and the file's metadata); returns the entry."""
    from digits_zoo.data.mnist_c import default_cache_dir
    from digits_zoo.predict import load_trained
    from digits_zoo.training.robustness import measure_mnist

    info = pretrained_info(name)
    if info["dataset"] != "MNIST":
        raise DigitsZooError(f"{name} was trained on {info['dataset']}; the benchmark is made from MNIST's test set")
    trained = load_trained(name)
    measured = measure_mnist(trained.network, trained.normalization, cache_dir=default_cache_dir())
    record = {k: v for k, v in info.items() if k not in ("file", "sha256", "mnist_c_mean", "mnist_c")}
    return ship(name, shipped_state_dict(name), {**record, **benchmark_record(measured)})


def main(argv: list[str] | None = None) -> int:
    return run(arguments.weights().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    if args.command == "list":
        for name, entry in manifest().items():
            print(f"{name:<16} {entry['dataset']:<14} {100 * entry['test_acc']:.2f}%  {entry['params']:>9,} parameters")
        return 0
    if args.command == "info":
        try:
            print(json.dumps(pretrained_info(args.name), indent=2))
        except DigitsZooError as error:
            print(f"error: {one_line(error)}", file=sys.stderr)
            return 1
        return 0
    if args.command == "benchmark":
        for name in args.names or list(manifest()):
            try:
                entry = benchmark_shipped(name)
            except (DigitsZooError, OSError) as error:
                print(f"error: {name}: {one_line(error)}", file=sys.stderr)
                return 1
            print(f"{name}: {100 * entry['test_acc']:.2f}% clean, {100 * entry['mnist_c_mean']:.2f}% MNIST-C mean")
        return 0
    for run_dir in args.run_dirs:
        try:
            entry = ship_run(run_dir)
        except (DigitsZooError, OSError, KeyError, ValueError) as error:
            print(f"error: {run_dir}: {one_line(error)}", file=sys.stderr)
            return 1
        print(f"{run_dir}: {entry['file']} ({100 * entry['test_acc']:.2f}%, sha256 {entry['sha256'][:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
