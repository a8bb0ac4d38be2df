"""Real graphs that fetch themselves: the download path run for real against a loopback mirror.

A small HTTP server on 127.0.0.1 serves the local data folder's files (or a broken copy of
them); ``BENCH_DATA_MIRROR`` points the download URLs at it. No internet is needed.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.config import TrialConfig
from bench.data import download, load
from bench.data.paths import shared_root
from bench.errors import DataError
from bench.harness import preflight

SHARED = shared_root()
pytestmark = pytest.mark.skipif(
    SHARED is None or not (SHARED / "Planetoid" / "Cora").is_dir(),
    reason="no local data folder with Planetoid/Cora to serve (set BENCH_SHARED_DATA)",
)
REPO = Path(__file__).resolve().parents[1]


class _Mirror:
    """A loopback HTTP server over ``folder`` that counts the files it served."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.served: list[str] = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                mirror.served.append(self.path)
                super().do_GET()

        handler = functools.partial(Handler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh machine: no local data folder, an empty cache, downloads on."""
    monkeypatch.setenv("BENCH_SHARED_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    return tmp_path


def _serve(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Mirror]:
    mirror = _Mirror(folder)
    monkeypatch.setenv("BENCH_DATA_MIRROR", mirror.url)
    try:
        yield mirror
    finally:
        mirror.close()


@pytest.fixture()
def mirror(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Mirror]:
    assert SHARED is not None
    yield from _serve(SHARED, monkeypatch)


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_urls_are_the_libraries_own() -> None:
    from torch_geometric.datasets import Amazon, Coauthor, Planetoid

    assert Planetoid.url.rstrip("/") == download.PLANETOID_URL
    assert download.SHCHUR_URL == Amazon.url.rstrip("/") == Coauthor.url.rstrip("/")
    exts = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")  # Planetoid's raw files
    assert {Path(r.path).name for r in download.SOURCES["cora"]} == {f"ind.cora.{e}" for e in exts}


def test_download_checks_then_loads_and_second_load_fetches_nothing(
    mirror: _Mirror, fresh: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = load("cora")
    assert (ds.data.num_nodes, ds.data.edge_index.shape[1], ds.num_outputs) == (2708, 10556, 7)
    assert len(mirror.served) == 8 and all(
        p.startswith("/Planetoid/Cora/raw/") for p in mirror.served
    )
    err = capsys.readouterr().err
    assert "downloading cora: 8 files, 572.4 KB from 127.0.0.1" in err
    cache = fresh / "cache" / "gnn1000-bench" / "data"
    assert (cache / "Planetoid/Cora/raw/ind.cora.graph").stat().st_size == 59847
    assert _no_temporaries(cache)
    again = load("cora", split="random", seed=1)
    assert again.data.num_nodes == 2708
    assert len(mirror.served) == 8  # the cache answered
    assert "downloading" not in capsys.readouterr().err


def test_partial_or_corrupt_download_leaves_nothing_trusted(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert SHARED is not None
    broken = fresh / "broken"
    shutil.copytree(SHARED / "BlogCatalog", broken / "BlogCatalog")
    target = broken / "BlogCatalog" / "blogcatalog.mat"
    good = target.read_bytes()
    target.chmod(0o644)
    target.write_bytes(good[: len(good) // 2])  # a partial file on the server
    cache = fresh / "cache" / "gnn1000-bench" / "data"
    for server in _serve(broken, monkeypatch):
        with pytest.raises(DataError, match="downloading failed .*expected 1,255,783"):
            load("blogcatalog", pe_dim=0)
        assert not (cache / "BlogCatalog" / "blogcatalog.mat").exists()
        assert _no_temporaries(cache)
        target.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # right size, wrong bytes
        with pytest.raises(DataError, match="sha256"):
            load("blogcatalog", pe_dim=0)
        assert not (cache / "BlogCatalog" / "blogcatalog.mat").exists()
        target.write_bytes(good)  # the server is fixed: the next run fetches it whole
        ds = load("blogcatalog", pe_dim=0)
        assert ds.data.num_nodes == 10312 and len(server.served) == 3


def test_offline_or_unreachable_is_one_line_with_the_fix(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(DataError, match="downloading is off .* to fix: point \\$BENCH_SHARED_DATA"):
        load("cora")
    monkeypatch.delenv("BENCH_OFFLINE")
    monkeypatch.setenv("BENCH_DATA_MIRROR", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(DataError, match="downloading failed") as info:
        load("cora")
    assert "\n" not in str(info.value) and "shared" not in str(info.value).replace(
        "BENCH_SHARED_DATA", ""
    )


def test_preflight_follows_the_download_policy(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrialConfig(dataset="cora")
    assert preflight.check([config]) == []  # downloadable, downloads on
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    (problem,) = preflight.check([config])
    assert "downloading is off" in problem.line() and "local data folder" in problem.line()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "trial", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        timeout=300,
        cwd=REPO,
    )


def test_cli_fresh_clone_without_network_then_with_the_mirror(fresh: Path, mirror: _Mirror) -> None:
    env = {k: os.environ[k] for k in ("BENCH_SHARED_DATA", "XDG_CACHE_HOME", "BENCH_WORK_DIR")}
    done = _cli("--dataset", "cora", "--offline", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cora: the data is not here")
    small = ("--dataset", "cora", "--arch", "res", "--layers", "2", "--channels", "8")
    done = _cli(*small, "--epochs", "1", "--json", env={**env, "BENCH_DATA_MIRROR": mirror.url})
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"status": "ok"' in done.stdout.strip().splitlines()[-1]
    assert "downloading cora" in done.stderr and len(mirror.served) == 8
