"""``python -m bench gpu-backlog`` on a CPU: the dry run, the plan's order and budget, what is
read as done (the resume), the merge, and the child processes. The GPU steps are stood in for
by a runner that writes what each would (their own commands are tested in their own files);
the pytest step and the process runner run for real."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import cli
from bench.exports.table import write_table
from bench.harness.spec import load_spec
from bench.instruments import gpu_check, gpu_profile
from bench.instruments.gpu_backlog import command, predict, steps
from bench.instruments.gpu_backlog.step import Command, Context, Outcome, Pending, at_code

ROOT = Path(__file__).resolve().parents[1]
CODE = {"commit": "abc123", "source_hash": "5a6e6c81a7c7d45e"}


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(["--results-dir", str(tmp_path / "results"),
                              "--report-dir", str(tmp_path / "report"), *extra])  # fmt: skip


def _pending(*unit_s: float, start: float = 0.0, selectable: bool = False) -> Pending:
    names = tuple(f"u{i}" for i in range(len(unit_s)))
    selection = tuple((n,) for n in names) if selectable else ()
    return Pending(names, unit_s, len(unit_s), "units", start, selection)


# --- the dry run ------------------------------------------------------------------------------
def test_dry_run_lists_every_step_with_its_time_and_the_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["gpu-backlog", "--dry-run", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line[:1].isalpha()
            and not line.startswith("all that")}  # fmt: skip
    assert list(rows) == ["cuda-tests", "accuracy", "depth", "timing", "memory"]  # the order
    predicted = {name: _predicted(line) for name, line in rows.items()}
    assert all(seconds > 0 for seconds in predicted.values())  # a predicted time each
    assert "8 of 8 trials" in rows["accuracy"] and "6 of 6 trials" in rows["depth"]
    assert "7 of 7 parts" in rows["timing"] and "22 of 22 points" in rows["memory"]
    assert "profile, round 0 (proteins part), round 0 (engines graph), round 1" in out
    calls = [line for line in out.splitlines() if line.startswith("  call ")]
    assert calls[0].startswith("  call 1: cuda-tests: 1 of 1 runs | accuracy: 8 of 8 trials")
    # the steps call 1 runs whole, at their predicted times, fit the budget less the report's
    whole = re.findall(r"([a-z-]+): (\d+) of \2 ", calls[0])
    assert [name for name, _ in whole] == ["cuda-tests", "accuracy"]
    assert sum(predicted[name] for name, _ in whole) <= (
        command.DEFAULT_BUDGET_S - predict.REPORT_S - command.GRACE_S
    )


def _predicted(line: str) -> float:
    return float(re.search(r"\s(\d+) s\s", line).group(1))  # type: ignore[union-attr]


def test_the_committed_gpu_rows_are_older_code_so_the_memory_rows_are_pending() -> None:
    """Today's committed rows are 38a5fa0's: every figure-1 point is due at any other commit."""
    ctx = Context(ROOT / "results", {"commit": "0" * 40, "source_hash": None})
    memory = steps.GpuCheck("memory", ("figure 1", "depth", "headline")).pending(ctx)
    assert len(memory.left) == memory.total == 22
    ctx = Context(ROOT / "results", {"commit": "38a5fa091db34e6021f7fefb11b8a628fdd663c7-dirty",
                                     "source_hash": None})  # rows from before the hash  # fmt: skip
    memory = steps.GpuCheck("memory", ("figure 1", "depth", "headline")).pending(ctx)
    assert memory.left == ("ResGNN-64 x 56",)  # the one point that lease never reached


# --- the plan: order and budget ---------------------------------------------------------------
def test_decide_runs_what_fits_and_what_can_stop_part_way() -> None:
    grace = command.GRACE_S
    assert command.decide(_pending(), 100) == "done"
    assert command.decide(_pending(30, 30), 60 + grace) == "yes"
    assert command.decide(_pending(30, 30), 59 + grace) == "partly"  # one unit fits
    assert command.decide(_pending(30, 30, start=10), 39 + grace) == "no"
    assert command.decide(_pending(math.nan), 1 + grace) == "partly"  # unknown: try
    assert command.decide(_pending(math.nan), grace) == "no"


def test_schedule_keeps_the_order_and_fills_each_call() -> None:
    usable = 100 + command.GRACE_S
    a, b, c = _pending(40), _pending(50, 50), _pending(30, 30, 30, selectable=True)
    calls = command.schedule([a, b, c], usable)
    # b fits partly and cannot choose its units: it runs to the call's end, c waits
    assert calls[0] == [(0, 1), (1, 1)]
    assert calls[1] == [(1, 1), (2, 1)]  # b's last unit, then the one of c's that fits
    assert calls[2] == [(2, 2)]
    # a selectable step that fits partly leaves the rest of the call to the steps after it
    calls = command.schedule([_pending(60, 60, selectable=True), _pending(30)], usable)
    assert calls[0] == [(0, 1), (1, 1)]
    # a unit longer than a call is never scheduled (and nothing after it is counted)
    assert command.schedule([_pending(500)], usable) == []


def test_first_takes_the_parts_that_fit() -> None:
    pending = _pending(30, 30, 30, start=10, selectable=True)
    assert pending.first(75).left == ("u0", "u1")
    assert pending.first(5).left == ("u0",)  # one at least: it was decided to fit
    assert pending.first(75).selection == (("u0",), ("u1",))


# --- running: the order, the budget, the resume ------------------------------------------------
class FakeGpu:
    """Stands in for the GPU steps: each command "takes" ``took[step]`` seconds of the fake
    clock and writes what the step would (gpu-check rows, a profile page, a JUnit report)."""

    def __init__(self, results: Path, took: dict[str, float]) -> None:
        self.results, self.took, self.now, self.ran = results, took, 0.0, []

    def clock(self) -> float:
        return self.now

    def __call__(self, cmd: Command) -> Outcome:
        argv = cmd.argv
        name = argv[argv.index("bench") + 1] if "bench" in argv else "pytest"
        self.ran.append((name, argv))
        if name == "gpu-check":
            self._gpu_check(argv)
        elif name == "pytest":
            cmd.output.write_text(JUNIT)  # type: ignore[union-attr]
        self.now += self.took.get(name, 1.0)
        return Outcome(0, self.took.get(name, 1.0), False)

    def _gpu_check(self, argv: list[str]) -> None:
        labels = argv[argv.index("--only") + 1 :]
        csv = self.results / "gpu" / "gpu-check.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"label": label, "group": "g", "status": "ok", "commit": CODE["commit"],
                 "source_hash": CODE["source_hash"], "commit_source": "run"} for label in labels if label != "profile"]  # fmt: skip
        frame = pd.DataFrame(rows)
        if csv.exists():
            frame = gpu_check.merge_runs(pd.read_csv(csv), frame)
        frame.to_csv(csv, index=False)
        if "--no-profile" not in argv:
            (self.results / "gpu" / gpu_profile.FILE).write_text(
                _profile_page(CODE["commit"], CODE["source_hash"])
            )


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_aggr" name="test_cuda_a[packed]" time="1.5"/>
<testcase classname="tests.test_aggr" name="test_cuda_b" time="0.5"><failure message="boom&#10;second line">trace</failure></testcase>
</testsuite></testsuites>"""


