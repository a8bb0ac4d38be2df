"""Where trials live: Optuna storages, records attached to Optuna trials, and tidy CSV export.

One storage holds the studies of one ablation (or tuning run): by default a SQLite file
``results/<name>.db`` (enough for the workers of one machine); any Optuna RDB URL, e.g.
``postgresql+psycopg2://user@host/db``, lets workers on many machines share the same studies.

Every finished trial carries its whole :class:`~bench.record.TrialRecord` as the user attribute
``record`` (the JSON dict), plus a few flat attributes (``status``, ``best_valid``,
``test_at_best_valid``, ``peak_memory_bytes``, ``params``) so the Optuna dashboard shows
something useful. A trial without a ``record`` was lost (its worker died or was interrupted).

Concurrency. On PostgreSQL/MySQL, Optuna's ``study.ask()`` pops a WAITING trial with
``SELECT ... FOR UPDATE`` in one transaction, so two workers never pop the same trial. SQLite
has no ``FOR UPDATE`` and Python's driver starts transactions lazily, so two processes can both
read "WAITING" and both set "RUNNING"; :func:`open_storage` therefore makes every SQLite
transaction ``BEGIN IMMEDIATE`` (the write lock is taken before the read), which serialises the
read-check-write of the pop, and sets a busy timeout so waiting workers queue instead of failing.
SQLite files use the write-ahead log (``<name>.db-wal`` next to the file while in use); keep
them on a local disk, and use PostgreSQL for workers on several machines.

Clusters without a database server: ``journal:///shared/fs/study.log`` opens Optuna's
``JournalStorage`` on an append-only file (``JournalFileBackend``, which locks the file for each
append, so many workers on a shared filesystem can use it). The journal has no heartbeat of its
own; :class:`JournalHeartbeatStorage` adds one (a ``heartbeat`` system attribute per running
trial, the time of its last beat), so a dead worker's trial goes stale there as on an RDB.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from bench.record import TrialRecord

RECORD_ATTR = "record"
FLAT_ATTRS = ("status", "best_valid", "test_at_best_valid", "peak_memory_bytes", "params")
# how long a SQLite connection waits for the write lock before giving up (seconds)
SQLITE_BUSY_TIMEOUT_S = 120.0
DEFAULT_HEARTBEAT_S = 20


JOURNAL_SCHEME = "journal://"


def is_journal(url: str) -> bool:
    """``journal:///path/file.log``: Optuna's JournalStorage on a (shared) file."""
    return url.startswith(JOURNAL_SCHEME)


def journal_path(url: str) -> Path:
    """The file of a ``journal:///abs/path`` or ``journal://relative/path`` URL."""
    return Path(url[len(JOURNAL_SCHEME) :]).expanduser()


class JournalHeartbeatStorage(optuna.storages.JournalStorage, BaseHeartbeat):
    """A JournalStorage with heartbeats (why: see the module docstring). A RUNNING trial whose
    last beat (or, without one, its start) is older than ``grace_period`` seconds is stale."""

    HEARTBEAT_ATTR = "heartbeat"

    def __init__(self, path: Path, heartbeat_interval: int | None, grace_period: int | None):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback: Any = None

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, self.HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if self.heartbeat_interval is None or self.grace_period is None:
            return []
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            last = trial.system_attrs.get(self.HEARTBEAT_ATTR)
            if last is None and trial.datetime_start is not None:
                last = trial.datetime_start.timestamp()
            if last is not None and now - float(last) > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self.heartbeat_stale_trial_callback


def storage_url(storage: str | None, name: str, results_dir: Path = Path("results")) -> str:
    """The storage URL to use: ``storage`` if given, else a SQLite file ``<results_dir>/<name>.db``."""
    if storage:
        return storage
    path = Path(results_dir) / f"{name}.db"
    return f"sqlite:///{path.as_posix()}"


def _configure_sqlite(storage: RDBStorage) -> None:
    """Serialise SQLite transactions (see the module docstring) and wait on a busy database."""
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy, not the driver, decide when a transaction begins
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        # write-ahead log: a commit appends instead of syncing the whole file (fast, and safe
        # against killed processes; a power cut can lose the last commits, never consistency)
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    # connections opened while Optuna created the tables lack the hooks: start afresh
    engine.dispose()


