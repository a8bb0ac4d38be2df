"""Cluster launcher: ``ablate --launcher submitit-local`` submits worker jobs through submitit's
local executor against one shared storage (a journal file; PostgreSQL where a server starts)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest

from bench.harness.spec import load_spec
from bench.harness.storage import load_records, open_storage, record_of

pytest.importorskip("submitit")
REPO = Path(__file__).resolve().parents[1]
TINY = """
description = "launcher test: tiny real trials"
seeds = 1
[base]
dataset = "synthetic-proteins"
dataset_options = { num_nodes = 200, avg_degree = 4, num_tasks = 4 }
arch = "res"
channels = 8
epochs = 2
train_parts = 1
eval_parts = 1
[grid]
layers = [1, 2, 3]
[profiles.cpu]
"""


def _ablate(spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "bench", "ablate", str(spec), "--no-progress", "--device", "cpu",
         "--results-dir", str(spec.parent), *args],
        capture_output=True, text=True, env=env, timeout=400, cwd=REPO,
    )  # fmt: skip


def _check_one_record_per_point(spec: Path, url: str) -> None:
    study = optuna.load_study(study_name="tiny-cpu", storage=open_storage(url, None))
    pairs = load_records(study)
    keys = Counter(t.user_attrs["point_key"] for t, r in pairs if r is not None)
    assert keys == Counter({p.key: 1 for p in load_spec(spec).points("cpu")})
    assert all(r.status == "ok" for _, r in pairs if r is not None)
    assert all(t.state != optuna.trial.TrialState.FAIL for t, _ in pairs)  # nothing shown failed
    assert all(t.intermediate_values for t, r in pairs if r is not None)  # learning curves
    assert (spec.parent / "tiny-cpu.csv").exists()


@pytest.mark.slow
def test_submitit_local_jobs_share_a_journal_file(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    url = f"journal:///{(tmp_path / 'shared-fs' / 'tiny.log').as_posix().lstrip('/')}"
    done = _ablate(spec, "--launcher", "submitit-local", "--jobs", "2", "--storage", url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted 2 submitit-local job(s)" in done.stderr
    assert "3/3 points have a record" in done.stdout
    _check_one_record_per_point(spec, url)
    logs = list((tmp_path / "jobs").rglob("*_log.out"))
    assert len(logs) == 2  # one log per job, from submitit


@pytest.mark.slow
@pytest.mark.postgres
def test_submitit_local_jobs_share_postgres(tmp_path: Path, postgres_url: str) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY.replace("layers = [1, 2, 3]", "layers = [1, 2]"))
    done = _ablate(spec, "--launcher", "submitit-local", "--jobs", "2", "--storage", postgres_url)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="tiny-cpu", storage=open_storage(postgres_url, None))
    assert sum(1 for t in study.trials if record_of(t) is not None) == 2


def test_launcher_refuses_a_local_sqlite_file(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    done = _ablate(spec, "--launcher", "slurm", "--jobs", "4")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("ablate: --storage: --launcher slurm needs a storage")
    assert not list(tmp_path.glob("*.db"))  # nothing stored


def test_tune_launcher_refuses_a_local_sqlite_file() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "tune", "proteins-small", "--launcher", "slurm"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: --storage: --launcher slurm needs a storage" in done.stderr
