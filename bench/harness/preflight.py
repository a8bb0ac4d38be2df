"""Preflight: what a set of trials needs from this machine, checked once, before any trial runs.

A sweep of 32 BlogCatalog points needs BlogCatalog once, not 32 times: without a preflight,
each trial process would start, fail to find the data and store a failure that looks like the
configuration's. Here every distinct requirement of the points (a dataset, a device, a storage,
an optional package) is checked once, in the parent, within seconds, and each one that fails
becomes one line: what is missing, which points need it (a count and an example), how to fix
it. Callers print the lines and exit 2 with nothing stored (``ablate``, ``tune``), or skip
the study and say why (``reproduce``).

What is checked, and how (cheap: no dataset is loaded, no trial process started):

* **dataset**: present under its data root (:meth:`bench.data.registry.DatasetSpec.available`),
  or fetchable under the download policy (``fetchable``, by default
  :func:`bench.data.download.fetchable`: a real graph with published files passes while
  downloads are on, i.e. without ``--offline`` / ``BENCH_OFFLINE=1``). Generated datasets are
  always present, unless building one takes more than this machine's memory
  (:func:`bench.data.registry.check_fits`). A graph file (``dataset = "PATH.pt"``) is read and checked
  (:mod:`bench.data.graph_file`; once per file version) and must still have the content hash
  its points were made with.
* **device**: ``cuda`` needs ``torch.cuda.is_available()`` (torch is imported only then).
* **storage**: SQLite or ``journal:///path`` (a JournalStorage file): the file (or the folder it
  will be created in) is writable;
  any other URL: its driver imports and a connection opens within a few seconds.
* **dependency**: the packages a loader imports lazily (``ogb``, ``scipy``) can be found, so a
  broken install is one line, not a traceback per trial.

Example::

    from bench import preflight
    problems = preflight.check(configs, storage="sqlite:///results/depth.db")
    preflight.report_and_exit(problems, prog="ablate")   # prints the lines, exits 2; or returns
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

from bench.config import TrialConfig
from bench.data.graph_file import is_graph_file
from bench.data.registry import DatasetSpec, get_spec
from bench.errors import ConfigError
from bench.harness.credentials import mask_text, mask_url, url_problem

KINDS = ("dataset", "device", "dependency", "storage")  # also the order problems are listed in
# whether a missing dataset may be downloaded by its loader (the policy a download flag sets)
Fetchable = Callable[[DatasetSpec, "str | None"], bool]
CONNECT_TIMEOUT_S = 5
# modules imported only when a trial loads its data or builds its model: (what needs it, module)
DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "dataset-kind:ogb": ("ogb",),
    "dataset:blogcatalog": ("scipy",),
}
# how to install a module that is missing (the default: pip install MODULE)
INSTALL: dict[str, str] = {
    "psycopg2": "python -m pip install 'gnn1000-bench[postgres]' (psycopg2-binary)",
    "pymysql": "python -m pip install pymysql",
}


def no_downloads(spec: DatasetSpec, root: str | None) -> bool:
    """A policy that fetches nothing: a dataset must be present."""
    return False


def download_policy(spec: DatasetSpec, root: str | None) -> bool:
    """The default policy: a downloadable dataset passes while downloads are on."""
    from bench.data.download import fetchable

    return fetchable(spec, root)


@dataclass(frozen=True)
class Requirement:
    """One thing some trials need from the machine; equal requirements are checked once."""

    kind: str  # one of KINDS
    name: str  # a dataset name (or graph file path), "cuda", a storage URL, a module name
    root: str | None = None  # dataset: the data root its configs give (None: the default)
    sha256: str | None = None  # graph file: the content hash its configs were made with
    options: str | None = None  # generated dataset: its options (JSON), which set its size


@dataclass(frozen=True)
class Problem:
    """A requirement this machine does not meet: what is missing, who needs it, the fix."""

    requirement: Requirement
    missing: str
    fix: str
    points: tuple[str, ...] = ()  # labels of the points that need it

    def line(self) -> str:
        """One line for a person: what is missing; which points need it; how to fix it."""
        need = ""
        if self.points:
            count = len(self.points)
            need = f"; needed by {count} point{'s' if count != 1 else ''} (e.g. {self.points[0]})"
        return f"{self.missing}{need}; fix: {self.fix}"


class PreflightError(RuntimeError):
    """Raised by callers that cannot exit (``run_sweep``): the problems, one line each."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(p.line() for p in self.problems))


# --- what a configuration needs ------------------------------------------------------------------
def requirements(config: TrialConfig) -> list[Requirement]:
    """Everything one configuration needs from the machine (storage aside: it is the caller's)."""
    if is_graph_file(config.dataset):
        needs = [Requirement("dataset", config.dataset, sha256=config.dataset_hash)]
        keys = [f"arch:{config.arch}"]
    else:
        spec = get_spec(config.dataset)
        options = None
        if spec.kind == "generated":
            options = json.dumps(config.dataset_options, sort_keys=True, default=str)
        needs = [Requirement("dataset", spec.name, config.data_root, options=options)]
        keys = [f"dataset-kind:{spec.kind}", f"dataset:{spec.name}", f"arch:{config.arch}"]
    if config.device != "cpu":
        needs.append(Requirement("device", config.device))
    for key in keys:
        needs += [Requirement("dependency", module) for module in DEPENDENCIES.get(key, ())]
    return needs


