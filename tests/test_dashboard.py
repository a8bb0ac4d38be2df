"""A swept study as optuna-dashboard reads it: through the dashboard's own WSGI app (the server
``optuna-dashboard URL --artifact-dir DIR`` runs), called with plain WSGI requests, no browser.

What a person browsing needs: the grid axes as params on the scale they were chosen on
(``layers`` 1, 4, 16, 64 on a log axis; one seed is no axis), the objective named after the
metric, every measurement sortable and plottable although some trials failed (a number in
every trial that has it, never None), the parameter count not called ``params`` beside
Optuna's own Params, short attributes only, and each finished trial's whole record as an
artifact that opens. Then the rules behind it: which axes are geometric, a study stored before
(linear axes, records in user attributes) still read and extended, the artifact folder beside
the storage, refused up front when it cannot be, a warning (the record kept) when it fails
mid-sweep, and tuning trials with their record as an artifact too."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bench import cli
from bench.config import TrialConfig
from bench.harness.artifacts import RECORD_FILE, artifact_dir, attach_record, folder_problem
from bench.harness.queue import grid_distributions, is_geometric, reconcile
from bench.harness.spec import load_spec
from bench.harness.storage import (
    FLAT_MAX_CHARS,
    config_of,
    open_storage,
    record_of,
    save_record,
    storage_url,
)
from bench.harness.sweep import SweepOptions, run_sweep
from bench.record import TrialRecord
from bench.tuning.run import run_study
from bench.tuning.space import load_search_space
from bench.tuning.study import TuneRun

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = """
description = "dashboard test: a depth ablation in miniature"
seeds = 1
[base]
epochs = 1
channels = 8
[grid]
arch = ["res", "rev"]
layers = [1, 4, 16, 64]
[profiles.cpu]
"""
# the record fields a dashboard sorts and plots (flat attributes holding numbers)
NUMERIC = ("best_valid", "test_at_best_valid", "param_count", "peak_memory_bytes",
           "baseline_bytes", "fwd_bwd_peak_bytes", "step_added_bytes", "step_time_s")  # fmt: skip


def depth_run(config: TrialConfig, timeout: float | None = None, on_epoch=None) -> TrialRecord:
    """A stand-in for the isolated trial runner: ResGNN at 64 layers runs out of memory, RevGNN
    at 16 diverges (a NaN score), the rest finish with every measurement."""
    if config.arch == "res" and config.layers == 64:
        return TrialRecord("oom", config.to_dict(), error="OutOfMemoryError: over the cap\n" * 40,
                           failure_kind="config", failed_phase="train")  # fmt: skip
    if config.arch == "rev" and config.layers == 16:
        return TrialRecord("diverged", config.to_dict(), best_valid=math.nan, params=1234,
                           failure_kind="config")  # fmt: skip
    layers = config.layers
    return TrialRecord(
        "ok", config.to_dict(), metric="rocauc", best_valid=0.5 + layers / 1000,
        test_at_best_valid=0.5, params=1000 * layers, peak_memory_bytes=4096 * layers,
        baseline_bytes=1024, fwd_bwd_peak_bytes=4096 * layers, optimizer_peak_bytes=2048,
        step_added_bytes=4096 * layers - 1024, step_time_s=0.01 * layers, epoch_time_s=0.1,
        curve=[{"epoch": 1, "valid": 0.5}], stop_reason="max-epochs",
    )  # fmt: skip


class Dashboard:
    """The dashboard's WSGI app, asked with plain GET requests."""

    def __init__(self, url: str, artifacts: Path) -> None:
        storage = open_storage(url, heartbeat_interval=None)
        self.app = optuna_dashboard.wsgi(storage, artifact_store=FileSystemArtifactStore(artifacts))

    def get(self, path: str) -> bytes:
        environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(environ)
        environ["wsgi.input"] = io.BytesIO()
        status: list[str] = []
        body = b"".join(self.app(environ, lambda s, _headers, _exc=None: status.append(s)))
        assert status[0].startswith("200"), (path, status[0], body[:300])
        return body

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dashboard, dict[str, Any], str]:
    """The miniature depth ablation swept into SQLite, and its study as the dashboard sends it
    to a browser."""
    folder = tmp_path_factory.mktemp("dashboard")
    spec = folder / "depth.toml"
    spec.write_text(SPEC)
    run_sweep(SweepOptions(spec, results_dir=folder, progress=False, device="cpu"), depth_run)
    url = storage_url(None, "depth", folder)
    assert artifact_dir(url, "depth", folder) == folder / "depth.artifacts"
    dashboard = Dashboard(url, folder / "depth.artifacts")
    (study,) = dashboard.json("/api/studies")["study_summaries"]
    assert study["study_name"] == "depth-cpu"
    return dashboard, dashboard.json(f"/api/studies/{study['study_id']}"), url


