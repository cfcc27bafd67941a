"""Train a digits_zoo model: `python train.py model=flatten_mlp` (any Hydra override works)."""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from lightning.pytorch.utilities import rank_zero_only

    from digits_zoo.errors import DigitsZooError
    from digits_zoo.training import train

    try:
        train(cfg)
    except DigitsZooError as error:  # a problem the user can fix: one line, no stack trace
        if rank_zero_only.rank == 0:  # under DDP every process meets it; the first one says so
            print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
