"""The sessions people run. Every session installs the package with the pinned test
environment (``constraints.txt``: torch 2.13.0, CPU build here) and reuses its environment,
so a second run starts fast."""

from __future__ import annotations

import pathlib

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

ROOT = pathlib.Path(__file__).parent
ABLATIONS = sorted(p.stem for p in (ROOT / "ablations").glob("*.toml"))


def _install(session: nox.Session, extras: str = "test,dev") -> None:
    session.install("-c", "constraints.txt", "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (unit, property, end-to-end). Extra args go to pytest."""
    _install(session)
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("-c", "constraints.txt", "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """The reference pages (docs/) built with MkDocs in strict mode into build/site/, then
    tests/test_docs_site.py: sections, coloured code, the report's figures, nothing fetched from
    the internet. Not `--quiet`: MkDocs 1.6 drops warnings there before strict mode counts them."""
    session.install("-c", "constraints.txt", "mkdocs", "pymdown-extensions", "Pygments", "pytest")
    session.run("mkdocs", "build", "--strict")
    session.run("pytest", "-q", "tests/test_docs_site.py")


@nox.session
def benchmark(session: nox.Session) -> None:
    """The engines side by side (memory, time, params); writes results/benchmark/benchmark.csv."""
    _install(session)
    session.run("python", "-m", "bench", "bench", *session.posargs)


@nox.session(name="gpu-check")
def gpu_check(session: nox.Session) -> None:
    """The paper's memory numbers at its scale on one GPU, in minutes: writes results/gpu/.
    `nox -s gpu-check -- --dry-run` lists the plan and its predictions on any machine. On a
    GPU machine torch==2.13.0 from the package registry is its CUDA build."""
    _install(session, extras="test")
    session.run("python", "-m", "bench", "gpu-check", *session.posargs)


@nox.session(name="gpu-backlog")
def gpu_backlog(session: nox.Session) -> None:
    """The GPU work still missing at today's code, in priority order, inside one call's budget:
    the CUDA tests, the trained gpu profiles, gpu-check's timing rows and profile, its memory
    rows; then the report. `nox -s gpu-backlog -- --dry-run` lists the plan on any machine. On
    a GPU machine torch==2.13.0 from the package registry is its CUDA build; `.[test]` brings
    pytest for the CUDA tests."""
    _install(session, extras="test")
    session.run("python", "-m", "bench", "gpu-backlog", *session.posargs)


@nox.session
def ablation(session: nox.Session) -> None:
    """`nox -s ablation -- NAME [args]` runs ablations/NAME.toml; no NAME lists the specs."""
    if not session.posargs:
        session.log("ablations: " + ", ".join(ABLATIONS))
        session.log('run one with: nox -s "ablation(NAME)" -- [--profile cpu|real|paper] [...]')
        return
    name, *rest = session.posargs
    _run_ablation(session, name, rest)


def _run_ablation(session: nox.Session, name: str, args: list[str]) -> None:
    _install(session)
    session.run("python", "-m", "bench", "ablate", name, *args)
    session.run("python", "-m", "bench", "export", name)


def _description(spec: str) -> str:
    """The spec's own one-line description (its TOML's ``description``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with (ROOT / "ablations" / f"{spec}.toml").open("rb") as handle:
        return str(tomllib.load(handle).get("description", spec))


def _ablation_session(spec: str) -> None:
    """One session per spec, `nox -s "ablation(SPEC)" -- [args]`, listed by `nox -l` with the
    spec's description."""

    def run(session: nox.Session) -> None:
        _run_ablation(session, spec, list(session.posargs))

    run.__doc__ = _description(spec)
    run.__name__ = f"ablation_{spec.replace('-', '_')}"
    nox.session(name=f"ablation({spec})")(run)


for _spec in ABLATIONS:
    _ablation_session(_spec)


@nox.session
def tune(session: nox.Session) -> None:
    """`nox -s tune -- SPEC [args]`: an Optuna study under a memory budget."""
    if not session.posargs:
        session.error(
            "name a tuning spec: nox -s tune -- SPEC [--n-trials N] [--memory-budget 4GiB]"
        )
    _install(session)
    session.run("python", "-m", "bench", "tune", *session.posargs)


@nox.session
def dashboard(session: nox.Session) -> None:
    """`nox -s dashboard -- NAME [--port N]`: optuna-dashboard on results/NAME.db (a spec, or
    tune-SPEC) with each trial's record under its artifacts; installs only the dashboard."""
    if not session.posargs:
        session.error("name a study file: nox -s dashboard -- depth (results/depth.db)")
    name, *rest = session.posargs
    session.install("-c", "constraints.txt", "optuna-dashboard")
    session.run("optuna-dashboard", f"sqlite:///results/{name}.db",
                "--artifact-dir", f"results/{name}.artifacts", *rest)  # fmt: skip


@nox.session
def report(session: nox.Session) -> None:
    """Regenerate report/ from the exported tables under results/."""
    _install(session)
    session.run("python", "-m", "bench", "report", *session.posargs)


@nox.session
def reproduce(session: nox.Session) -> None:
    """The main job: the cpu and real profiles of every ablation (resuming), then the report.
    A study this machine cannot run (e.g. a dataset that is not here) is skipped and listed in
    REPORT.md; the rest go on (bench/harness/reproduce.py)."""
    _install(session)
    session.run("python", "-m", "bench", "reproduce", *session.posargs)
