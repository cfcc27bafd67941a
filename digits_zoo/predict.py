"""Predict the digit in your own pictures with a trained model.

    digits-zoo predict IMAGE [IMAGE ...] [--model SOURCE] [--json] [--save-input DIR]
    digits_zoo.classify(SOURCE, pictures)

SOURCE is a checkpoint (`*.ckpt`), a run folder made by train.py, or the name of a model whose
trained weights ship with the package (e.g. `flatten_mlp`; without --model, `robust_vgg`, the default).
An IMAGE is a picture file, a folder (its pictures) or a glob pattern (`'scans/*.png'`).
Each picture is prepared the way MNIST was (see `digits_zoo.data.preprocess`), then as the model's
inputs were in training (standardised, where they were: `Trained.transforms()`), and all go through
the model in one batch.
Exit codes: 0 all predicted, 1 some picture could not be read, 2 the model could not be loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from digits_zoo import arguments
from digits_zoo.data.preprocess import ImageError, prepare_image, to_pixels, to_tensor
from digits_zoo.errors import one_line
from digits_zoo.models.pretrained import (
    DEFAULT_MODEL,
    WeightsError,
    holds_code,
    pretrained_info,
    resolve_checkpoint,
    shipped_names,
)
from digits_zoo.training.plots import class_labels


class Standardize(torch.nn.Module):
    """(x - mean) / std: the inputs of a network trained on standardised pixels."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


