"""hparams_search's Hydra sweeper: an Optuna study that many workers can share (`OptunaSweeper`), and
the way a trial's process reaches its trial (`open_trial`).

The sweeper asks the study for trials in batches of `n_jobs`, launches each batch with the configured
Hydra launcher (each trial a job whose number is the trial's: its run folder `<number>_<model>`),
and tells the study what each job returned: its best epoch's val/acc, or that it was pruned or
failed. Its `storage` is null (in memory: this process alone), a journal file (several processes on
one machine, or on machines that share the file system) or a database URL (`sqlite:///study.db`,
`postgresql://...`: several machines). Workers are the same command started several times with one
`storage` and `study_name`: each asks for trials while the study holds fewer than `n_trials` (of all
workers, finished or running), so that together they make `n_trials`. The worker that creates the
study samples with the sampler's seed (one worker repeats its trials); a worker that joins it samples
with a seed of its own, since the same seed would propose the same trials.

Hydra instantiates only the plugins of the `hydra_plugins` package: hydra_plugins/digits_zoo_search
names this class there. This module imports Optuna only when a study starts (the `hparams` extra),
so that Hydra's plugin scan at every start costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from digits_zoo.errors import ConfigError, check_count, one_line
from digits_zoo.writes import write_text_atomically

log = logging.getLogger(__name__)

PRUNED_AT = "pruned_epoch"  # the trial's user attribute that its process sets where the pruner stopped it
RUNNING: dict[str | None, object] = {}  # study_name: the study a sweeper of this process runs (its trials' jobs)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError('hparams_search needs Optuna: pip install -e ".[hparams]"') from None
    return optuna


def open_storage(storage: str | None):
    """Optuna's storage for `hydra.sweeper.storage`: None (in memory), a database URL (anything with
    `://`, which Optuna opens itself) or the path of a journal file."""
    if storage is None or "://" in storage:
        return storage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(storage))


def make_pruner(config: DictConfig | None):
    """The study's pruner (None: none; Optuna's own default would be a MedianPruner)."""
    return instantiate(config) if config else _optuna().pruners.NopPruner()


def distribution(override):
    """The Optuna distribution of a sweep override: `choice(a, b)` (or `a,b`), `range(start, stop,
    step)`, `interval(low, high)`; tags: `tag(log, interval(...))` samples on a log scale,
    `tag(int, interval(...))` whole numbers."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(value.list)
    if isinstance(value, RangeSweep):
        values = list(value.range())
        if all(isinstance(v, int) for v in values):
            return IntDistribution(min(values), max(values), step=abs(value.step))
        return CategoricalDistribution(values)
    if isinstance(value, IntervalSweep):
        kind = IntDistribution if "int" in value.tags else FloatDistribution
        number = int if kind is IntDistribution else float
        return kind(number(value.start), number(value.end), log="log" in value.tags)
    raise ConfigError(f"{override.input_line}: a search takes choice(...), range(...) or interval(...)")


def search_space(params: dict, arguments: list[str], parser: OverridesParser) -> tuple[dict, list[str]]:
    """The distributions to sample (name: distribution) and the overrides every trial gets, from the
    sweeper's `params` and the command line (which wins for a key that both name)."""
    space, fixed = {}, {}
    for override in parser.parse_overrides([f"{key}={value}" for key, value in params.items()] + arguments):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = f"{key}={override.get_value_element_as_str()}"
    return space, list(fixed.values())


def consecutive(trials: list) -> list[list]:
    """`trials` as runs of consecutive numbers: a launch numbers its jobs from its first one on."""
    runs: list[list] = []
    for trial in trials:
        if runs and runs[-1][-1].number + 1 == trial.number:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs


