"""Preflight and environment failures (issue 17): a sweep that cannot run says so before it
starts, in one line per missing requirement, and stores nothing; a trial that failed for a
reason outside its configuration is retried by a plain rerun and never counted as a result."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from bench.config import TrialConfig
from bench.data.paths import shared_root
from bench.harness import preflight
from bench.harness.export import trial_rows
from bench.harness.reproduce import ReproduceOptions, reproduce
from bench.harness.skipped import read_skipped, write_skipped
from bench.harness.storage import load_records, open_storage, storage_url
from bench.harness.sweep import SweepOptions, run_sweep
from bench.record import TrialRecord, count_failures
from bench.report.load import finished
from bench.tuning.run import run_study
from bench.tuning.space import load_search_space
from bench.tuning.study import TuneRun, environment_failure
from bench.tuning.study import finished as trial_finished

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_root()  # the project's offline graphs, when present
optuna.logging.set_verbosity(optuna.logging.WARNING)

BLOG_SPEC = """
description = "one BlogCatalog point and one synthetic point"
seeds = 1
[base]
epochs = 1
layers = 1
channels = 8
train_parts = 1
eval_parts = 1
[grid]
dataset = ["blogcatalog", "synthetic-proteins"]
[profiles.cpu]
"""
TINY_SPEC = """
description = "one tiny real trial"
seeds = 1
[base]
dataset = "synthetic-proteins"
dataset_options = { num_nodes = 200, avg_degree = 6, num_tasks = 4 }
arch = "rev"
channels = 8
layers = 2
epochs = 1
train_parts = 1
eval_parts = 1
[profiles.cpu]
"""


@pytest.fixture()
def no_shared_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh clone's view: the shared data folder exists but holds nothing."""
    empty = tmp_path / "empty-data"
    empty.mkdir()
    monkeypatch.setenv("BENCH_SHARED_DATA", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # no downloads cached
    return empty


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- one test per requirement kind ------------------------------------------------------------
def test_dataset_missing_is_one_line_with_count_example_and_fix(no_shared_data: Path) -> None:
    configs = [TrialConfig(dataset="blogcatalog", layers=n) for n in (1, 2, 4)]
    configs.append(TrialConfig())  # synthetic: generated, always present
    problems = preflight.check(configs, labels=["a", "b", "c", "d"])
    assert len(problems) == 1  # checked once, not per point
    (problem,) = problems
    assert problem.requirement.kind == "dataset" and problem.points == ("a", "b", "c")
    line = problem.line()
    assert "\n" not in line and "blogcatalog" in line and "BlogCatalog/blogcatalog.mat" in line
    assert str(no_shared_data) in line and "needed by 3 points (e.g. a)" in line
    assert "fix: point $BENCH_SHARED_DATA (the local data folder)" in line
    assert "downloading is off" in line  # the suite runs with BENCH_OFFLINE=1 (conftest)
    # the download policy slots in: a dataset its policy can fetch is no problem
    assert preflight.check(configs, fetchable=lambda spec, root: spec.name == "blogcatalog") == []


def test_ogb_dataset_missing_names_the_archive(tmp_path: Path) -> None:
    config = TrialConfig(dataset="ogbn-proteins", data_root=str(tmp_path))
    (problem,) = preflight.check([config])
    assert "ogbn-proteins" in problem.missing and "proteins.zip" in problem.fix


@pytest.mark.skipif(
    SHARED is None or not (SHARED / "BlogCatalog").is_dir(), reason="no shared BlogCatalog here"
)
def test_dataset_present_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_SHARED_DATA", str(SHARED))
    assert preflight.check([TrialConfig(dataset="blogcatalog")]) == []


def test_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    cuda = dataclasses.replace(TrialConfig(), device="cuda")  # unvalidated, as sweeps build it
    problems = preflight.check([cuda, TrialConfig()])
    assert [p.requirement.kind for p in problems] == (
        [] if torch.cuda.is_available() else ["device"]
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hides every GPU, on any machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (problem,) = preflight.check([cuda])
    assert "device cuda is not available" in problem.line() and "--device cpu" in problem.fix
    assert "CUDA_VISIBLE_DEVICES=''" in problem.missing


def test_storage_sqlite(tmp_path: Path) -> None:
    assert preflight.check([], storage=f"sqlite:///{tmp_path}/new/sub/x.db") == []
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (problem,) = preflight.check([], storage=f"sqlite:///{blocker}/x.db")
    assert problem.requirement.kind == "storage" and "cannot be created" in problem.missing
    assert not (blocker.parent / "x.db").exists()


def test_storage_server_unreachable_within_seconds() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    (problem,) = preflight.check([], storage=f"postgresql+psycopg2://u@127.0.0.1:{port}/db")
    assert time.perf_counter() - start < preflight.CONNECT_TIMEOUT_S + 2
    assert "not reachable" in problem.missing and "start the server" in problem.fix


def test_storage_driver_missing() -> None:
    pytest.importorskip("sqlalchemy")
    try:
        import pg8000  # noqa: F401

        pytest.skip("pg8000 is installed here")
    except ImportError:
        pass
    (problem,) = preflight.check([], storage="postgresql+pg8000://u@127.0.0.1:1/db")
    assert "driver pg8000 is not installed" in problem.missing and "pip install" in problem.fix


@pytest.mark.postgres
def test_storage_postgres_reachable_and_writable(postgres_url: str) -> None:
    assert preflight.check([], storage=postgres_url) == []


def test_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    deq = TrialConfig(arch="deq")
    assert preflight.check([deq]) == []  # DEQ needs nothing beyond the core install
    monkeypatch.setitem(preflight.DEPENDENCIES, "arch:deq", ("no_such_module_for_bench",))
    (problem,) = preflight.check([deq, TrialConfig()], labels=["deq point", "rev point"])
    assert problem.requirement.kind == "dependency" and problem.points == ("deq point",)
    assert problem.fix == "python -m pip install no_such_module_for_bench"


# --- the commands ------------------------------------------------------------------------------
def test_fresh_clone_ablate_real_exits_2_fast_and_stores_nothing(
    tmp_path: Path, no_shared_data: Path
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bench", "ablate", "depth", "--profile", "real",
           "--results-dir", str(tmp_path / "results"), "--no-progress"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr
    # no data is loaded and no trial starts: far below one trial's time even on a loaded machine
    # (a speed target belongs in a benchmark; this only catches a run that trained)
    assert seconds < 45, f"took {seconds:.1f} s"
    lines = [line for line in done.stderr.splitlines() if "BlogCatalog" in line]
    assert len(lines) == 1 and "fix:" in lines[0] and "needed by 8 points" in lines[0]
    assert not (tmp_path / "results").exists()  # no database, no export


def test_tune_preflight_exits_2_and_stores_nothing(tmp_path: Path, no_shared_data: Path) -> None:
    space = _write(tmp_path / "blog.toml", """
description = "tuning on BlogCatalog"
[base]
dataset = "blogcatalog"
epochs = 1
[space]
layers = { low = 1, high = 2 }
[tune]
n_trials = 2
""")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "tune", str(space), "--results-dir", str(tmp_path / "r")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "tune: dataset blogcatalog is not here" in done.stderr and "fix:" in done.stderr
    assert not (tmp_path / "r").exists()


# --- environment failures are retried, never results ------------------------------------------
def counting_run(config: TrialConfig, timeout: float | None = None, on_epoch: Any = None) -> TrialRecord:  # fmt: skip
    """Stand-in runner for the rerun: logs each execution, then succeeds."""
    with open(os.environ["BENCH_TEST_RUN_LOG"], "a") as handle:
        handle.write(config.dataset + "\n")
    return TrialRecord("ok", config.to_dict(), metric="rocauc", best_valid=0.6,
                       test_at_best_valid=0.6, params=1, peak_memory_bytes=1)  # fmt: skip


def test_environment_failure_is_retried_by_a_plain_rerun(
    tmp_path: Path, no_shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _write(tmp_path / "blog.toml", BLOG_SPEC)
    url = storage_url(None, "blog", tmp_path)
    # an older run without preflight: the real trial process meets the missing data
    first = run_sweep(
        SweepOptions(spec, results_dir=tmp_path, progress=False, device="cpu", check=False)
    )
    assert first.done == 2 and first.environment == 1 and not first.complete
    study = optuna.load_study(study_name="blog-cpu", storage=open_storage(url, None))
    by_dataset = {r.config["dataset"]: r for _, r in load_records(study)}
    missing = by_dataset["blogcatalog"]
    assert missing.status == "error" and missing.failure_kind == "environment"
    assert missing.error.startswith("DataError")
    assert by_dataset["synthetic-proteins"].status == "ok"
    lines = first.failure_lines("python -m bench ablate blog")
    assert len(lines) == 1 and lines[0].startswith("environment failures: 1 point (1 error")
    assert lines[0].endswith("a plain rerun retries them: python -m bench ablate blog")

    # exports and the report never count it as a result
    frame = pd.DataFrame(trial_rows(study))
    env_row = frame[frame["dataset"] == "blogcatalog"].iloc[0]
    assert env_row["failure_kind"] == "environment" and not env_row["current"]
    kept = finished(frame)
    assert list(kept["dataset"]) == ["synthetic-proteins"]
    assert kept.attrs["dropped"]["environment failures (not results; retried next run)"] == 1

    # the data "arrives"; a plain rerun (no --retry-failed) runs exactly the failed point
    log = tmp_path / "runs.log"
    monkeypatch.setenv("BENCH_TEST_RUN_LOG", str(log))
    again = run_sweep(
        SweepOptions(spec, results_dir=tmp_path, progress=False, device="cpu", check=False),
        counting_run,
    )
    assert log.read_text().split() == ["blogcatalog"]
    assert again.complete and again.environment == 0 and again.ran_here == 1
    frame = pd.DataFrame(trial_rows(study))
    current = frame[frame["current"].astype(bool)]
    assert sorted(current["status"]) == ["ok", "ok"] and len(frame) == 3
    third = run_sweep(
        SweepOptions(spec, results_dir=tmp_path, progress=False, device="cpu", check=False),
        counting_run,
    )
    assert third.ran_here == 0  # nothing left to retry


def test_configuration_failure_stays_final() -> None:
    oom = TrialRecord("oom", {}, error="over the cap")
    assert oom.kind_of_failure() == "config" and not oom.is_environment_failure
    old = TrialRecord("error", {}, error="DataError: BlogCatalog not found")  # before the field
    assert old.is_environment_failure
    assert TrialRecord("ok", {}).kind_of_failure() is None


def test_killed_from_outside_is_an_environment_failure() -> None:
    from bench.trial.isolation import record_without_child_record

    config = TrialConfig(timeout=5.0)
    term = record_without_child_record(config, -signal.SIGTERM, None, "", [], {}, "train")
    assert term.status == "error" and term.failure_kind == "environment"
    killed = record_without_child_record(config, -signal.SIGKILL, None, "", [], {}, "train")
    assert killed.status == "oom" and killed.failure_kind == "config"  # the kernel's OOM killer
    timeout = record_without_child_record(config, -signal.SIGKILL, "timeout", "", [], {}, "train")
    assert timeout.status == "timeout" and timeout.failure_kind == "config"


def test_tune_environment_failure_does_not_count_and_is_requeued(tmp_path: Path) -> None:
    space = load_search_space(_write(tmp_path / "t.toml", """
description = "tiny"
[base]
epochs = 1
[space]
layers = { low = 1, high = 9 }
[tune]
n_trials = 2
seed = 0
pruner = "none"
""" ))  # fmt: skip
    run = TuneRun(space=space, settings=space.settings, results_dir=tmp_path)
    seen: list[int] = []

    def broken(config: TrialConfig, **_: Any) -> TrialRecord:
        seen.append(config.layers)
        return TrialRecord("error", config.to_dict(), error="DataError: gone",
                           failure_kind="environment")  # fmt: skip

    study = run_study(run, broken, log=lambda _: None)
    assert len(seen) == 1  # the worker stops at the first environment failure
    (trial,) = study.get_trials()
    assert not trial_finished(trial) and environment_failure(trial)

    def works(config: TrialConfig, **_: Any) -> TrialRecord:
        seen.append(config.layers)
        return TrialRecord("ok", config.to_dict(), best_valid=0.5, test_at_best_valid=0.5)

    study = run_study(run, works, log=lambda _: None)
    assert seen[1] == seen[0]  # the same configuration, re-queued
    assert sum(trial_finished(t) for t in study.get_trials()) == 2  # the failure did not count
    assert len(study.get_trials()) == 3


# --- reproduce --------------------------------------------------------------------------------
def test_reproduce_skips_what_it_cannot_run_and_reports_it(
    tmp_path: Path, no_shared_data: Path
) -> None:
    tiny = _write(tmp_path / "tiny.toml", TINY_SPEC)
    blog = _write(tmp_path / "blog.toml", BLOG_SPEC)
    results, report = tmp_path / "results", tmp_path / "report"
    lines: list[str] = []
    result = reproduce(
        ReproduceOptions(
            [tiny, blog], ("cpu", "real"), results, report, figures=False, progress=False
        ),
        log=lines.append,
    )
    assert result.ran == ["tiny-cpu"] and result.ok
    assert [s.study for s in result.skipped] == ["blog-cpu"]
    assert not (results / "blog.db").exists() and not (results / "blog-cpu.csv").exists()
    assert (results / "tiny-cpu.csv").exists()
    (skip,) = read_skipped(results)
    assert skip.study == "blog-cpu" and "blogcatalog" in skip.reasons[0]
    text = (report / "REPORT.md").read_text()
    assert "## Skipped" in text and "blog-cpu" in text and "BlogCatalog/blogcatalog.mat" in text
    assert any(
        line.startswith("reproduce: skipped blog-cpu: dataset blogcatalog") for line in lines
    )
    summary = json.loads((results / "skipped.json").read_text())
    assert summary[0]["spec"] == "blog"

    # a later run that can run it removes its entry (and the file, when none is left)
    write_skipped(results, [], {("blog", "cpu")})
    assert not (results / "skipped.json").exists()


def test_failures_are_counted_by_kind_with_an_example() -> None:
    def rec(status: str, error: str | None = None, kind: str | None = None) -> TrialRecord:
        return TrialRecord(status=status, config={}, error=error, failure_kind=kind)

    found = count_failures([
        rec("ok"), None, rec("oom", "out of memory", "config"), rec("oom", kind="config"),
        rec("error", "DataError: no folder\nmore", "environment"), rec("diverged", kind="config"),
    ])  # fmt: skip
    assert list(found) == ["config", "environment"]
    assert found["config"].total == 3 and found["config"].shown() == "2 oom, 1 diverged"
    assert found["config"].example == "out of memory"
    assert found["environment"].example == "DataError: no folder"
    assert count_failures([rec("ok")]) == {}
