"""One table of results from many runs: after a sweep (`python train.py -m model=a,b seed=1,2,3`) or by hand.

    digits-zoo leaderboard RUN_OR_SWEEP_FOLDER [...] [--out FOLDER]

Reads every `results.json` at or below the given folders and prints a Markdown table sorted by test
accuracy; with `--out` it writes it as `leaderboard.md`, and every run as `leaderboard.csv`.
Only like is ranked with like: runs on different datasets get a table each; the trials of a search
(`hparams_search=...`, never tested) are ranked by their best validation accuracy; runs made with
`debug=...` (a smoke test on a few batches) are listed apart, after the full runs; the evaluations
of `eval.py` (tested, not trained) are listed apart. Each run's row names its folder, relative to
the folder it was found in. At the end of a search, the leaderboard callback
tests the trial chosen by validation, once.

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
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra.experimental.callback import Callback

from digits_zoo import arguments
from digits_zoo.errors import ConfigError, one_line
from digits_zoo.training.results import COLUMNS, evaluation_markdown, markdown, markdown_table
from digits_zoo.writes import write_csv_atomically, write_text_atomically

FIELDS = {
    "model": str,
    "group": str,
    "dataset": str,
    "seed": int,
    "params": int,
    "epochs": int,  # leaderboard.csv
    "best_val/acc": float,
    "test/acc": float,
    "test/loss": float,
    "mnist_c/mean": float,  # robustness=true
    "train_seconds": float,
    "best_epoch": int,
    "run": str,  # its folder, as found
    "run_name": str,  # the same, relative to the folder the leaderboard gathered it from
    "debug": str,  # the debug=... option it was made with (a smoke test), or empty
    "pruned_epoch": int,  # a search's trial that its pruner stopped: after which epoch
}
# the table of every run: what a run's summary shows, and which run folder it is
RUN_COLUMNS = {**COLUMNS, "run": lambda r: r.get("run_name") or r.get("run") or ""}
SIGNIFICANCE = 0.05  # Welch's test: a p-value below this is a difference larger than the seed noise


def _short(override: str) -> str:
    """`optimizer.lr=0.0016738085788752138` as `optimizer.lr=0.001674`: what a person reads."""
    key, _, value = override.partition("=")
    try:
        return f"{key}={float(value):.4g}" if "." in value or "e" in value.lower() else override
    except ValueError:
        return override


def _override_lines(run: Path) -> list[str]:
    """The run's command-line overrides, exactly as `.hydra/overrides.yaml` holds them."""
    path = run / ".hydra" / "overrides.yaml"
    return [line[2:] for line in path.read_text().splitlines() if line.startswith("- ")] if path.is_file() else []


def _debug(run: Path) -> str:
    """The `debug=...` option the run was made with (configs/debug: a smoke test), or ""."""
    options = [o.partition("=")[2] for o in _override_lines(run) if o.lstrip("+").startswith("debug=")]
    return next((option for option in options if option not in ("null", "")), "")


# overrides that leave the training as it is: the seed (what a group varies), the model (its own column),
# the data's folder, robustness=true (one more measurement after the test), where and on how many threads
# it ran (a launcher), and a search's trial number
NOT_RECIPE = ("seed=", "model=", "data.data_dir=", "robustness=", "launcher=", "threads=", "search.")


def _overrides(run: Path) -> list[str]:
    """The run's command-line overrides that make its recipe, as a person reads them."""
    return sorted(_short(o) for o in _override_lines(run) if not o.lstrip("+~").startswith(NOT_RECIPE))


