"""Nothing lost, nothing written outside, nothing left running (issue 36, items 1-5).

1. An export meets an existing table by merging into it: the rows of points the study does not
   hold are kept byte for byte (a fresh clone's ablation keeps every committed row); a table it
   cannot merge into is refused in one line naming ``--replace``, and left as it is.
2. Names that become paths (spec, profile, study) are plain file names; every written path
   resolves inside its folder; an attempt is one line, exit 2, nothing written.
3. A trial dies with its sweep, whatever ends the sweep: SIGKILL to its process group, SIGTERM
   to it (handled like Ctrl-C), its parent's death.
4. The report refuses a value that is not a number in a numeric column (file, line, column).
5. A storage that fails mid-sweep is one line, and the same command then completes every point
   exactly once (a real PostgreSQL server, stopped and started again).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest

from bench.config import TrialConfig
from bench.errors import DataError
from bench.exports.paths import UnsafeName, check_name, file_in
from bench.exports.schema import SCHEMA_VERSION
from bench.exports.table import read_table, write_table
from bench.harness.export import export_study
from bench.harness.queue import reconcile
from bench.harness.spec import SpecError, load_spec
from bench.harness.storage import load_records, open_storage, storage_url
from bench.harness.sweep import SweepOptions, run_sweep
from bench.record import TrialRecord
from bench.trial import FAULT_ENV

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FAKE_VALID = 0.987654

MINI = """
description = "nothing-lost test"
seeds = 1
[base]
epochs = 1
channels = 8
[grid]
arch = ["res", "rev"]
layers = [1, 2]
[profiles.cpu]
"""


def fake_run(config: TrialConfig, timeout: float | None = None, on_epoch=None) -> TrialRecord:
    """A stand-in for the trial runner: a finished record with a score no real trial gives."""
    return TrialRecord(status="ok", config=config.to_dict(), metric="rocauc",
                       best_valid=FAKE_VALID, test_at_best_valid=FAKE_VALID, params=1,
                       peak_memory_bytes=1000, curve=[{"epoch": 1}])  # fmt: skip


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bench", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env or ENV, timeout=600)


def lines(path: Path) -> list[str]:
    """The file's rows as written (its cells hold no line breaks here)."""
    return path.read_text().splitlines()


def mini_study(tmp_path: Path) -> tuple[Path, optuna.Study]:
    """The mini spec's four points, each with a finished record, in ``tmp_path/mini.db``."""
    spec = tmp_path / "mini.toml"
    spec.write_text(MINI)
    options = SweepOptions(spec, results_dir=tmp_path, progress=False, device="cpu", check=False)
    return spec, run_sweep(options, run_fn=fake_run).study


def depth_copy(folder: Path, grid: str) -> Path:
    """``ablations/depth.toml`` whose cpu profile runs only ``grid`` (its points keep the
    keys of the committed ones: same configurations)."""
    text = (ROOT / "ablations" / "depth.toml").read_text()
    spec = folder / "depth.toml"
    spec.write_text(text.replace("[profiles.cpu]\n", f"[profiles.cpu]\ngrid = {grid}\n", 1))
    return spec


# --- 1. merged, never replaced ------------------------------------------------------------------
def test_an_ablation_into_the_committed_results_keeps_every_committed_row(tmp_path: Path) -> None:
    """A fresh clone: no study database, the committed table; the ablation runs two points."""
    results = tmp_path / "results"
    results.mkdir()
    table = shutil.copy(ROOT / "results" / "depth-cpu.csv", results / "depth-cpu.csv")
    committed = lines(table)
    spec = depth_copy(tmp_path, "{ layers = [1] }")
    ran = {p.key for p in load_spec(spec).points("cpu")}
    assert len(ran) == 2
    options = SweepOptions(spec, results_dir=results, progress=False, device="cpu", check=False)
    result = run_sweep(options, run_fn=fake_run)
    assert result.complete
    result.export()
    after = pd.read_csv(table, dtype=str, keep_default_na=False)
    before = pd.read_csv(ROOT / "results" / "depth-cpu.csv", dtype=str, keep_default_na=False)
    assert len(after) == len(before) == 12
    assert sorted(after["point_key"]) == sorted(before["point_key"])
    assert set(after.loc[after["point_key"].isin(ran), "best_valid"]) == {str(FAKE_VALID)}
    kept = [line for line in committed[1:] if not any(key in line for key in ran)]
    assert len(kept) == 10 and set(kept) <= set(lines(table))  # byte for byte
    assert lines(table)[0] == committed[0]