def describe(config: TrialConfig) -> str:
    """A short label for a point when the caller gives none."""
    return f"{config.dataset} {config.arch} {config.layers} layers seed {config.seed}"


# --- the checks ------------------------------------------------------------------------------------
def check_dataset(req: Requirement, fetchable: Fetchable = download_policy) -> Problem | None:
    if is_graph_file(req.name):
        return check_graph_file(req)
    spec = get_spec(req.name)
    if spec.kind == "generated":
        return _check_generated(req)
    if spec.available(req.root) or fetchable(spec, req.root):
        return None
    base = spec.root(req.root)
    files = " and ".join(f.split("|")[0] for f in spec.files)
    if spec.kind == "ogb":
        folder = spec.extra["folder"]
        archive = spec.name.removeprefix("ogbn-")
        return Problem(
            req,
            f"dataset {spec.name} is not here (no {files} under {base})",
            f"unzip OGB's {archive}.zip (http://snap.stanford.edu/ogb/data/nodeproppred/"
            f"{archive}.zip) into {base} so that {base / folder} exists, or point --data-root / "
            "$BENCH_DATA_ROOT at a folder that holds it",
        )
    from bench.data import download

    if req.root is not None:  # an explicit --data-root is authoritative: no fallback, no download
        root = Path(req.root).expanduser()
        return Problem(
            req,
            f"dataset {spec.name} is not in --data-root {root} (no {files} there)",
            f"put {files} under {root}, or leave out --data-root to use the local data folder, "
            "the download cache and downloads",
        )
    if download.downloadable(spec.name):
        searched = ", ".join(str(p) for p in download.candidates(req.root))
        why = (
            "downloading is off (--offline / BENCH_OFFLINE=1)"
            if not download.downloads_allowed()
            else "it cannot be downloaded"
        )
        return Problem(
            req,
            f"dataset {spec.name} is not here (searched {searched}) and {why}",
            download.not_here_fix(spec.name),
        )
    return Problem(
        req,
        f"dataset {spec.name} is not here (no {files} under {base})",
        f"put {files} under {base}, or point $BENCH_SHARED_DATA (the local data folder) or "
        "--data-root at a folder that holds it "
        "(python -m bench datasets shows what is found where)",
    )


def _check_generated(req: Requirement) -> Problem | None:
    """A generated dataset: buildable in this machine's memory with its options."""
    from bench.data.registry import check_fits

    try:
        check_fits(req.name, json.loads(req.options or "{}"))
    except ConfigError as exc:
        return Problem(req, exc.message, "run these points on a machine with that much memory")
    return None


def check_graph_file(req: Requirement) -> Problem | None:
    """A graph file: here, well-formed, and the version its points were made with."""
    from bench.data.graph_file import check_setting

    try:
        check_setting(req.name, req.sha256, {})
    except ConfigError as exc:
        return Problem(
            req,
            exc.message,
            f"python -m bench datasets --dataset {req.name} checks the file (the format: "
            "python -m bench datasets --file-format); a relative path is relative to the "
            "working directory",
        )
    return None


def graph_file_notes(configs: Iterable[TrialConfig]) -> list[str]:
    """One line per graph file (and split seed) of ``configs``: what was inferred from it --
    sizes, task and metric, split -- for the command to print before it runs anything."""
    from bench.data.graph_file import summary_of

    seen: dict[tuple[str, str], str] = {}
    for config in configs:
        if is_graph_file(config.dataset):
            key = (config.dataset, repr(sorted(config.dataset_options.items())))
            if key not in seen:
                seen[key] = summary_of(config.dataset, config.dataset_options)
    return list(seen.values())


def check_device(req: Requirement, fetchable: Fetchable = download_policy) -> Problem | None:
    import torch

    if req.name == "cuda" and torch.cuda.is_available():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    return Problem(
        req,
        f"device {req.name} is not available here{hidden}: torch {torch.__version__} sees no "
        "CUDA device",
        "run on a machine with a CUDA GPU and a CUDA build of torch, or pass --device cpu",
    )


def check_dependency(req: Requirement, fetchable: Fetchable = download_policy) -> Problem | None:
    if importlib.util.find_spec(req.name) is not None:
        return None
    install = INSTALL.get(req.name, f"python -m pip install {req.name}")
    return Problem(req, f"package {req.name} is not installed", install)


