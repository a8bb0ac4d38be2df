"""The command: the plan, the budget, the run, what is left.

Every step's state is read first (a bad export or spec is refused before anything runs); then
the steps run in order, each started only where what is left of the budget holds at least one
of its units (:func:`decide`: a study's next trial, a gpu-check point, timing round or the
profile, the whole test run) and stopped at the budget (SIGINT to its process group, SIGKILL :data:`GRACE_S` later:
finished trials, points and rows are kept). A gpu-check step that fits partly is given the
parts predicted to fit, so the time left goes on to the steps after it; a study runs trials until
the budget. A step that does not fit is passed over for the smaller ones after it; the next
call comes back to it first. The report's time is kept back
from the budget (``--no-report`` keeps none). The exit status is 0 when nothing is left, 1 when
a later call has more to do, 2 for bad input or no CUDA device.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.instruments.gpu_backlog.predict import REPORT_S
from bench.instruments.gpu_backlog.step import (
    Command,
    Context,
    Outcome,
    Pending,
    Runner,
    Step,
    code_text,
    current_code,
)
from bench.instruments.gpu_backlog.steps import steps
from bench.instruments.gpu_check import DEFAULT_TIMING_ROUNDS

DEFAULT_BUDGET_S = 540.0  # one 10-minute call, with a minute for the machine's own start
#: a stopped step gets SIGINT this long before its time is up, SIGKILL when it is
GRACE_S = 20.0


# --- the plan ---------------------------------------------------------------------------------
def decide(pending: Pending, left_s: float) -> str:
    """``done``; ``yes`` (all of it fits in ``left_s``); ``partly`` (one unit at least fits:
    what finishes is kept); or ``no``. An unknown prediction starts wherever time is left."""
    usable = left_s - GRACE_S
    if pending.done:
        return "done"
    if math.isnan(pending.seconds):
        return "partly" if usable > 0 else "no"
    if pending.seconds <= usable:
        return "yes"
    return "partly" if pending.least_s <= usable else "no"


def schedule(pendings: list[Pending], usable_s: float) -> list[list[tuple[int, int]]]:
    """The calls all that is left needs, as the run would go: per call, (step index, units
    run) in order. A step that fits partly runs the units predicted to fit where it can choose
    them (gpu-check), else it runs until the call's end (a study). A unit longer than a whole
    call, or of unknown time, ends the schedule there (what follows is not counted)."""
    left = list(pendings)
    calls: list[list[tuple[int, int]]] = []
    while any(not p.done for p in left):
        clock, call = 0.0, []
        for index, rest in enumerate(left):
            verdict = decide(rest, usable_s - clock)
            if verdict in ("done", "no"):
                continue
            if verdict == "partly" and math.isnan(rest.seconds):
                return [*calls, call] if call else calls
            run = rest if verdict == "yes" else rest.first(usable_s - clock - GRACE_S)
            call.append((index, len(run.left)))
            clock += run.seconds
            left[index] = _after(rest, len(run.left))
            if verdict == "partly" and not rest.selection:
                break  # it runs until the call's end
        if not call:
            break  # the next unit is longer than a call: a bigger --budget-s would run it
        calls.append(call)
    return calls


def _after(pending: Pending, count: int) -> Pending:
    """What is left of ``pending`` once its first ``count`` units ran."""
    return replace(pending, left=pending.left[count:], unit_s=pending.unit_s[count:],
                   selection=pending.selection[count:])  # fmt: skip


def plan_lines(chosen: list[Step], pendings: list[Pending], budget_s: float,
               report: bool) -> list[str]:  # fmt: skip
    """The dry run: each step, what is left of it, its predicted time, how much of it this
    call runs; then the calls all that is left needs."""
    usable = budget_s - (REPORT_S if report else 0.0)
    calls = schedule(pendings, usable)
    first = dict(calls[0]) if calls else {}
    lines = [f"{'step':<11} {'left':<18} {'predicted':>10}  {'this call':<14} runs"]
    for index, (step, pending) in enumerate(zip(chosen, pendings, strict=True)):
        if pending.done:
            lines.append(f"{step.name:<11} {'nothing':<18} {'':>10}  {'done':<14} {step.runs}")
            continue
        taken = first.get(index, 0)
        now = ("all" if taken == len(pending.left) else f"{taken} of {len(pending.left)}"
               ) if taken else "no"  # fmt: skip
        left = f"{len(pending.left)} of {pending.total} {pending.unit}"
        lines.append(f"{step.name:<11} {left:<18} {_seconds(pending.seconds):>10}  {now:<14} "
                     f"{step.runs}")  # fmt: skip
        if pending.selection:  # gpu-check's labels and rounds say what is left; a trial's key not
            lines.append(f"{'':<11} {_names(pending.left)}")
    total = sum(p.seconds for p in pendings)
    lines.append(f"all that is left: {_seconds(total)} predicted, in {len(calls)} call(s) of "
                 f"--budget-s {budget_s:.0f}"
                 + (f" ({REPORT_S:.0f} s of each kept for the report)" if report else "") + ":")  # fmt: skip
    for number, call in enumerate(calls, 1):
        parts = [f"{chosen[i].name}: {_part(pendings[i], n, call_start(calls, number, i))}"
                 for i, n in call]  # fmt: skip
        lines.append(f"  call {number}: {' | '.join(parts)}")
    done = sum(n for call in calls for _, n in call)
    if done < sum(len(p.left) for p in pendings):
        lines.append("  then: what follows does not fit one call (or its time is unknown): "
                     "a larger --budget-s, or run it by itself")  # fmt: skip
    return lines


def call_start(calls: list[list[tuple[int, int]]], number: int, index: int) -> int:
    """How many of step ``index``'s units the calls before call ``number`` ran."""
    return sum(n for call in calls[: number - 1] for i, n in call if i == index)


