"""Trained weights: those shipped with the package, or those of a run folder or checkpoint.

Shipped weights live in `digits_zoo/models/weights/<model>.safetensors` (tensors only: no pickle at all)
with a manifest whose record for each model describes it, in the manner of torchvision's
`Weights.meta`: the class names, the input it expects, its parameters and multiply-adds, the
recipe that trained it (command, seed, epochs, training seconds), its test accuracy and loss, and
the file's SHA-256, which loading verifies (`list_pretrained`, `pretrained_info`). Run checkpoints
are Lightning's, read with `torch.load(weights_only=True)`: loading never runs pickled code.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import pickle
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from digits_zoo.errors import DigitsZooError, one_line

SHIPPED = Path(__file__).parent / "weights"
MANIFEST = SHIPPED / "manifest.json"


# predict's and the demo's model when none is named: the most robust shipped one (docs/robustness.md)
DEFAULT_MODEL = "robust_vgg"


class WeightsError(DigitsZooError):
    """Weights that are missing, damaged or do not fit the model."""


def manifest() -> dict[str, dict]:
    return json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}


def list_pretrained() -> list[str]:
    """The models whose trained weights ship with digits_zoo."""
    return sorted(manifest())


def pretrained_info(name: str) -> dict:
    """The record of a shipped model's weights: classes, input, parameters, multiply-adds
    (`macs`), recipe (`command`, `seed`, `epochs`, `train_seconds`), `test_acc`, `test_loss`."""
    entry = manifest().get(name)
    if entry is None:
        raise WeightsError(f"no shipped weights for {name!r}; {shipped_names(name)}")
    return entry


def shipped_names(meant: str) -> str:
    """The shipped models' names, the one closest to `meant` first if one is close: for an error line."""
    shipped = list_pretrained()
    close = difflib.get_close_matches(meant, shipped, n=1)
    return f"{f'did you mean {close[0]}? ' if close else ''}shipped: {', '.join(shipped) or 'none'}"


def trained_on(checkpoint: dict, source: str | Path | None = None) -> tuple[str, tuple[float, float] | None]:
    """The dataset a run's checkpoint was trained on, and the (mean, std) its inputs were
    standardised with (None: pixels / 255 only), as the run recorded them (`digits_zoo.data.contract`):
    checked, since a file from elsewhere may record anything (a WeightsError names the field, and the
    file `source`). A checkpoint without that record is refused: its inputs cannot be prepared as in training."""
    from digits_zoo.data.contract import DATASETS, LIGHTNING_KEY, RECORD_KEY  # (only for checkpoints: brings Lightning)

    key = next((key for key in (RECORD_KEY, LIGHTNING_KEY) if key in checkpoint), None)
    if key is None:
        raise WeightsError(
            f"{f'{source}: ' if source else ''}the checkpoint has no record of the data it was trained "
            f"on ({RECORD_KEY!r}: its dataset and normalization), so its inputs cannot be prepared as in "
            "training; use a checkpoint that train.py wrote"
        )
    record = checkpoint[key]
    if not isinstance(record, dict):
        raise _misrecorded(source, key, record, "a record of its dataset and normalization")
    dataset, normalization = record.get("dataset"), record.get("normalization")
    if dataset not in DATASETS:  # (its name picks a torchvision class)
        raise _misrecorded(source, f"{key}.dataset", dataset, f"one of {', '.join(DATASETS)}")
    if normalization is None:
        return dataset, None
    numbers = (
        isinstance(normalization, (list, tuple))
        and len(normalization) == 2
        and all(isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) for n in normalization)
    )
    if not (numbers and normalization[1] > 0):  # (x - mean) / std: a std of 0 makes every input nan
        raise _misrecorded(source, f"{key}.normalization", normalization, "a finite mean and a std above 0")
    return dataset, (float(normalization[0]), float(normalization[1]))


def _misrecorded(source: str | Path | None, field: str, value: object, expected: str) -> WeightsError:
    return WeightsError(
        f"{f'{source}: ' if source else ''}the checkpoint records {field}={_shown(value)}, not {expected}; "
        "the file is damaged or was not written by digits_zoo"
    )