def _profile_page(commit: str | None, source: str = "5a6e6c81a7c7d45e") -> str:
    result = {"device": "NVIDIA H200", "torch": "2.13.0", "commit": commit, "compile": False,
              "source_hash": source,
              "layers": 112, "channels": 64, "groups": 2, "nodes": 13254, "edges": 788824,
              "steps": 3, "wall_s": 1.0, "busy_s": 0.5, "sync_warnings": 0, "sync_calls": {},
              "host_reads": {}, "top": [], "aggregation": []}  # fmt: skip
    return gpu_profile.markdown(result)


@pytest.fixture
def code(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr(command, "current_code", lambda: dict(CODE))
    return CODE


@pytest.mark.usefixtures("code")
def test_a_call_runs_the_steps_in_order_within_the_budget_and_the_next_resumes(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results"
    timing = steps.GpuCheck("timing", ("timing",), profile=True, rounds=3)
    planned = timing.pending(Context(results, CODE))
    assert planned.left[:3] == ("profile", "round 0 (proteins part)", "round 0 (engines graph)")
    # a budget that holds the tests (1 s here), the study (10 s), the profile and round 0
    budget = (predict.REPORT_S + 11 + command.GRACE_S + planned.start_s + sum(planned.unit_s[:3])
              + 5)  # fmt: skip
    fake = FakeGpu(results, {"pytest": 1.0, "ablate": 10.0})
    args = _args(tmp_path, "--only", "cuda-tests", "accuracy", "timing", "--budget-s", str(budget))
    lines: list[str] = []
    assert command.run(args, runner=fake, log=lines.append, clock=fake.clock) == 1
    assert [name for name, _ in fake.ran] == ["pytest", "ablate", "gpu-check", "report"]
    only = fake.ran[2][1][fake.ran[2][1].index("--only") + 1 :]
    assert only[0] == "profile" and all(label.endswith("#0") for label in only[1:])
    assert len(only) == 13  # the profile and round 0's 12 points: what the time left held
    assert "--exact" in fake.ran[2][1] and "--merge" in fake.ran[2][1]
    tests = pd.read_csv(results / "gpu" / "cuda-tests.csv")
    assert list(tests.outcome) == ["passed", "failed"] and set(tests.commit) == {"abc123"}
    assert tests.message.iloc[1] == "boom" and tests.test.iloc[0].startswith("tests/test_aggr.py::")
    assert any("1 of 2 CUDA tests failed" in line for line in lines)
    # the second call: the tests and round 0 are done, so it starts where the first stopped
    fake.ran.clear()
    assert command.run(args, runner=fake, log=lines.append, clock=fake.clock) == 1
    assert [name for name, _ in fake.ran] == ["ablate", "gpu-check", "report"]
    only = fake.ran[1][1][fake.ran[1][1].index("--only") + 1 :]
    assert "--no-profile" in fake.ran[1][1] and {label[-2:] for label in only} == {"#1"}
    assert any("left: timing: 2 of 7 parts" in line for line in lines)


@pytest.mark.usefixtures("code")
def test_a_step_that_does_not_fit_is_passed_over_for_a_smaller_one(tmp_path: Path) -> None:
    first = steps.Study("accuracy").pending(Context(tmp_path / "results", CODE)).least_s
    assert first < predict.CUDA_TESTS_S
    budget = command.GRACE_S + (first + predict.CUDA_TESTS_S) / 2  # holds a trial, not the tests
    fake = FakeGpu(tmp_path / "results", {"ablate": budget})
    args = _args(tmp_path, "--only", "cuda-tests", "accuracy", "--budget-s", str(budget),
                 "--no-report")  # fmt: skip
    lines: list[str] = []
    assert command.run(args, runner=fake, log=lines.append, clock=fake.clock) == 1
    assert [argv[argv.index("ablate") + 1] for _, argv in fake.ran] == ["accuracy"]
    assert any(line.startswith("cuda-tests: does not fit") for line in lines)
    argv = fake.ran[0][1]
    assert argv[argv.index("--device") + 1] == "cuda" and argv[argv.index("--profile") + 1] == "gpu"
    assert argv[argv.index("--results-dir") + 1] == str(tmp_path / "results")


@pytest.mark.usefixtures("code")
def test_a_round_cut_short_is_run_again_whole(tmp_path: Path) -> None:
    results = tmp_path / "results"
    labels = [p.label for p in gpu_check.plan_points(engines=False, timing_rounds=1)
              if p.group == "timing"]  # fmt: skip
    rows = [{"label": label, "group": "timing", "status": "ok", "commit": CODE["commit"],
             "source_hash": CODE["source_hash"], "commit_source": "run"} for label in labels[:-1]]  # fmt: skip
    rows.append({"label": labels[-1], "group": "timing", "status": "skipped",
                 "error": "budget spent (300 s)", "commit": CODE["commit"],
                 "source_hash": CODE["source_hash"], "commit_source": "run"})  # fmt: skip
    (results / "gpu").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(results / "gpu" / "gpu-check.csv", index=False)
    ctx = Context(results, CODE)
    pending = steps.GpuCheck("timing", ("timing",), rounds=1).pending(ctx)
    # the proteins part's round is whole; the engines graph's was cut short: all of it again
    assert pending.left == ("round 0 (engines graph)",)
    assert pending.selection == (tuple(labels[6:]),) and "engines graph" in labels[6]


@pytest.mark.usefixtures("code")
def test_what_counts_as_measured(tmp_path: Path) -> None:
    csv = tmp_path / "gpu-check.csv"
    pd.DataFrame([
        {"label": "a", "status": "ok", "commit": "abc123", "commit_source": "run"},
        {"label": "b", "status": "oom", "commit": "abc123", "commit_source": "run"},
        {"label": "c", "status": "error", "error": "RuntimeError: x\nmore", "commit": "abc123",
         "commit_source": "run"},
        {"label": "d", "status": "skipped", "error": steps.OOM_SKIP, "commit": "abc123",
         "commit_source": "run"},
        {"label": "e", "status": "skipped", "error": "budget spent (10 s)", "commit": "abc123",
         "commit_source": "run"},
        {"label": "f", "status": "timeout", "commit": "abc123", "commit_source": "run"},
        {"label": "g", "status": "ok", "commit": "older", "commit_source": "run"},
    ]).assign(source_hash=CODE["source_hash"]).to_csv(csv, index=False)  # fmt: skip
    done, errors = steps.measured_labels(csv, CODE)
    assert done == {"a", "b", "c", "d"}
    assert errors == {"c": "c: error at today's code (RuntimeError: x)"}


def test_the_profile_page_is_read_for_its_commit(tmp_path: Path) -> None:
    source = CODE["source_hash"]
    (tmp_path / gpu_profile.FILE).write_text(_profile_page("abc123-dirty"))
    assert steps.profile_done(tmp_path, {"commit": "abc123-dirty", "source_hash": source})
    assert not steps.profile_done(tmp_path, {"commit": "abc123", "source_hash": source})
    assert not steps.profile_done(tmp_path, {"commit": "abc123-dirty", "source_hash": "other"})
    (tmp_path / gpu_profile.FILE).write_text(_profile_page(None))
    assert steps.profile_done(tmp_path, {"commit": None, "source_hash": source})  # no git


def test_a_study_is_done_where_its_export_has_the_point_at_today_code(tmp_path: Path) -> None:
    points = load_spec("depth").points("gpu")
    rows = [{"point_key": p.key, "status": "ok", "current": True, "failure_kind": None,
             "commit": commit, "source_hash": CODE["source_hash"]}
            for p, commit in zip(points[:3], ["abc123", "abc123", "older"],
                                                  strict=True)]  # fmt: skip
    rows.append({"point_key": points[3].key, "status": None, "current": None})  # never finished
    write_table(pd.DataFrame(rows), tmp_path / "depth-gpu.csv")
    pending = steps.Study("depth").pending(Context(tmp_path, CODE))
    assert pending.total == len(points) == 6
    assert pending.left == tuple(p.key for p in points[2:])
    assert pending.unit_s == tuple(predict.trial_seconds(p.config) for p in points[2:])
    assert pending.notes[0].startswith("depth-gpu.csv: 1 trials from another commit")


def test_at_code_without_git_takes_rows_that_recorded_none() -> None:
    source = CODE["source_hash"]
    rows = pd.DataFrame({"commit": ["abc123", None, "other", "abc123"],
                         "source_hash": [source, source, source, "older"]})  # fmt: skip
    assert list(at_code(rows, CODE)) == [True, False, False, False]
    assert list(at_code(rows, {"commit": None, "source_hash": source})) == [False, True, False,
                                                                          False]  # fmt: skip
    assert list(at_code(pd.DataFrame({"x": [1]}), CODE)) == [False]  # no column: not recorded


# --- the real children ------------------------------------------------------------------------
def test_the_tests_step_runs_pytest_in_a_child_and_records_each_test(tmp_path: Path) -> None:
    (tmp_path / "test_small.py").write_text(textwrap.dedent("""
        def test_cuda_passes():
            assert 1 + 1 == 2

        def test_cuda_fails():
            assert 1 + 1 == 3, "arithmetic"

        def test_other():
            assert False
    """))  # fmt: skip
    ctx = Context(tmp_path / "results", CODE, repo_root=tmp_path)
    step = steps.CudaTests(files=("test_small.py",), keyword="cuda")
    assert not step.pending(ctx).done
    cmd = step.command(step.pending(ctx), 120, ctx)
    outcome = command.run_process(cmd)
    assert outcome.returncode == 1 and not outcome.stopped  # one failed
    step.finish(outcome, cmd, ctx)
    rows = pd.read_csv(ctx.results_dir / steps.CUDA_TESTS_CSV)
    assert dict(zip(rows.test, rows.outcome, strict=True)) == {
        "test_small.py::test_cuda_passes": "passed", "test_small.py::test_cuda_fails": "failed"}  # fmt: skip
    assert set(rows.commit) == {"abc123"} and rows.device.str.startswith("cpu").all()
    pending = step.pending(ctx)
    assert pending.done and pending.notes[0].startswith("1 of 2 CUDA tests failed")
    assert not step.pending(Context(ctx.results_dir, {"commit": "newer"}, tmp_path)).done
    rows.assign(outcome="skipped").to_csv(ctx.results_dir / steps.CUDA_TESTS_CSV, index=False)
    pending = step.pending(ctx)  # every test skipped: pytest saw no CUDA device, not done
    assert not pending.done and "skipped at today's code: no CUDA device" in pending.notes[0]


def test_the_cuda_tests_are_the_ones_that_need_cuda() -> None:
    """The step's selection, run here without CUDA: every test skips for want of it."""
    if torch.cuda.is_available():
        pytest.skip("with CUDA these tests run")
    ctx = Context(ROOT / "results", CODE)
    step = steps.CudaTests()
    argv = [a for a in step.command(step.pending(ctx), 300, ctx).argv if "junitxml" not in a]
    done = subprocess.run([*argv, "-rs"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = done.stdout
    skipped = int(re.search(r"(\d+) skipped", out).group(1))  # type: ignore[union-attr]
    assert skipped >= 30 and " passed" not in out and " failed" not in out, out[-2000:]
    reasons = re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", out)
    assert reasons and all("CUDA" in reason for reason in reasons), set(reasons)


def test_a_step_past_its_time_is_interrupted_then_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command, "GRACE_S", 1.0)
    interrupted = tmp_path / "interrupted"
    script = (f"import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
              f"    open({str(interrupted)!r}, 'w').close()\n    raise SystemExit(130)\n")  # fmt: skip
    outcome = command.run_process(Command([sys.executable, "-c", script], 3.0))
    assert outcome.stopped and outcome.returncode == 130 and interrupted.exists()
    stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
    outcome = command.run_process(Command([sys.executable, "-c", stubborn], 3.0))
    assert outcome.stopped and outcome.returncode == -9 and outcome.seconds < 10


# --- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--only", "memry"], "--only: no step memry"),
        (["--budget-s", "60"], "--budget-s must be more than"),
        (["--timing-rounds", "-1"], "--timing-rounds"),
    ],
)
def test_bad_input_is_refused_in_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["gpu-backlog", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


def test_a_garbled_export_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "depth-gpu.csv").write_text("study,spec\nx")  # cut mid-row
    assert cli.main(["gpu-backlog", "--dry-run", "--results-dir", str(tmp_path)]) == 2
    assert "depth-gpu.csv: truncated" in capsys.readouterr().err


def test_the_real_run_is_refused_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal only applies without it")
    assert cli.main(["gpu-backlog"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


# --- gpu-check's commit column ----------------------------------------------------------------
def test_the_committed_rows_carry_the_commit_their_summary_names() -> None:
    rows = pd.read_csv(ROOT / "results" / "gpu" / "gpu-check.csv")
    assert set(rows.commit) == {"38a5fa091db34e6021f7fefb11b8a628fdd663c7-dirty"}
    assert set(rows.commit_source) == {"SUMMARY.md"}


def test_with_commit_fills_only_rows_from_before_the_column(tmp_path: Path) -> None:
    (tmp_path / "SUMMARY.md").write_text("Device: x; commit 1234567abc-dirty. Meter: ...")
    old = pd.DataFrame({"label": ["a", "b"], "status": ["ok", "ok"]})
    filled = gpu_check.with_commit(old, tmp_path / "SUMMARY.md")
    assert list(filled.commit) == ["1234567abc-dirty"] * 2
    assert list(filled.commit_source) == ["SUMMARY.md"] * 2
    mixed = pd.concat([old, pd.DataFrame({"label": ["c"], "status": ["ok"], "commit": [None],
                                          "commit_source": ["run"]})])  # fmt: skip
    filled = gpu_check.with_commit(mixed, tmp_path / "SUMMARY.md")
    assert filled.commit.isna().tolist() == [False, False, True]  # a run without git stays so


def test_exact_selects_whole_labels_only(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    gpu_check.add_arguments(parser)
    loose = parser.parse_args(["--only", "RevGNN-64 x 3", "--skip-engines"])
    exact = parser.parse_args(["--only", "RevGNN-64", "timing", "--skip-engines", "--exact"])
    points = gpu_check.plan_points(engines=False, timing_rounds=1)
    assert {p.label for p in points if gpu_check._selected(p, loose)} == {"RevGNN-64 x 3"}
    chosen = [p for p in points if gpu_check._selected(p, exact)]
    assert {p.group for p in chosen} == {"figure 1", "timing"}
    assert [p.label for p in chosen if p.group != "timing"] == ["RevGNN-64"]
