"""Train a digits_zoo model: `python train.py model=flatten_mlp` (any Hydra override works)."""

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

# configs/train.yaml: `${if_resume:A,B}` is A for `python train.py resume=RUN`, else B
OmegaConf.register_new_resolver("if_resume", lambda then, otherwise, _root_: then if _root_.get("resume") else otherwise)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from digits_zoo.errors import DigitsZooError
    from digits_zoo.training import train

    try:
        train(cfg)
    except DigitsZooError as error:  # a problem the user can fix: one line, no stack trace
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
