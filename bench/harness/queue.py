"""The grid strategy of the study runner (:class:`GridQueue`, see :mod:`bench.harness.source`):
a sweep's study as a work queue. Enqueue the missing points, claim one atomically, drop
duplicates, close a trial with the state its record deserves.

One study per (spec, profile), named ``<spec>-<profile>``. Every point of the grid (x seed) has
a stable key (a hash of its configuration). The study is a work queue:

1. *Reconcile* (at start, and whenever a worker finds the queue empty): trials whose worker
   stopped beating are failed (``optuna.storages.fail_stale_trials``); every point with no
   record and no WAITING/RUNNING trial is enqueued as a WAITING trial carrying its key and
   attempt number in user attributes, its configuration in a system attribute and its grid
   axes as params (:func:`grid_distributions`); with ``--retry-failed`` (at start only) points
   whose latest record failed get a new attempt.
2. *Claim*: a worker flips one WAITING trial to RUNNING with ``storage.set_trial_state_values``,
   which is atomic: PostgreSQL locks the row (``SELECT ... FOR UPDATE``) and our SQLite
   storages take the write lock first (``BEGIN IMMEDIATE``, see :mod:`bench.harness.storage`), so the
   losing worker sees RUNNING and moves on.
3. *Deduplicate*: two sweeps reconciling at the same moment may both enqueue a point. The trial
   with the lowest number wins deterministically: a claimed trial that finds a lower-numbered
   trial of the same key WAITING/RUNNING (or a record of the same or a later attempt) is closed
   as FAIL with ``duplicate_of`` and not run.
4. *Run* the stored configuration with :func:`bench.trial.run_trial_isolated` (own process,
   one thread on CPU), beating the heartbeat meanwhile, attach the whole record
   (:func:`bench.harness.storage.save_record`, and as an artifact:
   :mod:`bench.harness.artifacts`) and finish the trial: COMPLETE (value = best validation
   score) for ``ok`` and scored ``timeout`` records, PRUNED for ``pruned``, FAIL for the
   rest. A FAIL trial always has a record: it is a finished failure of its configuration (oom, diverged, ...). A trial whose
   worker died (heartbeat stale) or was interrupted is closed as PRUNED with a
   ``pruned_reason`` and no record, and its point is enqueued again; every trial reports its
   per-epoch validation score as an intermediate value (the dashboard's learning curves). A record whose ``failure_kind`` is
   ``environment`` (data missing, device gone, trial killed from outside) is not the
   configuration's result: the next sweep's first reconcile enqueues its point again, without
   ``--retry-failed`` (later reconciles of the same sweep do not, so a sweep always ends).

Before any of this, :mod:`bench.harness.preflight` checks once what the points need (datasets, device,
storage, packages); if anything is missing the sweep stops with one line per problem and
nothing stored (:class:`~bench.harness.preflight.PreflightError`).

Workers keep polling while other trials are RUNNING, so a point whose worker died elsewhere is
picked up once its heartbeat goes stale: the command ends when every point has a record.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)
from optuna.trial import FrozenTrial, TrialState, create_trial

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.exports.paths import file_in
from bench.harness.artifacts import attach_record
from bench.harness.export import export_study
from bench.harness.source import Counts, RunFn, Turn, tag_study
from bench.harness.spec import Point
from bench.harness.storage import (
    CONFIG_ATTR,
    STORAGE_ERRORS,
    adopt_unbeaten,
    config_of,
    record_of,
    save_record,
)
from bench.harness.worker import Heartbeat, one_thread_on_cpu
from bench.record import TrialRecord, failure_kind_of

FAILED_STATUSES = ("oom", "diverged", "timeout", "error")
LIVE_STATES = (TrialState.WAITING, TrialState.RUNNING)
# how the failure lines of a sweep read (bench.harness.progress.failure_lines)
GRID_WORDING = {
    "config": "configuration failures: {n} point{s} ({shown}) are final results; to run them "
    "again: {command} --retry-failed",
    "environment": "environment failures: {n} point{s} ({shown}; e.g. {example}) are not "
    "results; once that is fixed, a plain rerun retries them: {command}",
}


def study_name(spec: str, profile: str) -> str:
    return f"{spec}-{profile}"


def metric_name(points: list[Point]) -> str:
    """The objective's name: the validation metric the points' datasets share."""
    from bench.data.registry import SPECS

    metrics = {SPECS[p.config.dataset].metric if p.config.dataset in SPECS else "score"
               for p in points}  # fmt: skip
    return f"valid {metrics.pop()}" if len(metrics) == 1 else "valid score"


def trials_by_key(trials: list[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    groups: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        key = trial.user_attrs.get("point_key")
        if key is not None:
            groups.setdefault(key, []).append(trial)
    return groups


def point_state(trials: list[FrozenTrial]) -> tuple[str, TrialRecord | None]:
    """``live`` (queued or running), ``done`` (latest record) or ``missing``."""
    if any(t.state in LIVE_STATES for t in trials):
        return "live", None
    finished = [(t, record_of(t)) for t in trials]
    finished = [(t, r) for t, r in finished if r is not None]
    if finished:
        return "done", max(finished, key=lambda pair: pair[0].number)[1]
    return "missing", None


def grid_distributions(points: list[Point]) -> dict[str, BaseDistribution]:
    """Each grid axis (the values that vary across the points, seed included) as an Optuna
    distribution, so a study's trials carry their axes as params and a dashboard's parameter
    plots and importances work: numbers as an int or float range over the grid's values (a
    range may widen when the spec grows), on a log scale where the axis is geometric
    (:func:`is_geometric`: 1, 4, 16, 64 layers spread out instead of piling up at zero),
    anything else as categorical choices. An axis with one value (one seed) is no param: a
    flat axis in every plot and an importance of zero."""
    values: dict[str, set[Any]] = {}
    for point in points:
        for name, value in point.varying.items():
            values.setdefault(name, set()).add(value)
    out: dict[str, BaseDistribution] = {}
    for name, seen in sorted(values.items()):
        if len(seen) < 2:
            continue
        numbers = [v for v in seen if isinstance(v, (int, float)) and not isinstance(v, bool)]
        log = len(numbers) == len(seen) and is_geometric(numbers)
        if len(numbers) == len(seen) and all(isinstance(v, int) for v in numbers):
            out[name] = IntDistribution(min(numbers), max(numbers), log=log)
        elif len(numbers) == len(seen):
            out[name] = FloatDistribution(float(min(numbers)), float(max(numbers)), log=log)
        else:
            out[name] = CategoricalDistribution(sorted(seen, key=lambda v: (v is not None, str(v))))
    return out


def is_geometric(values: list[float]) -> bool:
    """Whether an axis reads best on a log scale: every value positive, and the values spaced
    more evenly on a log scale than on a linear one (the largest gap between neighbours over
    the smallest is smaller there: 1, 4, 16, 64 and 7, 14, ..., 448 are geometric, 1, 2, 3, 4
    is not); two values (one gap, even on either scale) when the larger is at least twice the
    smaller (8 and 16 layers, not 2 and 3 groups)."""
    ordered = sorted(set(values))
    if len(ordered) < 2 or ordered[0] <= 0:
        return False
    if len(ordered) == 2:
        return ordered[1] >= 2 * ordered[0]

    def spread(xs: list[float]) -> float:
        gaps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
        return max(gaps) / min(gaps)

    return spread([math.log(v) for v in ordered]) < spread(ordered)


def _fitting(new: BaseDistribution, held: BaseDistribution | None) -> BaseDistribution | None:
    """``new`` as the study's trials can take it: Optuna keeps one kind, scale and set of
    categorical choices per param, so an axis whose scale changed (a study stored before axes
    went log, or a spec that grew) keeps the study's scale; None where it cannot (other
    choices, a kind changed, a zero on a log scale): the axis is then no param of new trials."""
    if held is None:
        return new
    try:
        check_distribution_compatibility(held, new)
        return new
    except ValueError:
        pass
    if isinstance(new, (IntDistribution, FloatDistribution)) and type(held) is type(new):
        try:
            return type(new)(new.low, new.high, log=held.log)  # type: ignore[arg-type]
        except ValueError:
            return None
    return None


def _enqueue(study: optuna.Study, point: Point, attrs: dict[str, Any],
             distributions: dict[str, BaseDistribution]) -> None:  # fmt: skip
    """A WAITING trial carrying the point's axes as params (those ``distributions`` holds), its
    bookkeeping as user attributes and its configuration as a system attribute (what the
    worker runs; the dashboard does not draw it). A worker that queued an axis otherwise a
    moment before (a spec changed between two reconciles) leaves this trial without params."""
    params = {k: v for k, v in point.varying.items() if k in distributions}
    system = {CONFIG_ATTR: point.config.to_dict()}
    for kept in (params, {}):
        try:
            study.add_trial(create_trial(state=TrialState.WAITING, params=kept,
                                         distributions={k: distributions[k] for k in kept},
                                         user_attrs=attrs, system_attrs=system))  # fmt: skip
            return
        except ValueError:  # another process queued an axis otherwise meanwhile
            continue


def held_distributions(trials: list[FrozenTrial]) -> dict[str, BaseDistribution]:
    """One distribution per param the study's trials hold (Optuna keeps them compatible)."""
    held: dict[str, BaseDistribution] = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            held.setdefault(name, distribution)
    return held