def _part(pending: Pending, taken: int, start: int) -> str:
    if pending.selection:
        return _names(pending.left[start : start + taken], shown=3)
    return f"{taken} of {len(pending.left)} {pending.unit}"


def _names(names: tuple[str, ...], shown: int = 6) -> str:
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _seconds(value: float) -> str:
    return "unknown" if math.isnan(value) else f"{value:.0f} s"


# --- running ----------------------------------------------------------------------------------
def run_process(command: Command) -> Outcome:
    """Run ``command`` in a process group of its own; at its timeout SIGINT the group (a sweep
    and a gpu-check keep what they finished), :data:`GRACE_S` later SIGKILL it."""
    started = time.perf_counter()
    # a group, not a session: the group is stopped at the budget, and nothing outlives the call
    proc = subprocess.Popen(command.argv, cwd=command.cwd, env={**os.environ, **command.env},
                            preexec_fn=os.setpgrp)  # fmt: skip
    stopped = False
    try:
        try:
            code = proc.wait(timeout=max(0.0, command.timeout_s))
        except subprocess.TimeoutExpired:
            stopped = True
            _signal(proc, signal.SIGINT)
            try:
                code = proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                code = proc.wait()
    except BaseException:  # interrupted or terminated here: the child's group goes with us
        _signal(proc, signal.SIGKILL)
        proc.wait()
        raise
    return Outcome(code, time.perf_counter() - started, stopped)


