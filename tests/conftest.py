"""Shared fixtures. ``postgres_url``: a throwaway PostgreSQL server on loopback, for the tests
that check many workers sharing one study (the multi-machine set-up) against a real server.
``postgres_login``: a role on the same server that must give its password (scram-sha-256),
for the tests that keep the password out of sight (tests/test_credentials.py).
``stoppable_postgres``: a server of one test's own, which it stops mid-sweep and starts again.

The server is found under ``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package) or on
PATH. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user (via
``runuser``) in a temporary directory handed to that user. Where no server can be started the
tests skip with the reason, unless ``BENCH_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

# The suite never touches the network: real graphs come from the local data folder, and the
# download tests serve files on loopback (tests/test_data_download.py lifts this for itself).
os.environ.setdefault("BENCH_OFFLINE", "1")
# Nor a storage of the user's: every command here stores where its test says.
os.environ.pop("BENCH_STORAGE", None)


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


@dataclass(frozen=True)
class PostgresLogin:
    """A role that must authenticate with ``password``, owning the database ``database``."""

    user: str
    password: str
    host: str
    port: int
    database: str

    @property
    def url(self) -> str:
        """The URL with the password in it (percent-encoded)."""
        secret = quote(self.password, safe="")
        return f"postgresql+psycopg2://{self.user}:{secret}@{self.host}:{self.port}/{self.database}"

    @property
    def bare_url(self) -> str:
        """The same URL without the password: libpq must find it (PGPASSWORD, ~/.pgpass)."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.database}"


# characters that URLs encode, so a leak of either form is caught
SECRET_PASSWORD = "Zq7-s3cret:p@ss/w0rd"
SECRET_ROLE = "bench_secret"


@dataclass
class PostgresServer:
    """A private server on 127.0.0.1 that a test may stop and start again (same data, same
    port): the superuser ``user`` needs no password."""

    user: str
    port: int
    data: Path
    log: Path
    options: str
    prefix: list[str]

    def url(self, database: str = "bench_test") -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*self.prefix, str(_pg_bin("pg_ctl")), "-D", str(self.data), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self) -> subprocess.CompletedProcess[str]:
        return self._ctl("-l", str(self.log), "-o", self.options, "-w", "start")

    def stop(self, mode: str = "fast") -> subprocess.CompletedProcess[str]:
        return self._ctl("-m", mode, "-w", "stop")


@contextlib.contextmanager
def _private_server() -> Iterator[PostgresServer]:
    """A fresh server in a temporary directory, with the database ``bench_test``, the role
    ``SECRET_ROLE`` (password ``SECRET_PASSWORD``) and its database; removed after."""
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
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=100"
    server = PostgresServer(user, port, data, tmp / "log", options, prefix)

    started = False
    try:
        done = subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8",
             "--no-sync"], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode:
            _unavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
        hba = data / "pg_hba.conf"  # first match wins: the secret role must give its password
        rules = "".join(
            f"{kind} all {SECRET_ROLE} {where} scram-sha-256\n"
            for kind, where in (("local", ""), ("host", "127.0.0.1/32"), ("host", "::1/128"))
        )
        hba.write_text(rules + hba.read_text())
        done = server.start()
        if done.returncode:
            log = server.log.read_text() if server.log.exists() else ""
            _unavailable(f"pg_ctl start failed: {(done.stderr + log).strip()[-500:]}")
        started = True
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE bench_test")
            cur.execute(f"CREATE ROLE {SECRET_ROLE} LOGIN PASSWORD %s", (SECRET_PASSWORD,))
            cur.execute(f"CREATE DATABASE {SECRET_ROLE} OWNER {SECRET_ROLE}")
        conn.close()
        yield server
    finally:
        if started:
            server.stop("immediate")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[tuple[str, int]]:
    """(superuser, port) of a private server on 127.0.0.1 (session-wide); the superuser needs
    no password, the role ``SECRET_ROLE`` needs ``SECRET_PASSWORD``."""
    with _private_server() as server:
        yield server.user, server.port


@pytest.fixture()
def stoppable_postgres() -> Iterator[PostgresServer]:
    """A private server of this test's own, which it may stop and start (a storage that fails
    mid-sweep); the shared session server is left alone."""
    with _private_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(_postgres_server: tuple[str, int]) -> str:
    """``postgresql+psycopg2://...`` of a fresh database on a private server (session-wide)."""
    user, port = _postgres_server
    return f"postgresql+psycopg2://{user}@127.0.0.1:{port}/bench_test"


@pytest.fixture(scope="session")
def postgres_login(_postgres_server: tuple[str, int]) -> PostgresLogin:
    """A password-protected role with its own database on the same server."""
    _, port = _postgres_server
    return PostgresLogin(SECRET_ROLE, SECRET_PASSWORD, "127.0.0.1", port, SECRET_ROLE)
