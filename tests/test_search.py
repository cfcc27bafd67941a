"""hparams_search's Optuna sweeper (digits_zoo/training/search.py): the search space in Hydra's sweep
syntax, studies in a journal file that workers join, pruning on the validation curve, failed trials,
and (slow) several worker processes filling one study at the same time."""

import json
import subprocess
import sys

import lightning as L
import optuna
import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from digits_zoo.errors import ConfigError
from digits_zoo.training import search
from tests.conftest import ROOT, run_train_py, tiny_overrides


def test_the_search_space_is_hydras_sweep_syntax_and_the_command_line_wins():
    space, fixed = search.search_space(
        {
            "optimizer.lr": "tag(log, interval(1.0e-4, 1.0e-2))",
            "data.batch_size": "choice(32, 64)",
            "model.kwargs.hidden": "range(32, 129, 32)",
            "trainer.max_epochs": "tag(int, interval(1, 5))",
        },
        ["data.batch_size=16", "seed=1", "+model.kwargs.act=relu,gelu"],
        OverridesParser.create(),
    )
    assert space == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "model.kwargs.hidden": IntDistribution(32, 128, step=32),
        "trainer.max_epochs": IntDistribution(1, 5),
        "+model.kwargs.act": CategoricalDistribution(["relu", "gelu"]),
    }
    assert fixed == ["data.batch_size=16", "seed=1"]  # the preset's choice replaced by the command line's value


def _sweeper(storage, seed=42):
    sampler = OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "seed": seed})
    return search.OptunaSweeper("maximize", "shared", str(storage), 4, 1, sampler, None, None)


def test_the_worker_that_creates_a_study_samples_with_the_seed_and_one_that_joins_with_its_own(tmp_path):
    space = {"optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True)}
    creator = _sweeper(tmp_path / "study.journal")._study()
    joiner = _sweeper(tmp_path / "study.journal")._study()  # the same command, started again
    alone = _sweeper(tmp_path / "other.journal")._study()
    first, second = creator.ask(space), joiner.ask(space)
    assert (first.number, second.number) == (0, 1)  # one study
    assert first.params == alone.ask(space).params  # the seed's trials: reproducible
    assert second.params != first.params  # not the same seed's proposals again


def search_run(monkeypatch, capsys, tiny_data, tmp_path, *overrides):
    """`python train.py hparams_search=mlp_optuna` on the tiny data, in this process, with its study in
    the journal file tmp_path/study.journal and its trials in tmp_path/sweep: (exit code, stderr)."""
    return run_train_py(
        monkeypatch,
        capsys,
        "hparams_search=mlp_optuna",
        *tiny_overrides(tiny_data),
        "debug=fast",
        "hydra.sweeper.study_name=shared",
        f"hydra.sweeper.storage={tmp_path / 'study.journal'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *overrides,
    )


def load(tmp_path) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=search.open_storage(str(tmp_path / "study.journal")))


def test_a_worker_that_joins_a_study_runs_only_the_trials_it_lacks(monkeypatch, capsys, tiny_data, tmp_path):
    other = optuna.create_study(
        study_name="shared", storage=search.open_storage(str(tmp_path / "study.journal")), direction="maximize"
    )
    for _ in range(2):  # another worker's two trials
        other.tell(other.ask(), 0.0)
    code, stderr = search_run(monkeypatch, capsys, tiny_data, tmp_path, "hydra.sweeper.n_trials=3")
    assert code == 0, stderr
    study = load(tmp_path)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 3
    sweep = tmp_path / "sweep"
    assert [run.name for run in sweep.glob("*_flatten_mlp")] == ["2_flatten_mlp"]  # numbered as its trial
    results = json.loads((sweep / "2_flatten_mlp" / "results.json").read_text())
    assert study.trials[2].value == results["best_val/acc"] > 0 and results["pruned_epoch"] is None
    assert "+search.trial=2" in yaml.safe_load((sweep / "2_flatten_mlp" / ".hydra" / "overrides.yaml").read_text())
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_trial"] == 2 and best["best_params"] == study.trials[2].params
    assert json.loads((sweep / "chosen_trial.json").read_text())["run"].endswith("2_flatten_mlp")


