"""A tuning study: find the best configuration under a memory budget (``python -m bench tune``):
its options (:class:`TuneRun`), the Optuna study (directions, sampler, pruner) and what counts as
finished. The study runs through the harness's study runner with the sampler as its way of
choosing trials (:mod:`bench.tuning.sampler`).

A search-space file (``ablations/tune/SPEC.toml``, see :mod:`bench.tuning.space`) becomes one
Optuna study in the same storage as the ablation sweeps (SQLite ``results/tune-SPEC.db`` by
default, any RDB URL to share it between workers), so a study is resumable, can be worked on
by many processes, and opens unchanged in optuna-dashboard.

Each trial: sample a configuration (TPE, seeded) -> predict its peak memory with the memory
model and prune it *before running* if the prediction is over the budget -> run it in its own
process with ``memory_cap_bytes`` = budget (a measured peak over the budget stops it) ->
report every epoch's validation score so the pruner can stop poor trials early -> store the
whole :class:`~bench.record.TrialRecord` with the Optuna trial (and as its artifact,
:mod:`bench.harness.artifacts`). Every prune carries its reason
in the trial's ``prune_reason`` user attribute.

``--multi-objective`` trades score against peak memory (and optionally step time) with
NSGA-II and prints the Pareto front. Both kinds export ``results/tune-SPEC.csv``: the store's
tidy columns plus ``objectives``, ``values_i`` and ``is_pareto``.

Before the study is opened, :mod:`bench.harness.preflight` checks what the space's configurations need
(datasets, device, storage, packages): if anything is missing the command prints one line per
problem and exits 2 with nothing stored. A trial that fails for a reason outside its
configuration (``failure_kind`` = ``environment``: data gone, device gone) does not count
towards ``--n-trials``; the worker stops at the first one (the next would fail alike), and the
next run re-queues its parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.harness.artifacts import artifact_dir
from bench.harness.credentials import mask_url
from bench.harness.source import tag_study
from bench.harness.storage import (
    DEFAULT_HEARTBEAT_S,
    open_storage,
    record_of,
    storage_url,
)
from bench.tuning.settings import TuneSettings
from bench.tuning.space import SearchSpace

PredictFn = Callable[[TrialConfig], "int | None"]
PRUNE_REASON = "prune_reason"


# --- options ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneRun:
    """One invocation: the space, its settings (after command-line overrides), the storage
    and the artifact folder (``artifact_dir``; None: beside the storage)."""

    space: SearchSpace
    settings: TuneSettings
    multi: bool = False
    storage: str | None = None
    results_dir: Path = Path("results")
    workers: int = 1
    worker_index: int = 0
    heartbeat_interval: int | None = DEFAULT_HEARTBEAT_S
    grace_period: int | None = None
    artifact_dir: Path | None = None

    @property
    def study_name(self) -> str:
        return study_name(self.space, self.multi)

    @property
    def url(self) -> str:
        return storage_url(self.storage, f"tune-{self.space.name}", self.results_dir)

    @property
    def artifacts(self) -> Path:
        """Where each trial's record is uploaded (:mod:`bench.harness.artifacts`)."""
        name = f"tune-{self.space.name}"
        return self.artifact_dir or artifact_dir(self.url, name, self.results_dir)

    @property
    def objective_names(self) -> tuple[str, ...]:
        return self.settings.objective_names(self.multi)


def study_name(space: SearchSpace, multi: bool) -> str:
    """``tune-SPEC`` (score under budget) or ``tune-SPEC-multi`` (Pareto front)."""
    return f"tune-{space.name}" + ("-multi" if multi else "")


def _sampler(run: TuneRun, n_existing: int) -> optuna.samplers.BaseSampler:
    """Seeded sampler; the seed moves on with the study's size and the worker index, so a
    resumed study or a second worker does not replay the first one's random draws."""
    seed = run.settings.seed + n_existing + 7919 * run.worker_index
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if run.multi:
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=run.settings.n_startup_trials, constant_liar=run.workers > 1
        )


def _pruner(run: TuneRun) -> optuna.pruners.BasePruner:
    if run.multi or run.settings.pruner == "none":
        return optuna.pruners.NopPruner()  # Optuna prunes single-objective studies only
    if run.settings.pruner == "hyperband":
        epochs = run.space.base.get("epochs", TrialConfig.epochs)
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, epochs))
    return optuna.pruners.MedianPruner(
        n_startup_trials=run.settings.n_startup_trials, n_warmup_steps=run.settings.n_warmup_steps
    )


def create_study(run: TuneRun, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create (or load) the study in ``storage``; directions come from the objectives. A trial
    whose worker died (heartbeat stale) is failed and its parameters queued again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage.heartbeat_stale_trial_callback = optuna.storages.RetryHeartbeatStaleTrialCallback()
    existing = len(_existing_trials(storage, run.study_name))
    study = optuna.create_study(
        study_name=run.study_name,
        storage=storage,
        directions=run.settings.directions(run.multi),
        sampler=_sampler(run, existing),
        pruner=_pruner(run),
        load_if_exists=True,
    )
    if list(study.directions) != [
        optuna.study.StudyDirection.MAXIMIZE
        if d == "maximize"
        else optuna.study.StudyDirection.MINIMIZE
        for d in run.settings.directions(run.multi)
    ]:
        raise ConfigError(
            "objectives",
            f"study {run.study_name} in {mask_url(run.url)} was created with other objectives "
            f"({study.user_attrs.get('objectives')}); use another --storage or keep them",
        )
    attrs = {
        "spec": f"tune-{run.space.name}",
        "kind": "tune",
        "profile": None,
        "objectives": ",".join(run.objective_names),
        "search_space": str(run.space.path),
    }
    tag_study(study, attrs)
    return study


def load_study(run: TuneRun) -> optuna.Study:
    """The study as stored (``--best``); KeyError if there is none."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # we print our own line per trial
    storage = open_storage(run.url, run.heartbeat_interval, run.grace_period)
    return optuna.load_study(study_name=run.study_name, storage=storage)


def _existing_trials(storage: optuna.storages.BaseStorage, name: str) -> list[FrozenTrial]:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False)


def finished(trial: FrozenTrial) -> bool:
    """A trial that counts towards ``--n-trials``: complete, pruned, or failed with a record
    of its configuration's failure. A FAIL without a record is a lost trial (its worker died;
    its point is queued again); one failed by the environment is not a result either."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    if trial.state != TrialState.FAIL:
        return False
    record = record_of(trial)
    return record is not None and not record.is_environment_failure


def environment_failure(trial: FrozenTrial) -> bool:
    """A FAIL trial whose record blames the machine (data missing, device gone)."""
    record = record_of(trial) if trial.state == TrialState.FAIL else None
    return record is not None and record.is_environment_failure


def requeue_environment_failures(study: optuna.Study) -> int:
    """Queue the parameters of every environment failure not queued again yet (how many).

    Why: the tuner's sampler would not propose them again by itself, and their configuration
    never got its result."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    added = 0
    for trial in trials:
        if environment_failure(trial) and trial.number not in retried:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
            added += 1
    return added