def _natural(path: Path) -> list:
    """`2_mlp` before `10_mlp`: sweeps number their runs."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


class MalformedResults(ValueError):
    """A results.json that cannot be shown: not JSON, or an entry a table reads of the wrong type."""


# what the tables read of a results.json of each kind: each entry's type, and whether it may be null or absent
SCHEMAS = {
    "run": {
        "model": (str, False),
        "params": (int, False),
        "epochs": (int, False),
        "train_seconds": (float, False),
        "test/acc": (float, True),
        "test/loss": (float, True),
        "best_val/acc": (float, True),
        "best_epoch": (int, True),
        "seed": (int, True),
        "dataset": (str, True),
        "pruned_epoch": (int, True),
    },
    "evaluation": {
        "model": (str, False),
        "source": (str, False),
        "test/acc": (float, False),
        "test/loss": (float, True),
        "dataset": (str, True),
        "test_images": (int, True),
    },
}
TYPE_WORDS = {str: "text", int: "a whole number", float: "a number"}


def _fits(value: object, kind: type) -> bool:
    if isinstance(value, bool):  # (a JSON true is no number)
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def _read(path: Path) -> dict:
    """The results.json `path` with its run folder as "run", checked to be what its kind's tables read."""
    try:
        data = path.read_bytes()  # (json decodes: bytes that are not text are not JSON)
    except OSError as error:
        raise MalformedResults(f"cannot be read ({error.strerror or one_line(error)})") from None
    try:
        results = json.loads(data)
    except ValueError as error:
        raise MalformedResults(f"not JSON ({one_line(error)})") from None
    if not isinstance(results, dict):
        raise MalformedResults(f"not a JSON object but {type(results).__name__}")
    row = {**results, "run": str(path.parent)}
    for key, (expected, optional) in SCHEMAS.get(kind(row), {}).items():
        value = row.get(key)
        if value is None and not optional:
            raise MalformedResults(
                f"{key} is missing" if key not in row else f"{key} is null, not {TYPE_WORDS[expected]}"
            )
        if value is not None and not _fits(value, expected):
            shown = json.dumps(value)
            raise MalformedResults(
                f"{key} is {shown if len(shown) <= 40 else shown[:37] + '...'}, not {TYPE_WORDS[expected]}"
            )
    return row


def _dataset(row: dict) -> str | None:
    """The dataset a run trained on: in its results.json, else (runs from before it was recorded) in its config."""
    config = Path(row["run"]) / "config.yaml"
    if row.get("dataset") or not config.is_file():
        return row.get("dataset")
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    try:
        dataset = OmegaConf.select(OmegaConf.load(config), "data.dataset")
    except (OSError, ValueError, YAMLError, OmegaConfBaseException):  # a damaged config.yaml: not known
        return None
    return dataset if isinstance(dataset, str) else None


def kind(row: dict) -> str:
    """What wrote a results.json: "run" (train.py), "evaluation" (eval.py: tested, not trained) or "other"."""
    if "source" in row and "test/acc" in row:
        return "evaluation"
    return "run" if {"model", "params", "test/acc"} <= set(row) else "other"


def _score(row: dict) -> float:
    """What ranks a run: its test accuracy, or a search's trial (not tested) its best validation accuracy."""
    score = row.get("test/acc") if row.get("test/acc") is not None else row.get("best_val/acc")
    return -math.inf if score in (None, "") else score


def _run_name(run: Path, folders: list[Path]) -> str:
    """`run` relative to the first of `folders` that holds it (a run folder given itself: its name)."""
    for folder in folders:
        if run == folder:
            return folder.resolve().name
        if run.is_relative_to(folder):
            return str(run.relative_to(folder))
    return str(run)


def collect(folders: list[Path]) -> list[dict]:
    """The results of every run at or below `folders`, best first (a tie in the order they ran). Each
    training run's `group` is its model and the overrides that not all the runs share, e.g. `lenet5
    optimizer.lr=0.01`: runs of one group differ only in their seed. Its `dataset` is filled in where
    its results.json predates it, and `debug` says whether it was a smoke test. Evaluations and other
    files come too: see `kind`."""
    folders = [Path(folder) for folder in folders]
    paths = sorted({path for folder in folders for path in folder.rglob("results.json")}, key=_natural)
    rows = []
    for path in paths:
        try:
            rows.append({**_read(path), "run_name": _run_name(path.parent, folders)})
        except MalformedResults as error:  # one bad file costs its own row, not the table
            print(f"warning: skipped {path}: {error}", file=sys.stderr)
    runs = [row for row in rows if kind(row) == "run"]
    overrides = [_overrides(Path(row["run"])) for row in runs]
    shared = set.intersection(*map(set, overrides)) if overrides else set()
    for row, own in zip(runs, overrides):
        row["group"] = " ".join([row["model"], *(o for o in own if o not in shared)])
        row["dataset"] = _dataset(row)
        row["debug"] = _debug(Path(row["run"]))
    return sorted(rows, key=lambda r: -_score(r))


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
    validated = any(r.get("best_val/acc") not in (None, "") for r in rows)  # (older records lack it)
    header = [
        "model",
        "runs",
        "test accuracy (mean ± std)",
        "95% CI",
        *["best val accuracy (mean)"] * validated,
        "training seconds (mean)",
        "parameters",
        "epochs",
        "vs the next row",
    ]
    cells = []
    for group, below in zip(ranked, [*ranked[1:], None]):
        std, ci = group.std, group.ci95
        val = [r["best_val/acc"] for r in group.rows if r.get("best_val/acc") not in (None, "")]
        cells.append(
            [
                group.name,
                str(len(group.rows)),
                _percent(group.mean) + (f" ± {100 * std:.2f}" if std is not None else ""),
                f"{_percent(ci[0])} to {_percent(ci[1])}" if ci else "",
                *[_percent(statistics.fmean(val)) if val else ""] * validated,
                f"{statistics.fmean(r['train_seconds'] for r in group.rows):.1f}",
                f"{group.rows[0]['params']:,}",
                "/".join(sorted({str(r["epochs"]) for r in group.rows})),
                _versus(group, below),
            ]
        )
    return markdown_table(header, cells) + (
        '\nRuns that differ only in their seed are one row. "vs the next row": Welch\'s two-sided t-test of '
        f"the test accuracies of this row and the next, a difference larger than seed noise where p < {SIGNIFICANCE} "
        "(each pair tested on its own, without a correction for multiple comparisons).\n"
    )


