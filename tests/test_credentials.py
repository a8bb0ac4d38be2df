"""The storage's password is never printed, written or passed on a command line (issue 29).

On a real PostgreSQL server whose role must give its password (``postgres_login``): a sweep
with the password in ``--storage`` leaves no trace of it in stdout, stderr, the exported CSV,
the study's attributes, a submitit-local job folder (every file, pickles included) or any other
process's command line; ``BENCH_STORAGE`` with ``PGPASSWORD``, and a password-less URL with
``PGPASSFILE`` (``~/.pgpass`` is its default), run the same sweep; without any of them the
server refuses."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import optuna
import pandas as pd
import pytest
from conftest import PostgresLogin  # pytest puts tests/ on the path (rootdir conftest)

from bench import cli
from bench.harness import launch, preflight, runner
from bench.harness.credentials import ENV_VAR, has_password, mask_text, mask_url, storage_from
from bench.harness.storage import load_records, open_storage
from bench.harness.sweep import rerun_command
from bench.tuning import command as tune_command
from bench.tuning import run as tune_run
from bench.tuning.space import load_search_space
from bench.tuning.study import TuneRun

REPO = Path(__file__).resolve().parents[1]
# two points: one trains, one stops over its memory cap (an oom record: the failure line,
# with its rerun command, is printed too)
SPEC = """
description = "credentials test: tiny real trials"
seeds = 1
[base]
dataset = "synthetic-proteins"
dataset_options = { num_nodes = 200, avg_degree = 4, num_tasks = 4 }
arch = "res"
layers = 1
channels = 8
epochs = 2
train_parts = 1
eval_parts = 1
[grid]
memory_cap_bytes = [1073741824, 1000]
[profiles.cpu]
"""
WARNING = "warning: --storage holds a password"


# --- masking ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg2://alice:hunter22@db:5432/bench", "postgresql+psycopg2://alice:***@db:5432/bench"),
        ("postgresql://al%40ce:p%40ss%3Aw%2Fd@db/bench", "postgresql://al%40ce:***@db/bench"),
        ("postgresql://alice@db/bench?password=hunter22&sslmode=require", "postgresql://alice@db/bench?password=***&sslmode=require"),
        ("mysql+pymysql://bob:pw12@db/bench", "mysql+pymysql://bob:***@db/bench"),
        ("weird url://bob:hunter22@db", "weird url://bob:***@db"),  # not SQLAlchemy's: by pattern
    ],
)  # fmt: skip
def test_mask_url_hides_the_password(url: str, shown: str) -> None:
    assert has_password(url)
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg2://alice@db/bench", "sqlite:///results/depth.db", "journal:///fs/x.log"],
)
def test_mask_url_leaves_a_url_without_password_as_it_is(url: str) -> None:
    assert not has_password(url)
    assert mask_url(url) == url


def test_mask_text_hides_the_url_and_the_bare_password() -> None:
    url = "postgresql+psycopg2://alice:hunter22@db/bench"
    text = f"cannot open {url}: the server said 'hunter22' is wrong; other://x:y1@z too"
    masked = mask_text(text, url)
    assert "hunter22" not in masked and "y1" not in masked
    assert "postgresql+psycopg2://alice:***@db/bench" in masked and "other://x:***@z" in masked


# --- naming the storage ---------------------------------------------------------------------------
def test_storage_from_flag_then_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert storage_from(None, "t-none") is None
    monkeypatch.setenv(ENV_VAR, "postgresql+psycopg2://alice:pw12@db/bench")
    assert storage_from(None, "t-env") == "postgresql+psycopg2://alice:pw12@db/bench"
    assert storage_from("sqlite:///x.db", "t-flag") == "sqlite:///x.db"  # the flag wins
    assert capsys.readouterr().err == ""  # neither the environment nor a bare URL warns


def test_password_in_storage_flag_warns_once(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg2://alice:hunter22@db/bench"
    for _ in range(3):
        assert storage_from(url, "t-once") == url
    err = capsys.readouterr().err
    assert err.count(WARNING) == 1 and "hunter22" not in err
    assert ENV_VAR in err and "PGPASSWORD" in err and "~/.pgpass" in err  # how to avoid it


def _ablate_args(**overrides: object) -> argparse.Namespace:
    base = {"spec": "depth", "profile": "cpu", "storage": None, "results_dir": Path("results"),
            "seeds": None, "device": "auto"}  # fmt: skip
    return argparse.Namespace(**{**base, **overrides})


def test_rerun_commands_mask_the_password() -> None:
    url = "postgresql+psycopg2://alice:hunter22@db/bench"
    shown = rerun_command(_ablate_args(storage=url))
    assert (
        "hunter22" not in shown and "--storage 'postgresql+psycopg2://alice:***@db/bench'" in shown
    )
    assert "--storage" not in rerun_command(_ablate_args())  # BENCH_STORAGE: no flag to repeat
    parser = argparse.ArgumentParser()
    tune_command.add_arguments(parser)
    tune = tune_command.rerun_command(parser.parse_args(["proteins-small", "--storage", url]))
    assert "hunter22" not in tune and "alice:***@db" in tune


def test_preflight_masks_the_password_of_an_unreachable_server() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (problem,) = preflight.check(
        [], storage=f"postgresql+psycopg2://u:hunter22@127.0.0.1:{port}/db"
    )
    assert "hunter22" not in problem.line() and "u:***@127.0.0.1" in problem.line()
    (problem,) = preflight.check([], storage="no such scheme://u:hunter22@x")
    assert "hunter22" not in problem.line()


def test_export_reads_bench_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    study = optuna.create_study(study_name="ex-cpu", storage=open_storage(url, None))
    study.enqueue_trial({})
    monkeypatch.setenv(ENV_VAR, url)
    assert cli.main(["export", "ex", "--results-dir", str(tmp_path / "results")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "results" / "ex-cpu.csv").exists()


def test_worker_job_without_a_storage_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job whose scheduler dropped the environment must not sweep into a local SQLite file."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ablate", "depth", "--worker-job", "--no-progress"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"ablate: --worker-job: no storage named; a job gets it in ${ENV_VAR}" in done.stderr


# --- jobs and worker processes ---------------------------------------------------------------------
def _files_hold(folder: Path, *secrets: str) -> list[str]:
    """Every file under ``folder`` (bytes, pickles included) that holds one of ``secrets``."""
    needles = [s.encode() for s in secrets]
    return [str(p) for p in folder.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]  # fmt: skip


def test_jobs_inherit_the_storage_without_it_in_the_job_folder(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    url = "postgresql+psycopg2://alice:hunter22-job@db/bench"
    args = argparse.Namespace(launcher="submitit-local", job_dir=tmp_path / "jobs",
                              time_limit=5, gpus_per_job=0, partition=None,
                              array_parallelism=None, jobs=2)  # fmt: skip
    # the job checks the URL by its hash, so its own pickle does not hold it: the job can have
    # it only from its environment
    digest = hashlib.sha256(url.encode()).hexdigest()
    probe = (f"import hashlib, os, sys; url = os.environ.get({ENV_VAR!r}, ''); "
             f"sys.exit(0 if hashlib.sha256(url.encode()).hexdigest() == {digest!r} else 3)")  # fmt: skip
    codes = launch.run_jobs(args, "probe", [[sys.executable, "-c", probe]] * 2, tmp_path, url)
    assert codes == [0, 0]
    assert list((tmp_path / "jobs").rglob("*.pkl"))  # there is a folder to search
    assert _files_hold(tmp_path / "jobs", "hunter22-job") == []
    assert os.environ.get(ENV_VAR) != url  # the submitting process's environment is restored


@pytest.mark.postgres
def test_tune_workers_get_the_storage_in_their_environment(
    postgres_login: PostgresLogin, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[list[str], dict[str, str]]] = []

    class Worker:  # stands in for a worker process: records how it was started
        def __init__(self, argv: list[str], env: dict[str, str], **_: object) -> None:
            started.append((argv, env))  # (and preexec_fn: it dies with the runner)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(runner.subprocess, "Popen", Worker)  # the runner starts them
    space = load_search_space("proteins-small")
    run = TuneRun(space=space, settings=space.settings, storage=postgres_login.url, workers=2)
    tune_run.run_study(run, log=lambda _line: None)
    assert len(started) == 2
    for argv, env in started:
        assert "--worker-job" in argv and "--storage" not in argv
        assert not any(postgres_login.password in w or quote(postgres_login.password, safe="") in w
                       for w in argv)  # fmt: skip
        assert env[ENV_VAR] == postgres_login.url


# --- whole sweeps on a password-protected server ------------------------------------------------------
def _secrets(login: PostgresLogin) -> tuple[str, str]:
    return login.password, quote(login.password, safe="")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "PGPASSWORD", "PGPASSFILE")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def _ablate(spec: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "ablate", str(spec), "--no-progress", "--device", "cpu",
         "--results-dir", str(spec.parent), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip


def _command_lines_while(proc: subprocess.Popen[str]) -> tuple[str, str, list[str]]:
    """Run ``proc`` to the end, reading every other process's command line meanwhile."""
    import threading

    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and int(entry.name) != proc.pid:
                    try:
                        seen.add((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
                    except (OSError, UnicodeDecodeError):
                        continue
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        done.set()
        watcher.join()
    return out, err, sorted(seen)


def _check_sweep(spec: Path, url: str, name: str) -> optuna.Study:
    study = optuna.load_study(study_name=f"{name}-cpu", storage=open_storage(url, None))
    statuses = sorted(r.status for _, r in load_records(study) if r is not None)
    assert statuses == ["ok", "oom"]
    frame = pd.read_csv(spec.parent / f"{name}-cpu.csv")
    assert sorted(frame["status"]) == ["ok", "oom"]
    return study


@pytest.mark.slow
@pytest.mark.postgres
def test_sweep_with_password_in_storage_leaves_no_trace(
    tmp_path: Path, postgres_login: PostgresLogin
) -> None:
    pytest.importorskip("submitit")
    spec = tmp_path / "secret-a.toml"
    spec.write_text(SPEC)
    proc = _ablate(spec, _env(), "--storage", postgres_login.url, "--launcher", "submitit-local")
    out, err, others = _command_lines_while(proc)
    assert proc.returncode == 0, err[-3000:]
    study = _check_sweep(spec, postgres_login.url, "secret-a")
    secrets = _secrets(postgres_login)
    # the output: the warning once, the storage masked in the closing and failure lines
    assert err.count(WARNING) == 1
    assert f"storage {mask_url(postgres_login.url)}" in out
    assert "--storage 'postgresql+psycopg2://bench_secret:***@" in out  # the oom's rerun line
    assert not any(s in out or s in err for s in secrets)
    # the processes it started (the job, its trials): none had it on its command line
    assert any("submitit" in line for line in others)  # the watcher saw the job's processes
    assert [line for line in others if any(s in line for s in secrets)] == []
    # everything written: the CSV, the job folder (pickles, logs), the spec's folder
    assert list((tmp_path / "jobs").rglob("*.pkl")) and list((tmp_path / "jobs").rglob("*.out"))
    assert _files_hold(tmp_path, *secrets) == []
    # the study's attributes, system and user, and its trials'
    storage = open_storage(postgres_login.url, None)
    study_id = storage.get_study_id_from_name(study.study_name)
    attrs = [study.user_attrs, storage.get_study_system_attrs(study_id)]
    attrs += [a for t in study.trials for a in (t.user_attrs, t.system_attrs)]
    dumped = json.dumps(attrs, default=str)
    assert "memory_cap_bytes" in dumped  # the records are there
    assert not any(s in dumped for s in secrets)


@pytest.mark.slow
@pytest.mark.postgres
def test_bench_storage_with_pgpassword_runs_the_sweep(
    tmp_path: Path, postgres_login: PostgresLogin
) -> None:
    spec = tmp_path / "secret-b.toml"
    spec.write_text(SPEC)
    env = _env(BENCH_STORAGE=postgres_login.bare_url, PGPASSWORD=postgres_login.password)
    out, err = _ablate(spec, env).communicate(timeout=600)
    assert "points have a record" in out, err[-3000:]
    assert WARNING not in err and f"storage {postgres_login.bare_url}" in out
    assert "--storage" not in out  # the rerun line: the same environment reruns it
    _check_sweep(spec, postgres_login.url, "secret-b")


@pytest.mark.slow
@pytest.mark.postgres
def test_password_less_url_with_pgpassfile_runs_the_sweep(
    tmp_path: Path, postgres_login: PostgresLogin
) -> None:
    spec = tmp_path / "secret-c.toml"
    spec.write_text(SPEC)
    pgpass = tmp_path / "pgpass"
    login = postgres_login
    secret = login.password.replace("\\", "\\\\").replace(":", "\\:")  # the file's escapes
    pgpass.write_text(f"{login.host}:{login.port}:{login.database}:{login.user}:{secret}\n")
    pgpass.chmod(0o600)  # libpq ignores a password file others can read
    env = _env(PGPASSFILE=str(pgpass))
    out, err = _ablate(spec, env, "--storage", login.bare_url).communicate(timeout=600)
    assert "points have a record" in out, err[-3000:]
    assert WARNING not in err
    _check_sweep(spec, login.url, "secret-c")


@pytest.mark.postgres
def test_without_a_password_the_server_refuses(
    tmp_path: Path, postgres_login: PostgresLogin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server really wants the password, so the sweeps above found it where libpq looks;
    without one the preflight refuses the storage (one line, masked), and ablate stores nothing."""
    for name in ("PGPASSWORD", "PGPASSFILE", ENV_VAR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))  # not the user's ~/.pgpass
    (problem,) = preflight.check([], storage=postgres_login.bare_url)
    assert "is not reachable" in problem.missing and "password" in problem.missing
    assert preflight.check([], storage=postgres_login.url) == []
