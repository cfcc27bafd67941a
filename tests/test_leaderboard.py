"""The leaderboard's groups of seeds: the statistics, the test between rows, and what it prints."""

import json
import math

import pytest
from scipy import special

from digits_zoo import leaderboard


def write_run(folder, model, acc, seed, *overrides, seconds=10.0):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "model": model, "params": 100, "epochs": 5, "best_epoch": 5, "train_seconds": seconds, "test/acc": acc,
        "test/loss": 0.1, "seed": seed}))
    (folder / ".hydra").mkdir()
    lines = [f"model={model}", f"seed={seed}", "data.data_dir=/somewhere", *overrides]
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {line}\n" for line in lines))


@pytest.fixture
def sweep(tmp_path):
    """Three seeds of `a` and of `b` (2 points lower), two of `a` at another lr, one of `c`."""
    for seed, acc in zip((1, 2, 3), (0.97, 0.975, 0.98)):
        write_run(tmp_path / f"a{seed}", "a", acc, seed, "trainer.max_epochs=5")
        write_run(tmp_path / f"b{seed}", "b", acc - 0.02, seed, "trainer.max_epochs=5", seconds=20.0)
    for seed, acc in zip((1, 2), (0.90, 0.91)):
        write_run(tmp_path / f"a_lr{seed}", "a", acc, seed, "trainer.max_epochs=5", "optimizer.lr=0.0016738085788752138")
    write_run(tmp_path / "c1", "c", 0.5, 1, "trainer.max_epochs=5")
    return tmp_path


def test_runs_that_differ_only_in_their_seed_are_one_group(sweep):
    rows = leaderboard.collect([sweep])
    groups = leaderboard.groups(rows)
    # the shared override is left out of the names; the lr is shown with 4 significant digits
    assert [(g.name, len(g.rows)) for g in groups] == [("a", 3), ("b", 3), ("a optimizer.lr=0.001674", 2), ("c", 1)]


def test_mean_standard_deviation_and_confidence_interval(sweep):
    a = leaderboard.groups(leaderboard.collect([sweep]))[0]
    assert a.mean == pytest.approx(0.975) and a.std == pytest.approx(0.005)
    half = 4.302652729911275 * 0.005 / math.sqrt(3)  # Student's t(0.975) with 2 degrees of freedom
    assert a.ci95 == pytest.approx((0.975 - half, 0.975 + half))
    assert leaderboard.groups(leaderboard.collect([sweep]))[-1].std is None  # one run: no spread, no interval


def test_welch_p_value_against_the_formula(sweep):
    a, b, a_lr, c = leaderboard.groups(leaderboard.collect([sweep]))
    # equal variances and sizes: t = 0.02 / sqrt(2 * 0.005**2 / 3) on 4 degrees of freedom; the
    # two-sided p of Student's t is the regularised incomplete beta I(df / (df + t^2); df / 2, 1 / 2)
    t, df = 0.02 / math.sqrt(2 * 0.005**2 / 3), 4
    assert leaderboard.welch_p(a, b) == pytest.approx(special.betainc(df / 2, 0.5, df / (df + t * t)), rel=1e-9)
    assert leaderboard.welch_p(a, b) < leaderboard.SIGNIFICANCE
    assert leaderboard.welch_p(b, c) is None  # c has one run


def test_the_grouped_table_says_which_differences_exceed_the_seed_noise(sweep):
    text = leaderboard.report(leaderboard.collect([sweep]))
    lines = text.splitlines()
    assert lines[0].startswith("| model | runs | test accuracy (mean ± std) | 95% CI |")
    assert lines[2:6] == [
        "| a | 3 | 97.50% ± 0.50 | 96.26% to 98.74% | 10.0 | 100 | 5 | larger than seed noise (p = 0.008) |",
        "| b | 3 | 95.50% ± 0.50 | 94.26% to 96.74% | 20.0 | 100 | 5 | larger than seed noise (p = 0.022) |",
        "| a optimizer.lr=0.001674 | 2 | 90.50% ± 0.71 | 84.15% to 96.85% | 10.0 | 100 | 5 | "
        "not tested (fewer than 2 runs, or no spread) |",
        "| c | 1 | 50.00% |  | 10.0 | 100 | 5 |  |",
    ]
    assert "Welch's two-sided t-test" in text
    assert "Every run:" in text and "| a | 100 | 5 | 98.00% | 0.1000 | 10.0 | 5 | 3 |" in lines  # its seed last


def test_one_run_per_group_is_the_plain_table(tmp_path):
    write_run(tmp_path / "x", "x", 0.9, 1)
    write_run(tmp_path / "y", "y", 0.8, 1)
    rows = leaderboard.collect([tmp_path])
    assert leaderboard.report(rows) == leaderboard.markdown(rows)
    assert [r["group"] for r in rows] == ["x", "y"]


def test_the_csv_keeps_groups_and_seeds(sweep, tmp_path):
    rows = leaderboard.collect([sweep])
    out = tmp_path / "board"
    out.mkdir()
    leaderboard.write(rows, out)
    back = leaderboard.read(out / "leaderboard.csv")
    assert [(r["group"], r["seed"]) for r in back] == [(r["group"], r["seed"]) for r in rows]
    assert leaderboard.summary_markdown(back) == leaderboard.summary_markdown(rows)
    assert (out / "leaderboard.md").read_text() == leaderboard.report(rows)
