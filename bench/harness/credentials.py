"""The storage's password: never printed, written, or passed on a command line.

On a cluster, job logs and job folders sit on shared file systems and every user of a login
node can read every process's command line (``ps``); a process's environment is readable only
by its owner. So:

* every storage URL the suite prints or writes goes through :func:`mask_url`
  (``postgresql+psycopg2://alice:***@db/bench``; a ``?password=`` query value too), and free
  text that may quote one (a driver's error) through :func:`mask_text`;
* the storage can be named without a secret on the command line: ``$BENCH_STORAGE`` is used
  when ``--storage`` is absent (:func:`storage_from`), and a password-less PostgreSQL URL lets
  libpq find the password itself (``PGPASSWORD``, ``~/.pgpass``, ``PGPASSFILE``);
* a password inside ``--storage`` draws one warning per process saying how to avoid it;
* a URL that cannot be read as written (a password with an unencoded ``@``, ``:`` or ``/``
  reads as another host, port or database, and the parser's own error quotes a piece of it) is
  refused by :func:`storage_from` in one line that quotes nothing of it (:func:`url_problem`),
  and :func:`mask_url` shows such a URL with everything before its last ``@`` masked;
* worker processes and cluster jobs get the URL through ``BENCH_STORAGE`` in their
  environment (:func:`child_environment`, :func:`exported`), never in their arguments, so it
  reaches neither ``ps`` nor submitit's pickles and logs. What else they need (``PGPASSWORD``,
  ``PGPASSFILE``) they inherit the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ENV_VAR = "BENCH_STORAGE"
MASK = "***"
UNREADABLE = (
    "cannot be read as written: its port is not a number, or its password holds a character "
    "(@ : / ? # %) that is not percent-encoded and reads as part of the host, port or "
    "database; encode it with urllib.parse.quote(password, safe=''), or leave it out and let "
    "libpq find it (PGPASSWORD, ~/.pgpass, PGPASSFILE)"
)
# ``scheme://user:secret@`` in any text, for URLs SQLAlchemy cannot parse
_USERINFO = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^\s:/@]*:)[^\s@/]+@")
_warned: set[str] = set()  # programs that have warned already (once per process)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a storage, in words that quote none of it, or None.

    Why: SQLAlchemy reads a password up to its first ``@``, so ``alice:p@ss/w0rd@db/bench``
    is user ``alice``, password ``p``, host ``ss``, database ``w0rd@db/bench`` -- and where
    the rest is no port number its error quotes the piece of the password it took for one."""
    if url.startswith("journal://"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return ("is not a storage URL (sqlite:///PATH, journal:///PATH or "
                "postgresql+psycopg2://user@host/database)")  # fmt: skip
    except ValueError:
        return UNREADABLE
    if "@" in (parsed.database or ""):
        return UNREADABLE
    return None


def _parsed(url: str) -> URL | None:
    """SQLAlchemy's reading of ``url``; None for what it cannot parse (``journal://``, typos)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def has_password(url: str | None) -> bool:
    """Whether ``url`` carries a password (in its user part or as a ``password`` query value)."""
    if not url:
        return False
    parsed = _parsed(url)
    if parsed is None:
        return bool(_USERINFO.search(url))
    return bool(parsed.password) or "password" in parsed.query


def mask_url(url: str) -> str:
    """``url`` as it may be shown: its password replaced by ``***`` (unchanged without one)."""
    if not has_password(url):
        return url
    if url_problem(url) == UNREADABLE:  # read wrongly: where the password ends is unknown
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{MASK}@{rest.rpartition('@')[2]}"
    parsed = _parsed(url)
    if parsed is None:
        return _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", url)
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "MASKED"})
    shown = parsed.render_as_string(hide_password=True)
    return shown.replace("password=MASKED", f"password={MASK}")


def mask_text(text: str, url: str | None = None) -> str:
    """``text`` (an error message, a log line) with ``url`` and any password in a URL masked."""
    if url and has_password(url):
        text = text.replace(url, mask_url(url))
        parsed = _parsed(url)
        secret = parsed.password if parsed is not None else None
        if secret and len(str(secret)) >= 4:  # a driver quoting it bare; short ones would garble
            text = text.replace(str(secret), MASK)
    return _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)


def storage_from(flag: str | None, prog: str) -> str | None:
    """The storage a command was given: ``--storage`` (warning once if it holds a password),
    else ``$BENCH_STORAGE``, else None (the command's default SQLite file). A URL that cannot
    be read (:func:`url_problem`) is a ConfigError naming the flag or the variable, not it."""
    given = flag or os.environ.get(ENV_VAR) or None
    problem = url_problem(given) if given else None
    if problem is not None:
        from bench.errors import ConfigError

        raise ConfigError("storage", problem if flag else f"${ENV_VAR} {problem}")
    if flag:
        if has_password(flag) and prog not in _warned:
            _warned.add(prog)
            print(
                f"{prog}: warning: --storage holds a password, which other users of this "
                f"machine can read in the process list (ps); set {ENV_VAR}=URL instead, or "
                "leave the password out of the URL and let libpq find it in PGPASSWORD, "
                "~/.pgpass or PGPASSFILE",
                file=sys.stderr,
            )
        return flag
    return given


def child_environment(url: str) -> dict[str, str]:
    """The environment of a worker process that must open ``url`` (it gives no ``--storage``)."""
    return {**os.environ, ENV_VAR: url}


@contextlib.contextmanager
def exported(url: str) -> Iterator[None]:
    """``BENCH_STORAGE=url`` in this process's environment while jobs are submitted (submitit's
    local controller and ``sbatch`` copy it, sbatch by its default ``--export=ALL``)."""
    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = before


__all__ = [
    "ENV_VAR",
    "child_environment",
    "exported",
    "has_password",
    "mask_text",
    "mask_url",
    "storage_from",
    "url_problem",
]
