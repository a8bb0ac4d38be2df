"""``python -m bench tune``: tiny real studies on a 200-node synthetic graph.

The fast tests run each trial with the real trainer in this process (``run_trial``); the slow
one runs the command itself (each trial in its own process), kills it mid-study and resumes."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from bench.config import TrialConfig
from bench.harness.export import LEAD_COLUMNS
from bench.harness.storage import load_records, open_storage, record_of, storage_url
from bench.record import TrialRecord
from bench.tuning.objective import memory_predictor
from bench.tuning.results import export, front_table
from bench.tuning.run import run_study
from bench.tuning.space import SearchSpace, load_search_space
from bench.tuning.study import PRUNE_REASON, PredictFn, TuneRun, finished

ROOT = Path(__file__).resolve().parents[1]
SPACE = """
description = "tiny tuning test"
[base]
dataset = "synthetic-proteins"
dataset_options = {{ num_nodes = 200 }}
epochs = {epochs}
train_parts = 2
eval_parts = 2
[space]
arch = {{ choices = ["res", "rev"] }}
layers = {{ low = 2, high = 3 }}
channels = {{ choices = [8, 64] }}
lr = {{ low = 1e-3, high = 1e-2, log = true }}
[tune]
memory_budget = {budget}
n_trials = 5
seed = 0
pruner = "median"
n_startup_trials = 2
n_warmup_steps = 0
"""


def in_process(
    config: TrialConfig, timeout: float | None = None, on_epoch: Any = None
) -> TrialRecord:
    """The real trainer, in this process (fast); ``run_trial_isolated`` has the same contract."""
    from bench.trial import run_trial

    return run_trial(config, on_epoch=on_epoch)


@pytest.fixture(scope="module")
def predict() -> PredictFn:
    return memory_predictor()


def make_space(tmp_path: Path, predict: PredictFn, epochs: int = 2) -> SearchSpace:
    """A space whose budget the memory model puts between the 8- and 64-channel configs."""
    probe = load_search_space(_write(tmp_path, SPACE.format(epochs=epochs, budget=10**12)))
    narrow = [predict(c) for c in probe.corner_configs() if c.channels == 8]
    wide = [predict(c) for c in probe.corner_configs() if c.channels == 64]
    assert max(narrow) < min(wide), "the test needs the memory model to separate widths"
    budget = (max(narrow) + min(wide)) // 2
    return load_search_space(_write(tmp_path, SPACE.format(epochs=epochs, budget=budget)))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def make_run(space: SearchSpace, tmp_path: Path, multi: bool = False, **settings: Any) -> TuneRun:
    return TuneRun(
        space=space,
        settings=dataclasses.replace(space.settings, **settings),
        multi=multi,
        results_dir=tmp_path / "results",
    )


def records(study: optuna.Study) -> list[tuple[optuna.trial.FrozenTrial, TrialRecord | None]]:
    return load_records(study)


def test_study_prunes_respects_budget_and_resumes(tmp_path: Path, predict: PredictFn) -> None:
    space = make_space(tmp_path, predict)
    budget = space.settings.memory_budget
    study = run_study(
        make_run(space, tmp_path, n_trials=5), in_process, predict, log=lambda _: None
    )
    first = {t.number: (t.state, t.params) for t in study.get_trials()}
    assert sorted(first) == [0, 1, 2, 3, 4]

    # a second invocation with a higher target carries on: nothing lost, nothing run twice
    study = run_study(
        make_run(space, tmp_path, n_trials=7), in_process, predict, log=lambda _: None
    )
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(7))
    assert {t.number: (t.state, t.params) for t in trials if t.number < 5} == first
    assert all(finished(t) for t in trials)

    pairs = records(study)
    assert all(record is not None for _, record in pairs)  # every trial keeps its whole record
    predicted = [t for t, _ in pairs if t.user_attrs.get(PRUNE_REASON, "").startswith("predicted")]
    assert predicted, "the budget should have pruned a wide configuration before it ran"
    for trial, record in pairs:
        assert trial.user_attrs["memory_budget_bytes"] == budget
        if trial in predicted:
            assert trial.state == TrialState.PRUNED and trial.params["channels"] == 64
            assert record.status == "pruned" and record.predicted_peak_bytes > budget
            assert record.peak_memory_bytes is None  # it never ran
        if trial.state == TrialState.COMPLETE:
            assert record.status == "ok"
            assert record.peak_memory_bytes <= budget
            assert trial.value == pytest.approx(record.best_valid)
            assert record.config["memory_cap_bytes"] == budget
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs[PRUNE_REASON]
    assert any(t.state == TrialState.COMPLETE for t, _ in pairs)

    # the export: the store's tidy columns plus the tuner's
    path = export(make_run(space, tmp_path))
    frame = pd.read_csv(path)
    assert path.name == "tune-tiny.csv" and len(frame) == 7
    assert list(frame.columns[:6]) == list(LEAD_COLUMNS)
    assert set(frame["kind"]) == {"tune"} and set(frame["objectives"]) == {"valid_score"}
    assert frame["is_pareto"].sum() == 1
    best = frame[frame["is_pareto"]].iloc[0]
    assert best["trial_number"] == study.best_trial.number
    assert best["values_0"] == pytest.approx(
        frame["best_valid"][frame["optuna_state"] == "COMPLETE"].max()
    )

    # --best prints a runnable trial command; --write-spec a valid ablation spec
    spec_path = tmp_path / "best.toml"
    out = _main_output(["tune", str(space.path), "--results-dir", str(tmp_path / "results"),
                        "--best", "--write-spec", str(spec_path)])  # fmt: skip
    command = next(line for line in out.splitlines() if line.startswith("python -m bench trial"))
    from bench import trial as trial_cli

    parser = argparse.ArgumentParser()
    trial_cli.add_arguments(parser)
    config = trial_cli.config_from_args(parser.parse_args(shlex.split(command)[4:]))
    expected = TrialConfig.from_dict(
        {**records(study)[study.best_trial.number][1].config, "memory_cap_bytes": None}
    )
    assert config == expected
    from bench.harness.spec import load_spec

    points = load_spec(spec_path).points("cpu")
    assert len(points) == 3  # the best configuration over three seeds
    assert points[0].config == expected


def _main_output(argv: list[str]) -> str:
    import contextlib
    import io

    from bench.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(argv) == 0
    return buffer.getvalue()


def test_measured_over_budget_is_stopped_and_pruned(tmp_path: Path, predict: PredictFn) -> None:
    """A memory model that under-predicts cannot let a trial exceed the budget: the measured
    peak stops it (memory_cap_bytes = budget) and the trial is pruned with the reason."""
    space = make_space(tmp_path, predict)
    smallest, _ = space.min_predicted_peak(predict)
    run = make_run(space, tmp_path, n_trials=2, memory_budget=smallest // 2)
    study = run_study(run, in_process, predict=lambda _config: 1, log=lambda _: None)
    pairs = records(study)
    assert len(pairs) == 2
    for trial, record in pairs:
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs[PRUNE_REASON].startswith("measured over budget")
        assert trial.user_attrs["over_budget"] is True
        assert record.status == "oom"


def test_multi_objective_pareto_front_is_exported(tmp_path: Path, predict: PredictFn) -> None:
    space = make_space(tmp_path, predict, epochs=2)
    run = make_run(space, tmp_path, multi=True, n_trials=4, memory_budget=None)
    lines: list[str] = []
    study = run_study(run, in_process, predict, log=lines.append)
    assert study.study_name == "tune-tiny-multi" and len(lines) == 4
    assert study.best_trials
    table = front_table(study)
    assert all(str(t.number) in table for t in study.best_trials)

    frame = pd.read_csv(export(run))
    assert set(frame["objectives"]) == {"valid_score,peak_memory_bytes"}
    done = frame[frame["optuna_state"] == "COMPLETE"]
    assert (done["values_0"] == done["best_valid"]).all()
    assert (done["values_1"] == done["peak_memory_bytes"]).all()
    front = done[done["is_pareto"]]
    assert len(front) == len(study.best_trials) >= 1

    def dominates(a: pd.Series, b: pd.Series) -> bool:
        return (a.values_0 >= b.values_0 and a.values_1 <= b.values_1) and (
            a.values_0 > b.values_0 or a.values_1 < b.values_1
        )

    for _, row in done.iterrows():
        dominated = any(dominates(other, row) for _, other in done.iterrows())
        assert dominated != bool(row["is_pareto"])


def test_nothing_fits_is_refused_before_any_trial(
    tmp_path: Path, predict: PredictFn, capsys
) -> None:  # noqa: ANN001
    space = make_space(tmp_path, predict)
    from bench.cli import main

    code = main(
        ["tune", str(space.path), "--memory-budget", "1KiB", "--results-dir", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert str(space.path) in err and "--memory-budget" in err and "nothing fits" in err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.db"))

    called: list[TrialConfig] = []
    run = make_run(space, tmp_path, memory_budget=1024)
    with pytest.raises(Exception, match="nothing fits"):
        run_study(run, lambda c, **_: called.append(c), predict)  # type: ignore[arg-type, return-value]
    assert called == []


@pytest.mark.slow
def test_killed_worker_resumes_without_losing_or_duplicating(
    tmp_path: Path, predict: PredictFn
) -> None:
    """The command itself (isolated trials): kill it while a trial runs; the rerun re-queues
    the dead trial once its heartbeat is stale and ends with exactly n finished trials."""
    space = make_space(tmp_path, predict, epochs=2)
    results = tmp_path / "results"
    argv = [sys.executable, "-m", "bench", "tune", str(space.path), "--n-trials", "3",
            "--memory-budget", "none", "--heartbeat", "1", "--results-dir", str(results)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )
    url = storage_url(None, "tune-tiny", results)
    killed_at = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            try:
                study = optuna.load_study(study_name="tune-tiny", storage=open_storage(url, None))
            except KeyError:
                continue
            trials = study.get_trials(deepcopy=False)
            # a running trial that has its point (killed before its sampler chose one, there
            # would be no point to run again)
            running = [t.number for t in trials if t.state == TrialState.RUNNING and t.params]
            if sum(map(finished, trials)) >= 1 and running:
                killed_at = running[0]
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and its trial process
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_at is not None, "the study ended before it could be interrupted"

    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    study = optuna.load_study(study_name="tune-tiny", storage=open_storage(url, None))
    trials = study.get_trials()
    assert sum(map(finished, trials)) == 3
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    lost = trials[killed_at]
    assert lost.state == TrialState.FAIL and record_of(lost) is None
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_at]
    assert len(retries) == 1 and finished(retries[0])  # re-run once, same point
    assert retries[0].params == lost.params
