"""What a backlog step is: a small protocol, what is left of it, the process it runs, and which
code a result came from.

A step reads what is done from ``results/`` (:meth:`Step.pending`), builds one child process
for the rest (:meth:`Step.command`) and, where its child leaves a file to read back, turns it
into results (:meth:`Step.finish`). Who runs the child is a :data:`Runner`: the command's
runner starts a process group and stops it at the budget; a test hands in its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from bench.data.paths import REPO_ROOT

#: the provenance that says which code produced a result: a result is today's when these equal
#: the running code's: its commit (None outside a git checkout, e.g. a device machine's copy) and
#: the trial code's source hash (bench.measure.provenance), which needs no git.
CODE_KEYS = ("commit", "source_hash")


@dataclass(frozen=True)
class Context:
    """Where the steps read and write, and which code is running."""

    results_dir: Path
    code: dict[str, str | None]
    repo_root: Path = REPO_ROOT
    python: str = sys.executable


@dataclass(frozen=True)
class Pending:
    """What is left of a step: its units in the order they run, each one's predicted seconds,
    what its command selects, and the results to look at."""

    left: tuple[str, ...]
    unit_s: tuple[float, ...]  # predicted seconds of each unit left (NaN: unknown)
    total: int
    unit: str  # what a unit is: "runs", "trials", "points", "parts"
    start_s: float = 0.0  # a call's own start before its first unit
    #: per unit, what its command is told to run (gpu-check's labels); empty where a step
    #: cannot run part of what is left (a study runs its trials until it is stopped)
    selection: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = ()  # results to look at (failed tests, errors)

    @property
    def done(self) -> bool:
        return not self.left

    @property
    def seconds(self) -> float:
        """All that is left, predicted (NaN where a unit's time is unknown)."""
        return self.start_s + sum(self.unit_s) if self.left else 0.0

    @property
    def least_s(self) -> float:
        """The shortest run that completes a unit: the start and the first unit."""
        return self.start_s + self.unit_s[0] if self.left else 0.0

    def first(self, seconds: float) -> Pending:
        """The units predicted to finish in ``seconds``, the first one at least (what a step
        that can choose its units, ``selection``, is told to run when it fits partly)."""
        count, clock = 1, self.least_s
        while count < len(self.left) and clock + self.unit_s[count] <= seconds:
            clock += self.unit_s[count]
            count += 1
        return replace(self, left=self.left[:count], unit_s=self.unit_s[:count],
                       selection=self.selection[:count])  # fmt: skip


@dataclass(frozen=True)
class Command:
    """One child process: its arguments, where and with what it runs, when it is stopped."""

    argv: list[str]
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    output: Path | None = None  # a file the step reads back afterwards (pytest's JUnit XML)


@dataclass(frozen=True)
class Outcome:
    returncode: int
    seconds: float
    stopped: bool  # the budget ran out and it was stopped


class Step(Protocol):
    """A piece of the backlog: reads what is done from ``results/`` and runs the rest."""

    @property
    def name(self) -> str: ...

    @property
    def runs(self) -> str: ...  # the command, in the plan's words

    @property
    def needs(self) -> tuple[str, ...]: ...  # modules its child imports

    def pending(self, ctx: Context) -> Pending: ...

    def command(self, pending: Pending, seconds: float, ctx: Context) -> Command: ...

    def finish(self, outcome: Outcome, command: Command, ctx: Context) -> None: ...


Runner = Callable[[Command], Outcome]


def current_code() -> dict[str, str | None]:
    """The running code's :data:`CODE_KEYS`."""
    from bench.measure.provenance import git_commit, source_hash

    return {"commit": git_commit(), "source_hash": source_hash()}


def at_code(rows: Any, code: dict[str, str | None]) -> Any:
    """A mask of the ``rows`` produced by ``code``. Where the code is not known (not a git
    checkout), rows that recorded none count as its own: the plan says so when it happens."""
    import pandas as pd

    mask = pd.Series(True, index=rows.index)
    for key in CODE_KEYS:
        column = rows[key] if key in rows else pd.Series(None, index=rows.index, dtype=object)
        want = code.get(key)
        mask &= column.isna() if want is None else (column.astype(str) == want)
    return mask


def code_text(code: dict[str, str | None]) -> str:
    """The running code in the plan's words."""
    shown = ", ".join(f"{key} {value}" for key, value in code.items() if value)
    return shown or ("unknown (not a git checkout): results that recorded no commit are taken "
                     "as this code's")  # fmt: skip