# one picture: a file, its encoded bytes, a PIL image, a numpy array, or a tensor of a prepared digit
Picture = str | Path | bytes | Image.Image | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class DigitTransform:
    """A picture -> the (1, 28, 28) tensor its model takes, as torchvision's `weights.transforms()`:
    prepared MNIST-style (`digits_zoo.data.preprocess.to_pixels`; a tensor is taken as prepared), then
    standardised with the (mean, std) of the model's training inputs, where they were."""

    normalization: tuple[float, float] | None = None

    def __call__(self, picture: Picture) -> torch.Tensor:
        return self.standardize(to_pixels(picture))

    def standardize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels / 255 (any shape) -> what the network was trained on."""
        return Standardize(*self.normalization)(pixels) if self.normalization else pixels


@dataclass(frozen=True)
class Prediction:
    """What a model read in one picture: the class index `digit`, the `label` a person reads (the
    digit itself, or a clothing class's name), its `probability`, and the `probabilities` of all
    classes by index (the model's own output activation: a sigmoid model's need not sum to 1)."""

    digit: int
    label: str
    probability: float
    probabilities: tuple[float, ...] = field(repr=False)


@dataclass(frozen=True)
class Trained:
    """A trained network with what it was trained for: its name, its classes, its DigitClassifier
    settings (`hparams`), how its inputs were prepared (`normalization`: (mean, std) or None) and
    the dataset it was trained on (torchvision's class name: "MNIST", "FashionMNIST")."""

    network: torch.nn.Module  # in eval mode, on the CPU
    name: str
    classes: list[str]
    hparams: dict
    normalization: tuple[float, float] | None = None
    dataset: str = "MNIST"

    def with_tta(self) -> Trained:
        """The same model reading each picture through test-time augmentation (digits_zoo.models.tta)."""
        from digits_zoo.models.tta import TestTimeAugmentation

        return replace(self, network=TestTimeAugmentation(self.network).eval(), name=f"{self.name} with TTA")

    def label(self, index: int) -> str:
        """How a person reads class `index`: the digit itself for digits, else the class's name (as the plots say)."""
        return class_labels(self.classes, len(self.classes))[1][index]

    def transforms(self) -> DigitTransform:
        """A picture -> the network's (1, 28, 28) input, prepared as its training inputs were."""
        return DigitTransform(self.normalization)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) pixels / 255 -> what the network was trained on."""
        return self.transforms().standardize(images)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities of (N, 1, 28, 28) pixels / 255."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ImageError(
                "probabilities takes prepared pixels, an (N, 1, 28, 28) tensor; for pictures use .classify(pictures)"
            )
        return probabilities(self.network, self.prepare(images))

    def classify(self, pictures: Picture | Sequence[Picture]) -> Prediction | list[Prediction]:
        """What the network reads in one picture (a Prediction), or in each of a list of them, or of an
        (N, 1, 28, 28) tensor (a list of Predictions), all in one batch. `ImageError` names a picture
        that cannot be read."""
        batch = isinstance(pictures, (list, tuple)) or (isinstance(pictures, torch.Tensor) and pictures.dim() == 4)
        listed = list(pictures) if batch else [pictures]
        if not listed:
            return []
        transform = self.transforms()
        inputs = [_transformed(transform, picture, i if batch else None) for i, picture in enumerate(listed)]
        predictions = [self._prediction(scores) for scores in probabilities(self.network, torch.stack(inputs))]
        return predictions if batch else predictions[0]

    def _prediction(self, scores: torch.Tensor) -> Prediction:
        digit = int(scores.argmax())
        return Prediction(digit, self.label(digit), float(scores[digit]), tuple(scores.tolist()))


def _transformed(transform: DigitTransform, picture: Picture, index: int | None) -> torch.Tensor:
    """The picture through the transform; an ImageError names a file, or a list's picture by its index."""
    try:
        return transform(picture)
    except ImageError as error:
        if isinstance(picture, (str, Path)):
            raise ImageError(f"{picture}: {error}") from None
        if index is not None:
            raise ImageError(f"picture {index}: {error}") from None
        raise


def is_model_name(source: str | Path) -> bool:
    """A registered model's name (for its shipped weights) rather than a path."""
    from digits_zoo.models import list_models

    return str(source) in list_models() and not Path(source).exists()


def load_trained(source: str | Path, tta: bool = False) -> Trained:
    """The trained network of a checkpoint, a run folder, or a shipped model's name, with what it
    was trained for (a checkpoint's data module recorded its dataset and input normalization); with
    `tta`, reading through test-time augmentation."""
    trained = _load_trained(source)
    return trained.with_tta() if tta else trained


def _load_trained(source: str | Path) -> Trained:
    import torchvision

    if is_model_name(source):
        from digits_zoo.models import create_model
        from digits_zoo.models.pretrained import pretrained_info

        info = pretrained_info(str(source))
        network = create_model(str(source), pretrained=True).eval()
        normalization = (info["input"]["mean"], info["input"]["std"]) if info["input"]["mean"] is not None else None
        return Trained(network, str(source), info["classes"], {"model": str(source)}, normalization, info["dataset"])
    if not Path(source).expanduser().exists():
        raise WeightsError(
            f"{source}: no such checkpoint file, run folder or shipped model; {shipped_names(str(source))}"
        )
    from digits_zoo.training.module import DigitClassifier  # imports Lightning: only for checkpoints

    checkpoint = resolve_checkpoint(source)
    try:
        # weights_only: a checkpoint from elsewhere cannot run code when unpickled. Lightning may
        # print while it loads; stdout is kept for the predictions (--json).
        with contextlib.redirect_stdout(sys.stderr):
            module = DigitClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
        dataset, normalization = module.trained_on  # what its data module recorded in the checkpoint (checked)
    except WeightsError as error:  # a record that makes no sense
        raise WeightsError(f"{checkpoint}: {error}") from None
    except Exception as error:  # pickle, zip, key and type errors alike: not a usable checkpoint
        raise holds_code(checkpoint, error) or WeightsError(
            f"{checkpoint}: not a digits_zoo checkpoint ({type(error).__name__}: {one_line(error)})"
        ) from None
    classes = list(getattr(torchvision.datasets, dataset).classes)
    if module.model.num_classes != len(classes):  # (train.py makes them equal)
        raise WeightsError(
            f"{checkpoint}: its network has {module.model.num_classes} classes and its recorded dataset "
            f"{dataset} {len(classes)}; the file is damaged or was not written by digits_zoo"
        )
    return Trained(module.model.eval(), module.hparams.model, classes, dict(module.hparams), normalization, dataset)


def classify(source: str | Path | Trained, pictures: Picture | Sequence[Picture]) -> Prediction | list[Prediction]:
    """What a trained model reads in your pictures, in one call: `classify("vgg_bn", "three.png")`.

    `source`: a shipped model's name, a run folder, a checkpoint, or what `load_trained` returned.
    `pictures`: one picture, giving one `Prediction`, or a list of them (or an (N, 1, 28, 28) tensor),
    giving a list. A file, PIL image or numpy array (grey, or RGB/RGBA colour) is prepared as MNIST
    was; a tensor is a digit already prepared (28x28 or 1x28x28, floats in [0, 1] or uint8). Each is
    then standardised as the model's training inputs were. A picture that cannot be read, and a
    model that cannot be loaded, raise a `digits_zoo.errors.DigitsZooError` (ImageError, WeightsError).
    """
    if isinstance(source, torch.nn.Module):
        raise WeightsError(
            "a network alone does not say how its inputs were prepared or what its classes are; give its "
            "shipped name, run folder or checkpoint, or load_trained(...) of one"
        )
    return (source if isinstance(source, Trained) else load_trained(source)).classify(pictures)


def load_model(source: str | Path) -> torch.nn.Module:
    """The trained network (in eval mode, on the CPU) from a checkpoint, a run folder, or the name
    of a model whose weights ship with the package. It takes what it was trained on: see
    `load_trained(source).prepare` for a run trained on standardised pixels."""
    return load_trained(source).network


@torch.inference_mode()
def probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, classes) probabilities of (N, 1, 28, 28) images from the model's own output activation
    (sigmoid scores are reported as they are, not renormalised)."""
    return model.probabilities(model(images))


def predict(trained: Trained, images: torch.Tensor) -> list[dict]:
    """For each (1, 28, 28) image of pixels / 255: the class (its index as `digit`, and its
    `class` name in the model's dataset), its probability and the top three."""
    scores = trained.probabilities(images)
    top = scores.topk(min(3, scores.shape[1]), dim=1)
    return [
        {
            "digit": int(digits[0]),
            "class": trained.classes[int(digits[0])],
            "probability": round(float(values[0]), 6),
            "top3": [
                {"digit": int(d), "class": trained.classes[int(d)], "probability": round(float(p), 6)}
                for d, p in zip(digits, values)
            ],
        }
        for values, digits in zip(top.values, top.indices)
    ]


# what a folder given as IMAGE is read for (by its files' suffixes, in any case)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")


def picture_files(image: str) -> list[str]:
    """The files an IMAGE argument names, sorted: a folder's pictures (by their suffixes), a glob
    pattern's files (given quoted, as Windows shells do not expand them; `**` spans folders), or the
    file itself. `ImageError` where a folder holds no pictures or a pattern matches no file."""
    path = Path(image)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES and p.is_file())
        if not files:
            raise ImageError(f"a folder without pictures ({', '.join(PICTURE_SUFFIXES)})")
        return files
    if path.exists() or not any(char in image for char in "*?["):
        return [image]
    files = sorted(file for file in glob.glob(image, recursive=True) if Path(file).is_file())
    if not files:
        raise ImageError("no file matches this pattern")
    return files