def check_storage(req: Requirement, fetchable: Fetchable = download_policy) -> Problem | None:
    from sqlalchemy.engine import make_url

    url = req.name
    if url.startswith("journal://"):  # Optuna's JournalStorage on a (shared) file
        return _check_sqlite(req, url[len("journal://") :])
    shown = mask_url(url)
    problem = url_problem(url)  # says nothing of the URL: a misread one would show its password
    if problem is not None:
        return Problem(req, f"storage {shown!r} {problem}",
                       "pass --storage sqlite:///PATH or postgresql+psycopg2://user@host/db")  # fmt: skip
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _check_sqlite(req, parsed.database)
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None) or parsed.get_driver_name()
        install = INSTALL.get(module, f"python -m pip install {module}")
        return Problem(req, f"storage {shown}: its driver {module} is not installed", install)
    except Exception as exc:  # noqa: BLE001 - an unknown dialect name, for one
        return Problem(req, f"storage {shown}: {type(exc).__name__}: {mask_text(str(exc), url)}",
                       "pass a URL SQLAlchemy knows, e.g. postgresql+psycopg2://user@host/db")  # fmt: skip
    return _check_server(req, url, shown)


def _check_sqlite(req: Requirement, database: str | None) -> Problem | None:
    if not database or database == ":memory:":
        return None
    path = Path(database)
    if path.exists():
        if os.access(path, os.R_OK | os.W_OK):
            return None
        return Problem(req, f"storage {path} is not writable",
                       "make it writable, or pass --results-dir/--storage elsewhere")  # fmt: skip
    folder = path.parent
    while not folder.exists():  # the nearest folder that exists must let us create the rest
        folder = folder.parent
    if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
        return None
    return Problem(req, f"storage {path} cannot be created ({folder} is not a writable folder)",
                   "pass --results-dir (or --storage sqlite:///PATH) somewhere writable")  # fmt: skip


def _check_server(req: Requirement, url: str, shown: str) -> Problem | None:
    """Connect once with a short timeout; then ask whether we may write Optuna's tables."""
    from sqlalchemy import create_engine, inspect, text

    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgres") else {}
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                return None
            tables = set(inspect(conn).get_table_names())
            query = (
                "SELECT has_table_privilege('trials', 'INSERT')"
                if "trials" in tables
                else "SELECT has_schema_privilege(current_schema(), 'CREATE')"
            )
            if conn.execute(text(query)).scalar():
                return None
            return Problem(req, f"storage {shown}: this user may not write Optuna's tables",
                           "grant it INSERT on the study tables (CREATE on the schema for a new "
                           "database), or use another --storage")  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - unreachable, refused, bad credentials, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Problem(req, f"storage {shown} is not reachable ({mask_text(reason, url)})",
                       "start the server or fix the URL (host, port, user, database), or drop "
                       "--storage to use a local SQLite file")  # fmt: skip
    finally:
        engine.dispose()


CHECKS: dict[str, Callable[[Requirement, Fetchable], Problem | None]] = {
    "dataset": check_dataset,
    "device": check_device,
    "dependency": check_dependency,
    "storage": check_storage,
}


# --- the public API --------------------------------------------------------------------------------
def check(
    configs: Iterable[TrialConfig],
    storage: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    fetchable: Fetchable = download_policy,
) -> list[Problem]:
    """Every unmet requirement of ``configs`` (and of ``storage``, an Optuna storage URL).

    ``labels[i]`` names ``configs[i]`` in the lines (default: :func:`describe`). Each distinct
    requirement is checked once; the problems come back in the order of ``KINDS``."""
    needs: dict[Requirement, list[str]] = {}
    for i, config in enumerate(configs):
        label = labels[i] if labels is not None else describe(config)
        for req in requirements(config):
            needs.setdefault(req, []).append(label)
    if storage is not None:
        needs.setdefault(Requirement("storage", storage), [])
    problems = []
    for req in sorted(needs, key=lambda r: KINDS.index(r.kind)):
        problem = CHECKS[req.kind](req, fetchable)
        if problem is not None:
            problems.append(replace(problem, points=tuple(needs[req])))
    return problems


def report(problems: Sequence[Problem], prog: str, file: object = None) -> None:
    """Print one line per problem (to stderr), then what happened: nothing ran."""
    out = file if file is not None else sys.stderr
    for problem in problems:
        print(f"{prog}: {problem.line()}", file=out)
    count = len(problems)
    print(f"{prog}: {count} requirement{'s' if count != 1 else ''} not met; nothing was run "
          "or stored", file=out)  # fmt: skip


def report_and_exit(problems: Sequence[Problem], prog: str = "bench") -> None | NoReturn:
    """Return if there are no problems; else print them and exit 2 (bad input, nothing done)."""
    if not problems:
        return None
    report(problems, prog)
    raise SystemExit(2)


__all__ = [
    "CHECKS",
    "KINDS",
    "PreflightError",
    "Problem",
    "Requirement",
    "check",
    "graph_file_notes",
    "no_downloads",
    "report",
    "report_and_exit",
    "requirements",
]
