"""Evidence at today's code: the source hash that identifies the trial code, the verification
that reruns committed points (``reproduce --verify``), and the report judging claims only on
studies run or verified at today's code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.harness import verify as v
from bench.measure.provenance import source_hash
from bench.record import TrialRecord
from bench.report import evidence

ROOT = Path(__file__).resolve().parents[1]


def test_the_source_hash_covers_the_trial_code_and_nothing_else(tmp_path: Path) -> None:
    copy = tmp_path / "bench"
    shutil.copytree(ROOT / "bench", copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = source_hash.__wrapped__(copy)
    assert before == source_hash.__wrapped__(ROOT / "bench") == source_hash()
    report = copy / "report" / "build.py"
    report.write_text(report.read_text() + "\n# a report change measures nothing\n")
    assert source_hash.__wrapped__(copy) == before
    model = copy / "models" / "residual.py"
    model.write_text(model.read_text() + "\n# a model change is new code\n")
    assert source_hash.__wrapped__(copy) != before


def _row(**over: object) -> dict:
    row = {"study": "depth-cpu", "point_key": "k1", "seed": 0, "arch": "res", "layers": 2,
           "channels": 8, "device": "cpu", "device_name": "cpu (A)", "status": "ok",
           "params": 100, "peak_memory_bytes": 1000.0, "step_added_bytes": 500.0,
           "best_valid": 0.8, "test_at_best_valid": 0.7, "commit": "abc-dirty",
           "source_hash": None, "wall_time_s": 3.0, "failure_kind": None, "current": True}  # fmt: skip
    return row | over


def _record(**over: object) -> TrialRecord:
    values = {"status": "ok", "config": {}, "params": 100, "peak_memory_bytes": 1000,
              "step_added_bytes": 500, "best_valid": 0.8, "test_at_best_valid": 0.7,
              "device_name": "cpu (A)", "commit": "def", "source_hash": "h1"}  # fmt: skip
    return TrialRecord(**(values | over))


@pytest.mark.parametrize(
    ("row", "record", "verdict", "what"),
    [
        ({}, {}, v.REPRODUCES, ""),
        ({}, {"params": 101}, v.DIFFERS, "params"),
        ({}, {"status": "oom"}, v.DIFFERS, "status"),
        ({}, {"peak_memory_bytes": 1009}, v.REPRODUCES, ""),  # within 1%
        ({}, {"peak_memory_bytes": 1011}, v.DIFFERS, "peak_memory_bytes"),
        ({}, {"best_valid": 0.805}, v.REPRODUCES, ""),  # within the claims' margin
        ({"device_name": "cpu (B)"}, {"best_valid": 0.82}, v.DIFFERS, "best_valid"),
    ],
)
def test_a_rerun_is_compared_with_its_committed_row(
    row: dict, record: dict, verdict: str, what: str
) -> None:
    out = v.compare(pd.Series(_row(**row)), _record(**record))
    assert out["verdict"] == verdict and what in out["differs"]
    assert out["identical"] == (not row and not record)


def test_the_sample_is_one_cheap_ok_point_per_arch_then_more_by_hash() -> None:
    rows = [_row(point_key=f"k{i}", arch=a, wall_time_s=w, status=s)
            for i, (a, w, s) in enumerate([("res", 5, "ok"), ("res", 1, "oom"), ("res", 2, "ok"),
                                           ("rev", 9, "ok"), ("rev", 8, "ok"), ("deq", 1, "oom")])]  # fmt: skip
    table = pd.DataFrame(rows)
    one = v.sample(table, 1)
    assert sorted(zip(one["arch"], one["point_key"], strict=True)) == [
        ("deq", "k5"),
        ("res", "k2"),
        ("rev", "k4"),
    ]
    assert len(v.sample(table, 5)) == 5 and v.sample(table, 5).equals(v.sample(table, 5))


def test_a_study_is_evidence_when_run_or_verified_at_todays_code(tmp_path: Path) -> None:
    df = pd.DataFrame([_row(study="a", source_hash="h1"), _row(study="b"), _row(study="c"),
                       _row(study="d")])  # fmt: skip
    df["slice"] = "s"
    pd.DataFrame([
        {"study": "b", "verdict": "reproduces", "source_now": "h1", "commit_now": "1234567",
         "identical": True, "differs": ""},
        {"study": "c", "verdict": "differs", "source_now": "h1", "commit_now": "1234567",
         "identical": False, "differs": "params 1 -> 2"},
        {"study": "d", "verdict": "reproduces", "source_now": "h0", "commit_now": "0000000",
         "identical": True, "differs": ""},
    ]).to_csv(tmp_path / "verify.csv", index=False)  # fmt: skip
    studies = evidence.study_evidence(df, tmp_path, "h1")
    assert {s: e.current for s, e in studies.items()} == {"a": True, "b": True, "c": False,
                                                           "d": False}  # fmt: skip
    assert "1/1 reproduce (1 bit for bit)" in studies["b"].how
    assert "params 1 -> 2" in studies["c"].how and "not verified" in studies["d"].how
    assert set(evidence.judged(df, studies)["study"]) == {"a", "b"}
    assert studies["d"].rerun == "python -m bench reproduce d --profiles d" or "reproduce" in (
        studies["d"].rerun
    )


@pytest.mark.slow
def test_verify_reruns_a_committed_study_at_todays_code(tmp_path: Path) -> None:
    """End to end: a 2-point ablation, exported; ``reproduce --verify`` reruns one point per
    arch in fresh processes; on the same machine and code every number comes back bit for bit;
    the report then judges it (the study is verified)."""
    (tmp_path / "tiny.toml").write_text(
        'description = "two archs"\n[base]\nchannels = 8\nlayers = 2\nepochs = 1\n'
        'dataset_options = { num_nodes = 120, num_tasks = 4 }\n[grid]\narch = ["res", "rev"]\n'
        "[profiles.cpu]\n"
    )
    results = tmp_path / "results"

    def bench(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, text=True,
                              capture_output=True, timeout=600)  # fmt: skip

    done = bench("ablate", str(tmp_path / "tiny.toml"), "--results-dir", str(results),
                 "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(results / "tiny-cpu.csv")
    table["source_hash"] = None  # as if measured before the hash: only verification can tell
    table.to_csv(results / "tiny-cpu.csv", index=False)
    done = bench("reproduce", "--verify", "--results-dir", str(results), "--report-dir",
                 str(tmp_path / "report"), "--no-figures", "--workers", "2")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    checked = pd.read_csv(results / "verify.csv")
    assert sorted(checked["arch"]) == ["res", "rev"]
    assert set(checked["verdict"]) == {"reproduces"} and checked["identical"].all()
    assert set(checked["source_now"]) == {source_hash()}
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "tiny-cpu: verified at" in text and "2/2 reproduce (2 bit for bit)" in text


def test_a_sweep_on_uncommitted_trial_code_says_so_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.harness import runner
    from bench.measure import provenance

    monkeypatch.setattr(provenance, "git_commit", lambda: "0123456789abcdef-dirty")
    runner.warn_uncommitted()
    err = capsys.readouterr().err
    assert err.startswith("warning: bench/ has uncommitted edits") and source_hash() in err
    monkeypatch.setattr(provenance, "git_commit", lambda: "0123456789abcdef")
    runner.warn_uncommitted()
    assert capsys.readouterr().err == ""


def test_a_verification_replaces_its_studies_rows_and_keeps_the_others(tmp_path: Path) -> None:
    """A study verified again is its new sample only (a row of a point no longer sampled would
    vouch for rows no longer committed); a study not verified this time keeps its rows."""
    from bench.harness.verify import _write

    def rows(study: str, keys: list[str], verdict: str) -> pd.DataFrame:
        return pd.DataFrame({"study": study, "point_key": keys, "seed": 0, "arch": "rev",
                             "layers": 2, "verdict": verdict})  # fmt: skip

    path = tmp_path / "verify.csv"
    _write(path, pd.concat([rows("a", ["p1", "p2"], "old"), rows("b", ["q1"], "old")]))
    _write(path, rows("a", ["p3"], "new"))
    table = pd.read_csv(path)
    assert sorted(zip(table["study"], table["point_key"], table["verdict"], strict=True)) == [
        ("a", "p3", "new"), ("b", "q1", "old"),
    ]  # fmt: skip
