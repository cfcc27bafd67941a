"""Train a digits_zoo model: `python train.py model=flatten_mlp` (any Hydra override works)."""

import signal
import sys


def _stopped_while_starting(signum, frame):  # SIGTERM in the first second or two, while Python imports torch
    print("stopped: SIGTERM before the run started", file=sys.stderr)
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _stopped_while_starting)  # (only the standard library is imported yet)
try:
    import hydra
    from omegaconf import DictConfig

    from digits_zoo.cli import freeze_imports, one_line_errors, register_resolvers
except KeyboardInterrupt:  # Ctrl+C in the first second or two, while Python imports torch
    print("stopped: SIGINT (Ctrl+C) before the run started", file=sys.stderr)
    sys.exit(130)
signal.signal(signal.SIGTERM, signal.SIG_DFL)  # digits_zoo.cli's one_line_errors takes it from here


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the best epoch's val/acc (None without a validation split): what a Hydra sweeper
    such as hparams_search=mlp_optuna maximises."""
    with one_line_errors():
        from digits_zoo.training.run import train

        freeze_imports()
        metrics = train(cfg).get("metrics")  # (lr_find=true trains nothing)
        return metrics and metrics["best_val/acc"]


if __name__ == "__main__":
    register_resolvers()  # configs/train.yaml's ${if_resume:...}
    with one_line_errors():  # mistakes in the command line's config overrides
        main()
