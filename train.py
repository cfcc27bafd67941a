"""Train a digits_zoo model: `python train.py model=flatten_mlp` (any Hydra override works)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


def if_resume(then, otherwise, _root_):
    """configs/train.yaml's `${if_resume:A,B}`: A for `resume=RUN` where the folder RUN exists, else B
    (a mistyped RUN is then reported, not created as Hydra's run folder)."""
    resume = _root_.get("resume")
    return then if resume and Path(resume).is_dir() else otherwise


OmegaConf.register_new_resolver("if_resume", if_resume)


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
