"""The backlog's steps: what each reads from ``results/`` to know what is done, and the child it
runs for the rest.

* :class:`CudaTests`: done when ``results/gpu/cuda-tests.csv`` has a run at today's code in
  which a test ran (every test skipped means pytest saw no CUDA device: not done). Failed tests
  are a result: shown in what is left, not run again.
* :class:`Study`: a trial is done when the study's export (``results/SPEC-gpu.csv``) has its
  point finished at today's code; ``ablate`` resumes the rest from its storage by itself.
* :class:`GpuCheck`: a point is done when ``gpu-check.csv`` has it at today's code ok, out of
  memory, failed (``error``: a result, shown, not retried) or skipped behind a shallower point
  that ran out of memory; skipped for the budget or stopped (``timeout``) is not done. A timing
  round on one graph is one unit: its ratios compare those points, measured back to back, so
  one cut short runs again whole. The profile page is done when it names today's commit.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.instruments.gpu_backlog import predict
from bench.instruments.gpu_backlog.step import (
    CODE_KEYS,
    Command,
    Context,
    Outcome,
    Pending,
    Step,
    at_code,
)
from bench.instruments.gpu_check import DEFAULT_TIMING_ROUNDS

CUDA_TEST_FILES = ("tests/test_host_sync.py", "tests/test_aggr.py", "tests/test_precision.py",
                   "tests/test_reversible.py", "tests/test_gpu_check.py")  # fmt: skip
#: the tests that need a CUDA device (not the one that checks the refusal without it)
CUDA_TEST_KEYWORD = "cuda and not without_cuda"
CUDA_TESTS_CSV = Path("gpu") / "cuda-tests.csv"
DONE_STATUSES = ("ok", "oom", "error")
OOM_SKIP = "deeper than a point that ran out of memory"  # gpu-check's words for such a skip


def steps(timing_rounds: int = DEFAULT_TIMING_ROUNDS) -> list[Step]:
    """The backlog in priority order."""
    return [
        CudaTests(),
        Study("accuracy"),
        Study("depth"),
        GpuCheck("timing", ("timing",), profile=True, rounds=timing_rounds),
        GpuCheck("memory", ("figure 1", "depth", "headline")),
    ]


@dataclass(frozen=True)
class CudaTests:
    """The tests that need CUDA, in a pytest child; one row per test with its code and device."""

    name: str = "cuda-tests"
    files: tuple[str, ...] = CUDA_TEST_FILES
    keyword: str = CUDA_TEST_KEYWORD
    seconds: float = predict.CUDA_TESTS_S
    needs: tuple[str, ...] = ("pytest",)

    @property
    def runs(self) -> str:
        return f'pytest -k "{self.keyword}" ({len(self.files)} files)'

    def pending(self, ctx: Context) -> Pending:
        import pandas as pd

        path = ctx.results_dir / CUDA_TESTS_CSV
        rows = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["test", "outcome"])
        rows = rows[at_code(rows, ctx.code)]
        ran = rows[rows["outcome"].isin(["passed", "failed", "error"])]
        failed = ran[ran["outcome"] != "passed"]
        notes: tuple[str, ...] = ()
        if len(failed):
            names = ", ".join(failed["test"].head(5)) + (" ..." if len(failed) > 5 else "")
            notes = (f"{len(failed)} of {len(ran)} CUDA tests failed at today's code: {names}",)
        if len(rows) and not len(ran):
            notes = (f"all {len(rows)} CUDA tests skipped at today's code: no CUDA device",)
        left = () if len(ran) else ("run",)
        return Pending(left, (self.seconds,) * len(left), 1, "runs", notes=notes)

    def command(self, pending: Pending, seconds: float, ctx: Context) -> Command:
        report = Path(tempfile.mkdtemp(prefix="gpu-backlog-")) / "junit.xml"
        argv = [ctx.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", self.keyword,
                f"--junitxml={report}", *self.files]  # fmt: skip
        return Command(argv, seconds, cwd=ctx.repo_root, output=report)

    def finish(self, outcome: Outcome, command: Command, ctx: Context) -> None:
        """Write the run's rows; a run stopped by the budget writes none (it runs again)."""
        if outcome.stopped or command.output is None or not command.output.exists():
            return
        import pandas as pd

        rows = junit_rows(command.output)
        device = device_name()
        for row in rows:
            row.update(ctx.code, device=device)
        path = ctx.results_dir / CUDA_TESTS_CSV
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = ["test", "outcome", "seconds", "message", *CODE_KEYS, "device"]
        pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
        shutil.rmtree(command.output.parent, ignore_errors=True)


