"""Sweeps: every grid point runs exactly once, with concurrent workers and concurrent sweeps, on
SQLite and on a real PostgreSQL server; failures are kept and retried only when asked; a sweep
killed mid-trial resumes without losing or repeating anything (real trial runner)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from bench.config import TrialConfig
from bench.harness.queue import claim, reconcile, study_name
from bench.harness.spec import load_spec
from bench.harness.storage import FLAT_MAX_CHARS, config_of, load_records, open_storage, storage_url
from bench.harness.sweep import SweepOptions, run_sweep
from bench.record import TrialRecord

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = """
description = "machinery test"
seeds = 2
[base]
epochs = 1
layers = 2
channels = 8
[grid]
arch = ["res", "rev"]
layers = [1, 2, 3]
[profiles.cpu]
"""


def fake_run(config: TrialConfig, timeout: float | None = None, on_epoch=None) -> TrialRecord:
    """A stand-in for run_trial_isolated: logs each execution to a file, so the test counts
    executions independently of what the storage says. layers == 3 with arch res 'OOMs'."""
    log = os.environ["BENCH_TEST_RUN_LOG"]
    with open(log, "a") as handle:
        handle.write(
            json.dumps(
                {
                    "arch": config.arch,
                    "layers": config.layers,
                    "seed": config.seed,
                    "pid": os.getpid(),
                    "t": time.time(),
                }
            )
            + "\n"
        )
    time.sleep(float(os.environ.get("BENCH_TEST_SLEEP", "0.05")))
    if on_epoch is not None:
        on_epoch({"epoch": 1, "loss": 0.5, "valid": 0.6, "test": 0.55, "time_s": 0.01})
    if config.arch == "res" and config.layers == 3:
        return TrialRecord(status="oom", config=config.to_dict(), error="over the cap")
    score = 0.5 + 0.01 * config.layers + 0.001 * config.seed
    return TrialRecord(
        status="ok",
        config=config.to_dict(),
        metric="rocauc",
        best_valid=score,
        test_at_best_valid=score,
        params=100 * config.layers,
        peak_memory_bytes=1000 * config.layers,
        curve=[{"epoch": 1}],
    )


@pytest.fixture()
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture()
def run_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "runs.jsonl"
    monkeypatch.setenv("BENCH_TEST_RUN_LOG", str(log))
    return log


def executions(log: Path) -> Counter:
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter((r["arch"], r["layers"], r["seed"]) for r in map(json.loads, lines))


def stored(url: str, name: str) -> list[tuple[optuna.trial.FrozenTrial, TrialRecord | None]]:
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))
    return load_records(study)


def assert_each_point_once(url: str, spec_path: Path, log: Path) -> None:
    points = load_spec(spec_path).points("cpu")
    runs = executions(log)
    expected = {(p.config.arch, p.config.layers, p.config.seed) for p in points}
    assert set(runs) == expected
    assert all(n == 1 for n in runs.values()), runs
    pairs = stored(url, study_name("mini", "cpu"))
    with_record = Counter(t.user_attrs["point_key"] for t, r in pairs if r is not None)
    assert with_record == Counter({p.key: 1 for p in points})


def test_sweep_runs_every_point_once_and_resumes(
    spec_path: Path, run_log: Path, tmp_path: Path
) -> None:
    result = run_sweep(
        SweepOptions(spec_path, results_dir=tmp_path, progress=False, device="cpu"), fake_run
    )
    url = storage_url(None, "mini", tmp_path)
    assert result.complete and result.total == 12 and result.ran_here == 12
    assert result.failed == 2  # res x 3 layers x 2 seeds: oom
    assert_each_point_once(url, spec_path, run_log)
    pairs = stored(url, study_name("mini", "cpu"))
    states = Counter((t.state.name, r.status) for t, r in pairs)
    assert states == Counter({("COMPLETE", "ok"): 10, ("FAIL", "oom"): 2})
    trial = next(t for t, r in pairs if r.status == "ok")
    assert trial.intermediate_values == {1: 0.6}
    assert trial.value == pytest.approx(trial.user_attrs["best_valid"])

    again = run_sweep(
        SweepOptions(spec_path, results_dir=tmp_path, progress=False, device="cpu"), fake_run
    )
    assert again.ran_here == 0 and again.complete
    assert_each_point_once(url, spec_path, run_log)

    # --retry-failed reruns exactly the failed points; the old attempts stay, superseded
    retried = run_sweep(
        SweepOptions(
            spec_path, results_dir=tmp_path, progress=False, device="cpu", retry_failed=True
        ),
        fake_run,
    )
    assert retried.ran_here == 2
    runs = executions(run_log)
    assert runs[("res", 3, 0)] == 2 and runs[("res", 3, 1)] == 2 and sum(runs.values()) == 14


def test_more_seeds_runs_only_the_new_ones(spec_path: Path, run_log: Path, tmp_path: Path) -> None:
    run_sweep(SweepOptions(spec_path, results_dir=tmp_path, progress=False, device="cpu"), fake_run)
    more = run_sweep(
        SweepOptions(spec_path, results_dir=tmp_path, progress=False, device="cpu", seeds=3),
        fake_run,
    )
    assert more.ran_here == 6 and more.total == 18
    assert all(n == 1 for n in executions(run_log).values())


def test_lost_trial_is_requeued(spec_path: Path, run_log: Path, tmp_path: Path) -> None:
    """A RUNNING trial whose worker stopped beating is failed as lost and its point rerun."""
    url = storage_url(None, "mini", tmp_path)
    points = load_spec(spec_path).points("cpu")
    storage = open_storage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="mini-cpu", storage=storage, direction="maximize")
    reconcile(study, points)
    taken = claim(study)
    assert taken is not None
    storage.record_heartbeat(taken._trial_id)  # it beat once, then its worker "died"
    time.sleep(2.5)
    result = run_sweep(
        SweepOptions(
            spec_path, results_dir=tmp_path, progress=False, device="cpu", heartbeat=1, poll_s=0.2
        ),
        fake_run,
    )
    assert result.complete and result.ran_here == 12
    pairs = stored(url, "mini-cpu")
    lost = [t for t, r in pairs if r is None]
    assert [t.number for t in lost] == [taken.number] and lost[0].state.name == "PRUNED"
    assert lost[0].user_attrs["pruned_reason"].startswith("lost: its worker stopped beating")
    assert_each_point_once(url, spec_path, run_log)


def test_duplicate_claims_are_pruned_with_a_reason_not_failed(
    spec_path: Path, run_log: Path, tmp_path: Path
) -> None:
    from bench.harness.export import trial_rows

    url = storage_url(None, "mini", tmp_path)
    points = load_spec(spec_path).points("cpu")
    study = optuna.create_study(
        study_name="mini-cpu", storage=open_storage(url, None), direction="maximize"
    )
    reconcile(study, points)
    study.enqueue_trial({}, user_attrs=dict(study.trials[0].user_attrs))  # a second worker's copy
    result = run_sweep(
        SweepOptions(
            spec_path, results_dir=tmp_path, progress=False, device="cpu", heartbeat=1, poll_s=0.2
        ),
        fake_run,
    )
    assert result.complete
    assert_each_point_once(url, spec_path, run_log)
    pairs = stored(url, "mini-cpu")
    (dup,) = [t for t, r in pairs if r is None]
    assert dup.state.name == "PRUNED" and dup.user_attrs["duplicate_of"] == 0
    assert dup.user_attrs["pruned_reason"].startswith("duplicate of trial 0")
    assert not any(t.state.name == "FAIL" for t, r in pairs if r is not None and r.status == "ok")
    rows = {row["trial_number"]: row for row in trial_rows(study)}
    assert rows[dup.number]["current"] is False  # exports and the report skip it


def _sweep_process(spec: str, url: str, results_dir: str, workers: int, log: str) -> None:
    os.environ["BENCH_TEST_RUN_LOG"] = log
    os.environ["BENCH_TEST_SLEEP"] = "0.1"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = run_sweep(
        SweepOptions(
            spec,
            storage=url,
            results_dir=Path(results_dir),
            workers=workers,
            progress=False,
            heartbeat=2,
            poll_s=0.2,
        ),
        fake_run,
    )
    assert result.complete
    with open(log + ".ran", "a") as handle:
        handle.write(f"{result.ran_here}\n")


def _concurrent(spec_path: Path, url: str, tmp_path: Path, log: Path) -> None:
    """Two sweeps at once (as on two machines), one with 2 worker processes: 3 concurrent
    workers, 2 sweeps reconciling and enqueueing concurrently."""
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_sweep_process, args=(str(spec_path), url, str(tmp_path), n, str(log)))
        for n in (1, 2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    assert_each_point_once(url, spec_path, log)
    # (how the work was shared depends on start-up times; what matters is exactly once)
    ran = [int(n) for n in Path(str(log) + ".ran").read_text().split()]
    assert len(ran) == 2 and sum(ran) == 12  # each sweep counts what its workers ran


@pytest.mark.slow
def test_concurrent_sweeps_sqlite(spec_path: Path, run_log: Path, tmp_path: Path) -> None:
    _concurrent(spec_path, storage_url(None, "mini", tmp_path), tmp_path, run_log)


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_sweeps_postgres(
    spec_path: Path, run_log: Path, tmp_path: Path, postgres_url: str
) -> None:
    _concurrent(spec_path, postgres_url, tmp_path, run_log)


def test_cli_errors_and_missing_profile(spec_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "bench", "ablate", str(spec_path), "--results-dir", str(tmp_path)]
    done = subprocess.run([*base, "--profile", "paper"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "profiles.paper" in done.stderr and "mini.toml" in done.stderr
    done = subprocess.run(
        [*base, "--profile", "paper", "--skip-missing-profile"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0 and "skipped" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace("[grid]", "[grid]\nchannels = [9]"))
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ablate", str(bad)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2 and "bad.toml" in done.stderr and "groups" in done.stderr
    assert not (tmp_path / "bad.db").exists()


# --- kill and resume, with the real trial runner ------------------------------------------------
TINY = """
description = "kill-and-resume test: tiny real trials"
seeds = 1
[base]
dataset = "synthetic-proteins"
dataset_options = { num_nodes = 300, avg_degree = 6, num_tasks = 4 }
arch = "rev"
channels = 8
epochs = 1
train_parts = 1
eval_parts = 1
[grid]
layers = [1, 2]
[profiles.cpu]
"""


@pytest.mark.slow
def test_kill_worker_mid_trial_then_resume(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    url = storage_url(None, "tiny", tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "ablate",
        str(spec),
        "--results-dir",
        str(tmp_path),
        "--heartbeat",
        "1",
        "--no-progress",
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    before: dict[int, str] = {}
    deadline = time.time() + 150
    try:
        while time.time() < deadline:  # wait for >= 1 finished trial and 1 running
            time.sleep(0.5)
            if not Path(url.removeprefix("sqlite:///")).exists():
                continue
            try:
                pairs = stored(url, "tiny-cpu")
            except KeyError:
                continue
            done = {t.number: r.to_json() for t, r in pairs if r is not None}
            running = [t for t, r in pairs if t.state.name == "RUNNING"]
            if done and running:
                before = done
                break
        assert before, "the sweep never had a finished and a running trial at once"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its trial process, mid-trial
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    pairs = stored(url, "tiny-cpu")
    records = [(t, r) for t, r in pairs if r is not None]
    keys = Counter(t.user_attrs["point_key"] for t, _ in records)
    points = load_spec(spec).points("cpu")
    assert keys == Counter({p.key: 1 for p in points})  # every point exactly once
    assert all(r.status == "ok" for _, r in records)
    for number, blob in before.items():  # nothing finished before the kill was lost or redone
        assert {t.number: r.to_json() for t, r in records}[number] == blob
    lost = [t for t, r in pairs if r is None]
    assert len(lost) >= 1 and all(t.state.name == "PRUNED" for t in lost)  # not shown as failed
    assert all(t.user_attrs.get("pruned_reason") for t in lost)
    assert (tmp_path / "tiny-cpu.csv").exists()
    assert "tiny-cpu" in resumed.stdout


def test_dry_run_lists_points(spec_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ablate", str(spec_path), "--dry-run"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0
    lines = done.stdout.strip().splitlines()
    assert lines[-3] == "12 trials in mini-cpu"  # then the predicted time on a GPU and a CPU
    assert lines[-2].startswith("predicted time on one GPU: ") and "12 trials" in lines[-2]
    assert lines[-1].startswith("predicted time on CPU: ")


def test_studies_read_well_in_a_dashboard(spec_path: Path, run_log: Path, tmp_path: Path) -> None:
    """Every ablation trial carries its grid axes as Optuna params with distributions (the
    dashboard's parameter plots and importances), the study names its objective, and the
    record's key fields are short flat attributes a dashboard shows whole (those it has)."""
    run_sweep(SweepOptions(spec_path, results_dir=tmp_path, progress=False, device="cpu"), fake_run)
    url = storage_url(None, "mini", tmp_path)
    study = optuna.load_study(study_name=study_name("mini", "cpu"),
                              storage=open_storage(url, heartbeat_interval=None))  # fmt: skip
    assert study.metric_names == ["valid rocauc"]
    for trial in study.get_trials():
        assert set(trial.params) == {"arch", "layers", "seed"}
        assert trial.params["layers"] == config_of(trial)["layers"]
        assert isinstance(trial.distributions["arch"], optuna.distributions.CategoricalDistribution)
        assert trial.distributions["layers"] == optuna.distributions.IntDistribution(
            1, 3
        )  # 1, 2, 3: even
        for key in ("status", "param_count", "best_valid"):
            assert key in trial.user_attrs or trial.user_attrs["status"] == "oom"
        assert all(len(str(v)) <= FLAT_MAX_CHARS for v in trial.user_attrs.values())
    oom = next(t for t in study.get_trials() if t.user_attrs["status"] == "oom")
    assert oom.user_attrs["failure_kind"] == "config" and oom.user_attrs["error"] == "over the cap"


def test_the_closing_table_sets_each_header_over_its_column() -> None:
    import pandas as pd

    from bench.harness.progress import aligned

    text = aligned(pd.DataFrame({"arch": ["res"], "status": ["1 ok"], "score": [0.5]}))
    header, row = text.splitlines()
    assert header.index("status") == row.index("1 ok")  # text: left-aligned under its header
    assert header.index("score") + len("score") == row.index("0.5") + len("0.5")  # numbers: right


def test_rerun_stale_runs_the_points_of_mixed_code_configurations_again(
    spec_path: Path, run_log: Path, tmp_path: Path
) -> None:
    import pandas as pd

    from bench.harness.export import export_study
    from bench.harness.reproduce import stale_points

    run_sweep(SweepOptions(spec_path, results_dir=tmp_path, progress=False, device="cpu"), fake_run)
    url = storage_url(None, "mini", tmp_path)
    study = optuna.load_study(study_name=study_name("mini", "cpu"),
                              storage=open_storage(url, heartbeat_interval=None))  # fmt: skip
    export = export_study(study, tmp_path / "mini-cpu.csv")
    frame = pd.read_csv(export, dtype={"commit": object})
    one = frame.index[(frame["arch"] == "rev") & (frame["layers"] == 2) & (frame["seed"] == 1)]
    frame.loc[one, "commit"] = "0123456789later"  # one seed of rev x 2 ran on other code
    frame.to_csv(export, index=False)
    keys = stale_points(export)
    assert keys == set(frame.loc[(frame["arch"] == "rev") & (frame["layers"] == 2), "point_key"])
    run_sweep(
        SweepOptions(spec_path, results_dir=tmp_path, progress=False, device="cpu", rerun=keys),
        fake_run,
    )
    runs = executions(run_log)
    assert runs[("rev", 2, 0)] == runs[("rev", 2, 1)] == 2  # both seeds: one code version again
    assert all(n == 1 for k, n in runs.items() if k[:2] != ("rev", 2))


def test_rerun_stale_without_a_stored_study_keeps_a_whole_export_or_runs_it_all(
    spec_path: Path, run_log: Path, tmp_path: Path
) -> None:
    """A fresh clone has the exports, not the SQLite studies: --rerun-stale keeps an export
    that has every point and one code version, and runs a study with a stale point in full."""
    import pandas as pd

    from bench.harness.reproduce import ReproduceOptions, reproduce, stale_points

    results = tmp_path / "results"

    def again(lines: list[str]):
        return reproduce(
            ReproduceOptions(
                [spec_path], ("cpu",), results, None, progress=False, rerun_stale=True
            ),
            run_fn=fake_run,
            log=lines.append,
        )

    reproduce(
        ReproduceOptions([spec_path], ("cpu",), results, None, progress=False), run_fn=fake_run
    )
    export = results / "mini-cpu.csv"
    before = export.read_bytes()
    (results / "mini.db").unlink()  # what a clone has
    lines: list[str] = []
    assert again(lines).kept == ["mini-cpu"]
    assert all(n == 1 for n in executions(run_log).values()) and export.read_bytes() == before
    assert any("kept" in line and "mini-cpu.csv" in line for line in lines)

    frame = pd.read_csv(export, dtype={"commit": object})
    frame.loc[frame.index[0], "commit"] = "0123456789later"  # one trial ran on other code
    frame.to_csv(export, index=False)
    assert not (results / "mini.db").exists()  # keeping stored nothing
    lines = []
    result = again(lines)
    assert result.ran == ["mini-cpu"] and not result.kept
    assert len(executions(run_log)) == 12 and all(n == 2 for n in executions(run_log).values())
    assert any("all of it runs again" in line for line in lines)
    assert stale_points(export) == set()


THREADS: list[tuple[str | None, int]] = []


def thread_probe(config: TrialConfig, timeout: float | None = None, on_epoch=None) -> TrialRecord:
    """What a trial sees: the OMP_NUM_THREADS its process would inherit, torch's thread count."""
    import torch

    THREADS.append((os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()))
    return TrialRecord(status="ok", config=config.to_dict(), metric="rocauc", best_valid=0.5,
                       test_at_best_valid=0.5)  # fmt: skip


@pytest.mark.parametrize("user", [None, "2"])
def test_cpu_trials_run_on_one_thread_unless_the_user_says(
    spec_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: str | None
) -> None:
    import torch

    if user is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", user)
    threads = torch.get_num_threads()
    THREADS.clear()
    run_sweep(
        SweepOptions(spec_path, results_dir=tmp_path, progress=False, device="cpu"), thread_probe
    )
    assert len(THREADS) == 12
    if user is None:
        assert set(THREADS) == {("1", 1)}
    else:
        assert {omp for omp, _ in THREADS} == {"2"}
    assert os.environ.get("OMP_NUM_THREADS") == user and torch.get_num_threads() == threads