def reconcile(
    study: optuna.Study,
    points: list[Point],
    retry_failed: bool = False,
    retry_environment: bool = False,
    rerun: set[str] | None = None,
) -> int:
    """Fail stale trials, then enqueue every point that is missing (or failed, if asked).

    ``retry_environment`` (a sweep's first reconcile) also enqueues points whose latest record
    is an environment failure; ``retry_failed`` every failed point; ``rerun`` the points with
    these keys whatever their record (``reproduce --rerun-stale``: configurations measured by
    mixed code). Returns how many trials were enqueued. Safe to run concurrently: a point
    enqueued twice is resolved when claimed (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        adopt_unbeaten(study._storage, study._study_id)
        close_stale(study)
    trials_now = study.get_trials(deepcopy=False)
    groups = trials_by_key(trials_now)
    held = held_distributions(trials_now)
    fitted = {k: _fitting(d, held.get(k)) for k, d in grid_distributions(points).items()}
    distributions = {k: d for k, d in fitted.items() if d is not None}
    added = 0
    for point in points:
        trials = groups.get(point.key, [])
        state, record = point_state(trials)
        if state == "live":
            continue
        again = rerun is not None and point.key in rerun and state == "done"
        if state == "done" and not again and not _retry(record, retry_failed, retry_environment):
            continue
        attempt = 1 + max((t.user_attrs.get("attempt", 0) for t in trials), default=0)
        attrs = {"point_key": point.key, "point": point.index, "attempt": attempt}
        if point.label is not None:
            attrs["label"] = point.label
        _enqueue(study, point, attrs, distributions)
        added += 1
    return added


PRUNED_REASON_ATTR = "pruned_reason"


def close_without_running(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Close a trial that is no result (a duplicate claim, a lost or interrupted run) as
    PRUNED with ``reason``, so a dashboard does not show it as a failed configuration. False if
    another process finished it first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial_id, PRUNED_REASON_ATTR, reason)
        return bool(storage.set_trial_state_values(trial_id, state=TrialState.PRUNED))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def close_stale(study: optuna.Study) -> int:
    """Close the RUNNING trials whose worker stopped beating (what ``fail_stale_trials`` does,
    but PRUNED with a reason instead of FAIL); the next reconcile queues their points again."""
    from optuna.storages._heartbeat import BaseHeartbeat

    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or not storage.get_heartbeat_interval():
        return 0
    reason = "lost: its worker stopped beating (killed or cut off); the point was queued again"
    stale = storage._get_stale_trial_ids(study._study_id)
    return sum(close_without_running(study, trial_id, reason) for trial_id in stale)


def _retry(record: TrialRecord | None, retry_failed: bool, retry_environment: bool) -> bool:
    if record is None:
        return False
    if retry_environment and record.is_environment_failure:
        return True
    return retry_failed and record.status in FAILED_STATUSES


def claim(study: optuna.Study) -> FrozenTrial | None:
    """Atomically take one WAITING trial (lowest number first), or None if none is left."""
    storage = study._storage
    waiting = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
    for trial in sorted(waiting, key=lambda t: t.number):
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                if getattr(storage, "heartbeat_interval", None):  # beaten from the first moment
                    storage.record_heartbeat(trial._trial_id)
                return storage.get_trial(trial._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def duplicate_of(study: optuna.Study, trial: FrozenTrial) -> int | None:
    """The number of the trial that owns ``trial``'s point instead, if any (lowest wins)."""
    key, attempt = trial.user_attrs.get("point_key"), trial.user_attrs.get("attempt", 1)
    if key is None:
        return None
    for other in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if other.number == trial.number or other.user_attrs.get("point_key") != key:
            continue
        if other.state in LIVE_STATES and other.number < trial.number:
            return other.number
        if record_of(other) is not None and other.user_attrs.get("attempt", 1) >= attempt:
            return other.number
    return None