def junit_rows(path: Path) -> list[dict[str, Any]]:
    """One row per test case of pytest's JUnit XML: test id, outcome, seconds, first line of
    the failure or skip message."""
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            found = case.find(tag)
            if found is not None:
                outcome = name
                message = (found.get("message") or "").strip().split("\n")[0][:200]
                break
        module = (case.get("classname") or "").replace(".", "/")
        rows.append({"test": f"{module}.py::{case.get('name')}", "outcome": outcome,
                     "seconds": float(case.get("time") or 0.0), "message": message})  # fmt: skip
    return rows


def device_name() -> str:
    """The device the tests ran on, in the words every record uses."""
    import torch

    from bench.measure.meters import device_description

    return device_description("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Study:
    """An ablation's ``gpu`` profile on CUDA: its trials, resumed by ``ablate`` itself."""

    spec: str
    profile: str = "gpu"
    needs: tuple[str, ...] = ("optuna",)

    @property
    def name(self) -> str:
        return self.spec

    @property
    def runs(self) -> str:
        return f"ablate {self.spec} --profile {self.profile} --device cuda"

    def pending(self, ctx: Context) -> Pending:
        from bench.harness.spec import load_spec

        points = load_spec(self.spec).points(self.profile)
        export = ctx.results_dir / f"{self.spec}-{self.profile}.csv"
        done, older = exported_keys(export, ctx.code)
        left = [p for p in points if p.key not in done]
        times = [predict.trial_seconds(p.config) for p in left]
        unit_s = tuple(math.nan if t is None else t for t in times)
        notes = ()
        if older & {p.key for p in left}:  # ablate reruns no point its storage has finished
            notes = (f"{export.name}: {len(older)} trials from another commit; a study resumed "
                     f"from {self.spec}.db keeps them: move that file away to run them again",)  # fmt: skip
        return Pending(tuple(p.key for p in left), unit_s, len(points), "trials", notes=notes)

    def command(self, pending: Pending, seconds: float, ctx: Context) -> Command:
        argv = [ctx.python, "-m", "bench", "ablate", self.spec, "--profile", self.profile,
                "--device", "cuda", "--no-progress", "--results-dir", str(ctx.results_dir)]  # fmt: skip
        # one thread a trial, as the recipe ran them: the host's side stays on its own core
        return Command(argv, seconds, env={"OMP_NUM_THREADS": "1"})

    def finish(self, outcome: Outcome, command: Command, ctx: Context) -> None:
        return None  # ablate exported its study itself when it completed


def exported_keys(export: Path, code: dict[str, str | None]) -> tuple[set[str], set[str]]:
    """The point keys an export has a finished trial for at ``code``, and at other code."""
    if not export.exists():
        return set(), set()
    from bench.errors import DataError
    from bench.exports.table import finished, read_table

    table = read_table(export)
    try:
        table = finished(table)
    except DataError:  # no finished trial at all (every one lost): none is done
        return set(), set()
    here = at_code(table, code)
    keys = table["point_key"].astype(str)
    return set(keys[here & table["point_key"].notna()]), set(
        keys[~here & table["point_key"].notna()]
    )


@dataclass(frozen=True)
class GpuCheck:
    """Some of ``gpu-check``'s groups; the points still missing are named exactly."""

    name: str
    groups: tuple[str, ...]
    profile: bool = False  # the RevGNN profile page comes with this step
    rounds: int = 0  # timing rounds; a round on one graph is one unit
    needs: tuple[str, ...] = ()

    @property
    def runs(self) -> str:
        words = [f'"{g}"' if " " in g else g for g in self.groups]
        return f"gpu-check --only {' '.join(words + ['profile'] * self.profile)} --merge"

    def pending(self, ctx: Context) -> Pending:
        from bench.instruments import gpu_check

        points = [p for p in gpu_check.plan_points(engines=False, timing_rounds=self.rounds)
                  if p.group in self.groups]  # fmt: skip
        done, errors = measured_labels(ctx.results_dir / "gpu" / "gpu-check.csv", ctx.code)
        units: dict[str, list[Any]] = {}
        for point in points:
            units.setdefault(_unit(point), []).append(point)
        left = {u: ps for u, ps in units.items() if not all(p.label in done for p in ps)}
        times = {u: sum(predict.point_seconds(p) for p in ps) for u, ps in left.items()}
        if self.profile and not profile_done(ctx.results_dir / "gpu", ctx.code):
            left, times = {"profile": [], **left}, {"profile": predict.profile_seconds(), **times}
        notes = tuple(errors[p.label] for p in points if p.label in errors)
        selection = tuple(tuple(p.label for p in ps) or (unit,) for unit, ps in left.items())
        # the profile runs first, then the points in the plan's order
        return Pending(tuple(left), tuple(times.values()), len(units) + self.profile,
                       "parts" if self.profile else "points", predict.GPU_CHECK_START_S,
                       selection, notes)  # fmt: skip

    def command(self, pending: Pending, seconds: float, ctx: Context) -> Command:
        budget = max(1.0, seconds - 10.0)  # gpu-check's own budget; 10 s to write its tables
        labels = [label for unit in pending.selection for label in unit]
        profile = [] if "profile" in labels else ["--no-profile"]
        argv = [ctx.python, "-m", "bench", "gpu-check", "--out", str(ctx.results_dir / "gpu"),
                "--merge", "--no-progress", "--skip-engines", "--budget-s", f"{budget:.0f}",
                "--repeats", str(predict.REPEATS), "--timing-rounds", str(self.rounds),
                *profile, "--exact", "--only", *labels]  # fmt: skip
        return Command(argv, seconds)

    def finish(self, outcome: Outcome, command: Command, ctx: Context) -> None:
        return None  # gpu-check merged its rows after every point


def _unit(point: Any) -> str:
    """A timing point's unit: its round on its graph (the ratios compare the archs and modes of
    one round on one graph, so those points run back to back); any other point is its own."""
    from bench.instruments.gpu_timing import GRAPHS, TIMING

    if point.group != TIMING:
        return str(point.label)
    where = {graph: words for graph, _, words in GRAPHS}[point.graph]
    return f"round {point.round} ({where})"


def measured_labels(csv: Path, code: dict[str, str | None]) -> tuple[set[str], dict[str, str]]:
    """The gpu-check labels measured at ``code``, and a note for each that failed."""
    if not csv.exists():
        return set(), {}
    from bench.instruments.gpu_check import read_rows

    rows = read_rows(csv)
    rows = rows[at_code(rows, code)]
    if "error" not in rows:
        rows = rows.assign(error="")
    error = rows["error"].fillna("").astype(str)
    behind_oom = (rows["status"] == "skipped") & error.str.startswith(OOM_SKIP)
    done = rows[rows["status"].isin(DONE_STATUSES) | behind_oom]
    errors = {str(r["label"]): f"{r['label']}: error at today's code "
              f"({str(r['error']).strip().split(chr(10))[0][:80]})"
              for _, r in done[done["status"] == "error"].iterrows()}  # fmt: skip
    return set(done["label"]), errors


def profile_done(out: Path, code: dict[str, str | None]) -> bool:
    """Whether ``profile-rev.md`` is there from ``code`` (its first paragraph names the commit)."""
    from bench.instruments.gpu_profile import FILE

    path = out / FILE
    if not path.exists():
        return False
    found = re.search(r", commit (\S+), source (\S+)\. ", path.read_text())
    if not found:
        return False
    commit = found.group(1) if found.group(1) != "None" else None
    return commit == code.get("commit") and found.group(2) == code.get("source_hash")
