"""Each finished trial's whole record as a file a person opens from the Optuna dashboard: an
Optuna artifact (:mod:`optuna.artifacts`, a ``FileSystemArtifactStore``) in a folder beside
the study's storage.

Why a file: the dashboard draws every user attribute on one line, so the record (~2-3 KB) and
the configuration (~700 characters) made a trial's page thousands of pixels wide, and it cuts
an attribute at 1,024 characters, so the whole record could be read nowhere. The flat
attributes stay the short, sortable fields; the record is ``record.json`` under the trial's
Artifacts. The machine-readable record stays in the storage too (the system attribute
``record``, :mod:`bench.harness.storage`), and the export, resumption and the tuner read it
from there: the storage is the one thing every worker shares, while workers on several
machines write artifacts to their own disks unless the folder is on a shared filesystem.

Where (:func:`artifact_dir`): beside a SQLite file or a journal log, its name with
``.artifacts`` for ``.db``/``.log`` (``results/depth.db`` -> ``results/depth.artifacts/``);
for a database server (PostgreSQL), ``<results dir>/<name>.artifacts/``; ``--artifact-dir``
chooses another folder. Open a study with its artifacts::

    optuna-dashboard sqlite:///results/depth.db --artifact-dir results/depth.artifacts

A folder that cannot be written is a warning, never a lost result: the record is stored first.
No sweep or tuning trial takes a CUDA memory snapshot (``trial --memory-snapshot`` runs in
its own process only), so a record is the one artifact a trial has.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from bench.harness.storage import is_journal, journal_path
from bench.record import TrialRecord

SUFFIX = ".artifacts"
RECORD_FILE = "record.json"


def artifact_dir(url: str, name: str, results_dir: Path = Path("results")) -> Path:
    """The default artifact folder of storage ``url`` holding the studies of ``name`` (a spec,
    ``tune-SPEC``): beside its file (SQLite, journal), else under ``results_dir``."""
    from sqlalchemy.engine import make_url

    if is_journal(url):
        return journal_path(url).with_suffix(SUFFIX)
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        return Path(database).with_suffix(SUFFIX)
    return Path(results_dir) / f"{name}{SUFFIX}"


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot hold artifacts (a file of that name, no writable folder to create
    it in), or None: checked on the command line before anything runs."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    nearest = folder
    while not nearest.exists():  # the nearest folder that exists must let us create the rest
        nearest = nearest.parent
    if not nearest.is_dir():
        return f"{folder} cannot be created ({nearest} is a file)"
    if not os.access(nearest, os.W_OK | os.X_OK):
        return f"{folder} cannot be written ({nearest} is not writable)"
    return None


def _strict(value: Any) -> Any:
    """JSON has no NaN or infinity: such a number is written null (no value)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def attach_record(
    storage: optuna.storages.BaseStorage,
    trial: optuna.Trial | FrozenTrial,
    record: TrialRecord,
    folder: Path,
) -> str | None:
    """Upload ``record`` as the artifact ``record.json`` of a trial not finished yet (after
    :func:`~bench.harness.storage.save_record`, before ``study.tell``); its artifact id, or
    None with a warning on stderr when the folder cannot be written (the record is stored)."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    text = json.dumps(_strict(record.to_dict()), indent=2, sort_keys=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):  # before Optuna notes an artifact
            raise PermissionError(errno.EACCES, "not writable")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / RECORD_FILE
            path.write_text(text + "\n")
            return upload_artifact(artifact_store=FileSystemArtifactStore(folder),
                                   file_path=str(path), study_or_trial=trial, storage=storage,
                                   mimetype="application/json")  # fmt: skip
    except OSError as exc:
        print(f"warning: the record of trial {trial.number} is stored, but not as an artifact "
              f"in {folder} ({exc.strerror or exc})", file=sys.stderr)  # fmt: skip
        return None
