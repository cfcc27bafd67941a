"""The leaderboard's groups of seeds: the statistics, the test between rows, and what it prints."""

import json
import math

import pytest
from scipy import special

from digits_zoo import leaderboard
from digits_zoo.errors import ConfigError


def write_run(folder, model, acc, seed, *overrides, seconds=10.0, **fields):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(
        json.dumps(
            {
                "model": model,
                "params": 100,
                "epochs": 5,
                "best_epoch": 5,
                "train_seconds": seconds,
                "test/acc": acc,
                "test/loss": 0.1,
                "seed": seed,
                **fields,
            }
        )
    )
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
        write_run(
            tmp_path / f"a_lr{seed}", "a", acc, seed, "trainer.max_epochs=5", "optimizer.lr=0.0016738085788752138"
        )
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
    a, b, _a_lr, c = leaderboard.groups(leaderboard.collect([sweep]))
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
    assert "Every run:" in text and "| a | 100 | 5 |  | 98.00% | 0.1000 | 10.0 | 5 | 3 | a3 |" in lines  # seed, folder


def test_one_run_per_group_is_the_plain_table(tmp_path):
    write_run(tmp_path / "x", "x", 0.9, 1)
    write_run(tmp_path / "y", "y", 0.8, 1)
    rows = leaderboard.collect([tmp_path])
    assert leaderboard.report(rows) == leaderboard.runs_markdown(rows)
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


def write_evaluation(folder, model, acc):
    """A run folder of `python eval.py model_source=...`: tested, not trained."""
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(
        json.dumps(
            {
                "model": model,
                "source": model,
                "dataset": "MNIST",
                "test_images": 10000,
                "test/acc": acc,
                "test/loss": 0.01,
                "normalization": None,
            }
        )
    )


def test_evaluations_are_listed_apart_from_the_training_runs(tmp_path, capsys):
    write_evaluation(tmp_path / "outputs" / "eval" / "2026-01-01", "vgg_bn", 0.9969)
    assert leaderboard.main([str(tmp_path / "outputs")]) == 0  # only evaluations
    write_run(tmp_path / "outputs" / "x", "x", 0.9, 1)
    (tmp_path / "outputs" / "junk").mkdir()
    (tmp_path / "outputs" / "junk" / "results.json").write_text('{"accuracy": 0.5}')  # another tool's
    (tmp_path / "outputs" / "broken").mkdir()
    (tmp_path / "outputs" / "broken" / "results.json").write_text("{not json")
    capsys.readouterr()
    assert leaderboard.main([str(tmp_path / "outputs"), "--out", str(tmp_path / "board")]) == 0
    text, warning = capsys.readouterr()
    assert warning.startswith(f"warning: skipped {tmp_path / 'outputs' / 'broken' / 'results.json'}: not JSON (")
    assert text.startswith("| model | parameters |") and "| x | 100 | 5 |  | 90.00% |" in text
    assert "Evaluations by eval.py (tested, not trained: not ranked with training runs):" in text
    assert "| vgg_bn | vgg_bn | MNIST | 10,000 | 99.69% | 0.0100 |" in text
    assert f"Skipped 1 results.json written by neither train.py nor eval.py: {tmp_path / 'outputs' / 'junk'}" in text
    assert [r["model"] for r in leaderboard.read(tmp_path / "board" / "leaderboard.csv")] == ["x"]  # training runs


def test_an_evaluation_on_another_dataset_says_what_the_model_was_trained_on():
    from digits_zoo.training.results import evaluation_markdown

    row = {
        "model": "lenet5",
        "source": "run",
        "dataset": "MNIST",
        "trained_on": "FashionMNIST",
        "test_images": 300,
        "test/acc": 0.1,
        "test/loss": 2.3,
    }
    assert (
        evaluation_markdown([row]).splitlines()[-1]
        == "| lenet5 | run | MNIST (trained on FashionMNIST) | 300 | 10.00% | 2.3000 |"
    )
    assert "| MNIST |" in evaluation_markdown([{**row, "trained_on": "MNIST"}])  # its own dataset: said once


def test_runs_on_different_datasets_are_never_ranked_together(tmp_path):
    write_run(tmp_path / "m1", "a", 0.98, 1, dataset="MNIST")
    write_run(tmp_path / "f1", "a", 0.90, 1, "data=fashion_mnist", dataset="FashionMNIST")
    write_run(tmp_path / "f2", "b", 0.91, 1, "data=fashion_mnist")  # from before results.json recorded it
    (tmp_path / "f2" / "config.yaml").write_text("data:\n  dataset: FashionMNIST\n")
    rows = leaderboard.collect([tmp_path])
    assert [r["dataset"] for r in rows] == ["MNIST", "FashionMNIST", "FashionMNIST"]
    text = leaderboard.report(rows)
    mnist, fashion = text.index("MNIST:\n"), text.index("FashionMNIST:\n")
    assert mnist < text.index("| a |") < fashion < text.index("| b data=fashion_mnist |") < text.index("| a data=")
    assert [r["dataset"] for r in leaderboard.read(_written(rows, tmp_path))] == [
        "MNIST",
        "FashionMNIST",
        "FashionMNIST",
    ]


