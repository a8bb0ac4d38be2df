"""The sampler strategy of the study runner (:mod:`bench.harness.source`): a tuning study's
trials are chosen by an Optuna sampler (TPE, or NSGA-II for a Pareto front) over the search
space, not queued from a grid.

A turn: fail the trials whose worker died (their parameters are queued again); stop when the
study holds ``n_trials`` finished trials, or wait while the last ones run elsewhere; else run
one trial through ``study.optimize`` (ask, :class:`~bench.tuning.objective.Objective`, tell:
the memory model prunes before the trial runs, the pruner while it runs) and log one line for
it. A trial failed by the environment ends the worker (the next would fail alike); the next
run's opening reconcile queues its parameters again. Local workers are worker commands (each
``tune --worker-job --worker-index I``, so each seeds its sampler apart), as are jobs.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.harness.source import Counts, RunFn, Turn
from bench.harness.storage import DEFAULT_HEARTBEAT_S, record_of
from bench.record import TrialRecord
from bench.tuning.objective import Objective
from bench.tuning.results import describe_trial, export
from bench.tuning.study import (
    PredictFn,
    TuneRun,
    create_study,
    environment_failure,
    finished,
    requeue_environment_failures,
)

# how the failure lines of a tuning study read (bench.harness.progress.failure_lines)
TUNE_WORDING = {
    "config": "configuration failures: {n} trial(s) ({shown}) are final and count towards "
    "--n-trials; to sample more, raise it: {command}",
    "environment": "environment failures: {n} trial(s) ({shown}) are not results and do not "
    "count; once fixed, a plain rerun retries them: {command}",
}


@dataclass
class SamplerSource:
    """The sampler strategy for ``run`` (see the module docstring); ``predict`` gives a
    configuration's predicted peak bytes (None: nothing is pruned before it runs), ``log``
    takes one line per trial."""

    run: TuneRun
    predict: PredictFn | None = None
    log: Callable[[str], None] = print
    spawn: ClassVar[bool] = False
    failure_wording: ClassVar[dict[str, str]] = TUNE_WORDING

    @property
    def name(self) -> str:
        return self.run.study_name

    def create(self, storage: optuna.storages.BaseStorage) -> optuna.Study:
        return create_study(self.run, storage)

    def reconcile(self, study: optuna.Study) -> int:
        """Queue the parameters of environment failures again (the sampler would not)."""
        requeued = requeue_environment_failures(study)
        if requeued:
            self.log(f"re-queued {requeued} trial(s) that failed for a reason outside their "
                     "configuration")  # fmt: skip
        return requeued

    def step(self, study: optuna.Study, run_fn: RunFn) -> Turn:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        counts = self.counts(study)
        if counts.done >= counts.total:
            return Turn.DONE
        if counts.done + counts.running >= counts.total:
            return Turn.WAIT  # the last trials are running elsewhere: wait, don't overshoot
        ended: list[FrozenTrial] = []

        def note(_study: optuna.Study, trial: FrozenTrial) -> None:
            ended.append(trial)
            self.log(describe_trial(trial))

        objective = Objective(self.run, run_fn, self.predict, self.log)
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[note],
                       gc_after_trial=True)  # fmt: skip
        if ended and environment_failure(ended[-1]):
            self.log(f"stopping: trial {ended[-1].number} failed for a reason outside its "
                     "configuration; fix that and run the same command again")  # fmt: skip
            return Turn.DONE
        return Turn.RAN

    def counts(self, study: optuna.Study) -> Counts:
        """Finished trials (those that count towards ``n_trials``) of ``n_trials``."""
        trials = study.get_trials(deepcopy=False)
        return Counts(
            done=sum(finished(t) for t in trials),
            total=self.run.settings.n_trials,
            failed=sum(finished(t) and t.state == TrialState.FAIL for t in trials),
            environment=sum(environment_failure(t) for t in trials),
            running=sum(t.state == TrialState.RUNNING for t in trials),
        )

    def failed(self, study: optuna.Study) -> Iterator[TrialRecord | None]:
        """The record of every FAIL trial."""
        return (record_of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))

    def worker_command(self, index: int, total: int) -> list[str]:
        """A worker's command: the storage comes in ``$BENCH_STORAGE``, never as an argument
        (see :mod:`bench.harness.credentials`)."""
        run = self.run
        return [
            sys.executable, "-m", "bench", "tune", str(run.space.path), "--worker-job",
            "--n-trials", str(run.settings.n_trials),
            "--memory-budget", str(run.settings.memory_budget or "none"), "--no-export",
            "--heartbeat", str(run.heartbeat_interval or DEFAULT_HEARTBEAT_S),
            "--seed", str(run.settings.seed), "--device", str(run.space.base.get("device", "cpu")),
            "--artifact-dir", str(run.artifacts),
        ] + (["--multi-objective"] if run.multi else []) + (
            ["--timeout", str(run.settings.timeout)] if run.settings.timeout else []
        ) + ["--worker-index", str(index), "--workers-total", str(total)]  # fmt: skip

    def export(self, study: optuna.Study) -> Path:
        """``RESULTS/tune-SPEC.csv``: every tuning study of the space (single and multi)."""
        return export(self.run)
