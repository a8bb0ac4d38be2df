"""Running a trial in a fresh child process (the parent's side of :mod:`bench.trial.protocol`):
stream its events, enforce its time budget, and turn every way it can end -- a record, a
crash, the kernel's OOM killer, a kill from outside -- into a record. Never raises for a trial
failure. The child never outlives this process (:mod:`bench.trial.lifeline`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from bench.config import TrialConfig
from bench.record import TrialRecord, failure_kind_of
from bench.trial.lifeline import parent_death_signal
from bench.trial.outcome import best_of_curve, error_message, new_record
from bench.trial.protocol import (
    EVENT_PREFIX,
    PARENT_ENV,
    PHASE_PREFIX,
    START_FIELDS,
    START_PREFIX,
    STOP_COMMAND,
    parse_record,
)
from bench.trial.training import OnEpoch

#: seconds a child may overrun its time budget (interpreter start-up and imports included)
#: before the parent kills it, and may take to stop after a ``stop`` command
DEFAULT_GRACE_S = 60.0
STOP_GRACE_S = 30.0


def _effective_timeout(config: TrialConfig, timeout: float | None) -> float | None:
    budgets = [t for t in (timeout, config.timeout) if t is not None]
    return min(budgets) if budgets else None


def run_trial_isolated(
    config: TrialConfig,
    timeout: float | None = None,
    on_epoch: OnEpoch | None = None,
    *,
    grace_s: float = DEFAULT_GRACE_S,
) -> TrialRecord:
    """Run ``config`` in a fresh Python process and return its record; never raises for a
    trial failure (a crash, OOM, SIGKILL, hang or time-out all become a record).

    ``timeout`` (seconds, the smaller of it and ``config.timeout`` applies) is enforced by the
    child between steps (status ``timeout``, partial curve kept); a child still running
    ``grace_s`` after it is killed. ``on_epoch(event)`` runs in this process after every
    epoch; a truthy return stops the child (status ``pruned``, partial curve kept).
    """
    started = time.perf_counter()
    budget = _effective_timeout(config, timeout)
    if budget != config.timeout:
        config = dataclasses.replace(config, timeout=budget)
    ooms_before = oom_kill_count()
    child = _Child(_child_command(config))
    heard = _listen(child, on_epoch, math.inf if budget is None else started + budget + grace_s)
    record = parse_record(heard.last_line)
    if record is None:
        record = record_without_child_record(
            config, child.returncode, heard.killed_for, child.stderr_tail(), heard.curve,
            heard.start, heard.phase, oom_kills=_delta(ooms_before, oom_kill_count()),
        )  # fmt: skip
    if heard.stop_requested and record.status == "ok":
        record.status = "pruned"
        record.failed_phase = record.failed_phase or heard.phase
    if heard.callback_error is not None:
        record.status = "error"
        record.error = heard.callback_error
    if record.wall_time_s is None:
        record.wall_time_s = time.perf_counter() - started
    return record


def _child_command(config: TrialConfig) -> list[str]:
    """``python -m bench trial`` for ``config``, printing its events and its record."""
    config_json = json.dumps(config.to_dict(), sort_keys=True)
    return [sys.executable, "-m", "bench", "trial", "--config-json", config_json, "--json",
            "--events"]  # fmt: skip


@dataclasses.dataclass
class _Heard:
    """What the parent heard from its child, line by line (:mod:`bench.trial.protocol`), and
    what it did about it."""

    curve: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    start: dict[str, Any] = dataclasses.field(default_factory=dict)
    phase: str = "setup"
    last_line: str | None = None  # the record, if the child got to print it
    stop_requested: bool = False
    callback_error: str | None = None  # on_epoch raised: the trial ends as an error
    killed_for: str | None = None  # "timeout" or "pruned": a deadline passed, the child killed

    def hear(self, line: str, on_epoch: OnEpoch | None) -> bool:
        """Take in one line; True when the child is now to be asked to stop."""
        if line.startswith(EVENT_PREFIX):
            event = json.loads(line[len(EVENT_PREFIX) :])
            self.curve.append(event)
            return self._wants_stop(event, on_epoch)
        if line.startswith(START_PREFIX):
            self.start = json.loads(line[len(START_PREFIX) :])
        elif line.startswith(PHASE_PREFIX):
            self.phase = line[len(PHASE_PREFIX) :].strip()
        elif line.strip():
            self.last_line = line
        return False

    def _wants_stop(self, event: dict[str, Any], on_epoch: OnEpoch | None) -> bool:
        if on_epoch is None or self.stop_requested:
            return False
        try:
            wants_stop = bool(on_epoch(dict(event)))
        except Exception as exc:  # noqa: BLE001 - the caller's bug ends the trial
            wants_stop = True
            self.callback_error = f"on_epoch raised {error_message(exc)}"
        self.stop_requested = wants_stop
        return wants_stop


def _listen(child: _Child, on_epoch: OnEpoch | None, deadline: float) -> _Heard:
    """Read the child's lines until it exits, asking it to stop when ``on_epoch`` says so and
    killing it when ``deadline`` (or the stop's grace) passes; the child is reaped after."""
    heard = _Heard()
    deadlines = [deadline]  # [run, stop?]
    try:
        for line in child.lines(lambda: min(deadlines)):
            if line is None:  # a deadline passed
                heard.killed_for = "pruned" if heard.stop_requested else "timeout"
                child.kill()
                break
            if heard.hear(line, on_epoch):
                deadlines.append(time.perf_counter() + STOP_GRACE_S)
                child.send(STOP_COMMAND)
    finally:
        child.kill()  # no-op when it already exited; always reaps it
    return heard


def record_without_child_record(
    config: TrialConfig,
    returncode: int | None,
    killed_for: str | None,
    stderr_tail: str,
    curve: list[dict[str, Any]],
    start: dict[str, Any],
    phase: str,
    oom_kills: int | None = None,
) -> TrialRecord:
    """The record of a child that printed none: killed by us, by the kernel, or crashed.

    ``oom_kills``: how many processes the kernel's OOM killer ended in our memory cgroup while
    the child ran (None: unreadable here). A SIGKILL with none is another process's doing:
    status ``killed``, an environment failure that the next run retries."""
    record = new_record(
        config,
        curve=curve,
        failed_phase=phase,
        **{field: start.get(field) for field in START_FIELDS},
    )
    best_of_curve(record)
    if killed_for == "timeout":
        record.status = "timeout"
        record.error = f"killed: still running past its time budget of {config.timeout:g} s"
    elif killed_for == "pruned":
        record.status = "pruned"
        record.error = f"killed: did not stop within {STOP_GRACE_S:g} s of being asked to"
    elif returncode == -signal.SIGKILL and oom_kills == 0:
        record.status = "killed"
        record.error = (
            "the trial process was killed by SIGKILL from another process (the kernel's "
            "out-of-memory killer killed nothing meanwhile)"
            + (f"\nstderr tail:\n{stderr_tail}" if stderr_tail else "")
        )
    elif returncode == -signal.SIGKILL:
        seen = "the kernel's out-of-memory killer" if oom_kills else "most likely the kernel's "
        seen += "" if oom_kills else "out-of-memory killer; its kill count is unreadable here"
        record.status = "oom"
        record.error = (
            f"out of memory at {config.layers} layers: the trial process was killed by SIGKILL "
            f"({seen})" + (f"\nstderr tail:\n{stderr_tail}" if stderr_tail else "")
        )
    else:
        record.error = f"the trial process exited with code {returncode} without a record" + (
            f"\nstderr tail:\n{stderr_tail}" if stderr_tail else ""
        )
    outside = killed_for is None and returncode is not None and -returncode in _OUTSIDE_SIGNALS
    # killed from outside (status "killed", or a signal): not the configuration's doing
    record.failure_kind = failure_kind_of(record.status, record.error, outside=outside)
    return record


def oom_kill_count() -> int | None:
    """The kernel's OOM-kill count of this process's memory cgroup, or None where unreadable:
    ``oom_kill`` in cgroup v2 ``memory.events`` or cgroup v1 ``memory.oom_control``."""
    from pathlib import Path

    candidates: list[Path] = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            rel = path.lstrip("/")
            if controllers == "":
                candidates.append(Path("/sys/fs/cgroup") / rel / "memory.events")
            elif "memory" in controllers.split(","):
                candidates.append(Path("/sys/fs/cgroup/memory") / rel / "memory.oom_control")
    except (OSError, ValueError):
        pass
    # inside a container the cgroup is often mounted at the root of /sys/fs/cgroup
    candidates += [
        Path("/sys/fs/cgroup/memory.events"),
        Path("/sys/fs/cgroup/memory/memory.oom_control"),
    ]
    for candidate in candidates:
        try:
            for line in candidate.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def _delta(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before


# signals that end a trial from outside (a user, a scheduler, a shutdown), not by its own doing
_OUTSIDE_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Child:
    """A child process whose stdout lines arrive through a queue (so the parent can keep its
    own deadlines) and whose stderr is drained into a bounded tail (so it never blocks). It
    dies with this process, however this process ends (:mod:`bench.trial.lifeline`)."""

    def __init__(self, command: list[str]) -> None:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env[PARENT_ENV] = str(os.getpid())  # its stdin closing says this process died
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,  # a Ctrl-C aimed at the parent must not hit the child
            preexec_fn=parent_death_signal(signal.SIGKILL),  # nor may it outlive the parent
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=40)
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line.rstrip("\n"))

    def lines(self, deadline: Callable[[], float]) -> Iterator[str | None]:
        """Stdout lines until EOF; yields None when ``deadline()`` passes first."""
        while True:
            wait = deadline() - time.perf_counter()
            if wait <= 0:
                yield None
                return
            try:
                line = self._lines.get(timeout=min(wait, 3600.0))
            except queue.Empty:
                continue
            if line is None:
                return
            yield line

    def send(self, text: str) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.write(text + "\n")
            self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(list(self._stderr)[-lines:])
