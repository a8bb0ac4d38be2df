"""Running a tuning study: check the space against the budget, then hand the sampler
(:class:`~bench.tuning.sampler.SamplerSource`) to the harness's study runner
(:func:`bench.harness.runner.run_study`): one worker here until the study holds its trials, or
several local worker processes or cluster jobs (:mod:`bench.harness.launch`) on one shared
storage."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import optuna

from bench.harness import runner
from bench.harness.runner import RunnerOptions, StudyResult
from bench.harness.source import RunFn
from bench.harness.worker import WorkerOptions, worker_loop
from bench.tuning.sampler import SamplerSource
from bench.tuning.study import PredictFn, TuneRun


def worker_options(run: TuneRun) -> WorkerOptions:
    """A tuning worker's options: ``--timeout`` ends its loop (no new trial after it)."""
    return WorkerOptions(run.url, run.heartbeat_interval, run.grace_period,
                         timeout=run.settings.timeout)  # fmt: skip


def tune(
    run: TuneRun,
    run_fn: RunFn | None = None,
    predict: PredictFn | None = None,
    log: Callable[[str], None] = print,
    jobs: argparse.Namespace | None = None,
) -> StudyResult:
    """Check the space against the budget, then tune with ``run.workers`` processes, or with
    ``jobs.jobs`` cluster jobs (``--launcher slurm``, see :mod:`bench.harness.launch`).

    Resumable: trials already in the study count, lost ones (dead worker) are re-queued by
    the storage's heartbeat, and trials other workers are running are waited for, not
    duplicated."""
    if predict is not None:
        key = (
            "--memory-budget"
            if run.settings.memory_budget != run.space.settings.memory_budget
            else "tune.memory_budget"
        )
        run.space.check_budget(run.settings.memory_budget, predict, key)
    options = RunnerOptions(worker_options(run), workers=run.workers, jobs=jobs,
                            results_dir=run.results_dir)  # fmt: skip
    result = runner.run_study(SamplerSource(run, predict, log), options, run_fn)
    if any(result.exit_codes):
        log(
            f"warning: {'job' if jobs is not None else 'worker'} exit codes {list(result.exit_codes)}"
        )
    return result


def run_study(
    run: TuneRun,
    run_fn: RunFn | None = None,
    predict: PredictFn | None = None,
    log: Callable[[str], None] = print,
    jobs: argparse.Namespace | None = None,
) -> optuna.Study:
    """:func:`tune`, for its study."""
    return tune(run, run_fn, predict, log, jobs).study


def run_worker(
    run: TuneRun,
    run_fn: RunFn | None = None,
    predict: PredictFn | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """One worker process or job of a study its parent opened (``tune --worker-job``): the
    worker loop only; how many trials it ran."""
    return worker_loop(SamplerSource(run, predict, log), worker_options(run), run_fn)
