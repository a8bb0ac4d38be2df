"""``python -m bench ablate SPEC``: run an ablation spec as a resumable, shareable Optuna study.

One study per (spec, profile), named ``<spec>-<profile>``. Every point of the grid (x seed) has
a stable key (a hash of its configuration). The study is a work queue:

1. *Reconcile* (at start, and whenever a worker finds the queue empty): trials whose worker
   stopped beating are failed (``optuna.storages.fail_stale_trials``); every point with no
   record and no WAITING/RUNNING trial is enqueued as a WAITING trial carrying its key, attempt
   number and configuration in user attributes; with ``--retry-failed`` (at start only) points
   whose latest record failed get a new attempt.
2. *Claim*: a worker flips one WAITING trial to RUNNING with ``storage.set_trial_state_values``,
   which is atomic: PostgreSQL locks the row (``SELECT ... FOR UPDATE``) and our SQLite
   storages take the write lock first (``BEGIN IMMEDIATE``, see :mod:`bench.store`), so the
   losing worker sees RUNNING and moves on.
3. *Deduplicate*: two sweeps reconciling at the same moment may both enqueue a point. The trial
   with the lowest number wins deterministically: a claimed trial that finds a lower-numbered
   trial of the same key WAITING/RUNNING (or a record of the same or a later attempt) is closed
   as FAIL with ``duplicate_of`` and not run.
4. *Run* the stored configuration with :func:`bench.trial.run_trial_isolated` (own process),
   beating the heartbeat meanwhile, attach the whole record (:func:`bench.store.save_record`)
   and finish the trial: COMPLETE (value = best validation score) for ``ok`` and scored
   ``timeout`` records, PRUNED for ``pruned``, FAIL for the rest. A FAIL trial always has a
   record: it is a finished failure of its configuration (oom, diverged, ...). A trial whose
   worker died (heartbeat stale) or was interrupted is closed as PRUNED with a
   ``pruned_reason`` and no record, and its point is enqueued again; every trial reports its
   per-epoch validation score as an intermediate value (the dashboard's learning curves). A record whose ``failure_kind`` is
   ``environment`` (data missing, device gone, trial killed from outside) is not the
   configuration's result: the next sweep's first reconcile enqueues its point again, without
   ``--retry-failed`` (later reconciles of the same sweep do not, so a sweep always ends).

Before any of this, :mod:`bench.preflight` checks once what the points need (datasets, device,
storage, packages); if anything is missing the sweep stops with one line per problem and
nothing stored (:class:`~bench.preflight.PreflightError`).

Workers keep polling while other trials are RUNNING, so a point whose worker died elsewhere is
picked up once its heartbeat goes stale: the command ends when every point has a record.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import multiprocessing
import os
import shlex
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from bench import launch, preflight
from bench.config import TrialConfig
from bench.errors import ConfigError, DeviceUnavailable
from bench.record import TrialRecord, count_failures
from bench.spec import DEFAULT_PROFILE, Point, SpecError, load_spec
from bench.store import (
    DEFAULT_HEARTBEAT_S,
    adopt_unbeaten,
    export_study,
    open_storage,
    record_of,
    save_record,
    storage_url,
)

RunFn = Callable[..., TrialRecord]  # run_fn(config, timeout=None, on_epoch=None) -> TrialRecord
FAILED_STATUSES = ("oom", "diverged", "timeout", "error")
LIVE_STATES = (TrialState.WAITING, TrialState.RUNNING)
POLL_S = 2.0


def study_name(spec: str, profile: str) -> str:
    return f"{spec}-{profile}"


def default_run_fn() -> RunFn:
    from bench.trial import run_trial_isolated

    return run_trial_isolated


# --- the study as a work queue ----------------------------------------------------------------
def open_study(url: str, name: str, attrs: dict[str, Any], heartbeat: int | None) -> optuna.Study:
    """Create or load the study (safe when many workers start at once) and tag it."""
    storage = open_storage(url, heartbeat_interval=heartbeat)
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True
    )
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study


def _by_key(trials: list[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
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


def reconcile(
    study: optuna.Study,
    points: list[Point],
    retry_failed: bool = False,
    retry_environment: bool = False,
) -> int:
    """Fail stale trials, then enqueue every point that is missing (or failed, if asked).

    ``retry_environment`` (a sweep's first reconcile) also enqueues points whose latest record
    is an environment failure; ``retry_failed`` every failed point. Returns how many trials
    were enqueued. Safe to run concurrently: a point enqueued twice is resolved when claimed
    (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        adopt_unbeaten(study._storage, study._study_id)
        close_stale(study)
    groups = _by_key(study.get_trials(deepcopy=False))
    added = 0
    for point in points:
        trials = groups.get(point.key, [])
        state, record = point_state(trials)
        if state == "live":
            continue
        if state == "done" and not _retry(record, retry_failed, retry_environment):
            continue
        attempt = 1 + max((t.user_attrs.get("attempt", 0) for t in trials), default=0)
        study.enqueue_trial(
            {},
            user_attrs={
                "point_key": point.key,
                "point": point.index,
                "attempt": attempt,
                "label": point.label,
                "config": point.config.to_dict(),
            },
        )
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


class _Heartbeat:
    """Beats the storage's heartbeat for one trial while it runs (Optuna does this only inside
    ``study.optimize``; we ask and tell by hand)."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self._storage, self._trial_id = storage, trial_id
        self._stop = threading.Event()
        self._interval = (
            storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        )
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat must not kill the trial
                self._storage.record_heartbeat(self._trial_id)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> _Heartbeat:
        if self._interval:
            self._storage.record_heartbeat(self._trial_id)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def finish(study: optuna.Study, trial: FrozenTrial, record: TrialRecord) -> None:
    """Attach ``record`` and close the trial with the matching Optuna state."""
    save_record(study, trial, record)
    value = record.best_valid
    scored = value is not None and math.isfinite(value)
    if record.status == "pruned":
        study.tell(trial.number, state=TrialState.PRUNED)
    elif record.status in ("ok", "timeout") and scored:
        study.tell(trial.number, value)
    else:
        study.tell(trial.number, state=TrialState.FAIL)


def _set_device(config: TrialConfig, device: str) -> TrialConfig:
    return config if config.device == device else config.replace(device=device)


@dataclass
class WorkerOptions:
    url: str
    study_name: str
    points: list[Point]
    device: str = "cpu"
    heartbeat: int = DEFAULT_HEARTBEAT_S
    trial_timeout: float | None = None
    poll_s: float = POLL_S
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for this worker's trials


def worker_loop(options: WorkerOptions, run_fn: RunFn | None = None) -> int:
    """Claim and run trials until every point has a record; returns how many this worker ran."""
    if options.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = options.gpu
    run_fn = run_fn or default_run_fn()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=options.study_name,
        storage=open_storage(options.url, heartbeat_interval=options.heartbeat),
    )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ran = 0
    while True:
        trial = claim(study)
        if trial is None:
            reconcile(study, options.points)
            trial = claim(study)
        if trial is None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not running:
                return ran
            time.sleep(options.poll_s)  # others are running: wait, they may die
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "worker", worker)
        owner = duplicate_of(study, trial)
        if owner is not None:
            study._storage.set_trial_user_attr(trial._trial_id, "duplicate_of", owner)
            close_without_running(
                study,
                trial._trial_id,
                f"duplicate of trial {owner}: the same point was queued twice by workers "
                "reconciling at once; not run",
            )
            continue
        trial_id = trial._trial_id
        try:
            config = _set_device(TrialConfig.from_dict(trial.user_attrs["config"]), options.device)
        except ConfigError as exc:  # e.g. a stored point this machine cannot run
            error = f"{exc.flag}: {exc.message}"
            kind = "environment" if isinstance(exc, DeviceUnavailable) else "config"
            bad = TrialRecord(
                "error",
                trial.user_attrs["config"],
                error=error,
                failed_phase="setup",
                failure_kind=kind,
            )
            finish(study, trial, bad)
            ran += 1
            continue

        def on_epoch(event: dict[str, Any], _id: int = trial_id) -> bool:
            valid = event.get("valid")
            if isinstance(valid, (int, float)) and math.isfinite(valid):
                study._storage.set_trial_intermediate_value(_id, int(event["epoch"]), float(valid))
            return False

        try:
            with _Heartbeat(study._storage, trial_id):
                record = run_fn(config, timeout=options.trial_timeout, on_epoch=on_epoch)
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM) or the runner itself broke: the trial is lost,
            # not failed; the next reconcile enqueues its point again
            study._storage.set_trial_user_attr(trial_id, "interrupted", True)
            close_without_running(study, trial_id, "interrupted: the point was queued again")
            raise
        finish(study, trial, record)
        ran += 1


def _worker_process(options: WorkerOptions, run_fn: RunFn | None, ran: Any) -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        count = worker_loop(options, run_fn)
    except KeyboardInterrupt:
        sys.exit(130)
    with ran.get_lock():
        ran.value += count


# --- progress and summary ---------------------------------------------------------------------
def progress_counts(study: optuna.Study, points: list[Point]) -> dict[str, int]:
    """Points with a record (``done``), not ``ok`` (``failed``), failed by the environment
    (``environment``: no result, retried next run) and running now."""
    groups = _by_key(study.get_trials(deepcopy=False))
    counts = {"done": 0, "failed": 0, "environment": 0, "running": 0}
    for point in points:
        trials = groups.get(point.key, [])
        records = [(t.number, record_of(t)) for t in trials]
        records = [(n, r) for n, r in records if r is not None]
        if records:
            counts["done"] += 1
            latest = max(records, key=lambda pair: pair[0])[1]
            if latest.status != "ok":
                counts["failed"] += 1
            if latest.is_environment_failure:
                counts["environment"] += 1
        if any(t.state == TrialState.RUNNING for t in trials):
            counts["running"] += 1
    return counts


def _monitor(study: optuna.Study, points: list[Point], stop: threading.Event, show: bool) -> None:
    from tqdm import tqdm

    counts = progress_counts(study, points)
    bar = tqdm(
        total=len(points),
        initial=counts["done"],
        desc=study.study_name,
        unit="trial",
        disable=not show,
        dynamic_ncols=True,
    )
    shown: dict[str, int] | None = None
    try:
        while True:
            stopping = stop.wait(POLL_S)
            counts = progress_counts(study, points)
            if counts != shown:  # redraw on change only: logs stay short when not a terminal
                bar.set_postfix(failed=counts["failed"], running=counts["running"], refresh=False)
                bar.update(counts["done"] - bar.n)
                bar.refresh()
                shown = counts
            if stopping:
                return
    finally:
        bar.close()


def failure_lines(study: optuna.Study, points: list[Point], command: str) -> list[str]:
    """One line per kind of failure among the points' latest records, with the command that
    runs them again (``command`` reruns this sweep)."""
    groups = _by_key(study.get_trials(deepcopy=False))
    found = count_failures(point_state(groups.get(p.key, []))[1] for p in points)
    lines = []
    for kind, failed in found.items():
        points_ = f"{failed.total} point{'s' if failed.total != 1 else ''}"
        if kind == "config":
            lines.append(f"configuration failures: {points_} ({failed.shown()}) are final "
                         f"results; to run them again: {command} --retry-failed")  # fmt: skip
        else:
            lines.append(f"environment failures: {points_} ({failed.shown()}; e.g. "
                         f"{failed.example}) are not results; once that is fixed, a plain rerun "
                         f"retries them: {command}")  # fmt: skip
    return lines


def summary_table(study: optuna.Study, points: list[Point]) -> str:
    """Per grid point (seeds pooled): status counts, mean test score, peak memory, params."""
    import pandas as pd

    groups = _by_key(study.get_trials(deepcopy=False))
    rows = []
    for point in points:
        state, record = point_state(groups.get(point.key, []))
        row: dict[str, Any] = {"label": point.label or ""}
        row.update({k: v for k, v in point.varying.items() if k != "seed"})
        row["status"] = record.status if record else state
        row["score"] = record.test_at_best_valid if record else None
        peak = record.peak_memory_bytes if record else None
        row["peak_MiB"] = peak / 2**20 if peak is not None else None
        row["params"] = record.params if record else None
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return "(no points)"
    keys = [c for c in frame.columns if c not in ("status", "score", "peak_MiB", "params")]
    if not frame["label"].astype(bool).any():
        keys.remove("label")
        frame = frame.drop(columns="label")
    table = frame.groupby(keys, sort=False, dropna=False).agg(
        status=("status", lambda s: " ".join(f"{v} {k}" for k, v in s.value_counts().items())),
        score=("score", "mean"),
        peak_MiB=("peak_MiB", "mean"),
        params=("params", "max"),
    )
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        return table.reset_index().to_string(index=False, float_format=lambda v: f"{v:.4g}")


# --- the command ------------------------------------------------------------------------------
@dataclass
class SweepResult:
    study_name: str
    url: str
    total: int
    done: int
    failed: int
    ran_here: int
    seconds: float
    environment: int = 0  # points whose latest record is an environment failure (no result)

    @property
    def complete(self) -> bool:
        """Every point has a result (an environment failure is none)."""
        return self.done == self.total and self.environment == 0


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [g for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def run_sweep(
    spec: str | Path,
    profile: str = DEFAULT_PROFILE,
    storage: str | None = None,
    workers: int | None = None,
    seeds: int | None = None,
    retry_failed: bool = False,
    results_dir: Path = Path("results"),
    device: str = "auto",
    heartbeat: int = DEFAULT_HEARTBEAT_S,
    trial_timeout: float | None = None,
    run_fn: RunFn | None = None,
    progress: bool = True,
    poll_s: float = POLL_S,
    check: bool = True,
) -> SweepResult:
    """Run (or resume) the study of ``spec``/``profile``; see the module docstring.

    ``run_fn`` replaces :func:`bench.trial.run_trial_isolated` (it must be a module-level
    function when ``workers > 1``: worker processes are spawned). With ``check`` (the
    default) the points' requirements are checked first and a
    :class:`~bench.preflight.PreflightError` raised, with nothing stored, if any is unmet."""
    clock = time.perf_counter()
    parsed = load_spec(spec)
    points = parsed.points(profile, range(seeds) if seeds else None)
    device = _resolve_device(device)
    gpus = _gpu_ids() if device == "cuda" else []
    if workers is None:
        workers = max(1, len(gpus))
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    name = study_name(parsed.name, profile)
    url = storage_url(storage, parsed.name, results_dir)
    if check:
        # the configs as the workers will run them (device set), unvalidated: a missing
        # device is a preflight problem here, not a ConfigError
        configs = [dataclasses.replace(p.config, device=device) for p in points]
        problems = preflight.check(configs, url, labels=[point_label(p) for p in points])
        if problems:
            raise preflight.PreflightError(problems)
    attrs = {
        "spec": parsed.name,
        "profile": profile,
        "kind": "ablation",
        "description": parsed.profiles[profile].description,
        "reproduces": parsed.reproduces,
    }
    study = open_study(url, name, attrs, heartbeat)
    reconcile(study, points, retry_failed=retry_failed, retry_environment=True)

    def options(i: int) -> WorkerOptions:
        gpu = gpus[i % len(gpus)] if gpus else None
        return WorkerOptions(url, name, points, device, heartbeat, trial_timeout, poll_s, gpu)

    stop = threading.Event()
    monitor = threading.Thread(target=_monitor, args=(study, points, stop, progress), daemon=True)
    monitor.start()
    ran = 0
    try:
        if workers == 1:
            ran = worker_loop(options(0), run_fn)
        else:
            ctx = multiprocessing.get_context("spawn")
            counter = ctx.Value("i", 0)
            procs = [
                ctx.Process(target=_worker_process, args=(options(i), run_fn, counter))
                for i in range(workers)
            ]
            for proc in procs:
                proc.start()
            try:
                for proc in procs:
                    proc.join()
                ran = counter.value
            except KeyboardInterrupt:
                for proc in procs:
                    proc.join(timeout=30)
                raise
    finally:
        stop.set()
        monitor.join()
    counts = progress_counts(study, points)
    return SweepResult(
        name,
        url,
        len(points),
        counts["done"],
        counts["failed"],
        ran,
        time.perf_counter() - clock,
        counts["environment"],
    )


def point_label(point: Point) -> str:
    """How a point is named in messages: its label and the values that vary across the grid."""
    shown = " ".join(f"{k}={v}" for k, v in point.varying.items())
    return f"{point.label} {shown}" if point.label else shown


def rerun_command(args: argparse.Namespace) -> str:
    """The ``ablate`` command that resumes this sweep (same study, storage and seeds)."""
    words = ["python", "-m", "bench", "ablate", str(args.spec), "--profile", args.profile]
    if args.storage:
        words += ["--storage", args.storage]
    if Path(args.results_dir) != Path("results"):
        words += ["--results-dir", str(args.results_dir)]
    if args.seeds:
        words += ["--seeds", str(args.seeds)]
    if args.device != "auto":
        words += ["--device", args.device]
    return shlex.join(words)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="spec name (ablations/NAME.toml) or path to a .toml file")
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help="cpu (default), real, paper, ..."
    )
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: sqlite:///RESULTS/SPEC.db); "
        "e.g. postgresql+psycopg2://user@host/db to share one study across machines",
    )
    parser.add_argument(
        "--workers", type=int, help="local worker processes (default: one per GPU, else 1)"
    )
    parser.add_argument("--seeds", type=int, help="run seeds 0..N-1 instead of the spec's seeds")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the points whose latest record is oom/diverged/timeout/error",
    )
    parser.add_argument(
        "--skip-missing-profile",
        action="store_true",
        help="exit quietly (0) when the spec has no such profile",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=Path("results"), help="default: results"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where trials run (default: cuda if available)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=DEFAULT_HEARTBEAT_S,
        help="seconds between worker heartbeats; a trial silent for 3 beats is "
        f"taken as lost (default {DEFAULT_HEARTBEAT_S})",
    )
    parser.add_argument("--trial-timeout", type=float, help="hard wall-clock limit per trial (s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and list the points; run nothing"
    )
    # a job of --launcher slurm: work, summarise, but leave the export to the submitter
    parser.add_argument("--worker-job", action="store_true", help=argparse.SUPPRESS)
    launch.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        print(f"ablate: {exc}", file=sys.stderr)
        return 2
    if args.profile not in spec.profiles:
        if args.skip_missing_profile:
            print(f"ablate: {spec.name} has no profile {args.profile!r}; skipped")
            return 0
        print(
            f"ablate: {spec.path}: profiles.{args.profile}: no such profile "
            f"(this spec has: {', '.join(spec.profiles)})",
            file=sys.stderr,
        )
        return 2
    if args.workers is not None and args.workers < 1:
        print("ablate: --workers: must be at least 1", file=sys.stderr)
        return 2
    if args.seeds is not None and args.seeds < 1:
        print("ablate: --seeds: must be at least 1", file=sys.stderr)
        return 2
    points = spec.points(args.profile, range(args.seeds) if args.seeds else None)
    if args.dry_run:
        for point in points:
            shown = ", ".join(f"{k}={v}" for k, v in point.varying.items())
            print(f"{point.index:4d} {point.key} {point.label or ''} {shown}")
        print(f"{len(points)} trials in {study_name(spec.name, args.profile)}")
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.launcher != "local":
        try:
            launch.validate(args, args.storage)
        except ConfigError as exc:
            print(f"ablate: {exc.for_cli()}", file=sys.stderr)
            return 2
    try:
        if args.launcher != "local":
            result = launch_sweep(spec.path, args)
        else:
            result = run_sweep(
                spec.path,
                args.profile,
                args.storage,
                args.workers,
                args.seeds,
                args.retry_failed,
                args.results_dir,
                args.device,
                args.heartbeat,
                args.trial_timeout,
                progress=not args.no_progress,
            )
    except preflight.PreflightError as exc:
        preflight.report(exc.problems, "ablate")
        return 2
    except SQLAlchemyError as exc:  # the storage went away mid-sweep: nothing finished is lost
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(
            f"ablate: the storage failed mid-sweep ({first}); finished trials are kept, the "
            f"running one is retried: once it is reachable again, run {rerun_command(args)}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "\nablate: interrupted; finished trials are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130
    storage = open_storage(result.url, heartbeat_interval=None)
    study = optuna.load_study(study_name=result.study_name, storage=storage)
    print(summary_table(study, points))
    print(
        f"{result.study_name}: {result.done}/{result.total} points have a record "
        f"({result.failed} not ok), {result.ran_here} run now, {result.seconds:.0f} s; "
        f"storage {result.url}"
    )
    for line in failure_lines(study, points, rerun_command(args)):
        print(line)
    if result.complete and not args.worker_job:
        export_study(study, args.results_dir / f"{result.study_name}.csv",
                     keys={p.key for p in points})  # fmt: skip
    return 0 if result.complete else 1


def launch_sweep(spec_path: Path, args: argparse.Namespace) -> SweepResult:
    """``--launcher slurm|submitit-local``: check and queue here, then ``--jobs`` worker jobs
    (each the ordinary ``ablate`` command on the shared storage); see :mod:`bench.launch`."""
    clock = time.perf_counter()
    parsed = load_spec(spec_path)
    points = parsed.points(args.profile, range(args.seeds) if args.seeds else None)
    name = study_name(parsed.name, args.profile)
    url = storage_url(args.storage, parsed.name, args.results_dir)
    device = "cuda" if args.device == "auto" and args.gpus_per_job else args.device
    configs = (
        [dataclasses.replace(p.config, device=device) for p in points]
        if device != "auto"
        else [p.config for p in points]
    )
    problems = preflight.check(configs, url, labels=[point_label(p) for p in points])
    if problems:
        raise preflight.PreflightError(problems)
    attrs = {
        "spec": parsed.name,
        "profile": args.profile,
        "kind": "ablation",
        "description": parsed.profiles[args.profile].description,
        "reproduces": parsed.reproduces,
    }
    study = open_study(url, name, attrs, args.heartbeat)
    reconcile(study, points, retry_failed=args.retry_failed, retry_environment=True)
    command = [sys.executable, *shlex.split(rerun_command(args))[1:]]
    command += ["--worker-job", "--no-progress", "--heartbeat", str(args.heartbeat)]
    if args.trial_timeout is not None:
        command += ["--trial-timeout", str(args.trial_timeout)]
    if args.gpus_per_job > 1:
        command += ["--workers", str(args.gpus_per_job)]  # one worker per GPU of the job
    codes = launch.run_jobs(args, name, [command] * args.jobs, args.results_dir)
    counts = progress_counts(study, points)
    return SweepResult(
        name,
        url,
        len(points),
        counts["done"],
        counts["failed"],
        sum(1 for c in codes if c == 0),
        time.perf_counter() - clock,
        counts["environment"],
    )


__all__ = [
    "SweepResult",
    "WorkerOptions",
    "claim",
    "duplicate_of",
    "failure_lines",
    "finish",
    "point_state",
    "reconcile",
    "run_sweep",
    "study_name",
    "summary_table",
    "worker_loop",
]