def _signal(proc: subprocess.Popen[Any], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """An outer ``timeout`` sends SIGTERM: raise, so the running step's group is killed too."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, runner: Runner = run_process, log: Any = print,
        clock: Callable[[], float] = time.perf_counter) -> int:  # fmt: skip
    """Run the pending steps in order within the budget, then the report; print what is left.
    0 when nothing is, 1 when a later call has more to do. (A test hands in its own ``runner``
    and ``clock``.)"""
    started = clock()
    ctx = Context(Path(args.results_dir), current_code())
    chosen = _chosen(args)
    pendings = [step.pending(ctx) for step in chosen]  # every input read before anything runs
    reserve = 0.0 if args.no_report else REPORT_S
    before = _snapshot(ctx.results_dir)
    log(f"gpu-backlog: budget {args.budget_s:.0f} s; code {code_text(ctx.code)}")
    for step, pending in zip(chosen, pendings, strict=True):
        left = args.budget_s - reserve - (clock() - started)
        _run_step(step, pending, left, ctx, runner, log)
    written = _changed(before, _snapshot(ctx.results_dir))
    if written and not args.no_report:
        left = max(REPORT_S, args.budget_s - (clock() - started))
        argv = [ctx.python, "-m", "bench", "report", "--results-dir", str(ctx.results_dir),
                "--report-dir", str(args.report_dir)]  # fmt: skip
        outcome = runner(Command(argv, left - GRACE_S))
        ok = outcome.returncode == 0 and not outcome.stopped
        log(f"report: regenerated in {args.report_dir} ({outcome.seconds:.0f} s)" if ok else
            f"report: {'stopped at the budget' if outcome.stopped else 'failed'}; regenerate it "
            f"from {ctx.results_dir}/ on any machine: python -m bench report")  # fmt: skip
    log(f"gpu-backlog: {clock() - started:.0f} s; written under "
        f"{ctx.results_dir}/: {', '.join(written) or 'nothing'}")  # fmt: skip
    return _left(chosen, ctx, log)


def _run_step(step: Step, pending: Pending, left: float, ctx: Context, runner: Runner,
              log: Any) -> None:  # fmt: skip
    verdict = decide(pending, left)
    if verdict == "done":
        log(f"{step.name}: done at this code")
        return
    missing = [name for name in step.needs if importlib.util.find_spec(name) is None]
    if missing:
        log(f"{step.name}: cannot run here: no module {', '.join(missing)}")
        return
    if verdict == "no":
        log(f"{step.name}: does not fit ({_seconds(pending.least_s)} for one of its "
            f"{pending.unit}, {left:.0f} s left)")  # fmt: skip
        return
    log(f"{step.name}: {step.runs} ({len(pending.left)} {pending.unit}, predicted "
        f"{_seconds(pending.seconds)}, {left:.0f} s left)")  # fmt: skip
    if verdict == "partly" and pending.selection:
        pending = pending.first(left - GRACE_S)  # a gpu-check runs the parts that fit
        log(f"{step.name}: this call runs {_names(pending.left)}")
    command = step.command(pending, left - GRACE_S, ctx)
    log(f"  $ {shlex.join(command.argv)}")
    outcome = runner(command)
    step.finish(outcome, command, ctx)
    how = "stopped at the budget" if outcome.stopped else f"exit {outcome.returncode}"
    log(f"{step.name}: {how} after {outcome.seconds:.0f} s")


def _left(chosen: list[Step], ctx: Context, log: Any) -> int:
    """What is left, read again from ``results/``, and the results to look at."""
    remaining = 0
    for step in chosen:
        pending = step.pending(ctx)
        for note in pending.notes:
            log(f"  look at: {note}")
        if not pending.done:
            remaining += 1
            log(f"  left: {step.name}: {len(pending.left)} of {pending.total} {pending.unit} "
                f"({_seconds(pending.seconds)} predicted): {_names(pending.left)}")  # fmt: skip
    log(f"{remaining} step(s) left: run the same command again" if remaining else "nothing left")
    return 1 if remaining else 0


def _snapshot(root: Path) -> dict[str, tuple[float, int]]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_mtime, p.stat().st_size)
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def _changed(
    before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]]
) -> list[str]:
    return [name for name, stat in after.items() if before.get(name) != stat]


def _chosen(args: argparse.Namespace) -> list[Step]:
    return [step for step in steps(args.timing_rounds) if not args.only or step.name in args.only]


# --- the command line -------------------------------------------------------------------------
def dry_run(args: argparse.Namespace) -> int:
    """The plan on any machine: every step, what is left of it, its time, whether it fits."""
    ctx = Context(Path(args.results_dir), current_code())
    chosen = _chosen(args)
    pendings = [step.pending(ctx) for step in chosen]
    kept = "" if args.no_report else f" ({REPORT_S:.0f} s of it kept for the report)"
    print(f"gpu-backlog plan: budget {args.budget_s:.0f} s{kept}; code {code_text(ctx.code)}; "
          f"what is done is read from {ctx.results_dir}/")  # fmt: skip
    for line in plan_lines(chosen, pendings, args.budget_s, not args.no_report):
        print(line)
    for pending in pendings:
        for note in pending.notes:
            print(f"  look at: {note}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = [step.name for step in steps()]
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help="stop starting steps after this many seconds, the report's time "
                        f"included (default {DEFAULT_BUDGET_S:.0f}: one 10-minute call)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true",
                        help="list the steps, what is left of each, its predicted time and "
                        "whether it fits the budget; run nothing (any machine)")  # fmt: skip
    parser.add_argument("--only", nargs="+", default=[], metavar="STEP",
                        help=f"run only these steps, in the backlog's order: {', '.join(names)}")  # fmt: skip
    parser.add_argument("--timing-rounds", type=int, default=DEFAULT_TIMING_ROUNDS,
                        help="fresh-process rounds of gpu-check's timing rows (default "
                        f"{DEFAULT_TIMING_ROUNDS}; 2 is the least an interval needs)")  # fmt: skip
    parser.add_argument("--no-report", action="store_true",
                        help="leave report/ as it is (and keep no time for it)")  # fmt: skip
    parser.add_argument("--results-dir", type=Path, default=Path("results"),
                        help="where results are read and merged (default: results)")  # fmt: skip
    parser.add_argument("--report-dir", type=Path, default=Path("report"),
                        help="where the report is regenerated (default: report)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from bench.errors import DataError
    from bench.harness.spec import SpecError

    refused = _refuse(args)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    try:
        if args.dry_run:
            return dry_run(args)
        with _terminate_as_interrupt():
            return run(args)
    except (DataError, SpecError) as exc:  # raised while reading what is done: nothing ran
        print(f"gpu-backlog: {exc}", file=sys.stderr)
        return 2


def _refuse(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot run (one line), or None."""
    names = [step.name for step in steps()]
    unknown = [name for name in args.only if name not in names]
    if unknown:
        return f"--only: no step {', '.join(unknown)} (the steps: {', '.join(names)})"
    if args.timing_rounds < 0:
        return "--timing-rounds must be 0 or more"
    reserve = 0.0 if args.no_report else REPORT_S
    if args.budget_s <= reserve + GRACE_S:
        return (f"--budget-s must be more than {reserve + GRACE_S:.0f} s (the report's "
                f"{reserve:.0f} s and a step's {GRACE_S:.0f} s to stop)")  # fmt: skip
    if args.dry_run:
        return None
    import torch

    if not torch.cuda.is_available():
        return ("gpu-backlog runs the GPU's pending work, and no CUDA device is available here "
                f"(torch {torch.__version__}); `python -m bench gpu-backlog --dry-run` lists the "
                "plan on any machine")  # fmt: skip
    return None
