"""Shared fixtures. ``postgres_url``: a throwaway PostgreSQL server on loopback, for the tests
that check many workers sharing one study (the multi-machine set-up) against a real server.

The server is found under ``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package) or on
PATH. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user (via
``runuser``) in a temporary directory handed to that user. Where no server can be started the
tests skip with the reason, unless ``BENCH_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite never touches the network: real graphs come from the local data folder, and the
# download tests serve files on loopback (tests/test_data_download.py lifts this for itself).
os.environ.setdefault("BENCH_OFFLINE", "1")


def _pg_bin(tool: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), reverse=True)
    return candidates[0] if candidates else shutil.which(tool)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unavailable(reason: str) -> None:
    if os.environ.get("BENCH_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL required (BENCH_REQUIRE_POSTGRES=1) but {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg2://...`` of a fresh database on a private server (session-wide)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        _unavailable("initdb/pg_ctl not found (install Debian's 'postgresql' package)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _unavailable("psycopg2 is not installed")

    prefix: list[str] = []
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run the server")
        prefix, user = ["runuser", "-u", "postgres", "--"], "postgres"

    tmp = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data, sockets = tmp / "data", tmp / "sock"
    sockets.mkdir()
    if os.getuid() == 0:
        shutil.chown(tmp, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)

    started = False
    try:
        done = run(initdb, "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8", "--no-sync")
        if done.returncode:
            _unavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
        options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=100"
        done = run(pg_ctl, "-D", str(data), "-l", str(tmp / "log"), "-o", options, "-w", "start")
        if done.returncode:
            log = (tmp / "log").read_text() if (tmp / "log").exists() else ""
            _unavailable(f"pg_ctl start failed: {(done.stderr + log).strip()[-500:]}")
        started = True
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE bench_test")
        conn.close()
        yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/bench_test"
    finally:
        if started:
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(tmp, ignore_errors=True)
