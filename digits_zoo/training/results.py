"""What a run reports, for train.py and eval.py alike: its loggers, its `results.json`, its summary,
and the Markdown tables that show results (one row per run), which the leaderboard shows too."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.utils import instantiate

from digits_zoo.writes import write_text_atomically

if TYPE_CHECKING:  # (the leaderboard reads these tables without importing Lightning)
    import lightning as L
    from omegaconf import DictConfig

log = logging.getLogger(__name__)


def _show(key: str, form: str = "{}", missing: str = ""):
    """A column: the entry `key` of a results.json in `form`, or `missing` where it has none."""
    return lambda r: missing if r.get(key) in (None, "") else form.format(r[key])


OPTIONAL = {"MNIST-C mean accuracy"}  # shown where a row has it
COLUMNS = {  # header: how to show a results.json entry
    "model": lambda r: r.get("group") or r["model"],
    "parameters": _show("params", "{:,}"),
    "epochs": lambda r: _show("epochs")(r) + (", pruned" if r.get("pruned_epoch") else ""),  # (a search's trial)
    "best val accuracy": _show("best_val/acc", "{:.2%}"),
    "test accuracy": _show("test/acc", "{:.2%}", "not run"),
    "test loss": _show("test/loss", "{:.4f}"),
    "MNIST-C mean accuracy": _show("mnist_c/mean", "{:.2%}"),  # (robustness=true)
    "training seconds": _show("train_seconds", "{:.1f}"),
    "best epoch": _show("best_epoch"),
    "seed": _show("seed"),
}


def _tested_on(r: dict) -> str:
    """The test set's dataset, and the model's where it is another."""
    dataset, trained_on = r.get("dataset") or "", r.get("trained_on")
    return dataset if trained_on in (None, "", dataset) else f"{dataset} (trained on {trained_on})"


EVALUATION_COLUMNS = {  # a results.json of eval.py
    "model": _show("model"),
    "source": _show("source"),
    "dataset": _tested_on,
    "test images": _show("test_images", "{:,}"),
    "test accuracy": _show("test/acc", "{:.2%}"),
    "test loss": _show("test/loss", "{:.4f}"),
}


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def markdown(rows: list[dict], columns: dict = COLUMNS) -> str:
    """One line per run, in `columns` (header: how to show a results.json entry); an OPTIONAL column only
    where some run has it."""
    columns = {h: show for h, show in columns.items() if h not in OPTIONAL or any(show(r) for r in rows)}
    return markdown_table(list(columns), [[show(r) for show in columns.values()] for r in rows])


def evaluation_markdown(rows: list[dict]) -> str:
    """One line per evaluation (a results.json of eval.py)."""
    return markdown_table(list(EVALUATION_COLUMNS), [[show(r) for show in EVALUATION_COLUMNS.values()] for r in rows])


def loggers(cfg: DictConfig) -> list:
    """The run's loggers, from its `logger` group (`~logger`: none)."""
    return [instantiate(conf) for conf in (cfg.get("logger") or {}).values() if conf is not None]


def write_results(out_dir: str | Path, results: dict) -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # (eval.py's folder holds nothing else until now)
    write_text_atomically(Path(out_dir) / "results.json", json.dumps(results, indent=2) + "\n")


def report(trainer: L.Trainer, out_dir: str | Path, results: dict, title: str, table: str) -> None:
    """By the process of rank zero: `results` as the run folder's results.json, and the summary
    `table` in the log under `title`."""
    if trainer.is_global_zero:
        write_results(out_dir, results)
        log.info("%s\n\n%s\nrun folder: %s", title, table, out_dir)