def open_storage(
    url: str, heartbeat_interval: int | None = DEFAULT_HEARTBEAT_S, grace_period: int | None = None
) -> RDBStorage | JournalHeartbeatStorage:
    """An Optuna storage for ``url`` (an RDB URL, or ``journal:///path``), with a heartbeat so
    dead workers' trials go stale.

    ``grace_period`` defaults to 3 heartbeats: a RUNNING trial whose worker has not beaten for
    that long is failed by ``optuna.storages.fail_stale_trials`` (and its point re-queued by
    the sweep)."""
    from sqlalchemy.engine import make_url

    if heartbeat_interval is not None and grace_period is None:
        grace_period = 3 * heartbeat_interval
    if is_journal(url):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return JournalHeartbeatStorage(journal_path(url), heartbeat_interval, grace_period)

    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    engine_kwargs: dict[str, Any] = {}
    if is_sqlite:
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True  # remote servers drop idle connections
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                )
            break
        except SQLAlchemyError:
            # workers opening a fresh database at once race to create Optuna's tables and
            # version rows; the loser finds them created on the next try
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    if is_sqlite:
        _configure_sqlite(storage)
    return storage


def _trial_id(study: optuna.Study, trial: int | optuna.trial.Trial | FrozenTrial) -> int:
    if isinstance(trial, int):
        return trial
    return trial._trial_id  # Trial and FrozenTrial both carry the storage id


def _jsonable(value: Any) -> Any:
    """NaN/inf survive Optuna's JSON round trip, but keep flat attrs plain floats or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_record(
    study: optuna.Study,
    trial_id_or_trial: int | optuna.trial.Trial | FrozenTrial,
    record: TrialRecord,
) -> None:
    """Attach ``record`` to a trial that is not finished yet (call it before ``study.tell``)."""
    trial_id = _trial_id(study, trial_id_or_trial)
    storage = study._storage  # the public Trial API needs a live Trial; ids come from workers
    storage.set_trial_user_attr(trial_id, RECORD_ATTR, json.loads(record.to_json()))
    for key in FLAT_ATTRS:
        storage.set_trial_user_attr(trial_id, key, _jsonable(getattr(record, key)))


def record_of(trial: FrozenTrial) -> TrialRecord | None:
    """The record stored with ``trial``, or None if the trial never finished (lost)."""
    values = trial.user_attrs.get(RECORD_ATTR)
    return TrialRecord.from_dict(values) if isinstance(values, dict) else None


def load_records(study: optuna.Study) -> list[tuple[FrozenTrial, TrialRecord | None]]:
    """Every trial of ``study`` (by number) with its record (None for lost or waiting trials)."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    return [(trial, record_of(trial)) for trial in trials]


# --- export -----------------------------------------------------------------------------------
LEAD_COLUMNS = ("study", "spec", "profile", "kind", "trial_number", "optuna_state")
# sweep bookkeeping (user attrs written by bench.sweep), appended after the record's columns
POINT_ATTRS = ("label", "point", "point_key", "attempt")