def _written(rows, tmp_path):
    out = tmp_path / "board"
    out.mkdir()
    leaderboard.write(rows, out)
    return out / "leaderboard.csv"


def test_search_trials_are_ranked_by_validation_and_say_the_test_was_not_run(tmp_path):
    for n, (val, lr) in enumerate([(0.95, "0.001"), (0.97, "0.003"), (0.97, "0.002"), (0.96, "0.01")]):
        write_run(
            tmp_path / f"{n}_mlp",
            "mlp",
            None,
            42,
            "hparams_search=mlp_optuna",
            f"optimizer.lr={lr}",
            **{"best_val/acc": val, "test/loss": None},
        )
    rows = leaderboard.collect([tmp_path])
    assert [r["group"] for r in rows] == [
        "mlp optimizer.lr=0.003",
        "mlp optimizer.lr=0.002",
        "mlp optimizer.lr=0.01",
        "mlp optimizer.lr=0.001",
    ]  # equals in the order they ran
    lines = leaderboard.report(rows).splitlines()
    assert lines[0] == (
        "| model | parameters | epochs | best val accuracy | test accuracy | test loss | training seconds "
        "| best epoch | seed | run |"
    )
    assert lines[2] == "| mlp optimizer.lr=0.003 | 100 | 5 | 97.00% | not run |  | 10.0 | 5 | 42 | 1_mlp |"
    back = leaderboard.read(_written(rows, tmp_path))
    assert leaderboard.report(back) == leaderboard.report(rows)


def test_a_trials_number_is_not_its_recipe_and_a_pruned_trial_says_so(tmp_path):
    for n, (lr, pruned) in enumerate([("0.001", None), ("0.002", 2), ("0.001", None)]):
        write_run(
            tmp_path / f"{n}_mlp",
            "mlp",
            None,
            42,
            "hparams_search=mlp_optuna",
            f"optimizer.lr={lr}",
            f"+search.trial={n}",  # (what the sweeper adds)
            **{"best_val/acc": 0.9 + n / 100, "test/loss": None, "pruned_epoch": pruned, "epochs": pruned or 5},
        )
    rows = leaderboard.collect([tmp_path])
    assert [r["group"] for r in rows] == ["mlp optimizer.lr=0.001", "mlp optimizer.lr=0.002", "mlp optimizer.lr=0.001"]
    assert "| mlp optimizer.lr=0.002 | 100 | 2, pruned | 91.00% | not run |" in leaderboard.report(rows)
    back = leaderboard.read(_written(rows, tmp_path))
    assert leaderboard.report(back) == leaderboard.report(rows)


def test_the_chosen_trial_is_the_best_of_those_that_ran_to_their_end(tmp_path, monkeypatch):
    write_run(tmp_path / "0_mlp", "mlp", None, 42, "optimizer.lr=0.001", **{"best_val/acc": 0.90, "test/loss": None})
    write_run(  # higher after its few epochs, which its pruner cut short: not comparable
        tmp_path / "1_mlp", "mlp", None, 42, "optimizer.lr=0.1", **{"best_val/acc": 0.95, "pruned_epoch": 1}
    )
    monkeypatch.setattr(leaderboard, "chosen_test", lambda trial: {"test/acc": 0.9, "test/loss": 0.3})
    leaderboard.chosen_trial(tmp_path, leaderboard.collect([tmp_path]))
    assert json.loads((tmp_path / "chosen_trial.json").read_text())["run"] == str(tmp_path / "0_mlp")


def test_search_trials_and_tested_runs_are_separate_tables(tmp_path):
    write_run(tmp_path / "trial", "mlp", None, 1, "optimizer.lr=0.002", **{"best_val/acc": 0.99})
    write_run(tmp_path / "tested", "mlp", 0.97, 1, **{"best_val/acc": 0.96})
    text = leaderboard.report(leaderboard.collect([tmp_path]))
    assert text.index("dataset not recorded:\n") < text.index("| mlp | 100 | 5 | 96.00% | 97.00% |")
    assert text.index(
        "dataset not recorded, trials of a search (not tested: ranked by best validation accuracy):"
    ) < text.index("| mlp optimizer.lr=0.002 | 100 | 5 | 99.00% | not run |")


