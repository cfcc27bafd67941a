"""Evaluate a trained digits_zoo model on a test set: `python eval.py model_source=SOURCE [data=...]`,
exactly as `digits-zoo eval model_source=SOURCE` does."""

import sys

from digits_zoo.command import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
