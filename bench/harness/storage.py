"""Where trials live: Optuna storages and records attached to Optuna trials (the tidy CSV
export reads them: :mod:`bench.harness.export`).

One storage holds the studies of one ablation (or tuning run): by default a SQLite file
``results/<name>.db`` (enough for the workers of one machine); any Optuna RDB URL, e.g.
``postgresql+psycopg2://user@host/db``, lets workers on many machines share the same studies
(its password stays out of output, command lines and job folders: :mod:`bench.harness.credentials`).

Every finished trial carries its whole :class:`~bench.record.TrialRecord` as the *system*
attribute ``record`` (the JSON dict: what the export, resumption and the tuner read), and the
record's flat attributes as user attributes (``status``, ``best_valid``, ``param_count``, the
memory phases, ...: :meth:`~bench.record.TrialRecord.flat_attrs`), short values the Optuna
dashboard shows, sorts and plots (it shows user attributes only: the long record and the
configuration, ~2 KB and ~700 characters on one line, made a trial's page thousands of pixels
wide). A person reads the whole record as the trial's artifact (:mod:`bench.harness.artifacts`).
A queued trial's configuration is the system attribute ``config`` (:func:`config_of`). A
trial without a ``record`` was lost (its worker died or was interrupted). Studies stored before
kept both as user attributes; :func:`record_of` and :func:`config_of` read those too.

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

import json
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from bench.exports.paths import file_in
from bench.record import TrialRecord

# system attributes of a trial: its whole record, and (queued trials) its configuration
RECORD_ATTR = "record"
CONFIG_ATTR = "config"
# a flat text attribute (an error) is its first line, cut here with a mark: the dashboard draws
# each attribute on one line; the whole text is in the record (and its artifact)
FLAT_MAX_CHARS = 160
# how long a SQLite connection waits for the write lock before giving up (seconds)
SQLITE_BUSY_TIMEOUT_S = 120.0
DEFAULT_HEARTBEAT_S = 20


JOURNAL_SCHEME = "journal://"
# what a storage raises when its database fails (a server stopped, a connection cut): Optuna's
# RDB storage wraps SQLAlchemy's errors, or lets them through
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    optuna.exceptions.StorageInternalError,
)


def storage_failure(exc: BaseException) -> str:
    """What failed, in one line: the first line of the database's error behind ``exc``
    (Optuna's wrapper of it says only "an exception is raised during the commit")."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, SQLAlchemyError):
        cause = cause.__cause__
    shown = cause if cause is not None else exc
    lines = str(shown).strip().splitlines()
    return lines[0] if lines else type(shown).__name__


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
    """The storage URL to use: ``storage`` if given, else a SQLite file ``<results_dir>/<name>.db``
    (``name`` checked: :func:`bench.exports.paths.file_in`, an ``UnsafeName`` otherwise)."""
    if storage:
        return storage
    path = file_in(Path(results_dir), name, ".db", "spec")
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


def _short(value: Any) -> Any:
    """A flat attribute as the dashboard draws it well: text as its first line, cut."""
    if not isinstance(value, str):
        return value
    line = value.strip().splitlines()[0] if value.strip() else value
    return line if len(line) <= FLAT_MAX_CHARS else line[: FLAT_MAX_CHARS - 1] + "…"


def save_record(
    study: optuna.Study,
    trial_id_or_trial: int | optuna.trial.Trial | FrozenTrial,
    record: TrialRecord,
) -> None:
    """Attach ``record`` to a trial that is not finished yet (call it before ``study.tell``):
    whole as a system attribute, its flat attributes as user attributes (the dashboard's)."""
    trial_id = _trial_id(study, trial_id_or_trial)
    storage = study._storage  # the public Trial API needs a live Trial; ids come from workers
    storage.set_trial_system_attr(trial_id, RECORD_ATTR, json.loads(record.to_json()))
    for key, value in record.flat_attrs().items():
        storage.set_trial_user_attr(trial_id, key, _short(value))


def has_record(storage: Any, trial_id: int) -> bool:
    """Whether the trial ``trial_id`` has a record stored (a live trial: no FrozenTrial)."""
    return RECORD_ATTR in storage.get_trial_system_attrs(trial_id)


def record_of(trial: FrozenTrial) -> TrialRecord | None:
    """The record stored with ``trial``, or None if the trial never finished (lost)."""
    values = trial.system_attrs.get(RECORD_ATTR, trial.user_attrs.get(RECORD_ATTR))
    return TrialRecord.from_dict(values) if isinstance(values, dict) else None


def config_of(trial: FrozenTrial) -> dict[str, Any]:
    """The configuration a trial was queued (or sampled) with; {} if none was stored."""
    values = trial.system_attrs.get(CONFIG_ATTR, trial.user_attrs.get(CONFIG_ATTR))
    return values if isinstance(values, dict) else {}


def set_config(storage: Any, trial_id: int, config: dict[str, Any]) -> None:
    """Store the configuration a (sampled) trial runs with, for :func:`config_of`."""
    storage.set_trial_system_attr(trial_id, CONFIG_ATTR, config)


def load_records(study: optuna.Study) -> list[tuple[FrozenTrial, TrialRecord | None]]:
    """Every trial of ``study`` (by number) with its record (None for lost or waiting trials)."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    return [(trial, record_of(trial)) for trial in trials]


def study_names(url: str, prefix: str) -> list[str]:
    """Studies in the storage named ``prefix`` or ``prefix-<something>`` (sorted)."""
    storage = open_storage(url, heartbeat_interval=None)
    names = optuna.study.get_all_study_names(storage=storage)
    return sorted(n for n in names if n == prefix or n.startswith(prefix + "-"))


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
