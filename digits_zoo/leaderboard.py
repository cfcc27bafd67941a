"""One table of results from many runs: after a sweep (`python train.py -m model=a,b seed=1,2,3`) or by hand.

    python -m digits_zoo.leaderboard RUN_OR_SWEEP_FOLDER [...] [--out FOLDER]

Reads every `results.json` at or below the given folders and prints a Markdown table sorted by test
accuracy; with `--out` it writes it as `leaderboard.md`, and every run as `leaderboard.csv`.

Runs that differ only in their seed form a group (the same model and the same other overrides).
Where a group has several runs, the table shows each group once: the mean and standard deviation of
its test accuracy, the 95% confidence interval of that mean (Student's t), and whether it differs
from the next group down by more than the seed noise (Welch's t-test, two-sided, p < 0.05); the
table of every run follows.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra.experimental.callback import Callback

COLUMNS = {  # header: how to show a results.json entry
    "model": lambda r: r.get("group") or r["model"],
    "parameters": lambda r: f"{r['params']:,}",
    "epochs": lambda r: str(r["epochs"]),
    "test accuracy": lambda r: f"{100 * r['test/acc']:.2f}%",
    "test loss": lambda r: f"{r['test/loss']:.4f}",
    "training seconds": lambda r: f"{r['train_seconds']:.1f}",
    "best epoch": lambda r: str(r.get("best_epoch", "")),
    "seed": lambda r: str(r.get("seed", "")),
}
FIELDS = {"model": str, "group": str, "seed": int, "params": int, "epochs": int, "test/acc": float,  # leaderboard.csv
          "test/loss": float, "train_seconds": float, "best_epoch": int, "run": str}
SIGNIFICANCE = 0.05  # Welch's test: a p-value below this is a difference larger than the seed noise


def _short(override: str) -> str:
    """`optimizer.lr=0.0016738085788752138` as `optimizer.lr=0.001674`: what a person reads."""
    key, _, value = override.partition("=")
    try:
        return f"{key}={float(value):.4g}" if "." in value or "e" in value.lower() else override
    except ValueError:
        return override


def _overrides(run: Path) -> list[str]:
    """The run's command-line overrides (`.hydra/overrides.yaml`) but its seed, model and data folder."""
    path = run / ".hydra" / "overrides.yaml"
    lines = path.read_text().splitlines() if path.is_file() else []
    return sorted(_short(line[2:]) for line in lines if line.startswith("- ")
                  and not line[2:].lstrip("+~").startswith(("seed=", "model=", "data.data_dir=")))


def collect(folders: list[Path]) -> list[dict]:
    """The results of every run at or below `folders`, best test accuracy first. Each run's `group`
    is its model and the overrides that not all the runs share, e.g. `lenet5 optimizer.lr=0.01`:
    runs of one group differ only in their seed."""
    paths = sorted({path for folder in folders for path in Path(folder).rglob("results.json")})
    rows = [{**json.loads(path.read_text()), "run": str(path.parent)} for path in paths]
    overrides = [_overrides(path.parent) for path in paths]
    shared = set.intersection(*map(set, overrides)) if overrides else set()
    for row, own in zip(rows, overrides):
        row["group"] = " ".join([row["model"], *(o for o in own if o not in shared)])
    return sorted(rows, key=lambda r: -r["test/acc"])


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def markdown(rows: list[dict]) -> str:
    """One line per run."""
    return markdown_table(list(COLUMNS), [[show(r) for show in COLUMNS.values()] for r in rows])


@dataclass
class Group:
    """The runs of one group: their test accuracies and what they share."""

    name: str
    rows: list[dict]

    @property
    def accuracies(self) -> list[float]:
        return [r["test/acc"] for r in self.rows]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float | None:  # the sample standard deviation, over the seeds
        return statistics.stdev(self.accuracies) if len(self.rows) > 1 else None

    @property
    def ci95(self) -> tuple[float, float] | None:
        """The 95% confidence interval of the mean accuracy (Student's t, n - 1 degrees of freedom)."""
        from scipy import stats

        if self.std is None:
            return None
        half = stats.t.ppf(0.975, len(self.rows) - 1) * self.std / math.sqrt(len(self.rows))
        return self.mean - half, self.mean + half


def groups(rows: list[dict]) -> list[Group]:
    """The runs grouped by `group` (else by model), best mean test accuracy first."""
    named: dict[str, list[dict]] = {}
    for row in rows:
        named.setdefault(row.get("group") or row["model"], []).append(row)
    return sorted((Group(name, members) for name, members in named.items()), key=lambda g: -g.mean)


def welch_p(a: Group, b: Group) -> float | None:
    """Welch's two-sided t-test of the two groups' test accuracies (None: fewer than 2 runs, or no spread)."""
    from scipy import stats

    if len(a.rows) < 2 or len(b.rows) < 2:
        return None
    p = stats.ttest_ind(a.accuracies, b.accuracies, equal_var=False).pvalue
    return None if math.isnan(p) else float(p)


def _versus(a: Group, b: Group | None) -> str:
    if b is None:
        return ""
    p = welch_p(a, b)
    if p is None:
        return "not tested (fewer than 2 runs, or no spread)"
    return f"{'larger than seed noise' if p < SIGNIFICANCE else 'within seed noise'} (p = {p:.2g})"


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def summary_markdown(rows: list[dict]) -> str:
    """One line per group: n, mean ± standard deviation, 95% CI, mean seconds; then the test used."""
    ranked = groups(rows)
    header = ["model", "runs", "test accuracy (mean ± std)", "95% CI", "training seconds (mean)", "parameters",
              "epochs", "vs the next row"]
    cells = []
    for group, below in zip(ranked, [*ranked[1:], None]):
        std, ci = group.std, group.ci95
        cells.append([group.name, str(len(group.rows)),
                      _percent(group.mean) + (f" ± {100 * std:.2f}" if std is not None else ""),
                      f"{_percent(ci[0])} to {_percent(ci[1])}" if ci else "",
                      f"{statistics.fmean(r['train_seconds'] for r in group.rows):.1f}",
                      f"{group.rows[0]['params']:,}", "/".join(sorted({str(r["epochs"]) for r in group.rows})),
                      _versus(group, below)])
    return markdown_table(header, cells) + (
        "\nRuns that differ only in their seed are one row. \"vs the next row\": Welch's two-sided t-test of "
        f"the test accuracies of this row and the next, a difference larger than seed noise where p < {SIGNIFICANCE} "
        "(each pair tested on its own, without a correction for multiple comparisons).\n")


def report(rows: list[dict]) -> str:
    """The leaderboard: one line per run, or, where some runs differ only in their seed, one line per
    group followed by every run."""
    if all(len(group.rows) == 1 for group in groups(rows)):
        return markdown(rows)
    return f"{summary_markdown(rows)}\nEvery run:\n\n{markdown(rows)}"


def write(rows: list[dict], out_dir: Path) -> None:
    (out_dir / "leaderboard.md").write_text(report(rows))
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
            print(f"\nLeaderboard ({sweep_dir / 'leaderboard.md'}):\n\n{report(rows)}")


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
    print(report(rows), end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
