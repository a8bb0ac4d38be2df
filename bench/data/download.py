"""Where a real graph's files come from, and fetching them when they are not here.

Resolution order for the real graphs (``cora``, ``amazon-*``, ``blogcatalog``, ...): the local
data folder (``$BENCH_SHARED_DATA``, else ``../shared/data`` beside the checkout), the download
cache (``$XDG_CACHE_HOME/gnn1000-bench/data``), then a download into that cache. An explicit
``--data-root`` is authoritative: only that folder is read, and a dataset missing there is an
error naming it (no other folder, no download: the user said where the data is). Each folder holds the files in the same layout (``Planetoid/Cora/raw/ind.cora.x``, ...).

Downloads are on by default; ``--offline`` or ``BENCH_OFFLINE=1`` forbids them. The URLs are the
ones the libraries themselves download from (PyG's ``Planetoid.url``, ``Amazon.url`` and
``Coauthor.url``; DeepWalk's repository for BlogCatalog, its published source).
``BENCH_DATA_MIRROR=URL`` replaces every URL by ``URL/<path in the layout>`` (a proxy, an
internal mirror, or a folder served over HTTP: ``python -m http.server -d DATA_FOLDER``).

Trust: a file is downloaded to a private temporary name beside its target, its size and sha256
are checked against the table below, and only then renamed into place (atomic on POSIX). A
failed or partial download leaves no file under the target name, so a later run never trusts
half a file. Parallel trial processes that miss the same dataset take a lock: one downloads,
the others wait and find the files.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from bench.data.paths import cache_dir, shared_root
from bench.errors import DataError

OFFLINE_ENV = "BENCH_OFFLINE"
MIRROR_ENV = "BENCH_DATA_MIRROR"
TIMEOUT_S = 30.0
_CHUNK = 1 << 20
# the libraries' own sources (a test checks these equal PyG's class attributes)
PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
SHCHUR_URL = "https://github.com/shchur/gnn-benchmark/raw/master/data/npz"
BLOGCATALOG_URL = "https://github.com/phanein/deepwalk/raw/master/example_graphs"


@dataclass(frozen=True)
class Remote:
    """One file of a dataset: its path in the data layout, where it is published, its checks."""

    path: str
    url: str
    size: int
    sha256: str


def _planetoid(name: str, sizes_and_sums: dict[str, tuple[int, str]]) -> tuple[Remote, ...]:
    low = name.lower()
    return tuple(
        Remote(f"Planetoid/{name}/raw/ind.{low}.{ext}", f"{PLANETOID_URL}/ind.{low}.{ext}", *info)
        for ext, info in sizes_and_sums.items()
    )


def _npz(family: str, name: str, file: str, size: int, sha256: str) -> tuple[Remote, ...]:
    return (Remote(f"{family}/{name}/raw/{file}", f"{SHCHUR_URL}/{file}", size, sha256),)


SOURCES: dict[str, tuple[Remote, ...]] = {
    "cora": _planetoid(
        "Cora",
        {
            "x": (22119, "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab"),
            "tx": (148025, "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a"),
            "allx": (257305, "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543"),
            "y": (4054, "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1"),
            "ty": (28135, "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad"),
            "ally": (47959, "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71"),
            "graph": (59847, "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d"),
            "test.index": (
                5000,
                "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
            ),
        },
    ),
    "citeseer": _planetoid(
        "CiteSeer",
        {
            "x": (31087, "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6"),
            "tx": (260321, "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21"),
            "allx": (595021, "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668"),
            "y": (3014, "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924"),
            "ty": (24135, "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce"),
            "ally": (55623, "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95"),
            "graph": (61987, "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7"),
            "test.index": (
                5000,
                "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
            ),
        },
    ),
    "amazon-computers": _npz(
        "Amazon",
        "Computers",
        "amazon_electronics_computers.npz",
        31921488,
        "736ba1d9fd85eac2da83a5ad25c463f04b0031a6ca01563f90a7099d9e8ffb2c",
    ),
    "amazon-photo": _npz(
        "Amazon",
        "Photo",
        "amazon_electronics_photo.npz",
        17113960,
        "bdb1feb8e6ff42ee44024b04479145029c563fd42fc31bff80af20887ba0439a",
    ),
    "coauthor-cs": _npz(
        "Coauthor",
        "CS",
        "ms_academic_cs.npz",
        12835626,
        "933c745734e78908c7eb77172a673fee0503f30e26e5a99b36814d88534c42e3",
    ),
    "coauthor-physics": _npz(
        "Coauthor",
        "Physics",
        "ms_academic_phy.npz",
        16374005,
        "e4d68468eba5fb8f6b280ffd406bd53e6e4295ba1dd2967d6fe99b978e4b3375",
    ),
    "blogcatalog": (
        Remote(
            "BlogCatalog/blogcatalog.mat",
            f"{BLOGCATALOG_URL}/blogcatalog.mat",
            1255783,
            "d4f4fb89ce1ccd4b7e2a183386c000773cc9362cc61f1be5b246a6d9c259da8f",
        ),
    ),
}


def downloads_allowed() -> bool:
    """False under ``--offline`` / ``BENCH_OFFLINE=1`` (the only switch; on by default)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def set_offline(offline: bool) -> None:
    """What ``--offline`` does: set ``BENCH_OFFLINE`` so trial child processes inherit it."""
    if offline:
        os.environ[OFFLINE_ENV] = "1"