def test_params_are_the_varying_axes_on_their_scale(swept) -> None:
    _, detail, _ = swept
    space = {p["name"]: p["distribution"] for p in detail["union_search_space"]}
    assert set(space) == {"arch", "layers"}  # one seed: no axis
    assert space["layers"]["type"] == "IntDistribution" and space["layers"]["log"] is True
    assert (space["layers"]["low"], space["layers"]["high"]) == (1, 64)
    assert detail["objective_names"] == ["valid rocauc"]


def test_measurements_sort_although_trials_failed(swept) -> None:
    _, detail, _ = swept
    trials = detail["trials"]
    states = sorted(t["state"] for t in trials)
    assert states == ["Complete"] * 6 + ["Fail"] * 2
    sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    for name in NUMERIC:
        assert sortable[name] is True, name
    assert "params" not in sortable and "record" not in sortable and "config" not in sortable
    for trial in trials:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert all(len(v) <= FLAT_MAX_CHARS for v in attrs.values()), attrs
        assert "None" not in attrs.values() and "nan" not in attrs.values()
    oom = next(t for t in trials if {"key": "status", "value": "oom"} in t["user_attrs"])
    oom_attrs = {a["key"]: a["value"] for a in oom["user_attrs"]}
    assert oom_attrs["error"] == "OutOfMemoryError: over the cap"  # its first line
    assert not set(NUMERIC) & set(oom_attrs)  # no measurement: none shown, none empty


def test_each_finished_trial_has_its_record_as_an_artifact(swept) -> None:
    dashboard, detail, url = swept
    study = optuna.load_study(study_name="depth-cpu", storage=open_storage(url, None))
    by_number = {t.number: t for t in study.get_trials()}
    for trial in detail["trials"]:
        (artifact,) = trial["artifacts"]
        assert artifact["filename"] == RECORD_FILE and artifact["mimetype"] == "application/json"
        path = f"/artifacts/{trial['study_id']}/{trial['trial_id']}/{artifact['artifact_id']}"
        text = dashboard.get(path).decode()
        shown = json.loads(text)  # strict JSON: a browser parses it
        stored = record_of(by_number[trial["number"]])
        assert stored is not None and "NaN" not in text
        assert TrialRecord.from_dict(shown).status == stored.status
        assert shown["config"] == stored.config and shown["error"] == stored.error
        if stored.status == "diverged":
            assert shown["best_valid"] is None and math.isnan(stored.best_valid)
        else:
            assert TrialRecord.from_dict(shown) == stored


def test_importances_name_the_axes_that_vary(swept) -> None:
    dashboard, detail, _ = swept
    study_id = detail["trials"][0]["study_id"]
    found = dashboard.json(f"/api/studies/{study_id}/param_importances")
    (importances,) = found["param_importances"]
    assert {i["name"] for i in importances} == {"arch", "layers"}


# --- the rules behind it ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "geometric"),
    [
        ([1, 4, 16, 64, 256, 1001], True),  # the depth ablation
        ([3, 7, 14, 28, 56, 112, 224, 448, 1001], True),  # the paper's depths
        ([64, 80, 160, 224], True),  # the paper's widths: gaps more even on a log scale
        ([1e-3, 1e-2, 1e-1], True),
        ([8, 16], True),  # two values: the larger at least twice the smaller
        ([1, 2, 3], False),  # even gaps: linear
        ([1, 2, 3, 4], False),
        ([2, 3, 4], False),  # groups
        ([2, 3], False),
        ([0, 1, 2, 4], False),  # a zero has no log (seeds start at 0)
        ([0.1, 0.3, 0.5], False),
        ([5], False),
    ],
)
def test_an_axis_is_geometric_when_log_spaces_it_more_evenly(values, geometric) -> None:
    assert is_geometric(values) is geometric


def _points(tmp_path: Path, grid: str, seeds: str = "1") -> list:
    path = tmp_path / "axes.toml"
    path.write_text(f'description = "axes"\nseeds = {seeds}\n[base]\nepochs = 1\nchannels = 12\n'
                    f"[grid]\n{grid}\n[profiles.cpu]\n")  # fmt: skip
    return load_spec(path).points("cpu")


def test_grid_distributions_scale_each_axis(tmp_path: Path) -> None:
    points = _points(tmp_path, 'layers = [2, 8, 32]\nlr = [0.001, 0.01, 0.1]\ngroups = [2, 3, 4]\n'
                     'dropout = [0.0, 0.5]\narch = ["rev"]', seeds="[0, 1]")  # fmt: skip
    found = grid_distributions(points)
    assert found["layers"] == IntDistribution(2, 32, log=True)
    assert found["lr"] == FloatDistribution(0.001, 0.1, log=True)
    assert found["groups"] == IntDistribution(2, 4) and found["seed"] == IntDistribution(0, 1)
    assert found["dropout"] == FloatDistribution(0.0, 0.5)
    assert "arch" not in found  # one value: no param


