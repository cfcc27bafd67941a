"""Train a digits_zoo model: `python train.py model=flatten_mlp` (any Hydra override works), exactly as
`digits-zoo train model=flatten_mlp` does."""

import sys

from digits_zoo.command import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
