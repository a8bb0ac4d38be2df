"""Names that become file names under a folder: a spec's, a profile's, a study's.

Why a check of its own: every file the harness writes under ``--results-dir`` is named after
something a user (or a shared storage) chose, ``RESULTS/<spec>.db`` and ``RESULTS/<study>.csv``
with ``<study>`` = ``<spec>-<profile>``. A profile named ``x/../../../tmp/ESCAPED`` once made an
export write ``/tmp/ESCAPED.csv``. So a name may hold only letters, digits, ``.``, ``_`` and
``-`` (and not be dots alone), and the path made of it must still resolve inside its folder
(a link planted in the folder pointing elsewhere is refused too).

Example::

    from pathlib import Path
    from bench.exports.paths import file_in
    file_in(Path("results"), "depth-cpu", ".csv", "study")       # results/depth-cpu.csv
    file_in(Path("results"), "x/../../etc", ".csv", "profile")   # raises UnsafeName
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9._-]+")


class UnsafeName(ConfigError):
    """A name that would make a path outside its folder (or not a plain file name); a
    :class:`~bench.errors.ConfigError` of the setting that gave it, raised before anything runs."""


def check_name(name: str, what: str) -> str:
    """``name`` if it is a plain file name (letters, digits, ``.``, ``_``, ``-``, not dots
    alone), else :class:`UnsafeName` naming ``what`` gave it (``spec``, ``profile``, ...)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or not name.strip("."):
        raise UnsafeName(what, f"{name!r} cannot name a file: use only letters, digits, "
                               "'.', '_' and '-'")  # fmt: skip
    return name


def file_in(folder: Path, name: str, suffix: str, what: str) -> Path:
    """``folder/<name><suffix>``, once ``name`` is checked (:func:`check_name`) and the path
    resolves inside ``folder`` (links followed); else :class:`UnsafeName`."""
    path = Path(folder) / f"{check_name(name, what)}{suffix}"
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        raise UnsafeName(what, f"{path} resolves to {path.resolve()}, outside {folder}")
    return path


__all__ = ["UnsafeName", "check_name", "file_in"]