def sections(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """The training runs as tables that rank like with like: one per dataset, and apart the trials of
    a search, which were not tested (ranked by validation), and after them the runs made with
    `debug=...` (a smoke test: not comparable with full runs). Each with its title, in the rows' order."""
    named: dict[tuple[bool, str], list[dict]] = {}
    for row in rows:
        if kind(row) == "run":
            searched = row.get("test/acc") in (None, "")
            title = f"{row.get('dataset') or 'dataset not recorded'}" + (
                ", trials of a search (not tested: ranked by best validation accuracy)" if searched else ""
            )
            if row.get("debug"):
                title += (
                    f", debug runs (debug={row['debug']}: a smoke test on a few batches, not ranked with full runs)"
                )
            named.setdefault((bool(row.get("debug")), title), []).append(row)
    return [(title, members) for (_, title), members in sorted(named.items(), key=lambda item: item[0][0])]


def runs_markdown(rows: list[dict]) -> str:
    """One line per run, with its folder."""
    return markdown(rows, RUN_COLUMNS)


def _section(rows: list[dict]) -> str:
    """One line per run, or, where some tested runs differ only in their seed, one line per group
    followed by every run."""
    if any(r.get("test/acc") in (None, "") for r in rows) or all(len(group.rows) == 1 for group in groups(rows)):
        return runs_markdown(rows)
    return f"{summary_markdown(rows)}\nEvery run:\n\n{runs_markdown(rows)}"


def report(rows: list[dict]) -> str:
    """The leaderboard: a table per dataset (titled where there are several, or where its runs were
    debug runs), the trials of a search and the debug runs apart, then the evaluations of eval.py,
    and a line on any results.json that is neither."""
    parts = sections(rows)
    text = "\n".join(
        (f"{title}:\n\n" if len(parts) > 1 or members[0].get("debug") else "") + _section(members)
        for title, members in parts
    )
    evaluations = sorted((r for r in rows if kind(r) == "evaluation"), key=lambda r: str(r.get("dataset")))
    if evaluations:
        text += (text and "\n") + (
            "Evaluations by eval.py (tested, not trained: not ranked with training runs):"
            f"\n\n{evaluation_markdown(evaluations)}"
        )
    other = [r["run"] for r in rows if kind(r) == "other"]
    if other:
        text += (text and "\n") + (
            f"Skipped {len(other)} results.json written by neither train.py nor eval.py: {', '.join(other)}\n"
        )
    return text


class NoSuchFolder(ConfigError):
    exit_code = 2  # (the command's code for a folder that is not there)


def gather(folders: list[str | Path]) -> list[dict]:
    """The runs at or below `folders` (run or sweep folders); a ConfigError where a folder is not there
    (NoSuchFolder) or none holds a results.json."""
    folders = [Path(folder) for folder in folders]
    missing = [str(folder) for folder in folders if not folder.is_dir()]
    if missing:
        raise NoSuchFolder(f"no such folder: {', '.join(missing)}")
    rows = collect(folders)
    if not rows:
        raise ConfigError(f"no results.json in {', '.join(map(str, folders))}; pass run or sweep folders")
    return rows


def table(folders: list[str | Path]) -> str:
    """The leaderboard of the runs at or below `folders` (run or sweep folders), as Markdown: what
    `digits-zoo leaderboard FOLDERS` prints. A folder that is not there, or no results.json in any,
    raises ConfigError."""
    return report(gather(folders))


def write(rows: list[dict], out_dir: Path, chosen: str = "") -> None:
    """leaderboard.md (with `chosen`, a search's chosen trial, after it) and leaderboard.csv, each written
    whole at once: the workers of one study that end together each write them in their sweep folder."""
    write_text_atomically(out_dir / "leaderboard.md", report(rows) + chosen)
    write_csv_atomically(
        out_dir / "leaderboard.csv",
        [list(FIELDS), *([row.get(key, "") for key in FIELDS] for row in rows if kind(row) == "run")],
    )


def read(path: Path) -> list[dict]:
    """The rows of a `leaderboard.csv` as `write` wrote them, numbers as numbers."""
    with open(path, newline="") as file:
        return [
            {key: FIELDS[key](value) if value else value for key, value in row.items()} for row in csv.DictReader(file)
        ]


def chosen_test(trial: dict) -> dict:
    """The test metrics of a search's chosen trial: its best checkpoint on its own data and trainer
    settings. Its test pictures go to its run folder, as every tested run's do."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from digits_zoo.models.pretrained import resolve_checkpoint
    from digits_zoo.training.figures import RunFigures
    from digits_zoo.training.module import DigitClassifier
    from digits_zoo.training.resume import saved_config
    from digits_zoo.training.run import run_settings

    config = Path(trial["run"]) / "config.yaml"
    # the trial's own, resolved, as train() wrote it (a file: it builds only what a saved config may)
    cfg = saved_config(OmegaConf.load(config), str(config))
    module = DigitClassifier.load_from_checkpoint(
        resolve_checkpoint(trial["run"]), map_location="cpu", weights_only=True
    )
    with run_settings():  # (the Trainer logs its device lines as it is made)
        trainer = instantiate(
            cfg.trainer,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            callbacks=[RunFigures()],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        (metrics,) = trainer.test(module, datamodule=instantiate(cfg.data), verbose=False)
    return metrics


def chosen_trial(sweep_dir: Path, rows: list[dict]) -> str:
    """After a search: test its best trial by validation (the first of equals, as Optuna's best trial;
    of the trials that ran to their end, not those pruned after a few epochs), the one time the search
    reads the test set. Writes `chosen_trial.json`, adds the result to `leaderboard.md` and returns it."""
    trials = [r for r in rows if kind(r) == "run" and r.get("test/acc") is None and r.get("best_val/acc") is not None]
    trials = [r for r in trials if not r.get("pruned_epoch")]  # (stopped after a few epochs: not comparable)
    if not trials:
        return ""
    chosen = max(trials, key=lambda r: r["best_val/acc"])  # rows are in the order the trials ran
    metrics = chosen_test(chosen)
    record = {
        "run": chosen["run"],
        "overrides": _override_lines(Path(chosen["run"])),
        "best_val/acc": chosen["best_val/acc"],
        "test/acc": metrics["test/acc"],
        "test/loss": metrics["test/loss"],
    }
    write_text_atomically(sweep_dir / "chosen_trial.json", json.dumps(record, indent=2) + "\n")
    text = (
        f"\nThe chosen trial, best by validation ({_percent(chosen['best_val/acc'])}): {chosen['group']}, "
        f"{chosen['run']}\nTest accuracy of the chosen trial, read once after the search: "
        f"{_percent(metrics['test/acc'])} (test loss {metrics['test/loss']:.4f})\n"
    )
    write(rows, sweep_dir, text)
    return text


class LeaderboardCallback(Callback):
    """Hydra callback: at the end of a sweep, the table of its runs in the sweep folder; after a
    search, the test of the trial it chose."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect([sweep_dir])
        if not rows:
            return
        write(rows, sweep_dir)
        chosen = ""
        try:  # before the table is printed: Lightning says a word as that test starts
            chosen = chosen_trial(sweep_dir, rows)
        finally:  # the table also where that test failed (Hydra then says why, in one line)
            print(f"\nLeaderboard ({sweep_dir / 'leaderboard.md'}):\n\n{report(rows)}{chosen}", end="")


def main(argv: list[str] | None = None) -> int:
    return run(arguments.leaderboard().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        rows = gather(args.folders)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    print(report(rows), end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