class OptunaSweeper(Sweeper):
    """configs/hydra/sweeper/optuna.yaml's sweeper (`hparams_search=...`)."""

    shares_its_folder = True  # workers of one study may share a sweep folder: its job folders are trial numbers

    def __init__(
        self,
        direction: str,
        study_name: str | None,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        sampler: DictConfig | None,
        pruner: DictConfig | None,
        params: DictConfig | None,
    ) -> None:
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler, self.pruner, self.params = sampler, pruner, params or {}
        self.hydra_context = self.config = self.launcher = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        check_count("hydra.sweeper.n_trials", self.n_trials)
        check_count("hydra.sweeper.n_jobs", self.n_jobs)
        if self.storage and not self.study_name:  # (Optuna would name each worker's study anew)
            raise ConfigError("a study in a storage needs a name that its workers share: set hydra.sweeper.study_name")
        optuna = _optuna()  # a missing extra said before anything starts
        optuna.logging.disable_default_handler()  # Optuna's lines in Hydra's log, as the sweeper's own
        optuna.logging.enable_propagation()
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space, fixed = search_space(dict(self.params), arguments, parser)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")  # (as Hydra's own sweeper keeps it)
        study = self._study()
        RUNNING[self.study_name] = study
        try:
            while trials := self._ask(study, space):
                self._run(study, trials, fixed)
        finally:
            RUNNING.pop(self.study_name, None)
        self._write_best(study, sweep_dir)

    def _study(self):
        """The study: created with the sampler's seed, or, where another worker created it, joined
        with a seed of this worker's own."""
        optuna = _optuna()
        settings = {
            "study_name": self.study_name,
            "storage": open_storage(self.storage),
            "pruner": make_pruner(self.pruner),
        }
        try:
            study = optuna.create_study(**settings, direction=self.direction, sampler=self._sampler())
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(**settings, sampler=self._sampler(seed=None))
            if study.direction.name.lower() != self.direction:
                raise ConfigError(
                    f"study {self.study_name} in {self.storage} is to {study.direction.name.lower()}, and "
                    f"hydra.sweeper.direction={self.direction}; give this search another study_name"
                ) from None
            log.info(
                "Joined study %s in %s: %d of its %d trials asked so far",
                self.study_name,
                self.storage,
                len(study.get_trials(deepcopy=False)),
                self.n_trials,
            )
        return study

    def _sampler(self, **seed):
        return instantiate(self.sampler, **seed) if self.sampler else None

    def _ask(self, study, space: dict) -> list:
        """Up to n_jobs new trials, while the study holds fewer than n_trials. Workers on one journal
        file count and ask in turn (a lock file beside it), so that together they make exactly
        n_trials; on a database two that ask at the same moment may make one more."""
        with self._ask_lock():
            free = self.n_trials - len(study.get_trials(deepcopy=False))
            trials = [study.ask(space) for _ in range(min(self.n_jobs, free))]
        for trial in trials:  # which worker ran it: host and process
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return trials

    def _ask_lock(self):
        if self.storage is None or "://" in self.storage:
            return contextlib.nullcontext()
        from optuna.storages.journal import JournalFileOpenLock

        lock = JournalFileOpenLock(f"{self.storage}.ask")  # (the lock file <storage>.ask.lock)

        @contextlib.contextmanager
        def held():
            lock.acquire()
            try:
                yield
            finally:
                lock.release()

        return held()

    def _run(self, study, trials: list, fixed: list[str]) -> None:
        """Launch `trials` and tell the study each one's result. Where the launch itself stops (a
        mistake every trial meets, reported in one line; Ctrl+C), the trials not told are failed."""
        untold = list(trials)
        try:
            for run in consecutive(trials):
                batch = [
                    [
                        *fixed,
                        *(f"{name}={value}" for name, value in trial.params.items()),
                        f"+search.trial={trial.number}",
                    ]
                    for trial in run
                ]
                self.validate_batch_is_legal(batch)
                for trial, job in zip(run, self.launcher.launch(batch, initial_job_idx=run[0].number)):
                    self._tell(study, trial, job)
                    untold.remove(trial)
        finally:
            for trial in untold:
                study.tell(trial, state=_optuna().trial.TrialState.FAIL)

    @staticmethod
    def _tell(study, trial, job) -> None:
        TrialState = _optuna().trial.TrialState
        try:
            value = job.return_value
        except Exception as error:  # (Hydra has logged it)
            log.error("Trial %d failed: %s", trial.number, one_line(error))
            study.tell(trial, state=TrialState.FAIL)
            return
        pruned = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number).user_attrs.get(PRUNED_AT)
        if pruned is not None:  # (set by its process, which stopped after that epoch)
            study.tell(trial, state=TrialState.PRUNED)
            log.info("Trial %d: pruned after epoch %d", trial.number, pruned)
        elif value is None:
            study.tell(trial, state=TrialState.FAIL)
            log.error("Trial %d: returned no value", trial.number)
        else:
            study.tell(trial, value)
            log.info("Trial %d: %s", trial.number, value)

    def _write_best(self, study, sweep_dir: Path) -> None:
        """optimization_results.yaml: the study's best trial so far (of every worker), as Hydra's
        Optuna sweeper wrote it."""
        try:
            best = study.best_trial
        except ValueError:  # no trial completed
            log.warning(
                "No trial of study %s completed: nothing to write to optimization_results.yaml", study.study_name
            )
            return
        results = {
            "name": "optuna",
            "study_name": study.study_name,
            "best_trial": best.number,
            "best_params": best.params,
            "best_value": best.value,
        }
        write_text_atomically(sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(results))
        log.info("Best parameters: %s", best.params)
        log.info("Best value: %s (trial %d)", best.value, best.number)


def open_trial(number: int):
    """Trial `number` of the study that this job's sweeper runs (its hydra.sweeper settings): the
    sweeper's own study where it runs in this process, else the study opened from its storage."""
    from hydra.core.hydra_config import HydraConfig

    optuna = _optuna()
    settings = HydraConfig.get().sweeper
    study = RUNNING.get(settings.study_name)
    if study is None:
        if settings.get("storage") is None:
            raise ConfigError(
                "a trial in another process than its sweeper reaches its study through a storage: "
                "set hydra.sweeper.storage=FILE (a journal file) or a database URL"
            )
        study = optuna.load_study(
            study_name=settings.study_name, storage=open_storage(settings.storage), pruner=make_pruner(settings.pruner)
        )
    # (Optuna has no public look-up of a trial by its number)
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.trial.Trial(study, trial_id)
