"""Where data lives. Pure path logic (no torch import) so the registry and catalog stay cheap.

* OGB root: ``root=`` argument, else ``$BENCH_DATA_ROOT``, else
  ``$XDG_CACHE_HOME/gnn1000-bench/ogb`` (``~/.cache/gnn1000-bench/ogb`` when unset).
* The local data folder of real graphs (read-only): ``root=``, else ``$BENCH_SHARED_DATA``,
  else ``<repo>/../shared/data`` when that folder exists. Downloads go to
  ``<cache>/gnn1000-bench/data`` (:mod:`bench.data.download`).
* Working copies of real graphs (their PyG loaders write ``processed/``):
  ``<cache>/gnn1000-bench/work/``, so nothing is ever written into the local data folder.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """The suite's cache folder (XDG convention): ``$XDG_CACHE_HOME/gnn1000-bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gnn1000-bench"


def ogb_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding ``ogbn_<name>/`` dataset folders in OGB's layout."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("BENCH_DATA_ROOT")
    if env:
        return Path(env).expanduser()
    return cache_dir() / "ogb"


def shared_root(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The local data folder of real graphs (``Planetoid/``, ``BlogCatalog/``...), if any."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("BENCH_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    candidate = REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def work_dir() -> Path:
    """Writable folder for copies of read-only data (PyG writes ``processed/`` next to ``raw/``)."""
    env = os.environ.get("BENCH_WORK_DIR")
    return Path(env).expanduser() if env else cache_dir() / "work"
