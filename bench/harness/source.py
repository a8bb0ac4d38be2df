"""What a way of choosing trials gives the study runner (:mod:`bench.harness.runner`).

A study is run one way: open it, reconcile, loop workers (here, in worker processes or as
cluster jobs), show progress, print one line per kind of failure with the command that reruns
it, export. Only *which* trial runs next differs, so that is a strategy behind this protocol,
as Optuna's samplers are behind ``BaseSampler`` (``GridSampler`` is one of them). Two strategies
exist:

* the grid queue (:class:`bench.harness.queue.GridQueue`, ``python -m bench ablate``): an
  ablation spec's points, each with a stable key, enqueued as WAITING trials and claimed
  atomically; a claimed trial's configuration is the one stored with it; its record decides
  its state; failed points run again only with ``--retry-failed``;
* the sampler (:class:`bench.tuning.sampler.SamplerSource`, ``python -m bench tune``): an Optuna
  sampler over a search space asks each trial's configuration, the memory model prunes it
  before it runs, the pruner while it runs; the study is done when it holds ``--n-trials``
  finished trials.

A new way of choosing trials is one class with these members; the runner, the worker loop, the
progress bar, the failure lines and the launchers are shared.

Example: a toy strategy, one trial per depth (``tests/test_runner.py`` runs it whole)::

    class Depths:
        name, spawn, failure_wording = "depths", True, GRID_WORDING

        def __init__(self, depths): self.depths = depths
        def create(self, storage):
            return optuna.create_study(study_name=self.name, storage=storage,
                                       direction="maximize", load_if_exists=True)
        def reconcile(self, study): return 0
        def step(self, study, run_fn):
            todo = [d for d in self.depths
                    if d not in {t.user_attrs.get("layers") for t in study.trials}]
            if not todo:
                return Turn.DONE
            trial = study.ask()
            trial.set_user_attr("layers", todo[0])
            record = run_fn(TrialConfig(layers=todo[0]))
            save_record(study, trial, record)
            study.tell(trial, record.best_valid)
            return Turn.RAN
        ...  # counts, failed, worker_command, export

    options = RunnerOptions(WorkerOptions("sqlite:///toy.db", heartbeat=None))
    result = run_study(Depths([1, 2, 3]), options)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import optuna

from bench.record import TrialRecord

RunFn = Callable[..., TrialRecord]  # run_fn(config, timeout=None, on_epoch=None) -> TrialRecord


class Turn(enum.Enum):
    """What one worker turn did (:meth:`TrialSource.step`); the worker loop acts on it."""

    RAN = "ran"  # a trial ran (or was settled by its configuration) and counts as run here
    SKIPPED = "skipped"  # a claimed trial was closed without running (a duplicate): go on
    WAIT = "wait"  # nothing to run now, but trials running elsewhere may leave work: poll
    DONE = "done"  # nothing left for this worker: it ends


@dataclass(frozen=True)
class Counts:
    """Where a study stands: ``done`` of ``total`` (points with a record, or finished trials),
    ``failed`` among them, ``environment`` failures (no result: retried by a plain rerun) and
    trials ``running`` now."""

    done: int
    total: int
    failed: int = 0
    environment: int = 0
    running: int = 0


class TrialSource(Protocol):
    """A way of choosing a study's trials: the grid queue or a sampler (see the module docstring).

    The runner calls :meth:`create` and :meth:`reconcile` once when the command opens the study,
    then every worker calls :meth:`create` on its own storage and :meth:`step` until a turn says
    :attr:`Turn.DONE`; :meth:`counts` feeds the progress bar and the result, :meth:`failed` the
    failure lines, :meth:`export` the closing export. A source handed to spawned worker
    processes must pickle."""

    @property
    def name(self) -> str:
        """The study's name."""
        ...

    @property
    def spawn(self) -> bool:
        """Local worker processes are spawned with this source (True), or are its
        :meth:`worker_command` lines (False: e.g. each worker seeds its sampler apart)."""
        ...

    @property
    def failure_wording(self) -> Mapping[str, str]:
        """Per failure kind (``config``, ``environment``), the line that reports it: see
        :func:`bench.harness.progress.failure_lines`."""
        ...

    def create(self, storage: Any) -> optuna.Study:
        """Create or load the study in ``storage`` (safe when many workers start at once), with
        its directions, sampler and pruner, and tag it (:func:`bench.harness.runner.tag_study`)."""
        ...

    def reconcile(self, study: optuna.Study) -> int:
        """The command's opening reconcile: queue what must run (again), e.g. missing points or
        environment failures; how many trials it queued."""
        ...

    def step(self, study: optuna.Study, run_fn: RunFn) -> Turn:
        """One worker turn: choose the next trial, obtain its configuration, run it with
        ``run_fn`` (while its heartbeat beats), store its record and tell the study its state."""
        ...

    def counts(self, study: optuna.Study) -> Counts:
        """Where the study stands now."""
        ...

    def failed(self, study: optuna.Study) -> Iterable[TrialRecord | None]:
        """The records the failure lines count (e.g. each point's latest record)."""
        ...

    def worker_command(self, index: int, total: int) -> list[str]:
        """The command line of worker ``index`` of ``total`` (a job, or a local process when
        the source does not spawn): the ordinary command, its storage in ``$BENCH_STORAGE``."""
        ...

    def export(self, study: optuna.Study) -> Path:
        """Write the study's tidy CSV under the results folder (what the report reads)."""
        ...


def tag_study(study: optuna.Study, attrs: Mapping[str, Any], metric: str | None = None) -> None:
    """Set the study's user attributes (those that differ: workers opening it at once write
    nothing new) and name its objective (``metric``, e.g. "valid rocauc": a dashboard's axis
    instead of "Objective 0"); what a source's :meth:`~TrialSource.create` does once created."""
    import warnings

    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    if metric is not None and study.metric_names != [metric]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