def test_a_study_stored_before_keeps_its_axes_scale(tmp_path: Path) -> None:
    """A study whose trials hold ``layers`` on a linear scale (stored before geometric axes were
    log) takes new points on that scale (Optuna keeps one per param); an axis whose categorical
    choices changed is left out of new trials instead of failing the sweep."""
    storage = open_storage(storage_url(None, "old", tmp_path), heartbeat_interval=None)
    study = optuna.create_study(study_name="old-cpu", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"layers": 4, "arch": "res"}, value=0.5,
        distributions={"layers": IntDistribution(1, 64), "arch": CategoricalDistribution(["res"])},
    ))  # fmt: skip
    points = _points(tmp_path, 'layers = [1, 4, 16, 64]\narch = ["res", "rev"]')
    assert reconcile(study, points) == len(points)
    for trial in study.get_trials(states=(optuna.trial.TrialState.WAITING,)):
        assert set(trial.params) == {"layers"} and trial.distributions["layers"].log is False
        assert config_of(trial)["layers"] == trial.params["layers"]
        assert "config" not in trial.user_attrs and "label" not in trial.user_attrs


def test_records_and_configurations_stored_before_are_read(tmp_path: Path) -> None:
    """Studies stored before kept the record and the configuration as user attributes."""
    storage = open_storage(storage_url(None, "legacy", tmp_path), heartbeat_interval=None)
    study = optuna.create_study(study_name="legacy-cpu", storage=storage)
    record = depth_run(TrialConfig(layers=4))
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={
        "record": json.loads(record.to_json()), "config": record.config}))  # fmt: skip
    (trial,) = study.get_trials()
    assert record_of(trial) == record and config_of(trial) == record.config


def test_artifact_folder_sits_beside_the_storage(tmp_path: Path) -> None:
    results = Path("results")
    assert artifact_dir(storage_url(None, "depth"), "depth") == results / "depth.artifacts"
    assert artifact_dir(f"sqlite:///{tmp_path}/x/s.db", "depth") == tmp_path / "x" / "s.artifacts"
    journal = f"journal://{tmp_path}/shared/depth.log"  # journal:///abs/path
    assert artifact_dir(journal, "depth", results) == tmp_path / "shared" / "depth.artifacts"
    server = "postgresql+psycopg2://u@h/db"
    assert artifact_dir(server, "tune-small", tmp_path) == tmp_path / "tune-small.artifacts"


def test_an_artifact_folder_that_cannot_be_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    spec = tmp_path / "depth.toml"
    spec.write_text(SPEC)
    for args in (["ablate", str(spec)], ["tune", "proteins-small"]):
        code = cli.main([*args, "--results-dir", str(tmp_path), "--no-progress" if
                         args[0] == "ablate" else "--n-trials=1", "--artifact-dir",
                         str(in_the_way / "artifacts")])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "--artifact-dir" in err[0] and "is a file" in err[0]
    assert folder_problem(in_the_way) == f"{in_the_way} is a file, not a folder"
    assert not list(tmp_path.glob("*.db"))  # nothing stored


def test_a_folder_that_fails_mid_sweep_keeps_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = open_storage(storage_url(None, "w", tmp_path), heartbeat_interval=None)
    study = optuna.create_study(study_name="w-cpu", storage=storage)
    trial = study.ask()
    record = depth_run(TrialConfig(layers=4))
    save_record(study, trial, record)
    (tmp_path / "taken").write_text("")
    assert attach_record(storage, trial, record, tmp_path / "taken" / "artifacts") is None
    assert "is stored, but not as an artifact" in capsys.readouterr().err
    study.tell(trial, 0.5)
    (stored,) = study.get_trials()
    assert record_of(stored) == record
    assert not optuna.artifacts.get_all_artifact_meta(stored, storage=storage)


def test_tuning_trials_carry_their_record_as_an_artifact(tmp_path: Path) -> None:
    space_path = tmp_path / "space.toml"
    space_path.write_text('description = "t"\n[base]\nepochs = 1\n[space]\n'
                          "layers = { low = 1, high = 64, log = true }\n"
                          '[tune]\nn_trials = 3\nseed = 0\npruner = "none"\n')  # fmt: skip
    space = load_search_space(space_path)
    run = TuneRun(space=space, settings=space.settings, results_dir=tmp_path)
    study = run_study(run, depth_run, log=lambda _: None)
    folder = tmp_path / "tune-space.artifacts"
    assert run.artifacts == folder
    store = FileSystemArtifactStore(folder)
    for trial in study.get_trials():
        (meta,) = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
        with store.open_reader(meta.artifact_id) as handle:
            shown = json.load(handle)
        assert shown["config"] == config_of(trial) == record_of(trial).config
        assert None not in trial.user_attrs.values() and "config" not in trial.user_attrs
