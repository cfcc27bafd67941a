"""What a run reports: its `results.json` and the Markdown tables that show results (one row per
run), shared by train.py's summary, eval.py's and the leaderboard's."""

from __future__ import annotations

import json
from pathlib import Path

from digits_zoo.writes import write_text_atomically


def _show(key: str, form: str = "{}", missing: str = ""):
    """A column: the entry `key` of a results.json in `form`, or `missing` where it has none."""
    return lambda r: missing if r.get(key) in (None, "") else form.format(r[key])


COLUMNS = {  # header: how to show a results.json entry
    "model": lambda r: r.get("group") or r["model"],
    "parameters": _show("params", "{:,}"),
    "epochs": _show("epochs"),
    "best val accuracy": _show("best_val/acc", "{:.2%}"),
    "test accuracy": _show("test/acc", "{:.2%}", "not run"),
    "test loss": _show("test/loss", "{:.4f}"),
    "training seconds": _show("train_seconds", "{:.1f}"),
    "best epoch": _show("best_epoch"),
    "seed": _show("seed"),
}
EVALUATION_COLUMNS = {  # a results.json of eval.py
    "model": _show("model"), "source": _show("source"), "dataset": _show("dataset"),
    "test images": _show("test_images", "{:,}"), "test accuracy": _show("test/acc", "{:.2%}"),
    "test loss": _show("test/loss", "{:.4f}"),
}


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def markdown(rows: list[dict]) -> str:
    """One line per run."""
    return markdown_table(list(COLUMNS), [[show(r) for show in COLUMNS.values()] for r in rows])


def evaluation_markdown(rows: list[dict]) -> str:
    """One line per evaluation (a results.json of eval.py)."""
    return markdown_table(list(EVALUATION_COLUMNS), [[show(r) for show in EVALUATION_COLUMNS.values()] for r in rows])


def write_results(out_dir: str | Path, results: dict) -> None:
    write_text_atomically(Path(out_dir) / "results.json", json.dumps(results, indent=2) + "\n")
