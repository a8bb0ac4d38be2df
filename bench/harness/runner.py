"""The one study runner: ``ablate``, ``reproduce`` and ``tune`` run their studies through
:func:`run_study`, whatever chooses the trials (a :class:`~bench.harness.source.TrialSource`:
the grid queue or a sampler).

1. *Open* the study on its storage (SQLite, PostgreSQL, a journal file; heartbeats on) and
   *reconcile* once (the source queues what must run again).
2. *Work*: one worker loop (:func:`bench.harness.worker.worker_loop`) in this process, or
   ``workers`` local worker processes (spawned with the source, one GPU each round robin; or,
   for a source that does not spawn, its worker commands), or ``--jobs`` cluster jobs through
   :mod:`bench.harness.launch` (each job the source's worker command, its storage in
   ``$BENCH_STORAGE``, never in its arguments).
3. *Show* a progress bar of the source's counts meanwhile (when asked).
4. *Close*: a :class:`StudyResult`, whose :meth:`~StudyResult.failure_lines` give one line per
   kind of failure with the command that reruns it (:func:`bench.harness.progress.failure_lines`)
   and whose :meth:`~StudyResult.export` writes the study's tidy CSV.

Resumption needs nothing more: a rerun of the same command reopens the same study, the source
reconciles it, and only what is missing runs.

Example (an ablation spec's grid, two worker processes)::

    from bench.harness import runner
    from bench.harness.queue import GridQueue
    from bench.harness.spec import load_spec
    from bench.harness.worker import WorkerOptions

    points = load_spec("depth").points("cpu")
    source = GridQueue("depth-cpu", points, {"spec": "depth", "profile": "cpu"})
    options = runner.RunnerOptions(WorkerOptions("sqlite:///results/depth.db"), workers=2)
    result = runner.run_study(source, options)
    print(result.counts, *result.failure_lines("python -m bench ablate depth"))
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from bench.harness import credentials, launch
from bench.harness.progress import failure_lines, show_progress
from bench.harness.source import Counts, RunFn, TrialSource
from bench.harness.storage import open_storage
from bench.harness.worker import (
    WorkerOptions,
    interrupted_by_signals,
    worker_loop,
    worker_process,
)


@dataclass(frozen=True)
class RunnerOptions:
    """How a study runs (which trials run is the source's): each worker's options, how many
    local workers, the GPUs they share round robin, whether a progress bar shows, and the
    launcher options (``--launcher slurm|submitit-local``, ``--jobs``...) when jobs run it."""

    worker: WorkerOptions
    workers: int = 1
    gpus: tuple[str, ...] = ()
    progress: bool = False
    jobs: argparse.Namespace | None = None
    results_dir: Path = Path("results")  # the jobs' logs go under it (RESULTS/jobs)

    @property
    def url(self) -> str:
        return self.worker.url

    def for_worker(self, index: int) -> WorkerOptions:
        """Worker ``index``'s options: its GPU, if there are any."""
        if not self.gpus:
            return self.worker
        return dataclasses.replace(self.worker, gpu=self.gpus[index % len(self.gpus)])


@dataclass
class StudyResult:
    """Where a study stands after :func:`run_study`: ``ran_here`` counts trials this command's
    workers ran (with jobs or worker commands: those that exited 0, ``exit_codes`` has all)."""

    source: TrialSource
    study: optuna.Study
    url: str
    counts: Counts
    ran_here: int
    seconds: float
    exit_codes: tuple[int, ...] = ()

    @property
    def study_name(self) -> str:
        return self.study.study_name

    @property
    def total(self) -> int:
        return self.counts.total

    @property
    def done(self) -> int:
        return self.counts.done

    @property
    def failed(self) -> int:
        return self.counts.failed

    @property
    def environment(self) -> int:
        """How many have an environment failure as their latest record (no result)."""
        return self.counts.environment

    @property
    def complete(self) -> bool:
        """Everything has a result (an environment failure is none)."""
        return self.done == self.total and self.environment == 0

    def failure_lines(self, command: str) -> list[str]:
        """One line per kind of failure, with ``command`` (what reruns the study) in it."""
        return failure_lines(self.source, self.study, command)

    def export(self) -> Path:
        """Write the study's tidy CSV (the source's export); its path."""
        return self.source.export(self.study)


def run_study(
    source: TrialSource, options: RunnerOptions, run_fn: RunFn | None = None
) -> StudyResult:
    """Open, reconcile, work and show progress (see the module docstring). ``run_fn`` replaces
    :func:`bench.trial.run_trial_isolated` (a module-level function when workers are spawned)."""
    clock = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warn_uncommitted()
    heartbeat, grace = options.worker.heartbeat, options.worker.grace_period
    study = source.create(open_storage(options.url, heartbeat, grace))
    source.reconcile(study)
    with interrupted_by_signals(), _progress(source, study, options.progress):
        ran, codes = _work(source, options, run_fn)
    elapsed = time.perf_counter() - clock
    return StudyResult(source, study, options.url, source.counts(study), ran, elapsed, codes)


def warn_uncommitted() -> None:
    """Say, before anything runs, that the trial code has uncommitted edits: its records will
    name a ``-dirty`` commit no one can check out, and only their source hash says which code
    measured (:mod:`bench.measure.provenance`)."""
    from bench.measure.provenance import git_commit, source_hash

    commit = git_commit()
    if commit is not None and commit.endswith("-dirty"):
        print(f"warning: bench/ has uncommitted edits: these trials will record commit "
              f"{commit[:12]}...-dirty (source {source_hash()}); commit first so that anyone "
              "can check out the code that measured them", file=sys.stderr)  # fmt: skip


@contextlib.contextmanager
def _progress(source: TrialSource, study: optuna.Study, show: bool) -> Iterator[None]:
    """The progress bar in a thread while the body runs (hidden, it still polls: cheap)."""
    stop = threading.Event()
    monitor = threading.Thread(target=show_progress, args=(source, study, stop, show), daemon=True)
    monitor.start()
    try:
        yield
    finally:
        stop.set()
        monitor.join()


def _work(
    source: TrialSource, options: RunnerOptions, run_fn: RunFn | None
) -> tuple[int, tuple[int, ...]]:
    """Run the workers; (trials run here, exit codes of worker commands or jobs)."""
    if options.jobs is not None:
        total = options.jobs.jobs
        commands = [source.worker_command(i, total) for i in range(total)]
        codes = launch.run_jobs(options.jobs, source.name, commands, options.results_dir,
                                options.url)  # fmt: skip
        return sum(code == 0 for code in codes), tuple(codes)
    if options.workers <= 1:
        return worker_loop(source, options.for_worker(0), run_fn), ()
    if source.spawn:
        return _spawned(source, options, run_fn), ()
    codes = _commands(source, options)
    return sum(code == 0 for code in codes), codes


def _spawned(source: TrialSource, options: RunnerOptions, run_fn: RunFn | None) -> int:
    """``options.workers`` spawned processes, each the worker loop; how many trials they ran."""
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("i", 0)
    procs = [
        ctx.Process(target=worker_process, args=(source, options.for_worker(i), run_fn, counter))
        for i in range(options.workers)
    ]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:  # a Ctrl-C reached them too, a SIGTERM to this process did not
        _stop(procs, lambda p: p.exitcode is None, lambda p, t: p.join(t))
        raise
    return int(counter.value)


def _commands(source: TrialSource, options: RunnerOptions) -> tuple[int, ...]:
    """``options.workers`` local processes, each the source's worker command; their exit codes.
    They get SIGTERM when this process dies (:mod:`bench.trial.lifeline`)."""
    from bench.trial.lifeline import parent_death_signal

    env = credentials.child_environment(options.url)
    total = options.workers
    preexec = parent_death_signal(signal.SIGTERM)
    procs = [subprocess.Popen(source.worker_command(i, total), env=env, preexec_fn=preexec)
             for i in range(total)]  # fmt: skip
    try:
        return tuple(proc.wait() for proc in procs)
    except KeyboardInterrupt:
        _stop(procs, lambda p: p.poll() is None, _wait)
        raise


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


def _stop(
    procs: list[Any],
    running: Callable[[Any], bool],
    wait: Callable[[Any, float], None],
    grace_s: float = 30.0,
) -> None:
    """Interrupt the workers still ``running`` (SIGTERM: each closes its trial, whose process
    goes with it; one that took the Ctrl-C itself ignores it), ``wait`` up to ``grace_s`` for
    them, then kill what is left."""
    for proc in procs:
        if running(proc):
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        wait(proc, max(0.0, deadline - time.monotonic()))
        if running(proc):
            proc.kill()
            wait(proc, grace_s)