def trial_rows(
    study: optuna.Study, extra_columns: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One flat dict per trial: lead columns, ``TrialRecord.flat()``, then sweep bookkeeping.

    ``current`` is True for the row that stands for its grid point: the latest attempt that
    finished with a record (earlier attempts were superseded by ``--retry-failed``). An
    environment failure (``failure_kind`` = ``environment``: data missing, device gone) is never
    current: it is not a result of its configuration, and the next sweep retries it. Trials
    without a record (lost, duplicate claims, waiting) get their configuration from the
    ``config`` user attribute written when the point was queued, and an empty ``status``."""
    extra = {
        "spec": study.user_attrs.get("spec", study.study_name),
        "profile": study.user_attrs.get("profile"),
        "kind": study.user_attrs.get("kind"),
        **(extra_columns or {}),
    }
    pairs = load_records(study)
    latest: dict[str, int] = {}
    for trial, record in pairs:
        key = trial.user_attrs.get("point_key")
        if record is not None and key is not None and not record.is_environment_failure:
            latest[key] = max(latest.get(key, -1), trial.number)
    rows = []
    for trial, record in pairs:
        row: dict[str, Any] = {"study": study.study_name}
        row.update({k: extra.get(k) for k in LEAD_COLUMNS if k in extra})
        row.update({k: v for k, v in extra.items() if k not in LEAD_COLUMNS})
        row["trial_number"] = trial.number
        row["optuna_state"] = trial.state.name
        if record is not None:
            row.update(record.flat())
            row["failure_kind"] = record.kind_of_failure()  # also for records stored before it
        else:
            config = trial.user_attrs.get("config") or {}
            row.update(TrialRecord(status="", config=config).flat())
            row["status"] = None
            row["epochs_done"] = None
        for key in POINT_ATTRS:
            row[key] = trial.user_attrs.get(key)
        point_key = trial.user_attrs.get("point_key")
        row["current"] = (
            record is not None
            and not record.is_environment_failure
            and (point_key is None or latest.get(point_key) == trial.number)
        )
        rows.append(row)

    def order(row: dict[str, Any]) -> tuple[Any, ...]:
        point = row.get("point")
        return (point is None, point if point is not None else 0, row["trial_number"])

    return sorted(rows, key=order)


def export_study(
    study: optuna.Study,
    out_path: Path,
    extra_columns: dict[str, Any] | None = None,
    keys: set[str] | None = None,
) -> Path:
    """Write ``study``'s trials as a tidy CSV (one row per trial, rows in grid order).

    ``keys``: the point keys of the spec as it is now; trials of points no longer in it (the
    spec changed since they ran) stay in the storage but not in the export, so the report
    judges what the spec asks for."""
    import pandas as pd

    rows = trial_rows(study, extra_columns)
    if keys is not None:
        rows = [r for r in rows if r.get("point_key") is None or r["point_key"] in keys]
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=list(LEAD_COLUMNS))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_path, index=False)
    return out_path


def study_names(url: str, prefix: str) -> list[str]:
    """Studies in the storage named ``prefix`` or ``prefix-<something>`` (sorted)."""
    storage = open_storage(url, heartbeat_interval=None)
    names = optuna.study.get_all_study_names(storage=storage)
    return sorted(n for n in names if n == prefix or n.startswith(prefix + "-"))


# --- the `export` command --------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="spec (or tuning study) name, e.g. depth")
    parser.add_argument("--profile", help="export only the study NAME-PROFILE (default: all)")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///RESULTS/NAME.db)")
    parser.add_argument(
        "--results-dir", type=Path, default=Path("results"), help="default: results"
    )


def main(args: argparse.Namespace) -> int:
    name = Path(args.name).stem if args.name.endswith(".toml") else args.name
    url = storage_url(args.storage, name, args.results_dir)
    if args.storage is None and not (args.results_dir / f"{name}.db").exists():
        print(
            f"export: nothing stored for {name!r} (no {args.results_dir / name}.db); "
            f"run 'python -m bench ablate {name}' first",
            file=sys.stderr,
        )
        return 1 if args.profile else 0
    names = study_names(url, name)
    if args.profile:
        names = [n for n in names if n == f"{name}-{args.profile}"]
    if not names:
        which = f"{name}-{args.profile}" if args.profile else f"{name} or {name}-*"
        print(f"export: no study named {which} in {url}", file=sys.stderr)
        return 1 if args.profile else 0
    storage = open_storage(url, heartbeat_interval=None)
    for study_name in names:
        study = optuna.load_study(study_name=study_name, storage=storage)
        path = export_study(study, args.results_dir / f"{study_name}.csv")
        counts: dict[str, int] = {}
        for trial in study.get_trials(deepcopy=False):
            status = trial.user_attrs.get("status") or trial.state.name.lower()
            record = record_of(trial)
            if record is not None and record.is_environment_failure:
                status += " (environment: not a result)"
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"wrote {path} ({len(study.trials)} trials: {summary})")
    return 0


__all__ = [
    "FLAT_ATTRS",
    "RECORD_ATTR",
    "TrialState",
    "export_study",
    "load_records",
    "open_storage",
    "record_of",
    "save_record",
    "storage_url",
    "study_names",
    "trial_rows",
]


def adopt_unbeaten(storage: Any, study_id: int) -> int:
    """Give every RUNNING trial that has no heartbeat one, and return how many.

    Why: Optuna's stale-trial check skips trials without a heartbeat row, so a worker killed
    between claiming a trial and its first beat would leave that point RUNNING forever. Once
    adopted, such a trial goes stale after the grace period unless its worker beats it."""
    from optuna.storages import RDBStorage
    from optuna.storages._rdb import models

    if not isinstance(storage, RDBStorage) or storage.heartbeat_interval is None:
        return 0
    session = storage.scoped_session()
    try:
        unbeaten = [
            t.trial_id
            for t in session.query(models.TrialModel)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == optuna.trial.TrialState.RUNNING)
            .all()
            if not t.heartbeats
        ]
    finally:
        session.close()
    for trial_id in unbeaten:
        storage.record_heartbeat(trial_id)
    return len(unbeaten)
