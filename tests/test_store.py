"""Storage and export: URLs, records round-tripping through Optuna trials, tidy CSV rows."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from bench.harness.export import export_study
from bench.harness.storage import (
    adopt_unbeaten,
    load_records,
    open_storage,
    record_of,
    save_record,
    storage_url,
    study_names,
)
from bench.record import TrialRecord

optuna.logging.set_verbosity(optuna.logging.WARNING)
# study.ask() on a heartbeat storage warns that heartbeats are meant for optimize(); the sweep
# claims trials itself and beats by hand, these tests just need trials
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def make_record(status: str = "ok", layers: int = 4, valid: float | None = 0.7) -> TrialRecord:
    return TrialRecord(
        status=status,
        config={"arch": "rev", "layers": layers, "device": "cpu", "dataset_options": {"a": 1}},
        metric="rocauc",
        best_valid=valid,
        test_at_best_valid=valid,
        curve=[{"epoch": 1, "loss": 0.5, "valid": valid or 0.0, "test": 0.1, "time_s": 1.0}],
        params=123,
        peak_memory_bytes=4096,
        solver={"fwd_iters": 7},
        device_name="cpu (test)",
        versions={"torch": "x"},
    )


def test_storage_url_defaults_to_sqlite_under_results(tmp_path: Path) -> None:
    assert storage_url(None, "depth") == "sqlite:///results/depth.db"
    assert storage_url(None, "depth", tmp_path) == f"sqlite:///{tmp_path}/depth.db"
    assert storage_url("postgresql://u@h/db", "depth") == "postgresql://u@h/db"


def test_open_storage_creates_folder_and_heartbeat(tmp_path: Path) -> None:
    url = storage_url(None, "x", tmp_path / "deep" / "er")
    storage = open_storage(url, heartbeat_interval=5)
    assert (tmp_path / "deep" / "er" / "x.db").exists()
    assert storage.get_heartbeat_interval() == 5 and storage.grace_period == 15
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_records_round_trip_and_lost_trials(tmp_path: Path) -> None:
    storage = open_storage(storage_url(None, "rt", tmp_path))
    study = optuna.create_study(study_name="rt-cpu", storage=storage, direction="maximize")
    first = study.ask()
    record = make_record(valid=float("nan"))
    save_record(study, first, record)
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    second = study.ask()
    save_record(study, second.number and second._trial_id, make_record())
    study.tell(second, 0.7)
    lost = study.ask()
    study.tell(lost, state=optuna.trial.TrialState.FAIL)
    pairs = load_records(optuna.load_study(study_name="rt-cpu", storage=storage))
    assert [t.number for t, _ in pairs] == [0, 1, 2]
    back = pairs[0][1]
    assert back is not None and math.isnan(back.best_valid)
    assert back.to_dict().keys() == record.to_dict().keys()
    assert "best_valid" not in pairs[0][0].user_attrs  # a NaN is no value: left out
    assert pairs[1][1] == make_record()
    assert pairs[1][0].user_attrs["status"] == "ok" and pairs[1][0].user_attrs["param_count"] == 123
    assert "params" not in pairs[1][0].user_attrs and "record" not in pairs[1][0].user_attrs
    assert pairs[2][1] is None and record_of(pairs[2][0]) is None


def test_save_record_refuses_finished_trial(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(storage_url(None, "f", tmp_path)))
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError):
        save_record(study, trial, make_record())


def _study_with_points(tmp_path: Path) -> optuna.Study:
    storage = open_storage(storage_url(None, "ex", tmp_path))
    study = optuna.create_study(study_name="ex-cpu", storage=storage, direction="maximize")
    study.set_user_attr("spec", "ex")
    study.set_user_attr("profile", "cpu")
    study.set_user_attr("kind", "ablation")
    # point 1 runs first (trial 0), point 0 fails then is retried (trials 1 and 2),
    # and a lost trial of point 1 (trial 3)
    plan = [(1, 1, "ok", 8), (0, 1, "oom", 4), (0, 2, "ok", 4), (1, 2, None, 8)]
    for point, attempt, status, layers in plan:
        trial = study.ask()
        for key, value in {
            "point": point,
            "attempt": attempt,
            "point_key": f"k{point}",
            "label": None,
            "config": make_record(layers=layers).config,
        }.items():
            trial.set_user_attr(key, value)
        if status is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        save_record(study, trial, make_record(status=status, layers=layers))
        study.tell(trial, 0.7)
    return study


def test_export_rows_are_tidy_and_ordered(tmp_path: Path) -> None:
    study = _study_with_points(tmp_path)
    path = export_study(study, tmp_path / "out" / "ex-cpu.csv", {"kind": "ablation"})
    frame = pd.read_csv(path)
    assert list(frame.columns[:6]) == [
        "study",
        "spec",
        "profile",
        "kind",
        "trial_number",
        "optuna_state",
    ]
    assert {
        "status",
        "arch",
        "layers",
        "device",
        "device_name",
        "solver_fwd_iters",
        "version_torch",
        "epochs_done",
        "current",
        "point",
        "attempt",
    } <= set(frame.columns)
    assert list(frame["trial_number"]) == [1, 2, 0, 3]  # grid order, then trial number
    assert list(frame["current"]) == [False, True, True, False]
    assert frame["status"].isna().tolist() == [False, False, False, True]
    assert frame.loc[frame["trial_number"] == 3, "layers"].item() == 8  # config of a lost trial
    assert (frame["spec"] == "ex").all() and (frame["profile"] == "cpu").all()
    assert frame["dataset_options"].iloc[0] == '{"a": 1}'
    again = export_study(study, tmp_path / "again.csv", {"kind": "ablation"})
    assert again.read_text() == path.read_text()  # deterministic
    # the spec changed and point k1 left it: its trials stay stored but leave the export
    kept = pd.read_csv(export_study(study, tmp_path / "k0.csv", keys={"k0"}))
    assert list(kept["trial_number"]) == [1, 2] and set(kept["point_key"]) == {"k0"}


def test_export_command(tmp_path: Path) -> None:
    _study_with_points(tmp_path)
    assert study_names(storage_url(None, "ex", tmp_path), "ex") == ["ex-cpu"]
    cmd = [sys.executable, "-m", "bench", "export", "ex", "--results-dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ex-cpu.csv").exists() and "4 trials" in done.stdout
    done = subprocess.run([*cmd, "--profile", "paper"], capture_output=True, text=True)
    assert done.returncode == 1 and "ex-paper" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "bench", "export", "nothing", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "nothing stored" in done.stderr


def test_a_trial_claimed_but_never_beaten_goes_stale(tmp_path: Path) -> None:
    """A worker killed between claiming a trial and its first heartbeat: Optuna alone never
    fails that trial; once adopted, it goes stale after the grace period like any other."""
    import time

    from optuna.trial import TrialState

    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="orphan", storage=storage)
    study.enqueue_trial({})
    trial_id = study._storage.get_all_trials(study._study_id)[0]._trial_id
    storage.set_trial_state_values(trial_id, state=TrialState.RUNNING)  # claimed, never beaten
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.RUNNING  # Optuna skips it: the trap
    assert adopt_unbeaten(storage, study._study_id) == 1
    assert adopt_unbeaten(storage, study._study_id) == 0  # now it has a heartbeat
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.FAIL
