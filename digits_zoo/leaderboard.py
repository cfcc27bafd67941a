"""One table of results from many runs: after a sweep (`python train.py -m model=a,b,c`) or by hand.

    python -m digits_zoo.leaderboard RUN_OR_SWEEP_FOLDER [...] [--out FOLDER]

Reads every `results.json` at or below the given folders, prints a Markdown table sorted by test
accuracy, and with `--out` writes it as `leaderboard.md` and `leaderboard.csv`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

COLUMNS = {  # header: how to show a results.json entry
    "model": lambda r: r["model"],
    "parameters": lambda r: f"{r['params']:,}",
    "epochs": lambda r: str(r["epochs"]),
    "test accuracy": lambda r: f"{100 * r['test/acc']:.2f}%",
    "test loss": lambda r: f"{r['test/loss']:.4f}",
    "training seconds": lambda r: f"{r['train_seconds']:.1f}",
    "best epoch": lambda r: str(r.get("best_epoch", "")),
}
FIELDS = {"model": str, "params": int, "epochs": int, "test/acc": float, "test/loss": float,  # leaderboard.csv
          "train_seconds": float, "best_epoch": int, "run": str}


def collect(folders: list[Path]) -> list[dict]:
    """The results of every run at or below `folders`, best test accuracy first."""
    paths = sorted({path for folder in folders for path in Path(folder).rglob("results.json")})
    rows = [{**json.loads(path.read_text()), "run": str(path.parent)} for path in paths]
    return sorted(rows, key=lambda r: -r["test/acc"])


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(show(r) for show in COLUMNS.values()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write(rows: list[dict], out_dir: Path) -> None:
    (out_dir / "leaderboard.md").write_text(markdown(rows))
    with open(out_dir / "leaderboard.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, list(FIELDS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read(path: Path) -> list[dict]:
    """The rows of a `leaderboard.csv` as `write` wrote them, numbers as numbers."""
    with open(path, newline="") as file:
        return [{key: FIELDS[key](value) if value else value for key, value in row.items()} for row in csv.DictReader(file)]


class LeaderboardCallback(Callback):
    """Hydra callback: at the end of a sweep, the table of its runs in the sweep folder."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect([sweep_dir])
        if rows:
            write(rows, sweep_dir)
            print(f"\nLeaderboard ({sweep_dir / 'leaderboard.md'}):\n\n{markdown(rows)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The table of results of run folders (or sweep folders).")
    parser.add_argument("folders", nargs="+", type=Path, help="run folders, or folders that hold them")
    parser.add_argument("--out", type=Path, help="also write leaderboard.md and leaderboard.csv here")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = collect(args.folders)
    if not rows:
        print(f"error: no results.json in {', '.join(map(str, args.folders))}; pass run or sweep folders", file=sys.stderr)
        return 1
    print(markdown(rows), end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