class PruneLaterTrials(optuna.pruners.BasePruner):
    """Trial 0 runs to its end; every later trial is pruned after its first epoch (step 0)."""

    def prune(self, study, trial) -> bool:
        return trial.number > 0


def test_a_pruned_trial_stops_after_that_epoch_and_is_never_chosen(monkeypatch, capsys, tiny_data, tmp_path):
    code, stderr = search_run(
        monkeypatch,
        capsys,
        tiny_data,
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=2",
        "hydra.sweeper.pruner={_target_:tests.test_search.PruneLaterTrials}",
    )
    assert code == 0, stderr
    study = load(tmp_path)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert sorted(study.trials[0].intermediate_values) == [0, 1]  # each epoch's val/acc, reported
    sweep = tmp_path / "sweep"
    pruned = json.loads((sweep / "1_flatten_mlp" / "results.json").read_text())
    assert pruned["pruned_epoch"] == pruned["epochs"] == 1  # it stopped there, cleanly
    assert study.trials[1].value == pruned["best_val/acc"]  # (Optuna keeps a pruned trial's last report)
    assert json.loads((sweep / "0_flatten_mlp" / "results.json").read_text())["epochs"] == 2
    assert json.loads((sweep / "chosen_trial.json").read_text())["run"].endswith("0_flatten_mlp")
    assert "| 1, pruned |" in (sweep / "leaderboard.md").read_text()


def test_a_trial_in_another_process_than_its_sweeper_opens_its_study_from_the_storage(tmp_path, monkeypatch):
    storage = str(tmp_path / "study.journal")
    optuna.create_study(study_name="shared", storage=search.open_storage(storage), direction="maximize").ask()
    pruner = {"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.9}
    settings = OmegaConf.create({"sweeper": {"study_name": "shared", "storage": storage, "pruner": pruner}})
    monkeypatch.setattr(HydraConfig, "get", lambda: settings)  # (the job's hydra.sweeper)
    trial = search.open_trial(0)
    trial.report(0.5, step=0)
    assert trial.should_prune()  # by the configured pruner
    assert load(tmp_path).trials[0].intermediate_values == {0: 0.5}  # in the storage, for the sweeper
    settings.sweeper.storage = None  # in memory: not reachable from another process
    with pytest.raises(ConfigError, match=r"set hydra\.sweeper\.storage=FILE"):
        search.open_trial(0)


def test_a_study_in_a_storage_without_a_name_is_refused_in_one_line(run_cli):
    code, stderr = run_cli(
        "hparams_search=mlp_optuna", "hydra.sweeper.storage=study.journal", "hydra.sweeper.study_name=null"
    )
    assert code == 1 and stderr.strip().splitlines() == [
        "error: a study in a storage needs a name that its workers share: set hydra.sweeper.study_name"
    ]


class Boom(L.Callback):
    def on_train_start(self, trainer, pl_module):
        raise RuntimeError("boom")


def test_failed_trials_are_failed_in_the_study_and_the_search_goes_on(monkeypatch, capsys, tiny_data, tmp_path):
    code, stderr = search_run(
        monkeypatch,
        capsys,
        tiny_data,
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "+callbacks.boom._target_=tests.test_search.Boom",
    )
    assert code == 0, stderr
    assert [trial.state for trial in load(tmp_path).trials] == [TrialState.FAIL] * 2
    assert not (tmp_path / "sweep" / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_workers_started_together_fill_one_study_with_exactly_its_trials(tiny_data, tmp_path):
    n_trials = 6
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "hparams_search=mlp_optuna",
        *tiny_overrides(tiny_data),
        "debug=fast",
        "trainer.max_epochs=2",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.study_name=shared",
        f"hydra.sweeper.storage={tmp_path / 'study.journal'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    workers = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr
    study = load(tmp_path)
    assert [trial.number for trial in study.trials] == list(range(n_trials))  # exactly n_trials, of all workers
    assert all(trial.state == TrialState.COMPLETE for trial in study.trials)
    assert len({trial.user_attrs["worker"] for trial in study.trials}) > 1
    sweep = tmp_path / "sweep"
    for trial in study.trials:  # each its own run folder, which ran that trial
        run = sweep / f"{trial.number}_flatten_mlp"
        assert json.loads((run / "results.json").read_text())["best_val/acc"] == trial.value
        assert f"+search.trial={trial.number}" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