@pytest.mark.slow
def test_ablate_then_export_on_a_fresh_clone_keep_the_committed_rows(tmp_path: Path) -> None:
    """What `nox -s ablation -- depth` runs (ablate, then export), with a real trial."""
    results = tmp_path / "results"
    results.mkdir()
    table = shutil.copy(ROOT / "results" / "depth-cpu.csv", results / "depth-cpu.csv")
    committed = lines(table)
    spec = depth_copy(tmp_path, '{ layers = [1], arch = ["rev"] }')
    (key,) = [p.key for p in load_spec(spec).points("cpu")]
    done = bench("ablate", str(spec), "--results-dir", str(results), "--device", "cpu",
                 "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    done = bench("export", "depth", "--results-dir", str(results))
    assert done.returncode == 0, done.stderr
    assert "kept 11 rows of points this study does not hold" in done.stdout
    after = lines(table)
    assert len(after) == len(committed) and after[0] == committed[0]
    assert {line for line in committed if key not in line} <= set(after)
    (rerun,) = [line for line in after if key in line]
    assert rerun not in committed  # the study's newer record


def test_the_study_decides_a_point_only_where_it_holds_it(tmp_path: Path) -> None:
    spec, study = mini_study(tmp_path)
    plain = export_study(study, tmp_path / "plain.csv", replace=True)
    again = export_study(study, tmp_path / "plain.csv")
    assert again.read_bytes() == plain.read_bytes()  # the study holds every row: a plain export
    # a table with two points of its own: kept, byte for byte, beside the study's four
    header, *rows = lines(plain)
    foreign = [row.replace(row.split(",")[-4], f"other{i:011d}") for i, row in enumerate(rows[:2])]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("\n".join([header, *foreign]) + "\n")
    export_study(study, mixed)
    assert set(foreign) <= set(lines(mixed)) and set(rows) <= set(lines(mixed))
    assert len(lines(mixed)) == 1 + 4 + 2
    export_study(study, mixed, replace=True)  # --replace: the study alone
    assert mixed.read_bytes() == plain.read_bytes()
    # the spec shrank: the points the study holds but the spec left leave the table (as before)
    keys = {load_spec(spec).points("cpu")[0].key}
    shrunk = shutil.copy(plain, tmp_path / "shrunk.csv")
    export_study(study, shrunk, keys=keys)
    assert set(pd.read_csv(shrunk)["point_key"]) == keys


def test_a_study_without_a_result_for_a_point_keeps_the_table_s_result(tmp_path: Path) -> None:
    """A run interrupted before its first record (points only queued), then exported."""
    spec, study = mini_study(tmp_path)
    table = export_study(study, tmp_path / "mini-cpu.csv")
    before = table.read_bytes()
    storage = open_storage(storage_url(None, "fresh", tmp_path), heartbeat_interval=None)
    fresh = optuna.create_study(study_name="mini-cpu", storage=storage, direction="maximize")
    assert reconcile(fresh, load_spec(spec).points("cpu")) == 4
    export_study(fresh, table)
    assert table.read_bytes() == before


def test_a_table_that_cannot_be_merged_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    _, study = mini_study(tmp_path)
    table = export_study(study, tmp_path / "mini-cpu.csv")
    cut = table.read_text()[:-40]  # a table cut mid-row
    table.write_text(cut)
    with pytest.raises(DataError, match=r"mini-cpu.csv: truncated.*--replace"):
        export_study(study, table)
    assert table.read_text() == cut
    done = bench("export", "mini", "--results-dir", str(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "--replace" in done.stderr
    assert table.read_text() == cut
    done = bench("export", "mini", "--results-dir", str(tmp_path), "--replace")
    assert done.returncode == 0, done.stderr
    assert len(read_table(table)) == 4


def test_ablate_refuses_before_running_when_the_table_cannot_be_merged(tmp_path: Path) -> None:
    spec = tmp_path / "mini.toml"
    spec.write_text(MINI)
    table = tmp_path / "mini-cpu.csv"
    text = f"study,status,schema\nmini-cpu,ok,{SCHEMA_VERSION}\n"
    table.write_text(text)  # not an export
    done = bench("ablate", str(spec), "--results-dir", str(tmp_path), "--device", "cpu")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "--replace" in done.stderr
    assert "missing required column" in done.stderr
    assert not (tmp_path / "mini.db").exists()  # nothing ran, nothing stored
    assert table.read_text() == text


# --- 2. nothing written outside -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../x", "a/b", "x/../../../tmp/ESCAPED", "..", ".", "", "a b"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeName, match="cannot name a file"):
        file_in(tmp_path, name, ".csv", "profile")


def test_plain_names_stay_inside_and_a_link_out_is_refused(tmp_path: Path) -> None:
    assert check_name("paper-synthetic_2.x", "profile") == "paper-synthetic_2.x"
    assert file_in(tmp_path, "depth-cpu", ".csv", "study") == tmp_path / "depth-cpu.csv"
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "depth-cpu.csv").symlink_to(outside / "depth-cpu.csv")
    with pytest.raises(UnsafeName, match="outside"):
        file_in(folder, "depth-cpu", ".csv", "study")


def test_a_spec_whose_names_would_leave_the_results_folder_is_refused(tmp_path: Path) -> None:
    text = MINI.replace("[profiles.cpu]", '[profiles."x/../../../ESCAPED"]')
    spec = tmp_path / "spec" / "mini.toml"
    spec.parent.mkdir()
    spec.write_text(text)
    with pytest.raises(SpecError, match=r"profiles\.x/\.\./\.\./\.\./ESCAPED: the profile name"):
        load_spec(spec)
    results = tmp_path / "spec" / "results"
    done = bench("ablate", str(spec), "--profile", "x/../../../ESCAPED", "--results-dir",
                 str(results), "--device", "cpu")  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mini.toml", "spec"]
    odd = tmp_path / "a b.toml"
    odd.write_text(MINI)
    with pytest.raises(SpecError, match="the spec name 'a b' cannot name a file"):
        load_spec(odd)


def test_export_refuses_names_that_would_leave_the_results_folder(tmp_path: Path) -> None:
    for args in (["../../x"], ["mini", "--profile", "../x"]):
        done = bench("export", *args, "--results-dir", str(tmp_path))
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert "cannot name a file" in done.stderr
    # a shared storage can hold any study name: one that would leave the folder writes nothing
    storage = open_storage(storage_url(None, "mini", tmp_path / "r"), heartbeat_interval=None)
    optuna.create_study(study_name="mini-ok", storage=storage)
    optuna.create_study(study_name="mini-../../ESCAPED", storage=storage)
    done = bench("export", "mini", "--results-dir", str(tmp_path / "r"))
    assert done.returncode == 2 and "study 'mini-../../ESCAPED' cannot name" in done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""
    assert not list(tmp_path.rglob("*.csv")) and not (tmp_path / "ESCAPED.csv").exists()


# --- 3. nothing left running ----------------------------------------------------------------------
def _python_with_a_child(die_with_parent: bool) -> subprocess.Popen[str]:
    """A Python process that starts ``sleep 600`` (dying with it, or not) and prints its pid."""
    code = (
        "import signal, subprocess, time\n"
        "from bench.trial.lifeline import parent_death_signal\n"
        f"pre = parent_death_signal(signal.SIGKILL) if {die_with_parent} else None\n"
        "child = subprocess.Popen(['sleep', '600'], preexec_fn=pre)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)  # fmt: skip


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
@pytest.mark.parametrize("die_with_parent", [True, False])
def test_a_child_started_with_the_parent_death_signal_dies_with_its_parent(
    die_with_parent: bool,
) -> None:
    parent = _python_with_a_child(die_with_parent)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _gone_within([child], 3.0) is die_with_parent
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


HANG = """
description = "a trial that hangs as training starts (BENCH_TRIAL_FAULT=hang)"
seeds = 1
[base]
dataset = "synthetic-proteins"
dataset_options = {{ num_nodes = 300, avg_degree = 6, num_tasks = 4 }}
data_root = "{root}"
arch = "rev"
channels = 8
epochs = 1
train_parts = 1
eval_parts = 1
[grid]
layers = [1, 2]
[profiles.cpu]
"""


def _trial_pids(marker: str) -> list[int]:
    """The running trial processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "bench trial" in command and marker in command and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _hanging_sweep(tmp_path: Path, workers: int) -> tuple[subprocess.Popen[str], list[int], Path]:
    """An ablation whose ``workers`` trials hang (seconds-long epochs, and then some), once
    they are all running; its process, their pids and its results folder."""
    marker = str(tmp_path / "data")
    spec = tmp_path / "hang.toml"
    spec.write_text(HANG.format(root=marker))
    results = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "ablate", str(spec), "--results-dir", str(results),
               "--device", "cpu", "--no-progress", "--heartbeat", "1", "--workers", str(workers)]  # fmt: skip
    sweep = subprocess.Popen(command, env={**ENV, FAULT_ENV: "hang"}, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while len(_trial_pids(marker)) < workers and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.2)
    trials = _trial_pids(marker)
    assert len(trials) == workers, "the trials never started"
    return sweep, trials, results


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
@pytest.mark.parametrize(("how", "workers"), [("group", 1), ("group", 2), ("parent", 2)])
def test_a_trial_is_gone_within_3_s_of_its_sweep_s_sigkill(
    how: str, workers: int, tmp_path: Path
) -> None:
    sweep, trials, _ = _hanging_sweep(tmp_path, workers)
    workers_here = _children(sweep.pid)
    try:
        if how == "group":
            os.killpg(sweep.pid, signal.SIGKILL)
        else:  # the sweep's process alone: its worker processes and trials must follow it
            os.kill(sweep.pid, signal.SIGKILL)
        sweep.communicate()
        assert _gone_within(trials, 3.0), [pid for pid in trials if _alive(pid)]
        assert _gone_within(workers_here, 30.0)  # a worker closes its trial, then goes
    finally:
        for pid in [*trials, *workers_here]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (its workers, for a sweep)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and _parent_of(entry) == parent:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _parent_of(entry: Path) -> int:
    return int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_sigterm_to_a_one_worker_sweep_is_an_interruption(tmp_path: Path) -> None:
    sweep, trials, results = _hanging_sweep(tmp_path, 1)
    try:
        sweep.send_signal(signal.SIGTERM)
        assert _gone_within(trials, 3.0)
        _, err = sweep.communicate(timeout=60)
    finally:
        for pid in trials:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert sweep.returncode == 130 and "run the same command to resume" in err
    study = optuna.load_study(study_name="hang-cpu", storage=storage_url(None, "hang", results))
    (closed,) = [t for t in study.trials if t.state.name != "WAITING"]
    assert closed.state.name == "PRUNED" and "interrupted" in closed.user_attrs["pruned_reason"]


@pytest.mark.slow
def test_a_trial_child_ends_when_its_watching_parent_s_pipe_closes() -> None:
    """The portable defence (no prctl): stdin closing says the parent is gone."""
    from bench.trial.protocol import PARENT_ENV

    config = TrialConfig(dataset="synthetic-proteins", layers=1, channels=8, epochs=1,
                         dataset_options={"num_nodes": 300, "avg_degree": 6, "num_tasks": 4})  # fmt: skip
    command = [sys.executable, "-m", "bench", "trial", "--config-json",
               json.dumps(config.to_dict()), "--json", "--events"]  # fmt: skip
    env = {**ENV, FAULT_ENV: "hang", PARENT_ENV: "1"}
    child = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    assert child.stdin is not None
    child.stdin.close()
    try:
        assert child.wait(timeout=180) == -signal.SIGKILL  # a hang would sleep an hour
    finally:
        if child.poll() is None:
            child.kill()


# --- 4. a number or nothing -----------------------------------------------------------------------
def test_a_value_that_is_not_a_number_is_refused_naming_file_line_and_column(
    tmp_path: Path,
) -> None:
    rows = [{"study": "s-cpu", "spec": "s", "profile": "cpu", "kind": "ablation", "status": s,
             "error": e, "peak_memory_bytes": p, "trial_number": i, "current": True}
            for i, (s, e, p) in enumerate([("error", "two\nlines", 1.0), ("ok", "", 2.0)])]  # fmt: skip
    path = write_table(pd.DataFrame(rows), tmp_path / "s-cpu.csv")
    assert len(read_table(path)) == 2
    text = path.read_text().replace(",2.0,", ",banana,")
    path.write_text(text)
    # line 1 the header, lines 2-3 the first row (a cell with a line break), line 4 the second
    with pytest.raises(DataError, match=r"s-cpu.csv: line 4, column peak_memory_bytes: 'banana'"):
        read_table(path)


def test_the_report_refuses_a_malformed_number_in_one_line(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    rows = list(csv.reader((ROOT / "results" / "depth-cpu.csv").open(newline="")))
    column = rows[0].index("peak_memory_bytes")
    rows[3][column] = "banana"
    with (results / "depth-cpu.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    done = bench("report", "--results-dir", str(results), "--report-dir", str(tmp_path / "rep"),
                 "--no-figures")  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "depth-cpu.csv: line 4, column peak_memory_bytes: 'banana' is not a number" in (
        done.stderr
    )
    assert not (tmp_path / "rep" / "REPORT.md").exists()


# --- 5. a storage that fails mid-sweep --------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.postgres
def test_a_postgres_server_stopped_mid_sweep_is_one_line_and_the_rerun_completes(
    tmp_path: Path, stoppable_postgres, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from bench import cli

    server = stoppable_postgres
    url = server.url()
    spec = tmp_path / "mini.toml"
    spec.write_text(MINI)
    runs: list[tuple[str, int]] = []

    def stops_the_server(config: TrialConfig, timeout=None, on_epoch=None) -> TrialRecord:
        runs.append((config.arch, config.layers))
        if len(runs) == 2:  # mid-sweep: one point stored, this one running
            assert server.stop().returncode == 0
        return fake_run(config)

    monkeypatch.setattr("bench.harness.worker.default_run_fn", lambda: stops_the_server)
    argv = ["ablate", str(spec), "--storage", url, "--results-dir", str(tmp_path),
            "--device", "cpu", "--no-progress", "--heartbeat", "1"]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "the storage failed mid-sweep" in err and "run the same command" in err
    assert len(runs) == 2
    assert server.start().returncode == 0
    assert cli.main(argv) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="mini-cpu", storage=open_storage(url, None))
    stored = Counter(t.user_attrs["point_key"] for t, r in load_records(study) if r is not None)
    assert sorted(stored.values()) == [1, 1, 1, 1]  # every point exactly once
    assert len(read_table(tmp_path / "mini-cpu.csv")) >= 4