def _read(images: list[str]) -> Iterator[tuple[str, np.ndarray | ImageError]]:
    """Each file the IMAGE arguments name, with its 28x28 digit or why it cannot be read (for a folder
    without pictures or a pattern without files, the argument itself)."""
    for image in images:
        try:
            files = picture_files(image)
        except ImageError as error:
            yield image, error
            continue
        for file in files:
            try:
                yield file, prepare_image(file)
            except ImageError as error:
                yield file, error


def _save_name(file: str, used: set[str]) -> str:
    """`<stem>.28x28.png`, numbered if another picture of this call has the same stem."""
    stem, n, name = Path(file).stem, 1, f"{Path(file).stem}.28x28.png"
    while name in used:
        n += 1
        name = f"{stem}-{n}.28x28.png"
    used.add(name)
    return name


def _format(result: dict, trained: Trained) -> str:
    top = ", ".join(f"{trained.label(t['digit'])}: {t['probability']:.3f}" for t in result["top3"])
    return (
        f"{result['file']}: {trained.label(result['digit'])} (probability {result['probability']:.3f})   top 3: {top}"
    )


def main(argv: list[str] | None = None) -> int:
    return run(arguments.predict().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    if args.model is None:
        args.model = DEFAULT_MODEL
        info = pretrained_info(args.model)
        print(
            f"model: {args.model}, the default shipped model ({100 * info['test_acc']:.2f}% on the "
            f"{info['dataset']} test set, {100 * info['mnist_c_mean']:.2f}% on MNIST-C); choose another with --model",
            file=sys.stderr,
        )
    try:
        trained = load_trained(args.model, tta=args.tta)
        if args.save_input:
            args.save_input.mkdir(parents=True, exist_ok=True)
    except (WeightsError, OSError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    model = trained.network

    results: list[dict] = []
    good, digits = [], []
    for file, digit in _read(args.images):
        results.append({"file": file})
        if isinstance(digit, ImageError):
            results[-1]["error"] = str(digit)
            print(f"error: {file}: {digit}", file=sys.stderr)
        else:
            good.append(results[-1])
            digits.append(digit)

    if good:  # one forward pass for all readable pictures
        for result, prediction in zip(good, predict(trained, to_tensor(digits))):
            result.update(prediction, activation=model.output_activation)
    if args.save_input:
        used: set[str] = set()
        for result, digit in zip(good, digits):
            path = args.save_input / _save_name(result["file"], used)
            Image.fromarray(digit).save(path)
            result["input_28x28"] = str(path)

    if args.json:
        print(json.dumps(results, indent=2))
    elif good:
        if model.output_activation == "sigmoid":
            kind = class_labels(trained.classes, len(trained.classes))[0]
            print(f"probabilities: sigmoid outputs, one per {kind}, scored independently (they need not sum to 1)")
        else:
            print(f"probabilities: {model.output_activation} outputs")
        for result in results:
            if "error" not in result:  # errors were already reported on stderr
                print(_format(result, trained))
    return 1 if len(good) < len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