def finish(
    study: optuna.Study, trial: FrozenTrial, record: TrialRecord, artifacts: Path | None = None
) -> None:
    """Attach ``record`` (and upload it to the artifact folder ``artifacts``, if given) and
    close the trial with the matching Optuna state."""
    save_record(study, trial, record)
    if artifacts is not None:
        attach_record(study._storage, trial, record, artifacts)
    value = record.best_valid
    scored = value is not None and math.isfinite(value)
    if record.status == "pruned":
        study.tell(trial.number, state=TrialState.PRUNED)
    elif record.status in ("ok", "timeout") and scored:
        study.tell(trial.number, value)
    else:
        study.tell(trial.number, state=TrialState.FAIL)


@dataclass
class GridQueue:
    """The grid strategy: every point of ``points`` once (see the module docstring).

    ``attrs`` tag the study (spec, profile, kind, ...); trials run on ``device`` under
    ``trial_timeout``; the opening reconcile retries failed points with ``retry_failed`` and
    reruns the points keyed in ``rerun`` whatever their record; ``command`` is what a worker
    job runs (the ordinary ``ablate`` command with ``--worker-job``); the export goes to
    ``results_dir``, merged into the table there unless ``replace``; each record is uploaded
    to the artifact folder ``artifacts`` too (None: no artifacts)."""

    name: str
    points: list[Point]
    attrs: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    trial_timeout: float | None = None
    retry_failed: bool = False
    rerun: set[str] | None = None
    command: tuple[str, ...] = ()
    results_dir: Path = Path("results")
    artifacts: Path | None = None
    replace: bool = False
    spawn: ClassVar[bool] = True
    failure_wording: ClassVar[dict[str, str]] = GRID_WORDING

    def create(self, storage: Any) -> optuna.Study:
        study = optuna.create_study(
            study_name=self.name, storage=storage, direction="maximize", load_if_exists=True
        )
        tag_study(study, self.attrs, metric_name(self.points))
        return study

    def reconcile(self, study: optuna.Study) -> int:
        """The opening reconcile: environment failures (and failed points, if asked) again."""
        return reconcile(study, self.points, retry_failed=self.retry_failed,
                         retry_environment=True, rerun=self.rerun)  # fmt: skip

    def step(self, study: optuna.Study, run_fn: RunFn) -> Turn:
        """Claim the next queued point (reconciling when none is queued), drop a duplicate,
        run the stored configuration on this worker's device, close it by its record."""
        trial = claim(study)
        if trial is None:
            reconcile(study, self.points)
            trial = claim(study)
        if trial is None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            return Turn.WAIT if running else Turn.DONE
        worker = f"{socket.gethostname()}:{os.getpid()}"
        study._storage.set_trial_user_attr(trial._trial_id, "worker", worker)
        owner = duplicate_of(study, trial)
        if owner is not None:
            study._storage.set_trial_user_attr(trial._trial_id, "duplicate_of", owner)
            close_without_running(study, trial._trial_id,
                                  f"duplicate of trial {owner}: the same point was queued twice "
                                  "by workers reconciling at once; not run")  # fmt: skip
            return Turn.SKIPPED
        try:
            config = TrialConfig.from_dict(config_of(trial))
            config = config if config.device == self.device else config.replace(device=self.device)
        except ConfigError as exc:  # e.g. a stored point this machine cannot run
            finish(study, trial, setup_failure(config_of(trial), exc), self.artifacts)
            return Turn.RAN
        finish(study, trial, self._run(study, trial._trial_id, config, run_fn), self.artifacts)
        return Turn.RAN

    def _run(
        self, study: optuna.Study, trial_id: int, config: TrialConfig, run_fn: RunFn
    ) -> TrialRecord:
        """Run one claimed trial, beating its heartbeat; its per-epoch validation scores become
        intermediate values. Interrupted, it is closed as lost and its point queued again."""

        def on_epoch(event: dict[str, Any]) -> bool:
            valid = event.get("valid")
            if isinstance(valid, (int, float)) and math.isfinite(valid):
                # a dashboard's curve: a storage that fails now must not fail the trial (its
                # record is stored at the end, or the sweep stops there and says so)
                with contextlib.suppress(*STORAGE_ERRORS):
                    study._storage.set_trial_intermediate_value(
                        trial_id, int(event["epoch"]), float(valid)
                    )
            return False

        try:
            with Heartbeat(study._storage, trial_id), one_thread_on_cpu(self.device):
                return run_fn(config, timeout=self.trial_timeout, on_epoch=on_epoch)
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM) or the runner itself broke: the trial is lost,
            # not failed; the next reconcile enqueues its point again (a storage that is gone
            # cannot be told: the trial goes stale there, and its point is queued then)
            with contextlib.suppress(*STORAGE_ERRORS):
                study._storage.set_trial_user_attr(trial_id, "interrupted", True)
                close_without_running(study, trial_id, "interrupted: the point was queued again")
            raise

    def counts(self, study: optuna.Study) -> Counts:
        """Points with a record (``done``), not ``ok`` (``failed``), failed by the environment
        (``environment``: no result, retried next run) and running now."""
        groups = trials_by_key(study.get_trials(deepcopy=False))
        done = failed = environment = running = 0
        for point in self.points:
            trials = groups.get(point.key, [])
            latest = _latest_record(trials)
            if latest is not None:
                done += 1
                failed += latest.status != "ok"
                environment += latest.is_environment_failure
            running += any(t.state == TrialState.RUNNING for t in trials)
        return Counts(done, len(self.points), failed, environment, running)

    def failed(self, study: optuna.Study) -> Iterator[TrialRecord | None]:
        """Each point's latest record."""
        groups = trials_by_key(study.get_trials(deepcopy=False))
        return (point_state(groups.get(p.key, []))[1] for p in self.points)

    def worker_command(self, index: int, total: int) -> list[str]:
        return list(self.command)

    def export(self, study: optuna.Study) -> Path:
        """``RESULTS/<study>.csv``: the points of the spec as it is now (trials of points no
        longer in it stay stored, not exported), merged into the table there unless
        ``replace`` (:func:`bench.harness.export.export_study`)."""
        path = file_in(self.results_dir, self.name, ".csv", "study")
        return export_study(study, path, keys={p.key for p in self.points}, replace=self.replace)


def _latest_record(trials: list[FrozenTrial]) -> TrialRecord | None:
    """The record of the highest-numbered trial that has one (live trials included)."""
    records = [(t.number, record_of(t)) for t in trials]
    records = [(n, r) for n, r in records if r is not None]
    return max(records, key=lambda pair: pair[0])[1] if records else None


def setup_failure(config: dict[str, Any], exc: ConfigError) -> TrialRecord:
    """The record of a stored configuration this machine cannot run (nothing ran)."""
    return TrialRecord("error", config, error=f"{exc.flag}: {exc.message}",
                       failed_phase="setup", failure_kind=failure_kind_of("error", exc))  # fmt: skip
