"""A child process that dies with its parent: a trial with its sweep, a sweep's worker with the
sweep, whatever ends the parent (SIGKILL to its process group, SIGTERM, a crash).

Why: a trial runs in a session of its own (a Ctrl-C aimed at the sweep must not hit it: the
sweep stops it and closes its trial), so a SIGKILL to the sweep's process group did not reach
it, and neither did the sweep's death: the orphan, reparented to init, trained on to the end of
its epoch (14-76 s measured) and held the device a rerun wanted. Two lines of defence:

* Linux: the parent-death signal. ``prctl(PR_SET_PDEATHSIG, sig)`` in the child, before it
  runs anything (:func:`parent_death_signal`, a ``preexec_fn`` for ``subprocess.Popen``; or
  :func:`die_with_parent` first thing in a spawned process), then a look at ``getppid()``: a
  parent that died before the signal was set is caught too. What it does not see: the signal
  follows the *thread* that started the child, so a child must be started by a thread that
  outlives it (every caller here waits for its child in the thread that started it).
* Everywhere: a trial child whose parent says it watches (``PARENT_ENV``,
  :mod:`bench.trial.protocol`) ends itself when its stdin, the parent's pipe, closes
  (:func:`bench.trial.flags.run_child`).

Example::

    import signal, subprocess
    from bench.trial.lifeline import parent_death_signal
    child = subprocess.Popen(["sleep", "600"], preexec_fn=parent_death_signal(signal.SIGKILL))
    # kill -9 this process: the sleep goes with it
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Callable[..., Any] | None:
    """libc's ``prctl``, looked up once in the parent (a ``preexec_fn`` must not import)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def parent_death_signal(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child get ``sig`` when this process dies (None where
    Linux's ``prctl`` is not to be had: the stdin watch is then the only defence). It runs in
    the forked child before ``exec`` and calls nothing but ``prctl`` and ``getppid``."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> bool:
    """In a process started by ``parent`` (pid): get ``sig`` when it dies, and if it already
    has, take ``sig`` now. False where the parent-death signal is not to be had."""
    prctl = _prctl()
    if prctl is None:
        return False
    prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


__all__ = ["PR_SET_PDEATHSIG", "die_with_parent", "parent_death_signal"]