def _shown(value: object) -> str:
    """A value read from a file, short enough for one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def holds_code(path: str | Path, error: BaseException) -> WeightsError | None:
    """The error for a file that torch's weights-only loading refused because it holds pickled
    objects other than tensors and plain data (unpickling them could run code of the file's
    choosing), or None where `error` is not that refusal."""
    if not (isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error)):
        return None
    named = re.search(r"GLOBAL ([\w.]+)", str(error))
    return WeightsError(
        f"{path} holds pickled objects besides tensors and plain data{f' ({named[1]})' if named else ''}, "
        "which could run code as they load, so it was not loaded; load only checkpoints that you made "
        "or that come from someone you trust (docs/security.md)"
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_checkpoint(source: str | Path) -> Path:
    """The checkpoint file for `source`: the file itself, or in a run folder the best checkpoint
    named in `results.json`, else `checkpoints/last.ckpt`."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise WeightsError(f"{source}: no such checkpoint file or run folder")
    results = path / "results.json"
    if results.is_file():
        try:
            best = json.loads(results.read_text()).get("best_checkpoint")
        except (ValueError, AttributeError) as error:
            raise WeightsError(f"{results}: not a train.py results file ({one_line(error)})") from None
        if best:
            # results.json holds the path at training time; a moved run folder still has the file
            for candidate in (Path(best), path / "checkpoints" / Path(best).name):
                if candidate.is_file():
                    return candidate
    last = path / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    raise WeightsError(
        f"{source}: no checkpoint in this folder (expected results.json's best_checkpoint or checkpoints/last.ckpt)"
    )


def read_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and type errors alike: not a weights file
        if refused := holds_code(path, error):
            raise refused from None
        reason = one_line(error).split(". ")[0]  # torch's messages go on to speculate at length
        raise WeightsError(f"{path}: damaged or not a weights file ({reason}); use a complete checkpoint") from None


def shipped_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The weights shipped for model `name`, after checking their SHA-256 against the manifest."""
    path = SHIPPED / pretrained_info(name)["file"]
    if not path.is_file() or sha256(path) != pretrained_info(name)["sha256"]:
        raise WeightsError(f"{path} is missing or damaged (SHA-256 differs from the manifest); reinstall digits_zoo")
    return load_file(path)


def run_state_dict(source: str | Path, model_name: str | None = None) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint or a run folder of train.py; with
    `model_name`, checked to be that model's."""
    checkpoint = read_checkpoint(resolve_checkpoint(source))
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not state:
        raise WeightsError(f"{source}: not a digits_zoo checkpoint (no state_dict)")
    trained = (checkpoint.get("hyper_parameters") or {}).get("model")
    if model_name and trained and trained != model_name:
        raise WeightsError(
            f"{source} holds {trained} weights, not {model_name}; choose model={trained} or a {model_name} checkpoint"
        )
    return {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")}


def load_pretrained(model: nn.Module, name: str, source: bool | str | Path = True, fresh_head: bool = True) -> None:
    """Load shipped weights (`source=True`) or a run's into `model`. Where the classifier's shape
    differs (another number of classes) it keeps its fresh head and the rest loads; with
    `fresh_head=False` that is an error instead."""
    state = shipped_state_dict(name) if source is True else run_state_dict(source, name)
    origin = "the package" if source is True else source
    own = model.state_dict()
    head = {f"head.{key}" for key in model.get_classifier().state_dict()}
    if any(key in state and state[key].shape[:1] != own[key].shape[:1] for key in head):  # other classes
        if not fresh_head:
            raise WeightsError(
                f"the weights from {origin} classify {len(state['head.weight'])} classes, {name} here "
                f"{model.num_classes}; add model.reset_head=true to train a new classifier on them"
            )
        state = {key: value for key, value in state.items() if key not in head}
    misshapen = [key for key in state if key in own and state[key].shape != own[key].shape]
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in misshapen}, strict=False)
    wrong = misshapen + [key for key in missing if key not in head] + list(unexpected)
    if wrong or (missing and set(missing) != head):
        raise WeightsError(
            f"the weights from {origin} do not fit {name}: {', '.join(wrong[:5]) or 'head'} differ; "
            "were they trained with other model.kwargs?"
        )
