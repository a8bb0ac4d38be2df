"""The record's schema declared once: export columns, numeric columns and flat attributes derived
from ``TrialRecord``; every export versioned, an older one refused in one line and migrated
once; ``failure_kind`` decided in one function; the harness never imports the report."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from bench.config import TrialConfig
from bench.errors import ConfigError, DataError, DeviceUnavailable
from bench.exports.migrate import migrate_results, migrate_table
from bench.exports.schema import (
    LEAD_COLUMNS,
    POINT_COLUMNS,
    SCHEMA_COLUMN,
    SCHEMA_VERSION,
    export_columns,
    numeric_export_columns,
)
from bench.exports.table import export_paths, hops_of, read_table, write_table
from bench.harness.export import export_study
from bench.harness.storage import (
    FLAT_MAX_CHARS,
    RECORD_ATTR,
    open_storage,
    save_record,
    storage_url,
)
from bench.record import (
    SOLVER_KEYS,
    TrialRecord,
    failure_kind_of,
    keyed_columns,
    numeric_columns,
    record_columns,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def whole_record(**over) -> TrialRecord:
    """A record as a trial writes it: the whole configuration, a DEQ solver, versions."""
    config = TrialConfig(arch="deq", layers=4, deq_max_iter=4).to_dict()
    values = dict(status="ok", config=config, best_valid=0.7, params=10, peak_memory_bytes=99,
                  solver={k: 1.0 for k in SOLVER_KEYS}, versions={"torch": "2"},
                  curve=[{"epoch": 1}], receptive_hops=7)  # fmt: skip
    return TrialRecord(**{**values, **over})


def exported(tmp_path: Path, records: list[TrialRecord | None]) -> Path:
    """``records`` stored as trials of one study (None: a trial lost before its record) and
    exported as the sweep does."""
    study = optuna.create_study(
        study_name="s-cpu", storage=open_storage(storage_url(None, "s", tmp_path))
    )
    for record in records:
        trial = study.ask()
        trial.set_user_attr("config", whole_record().config)
        if record is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        save_record(study, trial, record)
        study.tell(trial, 0.5)
    return export_study(study, tmp_path / "s-cpu.csv", {"kind": "ablation"})


# --- columns derived from the declaration ---------------------------------------------------


def test_export_columns_are_what_an_export_writes(tmp_path: Path) -> None:
    frame = pd.read_csv(exported(tmp_path, [whole_record(), None]))
    prefixed = [c for c in frame.columns if c.startswith(("solver_", "version_"))]
    assert [c for c in frame.columns if c not in prefixed] == list(export_columns())
    assert sorted(prefixed) == sorted([*keyed_columns(), "version_torch"])
    assert set(frame[SCHEMA_COLUMN]) == {SCHEMA_VERSION}
    # a lost trial's row has its configuration and, computed from it, its hops
    lost = frame[frame["status"].isna()].iloc[0]
    assert lost["layers"] == 4 and lost["receptive_hops"] == 7


def test_an_empty_study_exports_every_column(tmp_path: Path) -> None:
    header = pd.read_csv(exported(tmp_path, []), nrows=0).columns
    assert list(header) == list(export_columns())


def test_every_record_field_is_a_column_and_nothing_else_is() -> None:
    config = set(TrialConfig.__dataclass_fields__)
    columns = set(record_columns())
    for f in dataclasses.fields(TrialRecord):
        if f.name not in ("config", "solver", "versions", "curve"):
            assert f.name in columns, f.name
    assert config <= columns and "epochs_done" in columns
    plain = {f.name for f in dataclasses.fields(TrialRecord)} - {"config", "curve"}
    assert columns == config | plain - {"solver", "versions"} | {"epochs_done"}
    assert list(export_columns()[: len(LEAD_COLUMNS)]) == list(LEAD_COLUMNS)
    assert list(export_columns()[-len(POINT_COLUMNS) - 2 :]) == [
        *POINT_COLUMNS, "current", SCHEMA_COLUMN,
    ]  # fmt: skip


def test_numeric_columns_follow_the_field_types() -> None:
    numeric = set(numeric_export_columns([*export_columns(), *keyed_columns(), "version_torch"]))
    assert {"params", "peak_memory_bytes", "best_valid", "layers", "lr", "heads", "receptive_hops",
            "trial_number", "epochs_done", "solver_fwd_iters_mean", "solver_steps"} <= numeric  # fmt: skip
    for text in ("status", "arch", "deterministic", "compile", "share_mask", "version_torch",
                 "dataset_options", "commit", "current", SCHEMA_COLUMN):  # fmt: skip
        assert text not in numeric, text
    assert numeric_columns(["stopped_epoch", "stop_reason"]) == ["stopped_epoch"]


def test_flat_attributes_are_the_declared_fields(tmp_path: Path) -> None:
    record = whole_record(status="oom", error="x" * 2000, step_time_s=0.1)
    study = optuna.create_study(storage=open_storage(storage_url(None, "f", tmp_path)))
    trial = study.ask()
    save_record(study, trial, record)
    attrs = study._storage.get_trial_user_attrs(trial._trial_id)
    assert set(attrs) == set(record.flat_attrs()) and RECORD_ATTR not in attrs
    assert {"status", "failure_kind", "param_count", "peak_memory_bytes", "step_time_s",
            "solver_fwd_iters_mean", "solver_bwd_rel_residual_max"} <= set(attrs)  # fmt: skip
    assert "receptive_hops" not in attrs and "solver_steps" not in attrs and "params" not in attrs
    assert (
        attrs["failure_kind"] == "config" and len(attrs["error"]) == FLAT_MAX_CHARS
    )  # cut for the dashboard
    no_solver = TrialRecord("ok", {}).flat_attrs()
    assert not any(k.startswith("solver_") for k in no_solver) and "failure_kind" not in no_solver


# --- one schema version read; older tables refused, migrated once -----------------------------


def old_export(path: Path, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """A schema-1 table (before the version column) cut from a committed export, as text."""
    table = pd.read_csv(RESULTS / "accuracy-cpu.csv", dtype=str, keep_default_na=False)
    table = table.drop(columns=[SCHEMA_COLUMN, *drop])
    table.to_csv(path, index=False)
    return table


def test_an_older_table_is_refused_in_one_line(tmp_path: Path) -> None:
    old_export(tmp_path / "old-cpu.csv")
    with pytest.raises(DataError) as err:
        read_table(tmp_path / "old-cpu.csv")
    line = str(err.value)
    assert "\n" not in line and "old-cpu.csv" in line
    assert f"python -m bench migrate-results {tmp_path}" in line
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "report", "--results-dir", str(tmp_path),
         "--report-dir", str(tmp_path / "out"), "--no-figures"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert (
        proc.returncode == 2 and proc.stderr.count("\n") == 1 and "migrate-results" in proc.stderr
    )


def test_a_newer_table_is_refused(tmp_path: Path) -> None:
    table = old_export(tmp_path / "new-cpu.csv")
    table.assign(**{SCHEMA_COLUMN: SCHEMA_VERSION + 1}).to_csv(tmp_path / "new-cpu.csv")
    with pytest.raises(DataError, match="newer"):
        read_table(tmp_path / "new-cpu.csv")
    with pytest.raises(DataError, match="update bench"):
        migrate_table(tmp_path / "new-cpu.csv")


def test_migration_keeps_every_value_fills_hops_and_is_idempotent(tmp_path: Path) -> None:
    drop = ("receptive_hops", "needed_hops", "failure_kind", "compile", "dataset_split")
    old = old_export(tmp_path / "old-cpu.csv", drop)
    old.loc[0, "status"] = "error"
    old.loc[0, "error"] = "DataError: gone"
    old.to_csv(tmp_path / "old-cpu.csv", index=False)
    assert migrate_results(tmp_path) == [tmp_path / "old-cpu.csv"]
    new = pd.read_csv(tmp_path / "old-cpu.csv", dtype=str, keep_default_na=False)
    for column in old.columns:
        assert new[column].equals(old[column]), column
    assert list(new.columns) == [c for c in pd.read_csv(RESULTS / "accuracy-cpu.csv", nrows=0)]
    assert set(new[SCHEMA_COLUMN]) == {str(SCHEMA_VERSION)} and set(new["compile"]) == {""}
    for _, row in new.iterrows():
        hops = hops_of(row.to_dict())
        assert row["receptive_hops"] == str(hops["receptive_hops"])
        assert row["needed_hops"] == str(hops["needed_hops"])
    assert new.loc[0, "failure_kind"] == "environment" and new.loc[1, "failure_kind"] == ""
    before = (tmp_path / "old-cpu.csv").read_bytes()
    assert migrate_results(tmp_path) == [] and (tmp_path / "old-cpu.csv").read_bytes() == before
    assert len(read_table(tmp_path / "old-cpu.csv")) == len(old)


def test_the_committed_results_are_of_this_schema() -> None:
    tables = export_paths(RESULTS)  # the study tables (verify.csv is the verification's own)
    assert tables
    for path in tables:
        table = read_table(path)  # refuses any other version
        assert set(table[SCHEMA_COLUMN]) == {SCHEMA_VERSION}, path
        done = table[table["status"].notna()]
        assert done["receptive_hops"].notna().all(), path  # the report reads, never computes


def test_the_migrate_command(tmp_path: Path) -> None:
    old_export(tmp_path / "a-cpu.csv")
    cmd = [sys.executable, "-m", "bench", "migrate-results", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and "a-cpu.csv" in done.stdout, done.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert again.returncode == 0 and "0 table(s) migrated" in again.stdout


def test_write_table_round_trips(tmp_path: Path) -> None:
    rows = [{**whole_record().flat(), "study": "s-cpu", "current": True, "trial_number": 0}]
    path = write_table(pd.DataFrame(rows), tmp_path / "s-cpu.csv")
    back = read_table(path)
    assert back.loc[0, "layers"] == 4 and back.loc[0, "receptive_hops"] == 7
    assert json.loads(back.loc[0, "dataset_options"]) == {}


# --- failure_kind decided once ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cause", "outside", "kind"),
    [
        ("ok", None, False, None),
        ("pruned", "stopped", False, None),
        ("", None, False, None),  # not finished
        ("oom", "out of memory at 64 layers", False, "config"),
        ("killed", "SIGKILL from another process", False, "environment"),
        ("error", "exited with code -15", True, "environment"),
        ("error", DataError("no blogcatalog.mat"), False, "environment"),
        ("error", DeviceUnavailable("device", "no CUDA device"), False, "environment"),
        ("error", ConfigError("parts", "more parts than nodes"), False, "config"),
        ("error", RuntimeError("CUDA error: no CUDA-capable device is detected"), False,
         "environment"),
        ("error", RuntimeError("index out of range"), False, "config"),
        ("error", "DataError: gone\ntraceback", False, "environment"),  # a stored message
        ("error", "invalid setting --parts: too many", False, "config"),
    ],
)  # fmt: skip
def test_failure_kind_is_decided_in_one_place(status, cause, outside, kind) -> None:
    assert failure_kind_of(status, cause, outside=outside) == kind


def test_no_other_module_decides_failure_kind() -> None:
    """Whoever sets ``failure_kind`` calls failure_kind_of (or reads kind_of_failure)."""
    literal = ("failure_kind=\"environment\"", "failure_kind = \"environment\"",
               "failure_kind=\"config\"", "failure_kind = \"config\"")  # fmt: skip
    for path in (ROOT / "bench").rglob("*.py"):
        text = path.read_text()
        assert not any(word in text for word in literal), path


# --- the harness does not import the report ---------------------------------------------------


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function (relative ones resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_harness_never_imports_the_report() -> None:
    files = sorted((ROOT / "bench" / "harness").rglob("*.py"))
    assert files
    for path in files:
        bad = {m for m in imported_modules(path) if m == "bench.report" or
               m.startswith("bench.report.")}  # fmt: skip
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
