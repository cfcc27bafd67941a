"""The options of `digits-zoo predict|export|demo|leaderboard|weights`, one parser each.

They live apart from the commands themselves, in a module that imports only the standard library, so
that `--help` and a mistyped option are answered before torch is imported. Each command's module runs
`run(args)` on what its parser here parsed (`digits_zoo.command`, or its own `main(argv)`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def _parser(name: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"digits-zoo {name}", description=description)


def predict() -> argparse.ArgumentParser:
    parser = _parser(
        "predict",
        "Read the digit in each picture (PNG, JPEG, ...: any size, dark ink on light paper or light ink on "
        "dark) with a shipped model or one trained by digits-zoo train.",
    )
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="picture files, folders (their pictures) or quoted glob patterns such as 'scans/*.png'",
    )
    parser.add_argument(
        "--model",
        metavar="SOURCE",
        help="a checkpoint (*.ckpt), a run folder of train (its best checkpoint, else last.ckpt), "
        "or a model name for the weights shipped with digits_zoo (default: robust_vgg, the default shipped model)",
    )
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average the readings of 5 slightly moved copies"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list to stdout instead of text")
    parser.add_argument(
        "--save-input", type=Path, metavar="DIR", help="save the 28x28 picture the model saw as DIR/<stem>.28x28.png"
    )
    return parser


def export() -> argparse.ArgumentParser:
    parser = _parser("export", "Export a trained digits_zoo model to ONNX, checked against torch.")
    parser.add_argument("source", help="a checkpoint, a run folder, or a shipped model's name (e.g. vgg_bn)")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="the file format (default: onnx)")
    parser.add_argument("--out", type=Path, help="the file to write (default: exports/<model>.onnx)")
    parser.add_argument(
        "--data-dir",
        help="the folder with the model's dataset (MNIST/raw, FashionMNIST/raw) for the check "
        "(default: $DIGITS_ZOO_DATA_DIR or ./data)",
    )
    return parser


def demo() -> argparse.ArgumentParser:
    parser = _parser("demo", "A local web page to draw a digit on and see what the models read.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="PATH",
        help="also offer the model of this checkpoint or train run folder (repeatable)",
    )
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="the model selected at first: a shipped model's name or a --checkpoint PATH "
        "(default: the first checkpoint, else robust_vgg, the default shipped model)",
    )
    return parser


def leaderboard() -> argparse.ArgumentParser:
    parser = _parser("leaderboard", "The table of results of run folders (or sweep folders).")
    parser.add_argument("folders", nargs="+", type=Path, help="run folders, or folders that hold them")
    parser.add_argument("--out", type=Path, help="also write leaderboard.md and leaderboard.csv here")
    return parser


def weights() -> argparse.ArgumentParser:
    parser = _parser(
        "weights", "The weights shipped with the package: list them, describe one, ship a run's, or benchmark them."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the shipped models, with their dataset and test accuracy")
    commands.add_parser("info", help="a shipped model's record (JSON)").add_argument("name", metavar="MODEL")
    ship = commands.add_parser("export", help="ship a train run's tested weights (maintainers)")
    ship.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_FOLDER")
    bench = commands.add_parser("benchmark", help="measure shipped models on the robustness benchmark (maintainers)")
    bench.add_argument("names", nargs="*", metavar="MODEL", help="default: every shipped model")
    return parser


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "predict": predict,
    "export": export,
    "demo": demo,
    "leaderboard": leaderboard,
    "weights": weights,
}
