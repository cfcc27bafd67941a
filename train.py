"""Train a digits_zoo model: `python train.py model=flatten_mlp` (any Hydra override works)."""

import hydra
from omegaconf import DictConfig

from digits_zoo.cli import one_line_errors  # (also registers the configs' ${if_resume:...} resolver)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from digits_zoo.training import train

    with one_line_errors():
        train(cfg)


if __name__ == "__main__":
    with one_line_errors():  # mistakes in the command line's config overrides
        main()
