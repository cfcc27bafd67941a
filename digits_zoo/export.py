"""Export a trained model to one ONNX file, and check the file against torch before it is kept.

    digits-zoo export SOURCE [--format onnx] [--out FILE] [--data-dir DIR]

SOURCE is what `predict --model` takes: a checkpoint, a run folder or a shipped model's name; the
file goes to FILE, by default `exports/<model>.onnx` (a folder of its own, as runs go to outputs/). The
file takes `images`, (N, 1, 28, 28) float32 pixels / 255 in [0, 1], for any N, and returns `logits`
(N, classes); a model trained on standardised inputs has its mean and std inside the graph, and
the model's name, dataset, classes and output activation are in the file's metadata. Before the
file is moved to its place, onnxruntime runs it on the test images of the model's own dataset
(where they are on disk; else on seeded random images) and its logits must agree with torch's
within `ATOL + RTOL * |logit|` and give the same class for every image; otherwise nothing is
written and the exit code is 1.
Needs the `export` extra: pip install -e ".[export]".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from digits_zoo import arguments
from digits_zoo.errors import DigitsZooError, one_line
from digits_zoo.writes import temporary_beside

ATOL, RTOL = 1e-4, 1e-4  # float32 through another runtime: sums in another order
EXPORTS = Path("exports")  # where a file goes without --out (git ignores it, as outputs/)
CHECK_IMAGES = 10_000  # the whole test set


class ExportError(DigitsZooError):
    """The export could not be made or does not agree with torch."""


def check_images(data_dir: str | Path | None, dataset: str = "MNIST") -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """The test images of `dataset` (the model's own) in [0, 1] and their labels where they are on
    disk, else seeded random images (and no labels)."""
    from digits_zoo.data.mnist import MNISTDataModule

    try:
        data = MNISTDataModule(data_dir, dataset=dataset, download=False, val_size=0)
        data.setup()
    except DigitsZooError:  # no data on disk: the check still runs, on images nobody drew
        return torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)), None, "1,000 random images"
    images, labels = (t[:CHECK_IMAGES] for t in data.splits["test"])
    return images, labels, f"the {len(images):,} {dataset} test images"


def write_onnx(network: nn.Module, path: Path) -> None:
    """torch's exporter, to one self-contained file (no `.data` beside it), batch size dynamic."""
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ExportError(
            f'ONNX export needs the export extra ({error.name} is missing): pip install -e ".[export]"'
        ) from None
    example = torch.rand(2, 1, 28, 28)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each pass
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network,
                (example,),
                path,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                dynamo=True,
            )
    except OSError:  # writing the file, not exporting the network: `export_onnx` names the file
        raise
    except Exception as error:  # torch.export's and the translation's errors alike: this network does not export
        raise ExportError(
            f"torch's ONNX exporter cannot export this network: {one_line(error).split(' Next steps:')[0]}"
        ) from error


def check_destination(out: Path, name: str) -> None:
    """Refuse, before any work, a file that cannot be written: a folder, or a path whose folder is
    missing or not writable here."""
    if out.is_dir():
        raise ExportError(f"--out {out} is a folder; give a file name such as {out / (name + '.onnx')}")
    folder = out.parent
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ExportError(f"--out {out}: the folder {folder} {what}; choose another path, or create that folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out}: the folder {folder} is not writable here; choose another path")


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    model = onnx.load(path)
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, path)


def parity(path: Path, network: nn.Module, images: torch.Tensor, labels: torch.Tensor | None) -> dict:
    """onnxruntime's logits against torch's on `images`: the largest difference, whether every
    logit is within tolerance, how many predicted classes are the same (`same_digits`), and with
    `labels` the accuracy of each."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError('checking the export needs onnxruntime: pip install -e ".[export]"') from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = session.run(None, {"images": images.numpy()})[0]
    with torch.inference_mode():
        theirs = network(images).numpy()
    difference = abs(ours - theirs)
    check = {
        "max_difference": float(difference.max()),
        "within_tolerance": bool((difference <= ATOL + RTOL * abs(theirs)).all()),
        "same_digits": int((ours.argmax(1) == theirs.argmax(1)).sum()),
        "images": len(images),
    }
    if labels is not None:
        check["onnxruntime_acc"] = float((ours.argmax(1) == labels.numpy()).mean())
        check["torch_acc"] = float((theirs.argmax(1) == labels.numpy()).mean())
    return check


def export_onnx(source: str, out: Path | None = None, data_dir: str | Path | None = None) -> dict:
    """Write SOURCE's model as ONNX to `out` (default `exports/<name>.onnx`) after checking it; returns the check."""
    from digits_zoo.predict import Standardize, load_trained

    trained = load_trained(source)
    network = trained.network
    if trained.normalization:
        network = nn.Sequential(Standardize(*trained.normalization), network).eval()
    out = Path(out or EXPORTS / f"{trained.name}.onnx")
    made = out.parent == EXPORTS and not EXPORTS.exists()  # the default folder, made for this file
    if made:
        try:
            EXPORTS.mkdir()
        except OSError as error:
            raise ExportError(
                f"cannot make the folder {EXPORTS} here ({error.strerror}); give the file with --out FILE"
            ) from None
    check_destination(out, trained.name)
    temporary = temporary_beside(out)
    try:
        write_onnx(network, temporary)
        add_metadata(
            temporary,
            {
                "digits_zoo.model": trained.name,
                "digits_zoo.source": str(source),
                "digits_zoo.dataset": trained.dataset,
                "digits_zoo.output_activation": trained.network.output_activation,
                "digits_zoo.classes": json.dumps(trained.classes),
                "digits_zoo.input": "images (N, 1, 28, 28) float32, pixels / 255 in [0, 1]",
            },
        )
        images, labels, what = check_images(data_dir, trained.dataset)
        check = parity(temporary, network, images, labels)
        if not (check["within_tolerance"] and check["same_digits"] == check["images"]):
            raise ExportError(
                f"onnxruntime disagrees with torch on {what}: largest logit difference "
                f"{check['max_difference']:.2g} (tolerance {ATOL:g} + {RTOL:g} x |logit|), the same class "
                f"for {check['same_digits']:,} of {check['images']:,}; nothing was written"
            )
        temporary.replace(out)
    except OSError as error:  # what the check before could not foresee (a full disk, a folder made read-only since)
        raise ExportError(f"cannot write {out}: {error.strerror or one_line(error)}; nothing was written") from None
    finally:
        temporary.unlink(missing_ok=True)
        if made and not out.exists():  # nothing written: the folder goes too
            EXPORTS.rmdir()
    return {
        **check,
        "file": str(out),
        "bytes": out.stat().st_size,
        "checked_on": what,
        "name": trained.name,
        "dataset": trained.dataset,
    }


def main(argv: list[str] | None = None) -> int:
    return run(arguments.export().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        check = export_onnx(args.source, args.out, args.data_dir)
    except (DigitsZooError, OSError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    print(
        f"wrote {check['file']} ({check['bytes'] / 1e6:.2f} MB); onnxruntime against torch on {check['checked_on']}: "
        f"largest logit difference {check['max_difference']:.2g} (tolerance {ATOL:g} + {RTOL:g} x |logit|), "
        f"the same class for all {check['images']:,}"
    )
    if "onnxruntime_acc" in check:
        print(
            f"{check['dataset']} test accuracy: {100 * check['onnxruntime_acc']:.2f}% under onnxruntime, "
            f"{100 * check['torch_acc']:.2f}% under torch"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
