"""Running a tuning study: one worker until the study holds its trials, or several local
processes or cluster jobs (:mod:`bench.harness.launch`) on one shared storage."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial

from bench.harness import credentials, launch
from bench.harness.storage import (
    DEFAULT_HEARTBEAT_S,
)
from bench.tuning.objective import Objective
from bench.tuning.results import describe_trial
from bench.tuning.study import (
    POLL_S,
    PredictFn,
    RunFn,
    TuneRun,
    environment_failure,
    open_study,
    requeue_environment_failures,
    trial_counts,
)


def run_worker(
    run: TuneRun,
    run_fn: RunFn | None = None,
    predict: PredictFn | None = None,
    log: Callable[[str], None] = print,
) -> optuna.Study:
    """Run trials until the study holds ``n_trials`` finished trials (or the timeout passes).

    Resumable: trials already in the study count, lost ones (dead worker) are re-queued by
    the storage's heartbeat, and trials other workers are running are waited for, not
    duplicated."""
    if run_fn is None:
        from bench.trial import run_trial_isolated

        run_fn = run_trial_isolated
    study = open_study(run)
    objective = Objective(run, run_fn, predict, log)
    deadline = time.monotonic() + run.settings.timeout if run.settings.timeout else math.inf
    target = run.settings.n_trials
    ended: list[FrozenTrial] = []

    def note(_study: optuna.Study, trial: FrozenTrial) -> None:
        ended.append(trial)
        log(describe_trial(trial))

    while time.monotonic() < deadline:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        done, running = trial_counts(study)
        if done >= target:
            break
        if done + running >= target:
            time.sleep(POLL_S)  # the last trials are running elsewhere: wait, don't overshoot
            continue
        before = len(ended)
        study.optimize(
            objective,
            n_trials=1,
            catch=(Exception,),
            callbacks=[note],
            gc_after_trial=True,
        )
        if len(ended) > before and environment_failure(ended[-1]):
            log(f"stopping: trial {ended[-1].number} failed for a reason outside its "
                "configuration; fix that and run the same command again")  # fmt: skip
            break
    return study


# --- workers ----------------------------------------------------------------------------------
def run_study(
    run: TuneRun,
    run_fn: RunFn | None = None,
    predict: PredictFn | None = None,
    log: Callable[[str], None] = print,
    jobs: argparse.Namespace | None = None,
) -> optuna.Study:
    """Check the space against the budget, then tune with ``run.workers`` processes, or with
    ``jobs.jobs`` cluster jobs (``--launcher slurm``, see :mod:`bench.harness.launch`)."""
    if predict is not None:
        key = (
            "--memory-budget"
            if run.settings.memory_budget != run.space.settings.memory_budget
            else "tune.memory_budget"
        )
        run.space.check_budget(run.settings.memory_budget, predict, key)
    requeued = requeue_environment_failures(open_study(run))
    if requeued:
        log(f"re-queued {requeued} trial(s) that failed for a reason outside their configuration")
    if run.workers <= 1 and jobs is None:
        return run_worker(run, run_fn, predict, log)
    argv = worker_command(run)
    if jobs is not None:  # each job: one ordinary tune worker on the shared storage
        total = str(jobs.jobs)
        commands = [
            [*argv, "--worker-index", str(i), "--workers-total", total] for i in range(jobs.jobs)
        ]
        codes = launch.run_jobs(jobs, run.study_name, commands, run.results_dir, run.url)
        if any(codes):
            log(f"warning: job exit codes {codes}")
        return open_study(run, load_only=True)
    env = credentials.child_environment(run.url)
    procs = [
        subprocess.Popen(
            [*argv, "--worker-index", str(i), "--workers-total", str(run.workers)], env=env
        )
        for i in range(run.workers)
    ]
    codes = [p.wait() for p in procs]
    if any(codes):
        log(f"warning: worker exit codes {codes}")
    return open_study(run, load_only=True)


def worker_command(run: TuneRun) -> list[str]:
    """A worker's command (less its index): the storage comes in ``$BENCH_STORAGE``, never as
    an argument (see :mod:`bench.harness.credentials`)."""
    return [
        sys.executable, "-m", "bench", "tune", str(run.space.path), "--worker-job",
        "--n-trials", str(run.settings.n_trials),
        "--memory-budget", str(run.settings.memory_budget or "none"), "--no-export",
        "--heartbeat", str(run.heartbeat_interval or DEFAULT_HEARTBEAT_S),
        "--seed", str(run.settings.seed), "--device", str(run.space.base.get("device", "cpu")),
    ] + (["--multi-objective"] if run.multi else []) + (
        ["--timeout", str(run.settings.timeout)] if run.settings.timeout else []
    )  # fmt: skip