def downloadable(name: str) -> bool:
    """Whether dataset ``name`` has published files this module can fetch."""
    return name in SOURCES


def fetchable(spec: object, root: str | None = None) -> bool:
    """The preflight's download policy: a downloadable dataset passes when downloads are on
    (a real graph of :data:`SOURCES`, or an ``ogbn-*`` graph, which ``ogb`` downloads)."""
    kind, name = getattr(spec, "kind", ""), getattr(spec, "name", "")
    if root is not None and kind != "ogb":  # an explicit --data-root is authoritative
        return False
    return downloads_allowed() and (downloadable(name) or kind == "ogb")


def url_of(remote: Remote) -> str:
    """The file's URL, or ``$BENCH_DATA_MIRROR/<path>`` when a mirror is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{remote.path}" if mirror else remote.url


def cache_root() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/gnn1000-bench/data``."""
    return cache_dir() / "data"


def candidates(root: str | None) -> list[Path]:
    """The folders searched, in order: ``root`` alone when given (authoritative), else the
    local data folder and the download cache."""
    if root is not None:
        return [Path(root).expanduser()]
    found = []
    local = shared_root()
    if local is not None:
        found.append(local)
    found.append(cache_root())
    return found


def _complete(base: Path, files: tuple[str, ...]) -> bool:
    return all((base / f).is_file() for f in files)


def files_of(name: str, fallback: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every file a dataset needs (relative paths in the layout)."""
    return tuple(r.path for r in SOURCES[name]) if name in SOURCES else fallback


def locate(name: str, root: str | None, fallback: tuple[str, ...] = ()) -> Path | None:
    """The first folder of :func:`candidates` that holds every file of ``name``, or None."""
    files = files_of(name, fallback)
    return next((base for base in candidates(root) if _complete(base, files)), None)


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"  # pragma: no cover


def describe_source(name: str) -> str:
    """``3 files, 1.3 MB from github.com`` (or the mirror's host)."""
    remotes = SOURCES[name]
    hosts = sorted({urlparse(url_of(r)).netloc or url_of(r) for r in remotes})
    count = f"{len(remotes)} file{'s' if len(remotes) != 1 else ''}"
    return f"{count}, {_human(sum(r.size for r in remotes))} from {', '.join(hosts)}"


def not_here_fix(name: str, failed: bool = False) -> str:
    """How to fix a dataset that is not here, in one clause (``failed``: a download failed)."""
    first = files_of(name)[0] if name in SOURCES else name
    host = urlparse(url_of(SOURCES[name][0])).netloc if name in SOURCES else "its source"
    fetch_hint = (
        f"run again where {host} is reachable"
        if failed
        else f"allow downloads (drop --offline / {OFFLINE_ENV}=1) where {host} is reachable"
    )
    return (
        f"point $BENCH_SHARED_DATA (the local data folder) or --data-root at a folder holding "
        f"{first}, {fetch_hint}, or set {MIRROR_ENV} to a mirror of these files"
    )


def ensure(name: str, root: str | None, fallback: tuple[str, ...] = ()) -> Path:
    """The folder holding ``name``'s files, downloading them into the cache if needed.

    Raises :class:`DataError` in one line (what is missing, why nothing was fetched, the fix)."""
    found = locate(name, root, fallback)
    if found is not None:
        return found
    if root is not None:
        raise DataError(f"{name}: not in --data-root {Path(root).expanduser()} (no "
                        f"{files_of(name, fallback)[0].split('|')[0]} there); put its files "
                        "there, or leave out --data-root to use the local data folder, the "
                        "download cache and downloads")  # fmt: skip
    searched = ", ".join(str(p) for p in candidates(root))
    if not downloadable(name):
        raise DataError(f"{name}: its files are not here (searched {searched})")
    if not downloads_allowed():
        raise DataError(
            f"{name}: the data is not here (searched {searched}) and downloading is off "
            f"({OFFLINE_ENV}=1 or --offline); to fix: {not_here_fix(name)}"
        )
    from bench.data.cache import locked

    target = cache_root()
    with locked(target / f"{name}.download"):
        if _complete(target, files_of(name)):  # another process fetched it meanwhile
            return target
        print(
            f"downloading {name}: {describe_source(name)} into {target}",
            file=sys.stderr,
            flush=True,
        )
        try:
            for remote in SOURCES[name]:
                fetch(remote, target)
        except DataError as exc:
            raise DataError(
                f"{name}: the data is not here (searched {searched}) and downloading failed "
                f"({exc}); to fix: {not_here_fix(name, failed=True)}"
            ) from None
    return target


def fetch(remote: Remote, base: Path) -> Path:
    """Download ``remote`` to ``base/remote.path`` unless a file of the right size is there.

    Written under a temporary name, checked (size, sha256), then renamed into place."""
    target = base / remote.path
    if target.is_file() and target.stat().st_size == remote.size:
        return target
    url = url_of(remote)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {target.parent}: {exc}") from None
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != remote.size:
            raise DataError(f"{url}: got {size:,} bytes, expected {remote.size:,}")
        if digest.hexdigest() != remote.sha256:
            raise DataError(f"{url}: sha256 {digest.hexdigest()[:12]}... is not the published one")
        os.replace(tmp, target)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"{url}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