def test_the_grouped_table_shows_the_mean_validation_accuracy_where_recorded(tmp_path):
    for seed, (val, acc) in enumerate([(0.96, 0.97), (0.98, 0.975)]):
        write_run(tmp_path / f"a{seed}", "a", acc, seed, **{"best_val/acc": val})
    lines = leaderboard.summary_markdown(leaderboard.collect([tmp_path])).splitlines()
    assert lines[0].startswith("| model | runs | test accuracy (mean ± std) | 95% CI | best val accuracy (mean) |")
    assert lines[2].startswith("| a | 2 | 97.25% ± 0.35 |") and "| 97.00% | 10.0 |" in lines[2]


def test_each_run_names_its_folder_relative_to_where_the_leaderboard_gathered_it(tmp_path, capsys):
    sweep = tmp_path / "multirun" / "2026-01-01_10-00-00"
    write_run(sweep / "0_lenet5", "lenet5", 0.99, 1, **{"best_val/acc": 0.985})
    write_run(tmp_path / "outputs" / "x" / "2026-01-02_10-00-00", "x", 0.9, 1)
    assert leaderboard.main([str(sweep), str(tmp_path / "outputs" / "x" / "2026-01-02_10-00-00")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "| model | parameters | epochs | best val accuracy | test accuracy | test loss | training seconds "
        "| best epoch | seed | run |"
    )
    assert lines[2] == "| lenet5 | 100 | 5 | 98.50% | 99.00% | 0.1000 | 10.0 | 5 | 1 | 0_lenet5 |"  # in the sweep
    assert lines[3].endswith("| 90.00% | 0.1000 | 10.0 | 5 | 1 | 2026-01-02_10-00-00 |")  # a run folder given: its name


def test_debug_runs_are_listed_after_the_full_runs_and_not_ranked_with_them(tmp_path, capsys):
    write_run(tmp_path / "full", "lenet5", 0.97, 1, dataset="MNIST")
    write_run(tmp_path / "smoke", "lenet5", 0.99, 1, "debug=fast", dataset="MNIST")  # higher, on 2 test batches
    write_run(tmp_path / "none", "mlp", 0.95, 1, "debug=null", dataset="MNIST")  # (the default: a full run)
    rows = leaderboard.collect([tmp_path])
    assert [(r["run_name"], r["debug"]) for r in rows] == [("smoke", "fast"), ("full", ""), ("none", "")]
    text = leaderboard.report(rows)
    debug_title = "MNIST, debug runs (debug=fast: a smoke test on a few batches, not ranked with full runs):"
    assert text.index("MNIST:\n") < text.index("| lenet5 | 100 |") < text.index("| mlp debug=null |")
    assert text.index("| mlp debug=null |") < text.index(debug_title) < text.index("| lenet5 debug=fast |")
    assert leaderboard.groups(leaderboard.sections(rows)[0][1])[0].name == "lenet5"  # the full run ranks first

    for run in ("full", "none"):  # debug runs alone still say so
        (tmp_path / run / "results.json").unlink()
    assert leaderboard.main([str(tmp_path), "--out", str(tmp_path / "board")]) == 0
    assert capsys.readouterr().out.startswith(debug_title)
    assert [r["debug"] for r in leaderboard.read(tmp_path / "board" / "leaderboard.csv")] == ["fast"]


def test_table_is_the_leaderboard_the_command_prints(sweep, capsys):
    folders = [sweep / "a1", sweep / "b1"]
    assert leaderboard.main([str(folder) for folder in folders]) == 0
    assert leaderboard.table(folders) == capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"^no such folder: .*nowhere$"):
        leaderboard.table([sweep / "a1", sweep / "nowhere"])
    (sweep / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^no results.json in .*empty; pass run or sweep folders$"):
        leaderboard.table([sweep / "empty"])


def test_the_robustness_mean_is_a_column_where_a_run_has_it(tmp_path):
    write_run(tmp_path / "x", "x", 0.9, 1)
    assert "MNIST-C" not in leaderboard.runs_markdown(leaderboard.collect([tmp_path]))
    write_run(tmp_path / "y", "y", 0.8, 1, **{"mnist_c/mean": 0.876})
    table = leaderboard.runs_markdown(leaderboard.collect([tmp_path]))
    assert "| MNIST-C mean accuracy |" in table.splitlines()[0] and "87.60%" in table
    out = tmp_path / "board"
    out.mkdir()
    leaderboard.write(leaderboard.collect([tmp_path]), out)
    assert "mnist_c/mean" in (out / "leaderboard.csv").read_text().splitlines()[0]


def test_robustness_true_leaves_a_run_in_its_seeds_group(tmp_path):
    write_run(tmp_path / "a1", "a", 0.9, 1)
    write_run(tmp_path / "a2", "a", 0.91, 2, "robustness=true", **{"mnist_c/mean": 0.8})
    assert [r["group"] for r in leaderboard.collect([tmp_path])] == ["a", "a"]
