"""Where a trial ran: library versions, the repository commit, the code's content hash, the
device.

Every record carries these so any figure can be traced back to the code and machine that
produced it. A commit names code anyone can check out, unless it reads ``-dirty``: then only the
source hash (:func:`source_hash`) says which code it was, so two dirty trees are told apart and
a trial of uncommitted code can be matched to the commit that later holds the same code.
Nothing here may fail a trial: missing libraries or a missing ``git`` give ``None``/absent
entries, never an exception.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

#: distribution name -> key in ``TrialRecord.versions``
_DISTRIBUTIONS = {
    "torch": "torch",
    "torch-geometric": "torch_geometric",
    "ogb": "ogb",
    "optuna": "optuna",
    "torchdeq": "torchdeq",
    "numpy": "numpy",
}


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour a number depends on (installed ones only)."""
    from bench import __version__

    versions = {"python": platform.python_version(), "bench": __version__}
    for dist, key in _DISTRIBUTIONS.items():
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@functools.cache
def git_commit(
    path: str | os.PathLike[str] | None = None, scope: str | os.PathLike[str] | None = None
) -> str | None:
    """The commit of the repository holding this package (or ``path``), ``-dirty`` if the files
    under ``scope`` (default: the package's own, ``bench/``) have local edits: an edit to the
    docs, README or tests changes no trial's code (a spec's settings are in every record), and
    must not make a sweep's trials read as two code versions (:mod:`bench.exports.versions`).

    None when the package is not in a git checkout or ``git`` is absent: an installed wheel
    has no commit, and that must not stop a trial."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    package = Path(scope) if scope is not None else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        commit = head.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", str(package)],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if dirty.returncode == 0 and dirty.stdout.strip():
            commit += "-dirty"
        return commit or None
    except (OSError, subprocess.SubprocessError):
        return None


#: the code that computes a trial's numbers, under ``bench/``: the source hash covers these.
#: The harness, tuning, instruments, exports and report decide which trials run and how they
#: are shown, never a trial's numbers, so a change there leaves every measurement current.
TRIAL_CODE = (
    "__init__.py", "config.py", "errors.py", "plugins.py", "record.py", "units.py",
    "data", "measure", "models", "nn", "trial",
)  # fmt: skip
SOURCE_HASH_CHARS = 16


@functools.cache
def source_hash(package: str | os.PathLike[str] | None = None) -> str:
    """The first hex digits of the SHA-256 of the trial code's sources (``TRIAL_CODE``: each
    ``.py`` file's path under the package and its bytes, in path order): the same on every
    machine and checkout for the same code, committed or not."""
    root = Path(package) if package is not None else Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for entry in TRIAL_CODE:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:SOURCE_HASH_CHARS]


def device_description(device: str) -> str:
    """Human description of the device a trial ran on (one wording for the whole suite)."""
    from bench.measure.meters import device_description as describe

    return describe(device)
