"""An on-disk cache of generated graphs: keyed by every generator option, written atomically.

A large generated graph (``synthetic-proteins-paper``: 79M directed edges, ~3.8 GB of tensors)
takes tens of seconds to build; every trial process loads it again. So the generator's output is
saved once under ``$BENCH_WORK_DIR/generated/`` (``paths.work_dir()``) and later loads memory-map
that file (``torch.load(mmap=True)``): near-instant, and processes share the page cache.

Trust rules (a cache must never hand out a wrong graph):

* The file name carries a hash of the options *and* the generator's version, and the file
  stores the options again; a load checks they are equal.
* A file is written to a private temporary name in the same folder and renamed into place
  (``os.replace``, atomic on POSIX), so an interrupted write leaves only a temporary file, which
  is never read. A final file that cannot be read (truncated, corrupt) is reported, regenerated
  and replaced.
* Failing to write (read-only or full disk) is reported and the graph is used from memory.
* ``locked(path)`` serialises processes that miss the same file (sweep workers starting
  together): the first generates and writes, the others wait and then read it, instead of each
  building the same multi-GB graph at once. The lock is released when its holder exits, however.

Example::

    from bench.data import cache
    path = cache.path_for("my-graph", {"n": 10, "version": 1})
    payload = cache.read(path, {"n": 10, "version": 1})  # None: absent or not trusted
    if payload is None:
        payload = {"edge_index": ..., "options": {"n": 10, "version": 1}}
        cache.write(path, payload)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from bench.data.paths import work_dir

FOLDER = "generated"


def key(options: dict[str, Any]) -> str:
    """A short stable hash of ``options`` (JSON, sorted keys)."""
    blob = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def path_for(name: str, options: dict[str, Any]) -> Path:
    """``<work dir>/generated/<name>-<hash of options>.pt``."""
    return work_dir() / FOLDER / f"{name}-{key(options)}.pt"


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read(path: Path, options: dict[str, Any]) -> dict[str, Any] | None:
    """The cached payload at ``path`` if it exists, reads, and was made with ``options``."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, mmap=True, weights_only=True)
    except Exception as exc:  # truncated or corrupt file: any error means "do not trust it"
        _warn(f"ignoring unreadable cache file {path} ({type(exc).__name__}: {exc}); regenerating")
        return None
    if not isinstance(payload, dict) or payload.get("options") != options:
        _warn(f"ignoring cache file {path}: it was made with other options; regenerating")
        return None
    return payload


def write(path: Path, payload: dict[str, Any]) -> bool:
    """Save ``payload`` at ``path`` atomically (temp file + rename); False if it could not."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return True
    except OSError as exc:
        _warn(f"could not write cache file {path} ({exc}); using the graph from memory")
        return False
    finally:
        tmp.unlink(missing_ok=True)  # only ever our own temporary name


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock tied to ``path`` (a ``.lock`` file beside it) while inside.

    Without a writable folder this is a no-op: the cache is an optimisation, never a must.
    """
    lock = path.with_name(f".{path.name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")  # noqa: SIM115 (held open for the lock's lifetime)
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
