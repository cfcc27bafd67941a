"""Evaluate a trained digits_zoo model on a test set: `python eval.py model_source=SOURCE [data=...]`."""

import signal
import sys


def _stopped_while_starting(signum, frame):  # SIGTERM in the first second or two, while Python imports torch
    print("stopped: SIGTERM before the evaluation started", file=sys.stderr)
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _stopped_while_starting)  # (only the standard library is imported yet)
try:
    import hydra
    from omegaconf import DictConfig

    from digits_zoo.cli import freeze_imports, one_line_errors
except KeyboardInterrupt:  # Ctrl+C while Python imports torch
    print("stopped: SIGINT (Ctrl+C) before the evaluation started", file=sys.stderr)
    sys.exit(130)
signal.signal(signal.SIGTERM, signal.SIG_DFL)  # digits_zoo.cli's one_line_errors takes it from here


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        from digits_zoo.evaluate import evaluate

        freeze_imports()
        evaluate(cfg)


if __name__ == "__main__":
    with one_line_errors():  # mistakes in the command line's config overrides
        main()
