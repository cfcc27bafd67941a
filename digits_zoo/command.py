"""`digits-zoo`: the one command for every feature (also `python -m digits_zoo`).

    digits-zoo train model=lenet5 trainer.max_epochs=3     # Hydra overrides, as python train.py takes them
    digits-zoo eval model_source=vgg_bn
    digits-zoo predict three.png

`train` and `eval` run Hydra on the shipped configs (`digits_zoo.cli`); the others parse their options
(`digits_zoo.arguments`), then import the module that runs them (`digits_zoo.predict`, ...). Nothing
here imports torch, so that a mistake in the command line is answered first; a signal that comes
while the rest is imported ends in one line.
"""

from __future__ import annotations

import signal
import sys
from functools import partial
from importlib import import_module

from digits_zoo import arguments

# name: (what it does, the module whose run(args) runs it, or None for a Hydra entry point)
COMMANDS = {
    "train": ("train a model, test its best epoch and keep everything in a run folder", None),
    "eval": ("test a trained model on the test set of its dataset", None),
    "predict": ("read the digit in each of your pictures", "digits_zoo.predict"),
    "export": ("export a trained model to ONNX, checked against torch", "digits_zoo.export"),
    "demo": ("a web page to draw digits on and see what the models read", "digits_zoo.demo"),
    "leaderboard": ("the table of results of run and sweep folders", "digits_zoo.leaderboard"),
    "weights": ("the weights shipped with the package: list, info NAME, export RUN", "digits_zoo.weights"),
}
USAGE = "usage: digits-zoo COMMAND [ARGS ...]   (digits-zoo COMMAND --help: its options)"


def _help() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:{width}}  {what}" for name, (what, _) in COMMANDS.items())
    return f"digits-zoo: train, test and use MNIST-like digit classifiers.\n\n{USAGE}\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(_help(), end="")
        return 0 if args else 2
    if args[0] == "--version":
        from digits_zoo import __version__

        print(f"digits-zoo {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        print(f"error: unknown command {name!r}; {hint}commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if name in arguments.PARSERS:  # --help and a mistyped option end here, before torch is imported
        args = arguments.PARSERS[name]().parse_args(rest)
    signal.signal(signal.SIGTERM, _stopped_while_starting)  # (the command's own handling starts with it)
    try:
        if name not in arguments.PARSERS:
            from digits_zoo.cli import hydra_command

            command = partial(hydra_command, name, rest)
        else:
            command = partial(import_module(COMMANDS[name][1]).run, args)
    except KeyboardInterrupt:  # Ctrl+C while Python imports torch
        print("stopped: SIGINT (Ctrl+C) before the run started", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return command() or 0


def _stopped_while_starting(signum, frame) -> None:
    print("stopped: SIGTERM before the run started", file=sys.stderr)
    sys.exit(128 + signum)
