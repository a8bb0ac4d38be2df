"""The one worker loop: open the study on its own storage, take turns (:meth:`TrialSource.step
<bench.harness.source.TrialSource.step>`) until the source says it is done, waiting while
trials running elsewhere may still leave work. The same loop runs in the command's process, in
spawned worker processes, and in the worker commands of cluster jobs, for the grid queue and for
the sampler alike; what a turn runs is the source's."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna

from bench.config import TrialConfig
from bench.harness.source import RunFn, TrialSource, Turn
from bench.harness.storage import DEFAULT_HEARTBEAT_S, STORAGE_ERRORS, open_storage
from bench.record import TrialRecord

POLL_S = 2.0  # how often a waiting worker looks again at trials other workers are running


@dataclass(frozen=True)
class WorkerOptions:
    """What one worker needs besides its source: the storage, its heartbeat, how often to poll,
    when to stop starting trials (``timeout`` seconds; None: never) and its GPU."""

    url: str
    heartbeat: int | None = DEFAULT_HEARTBEAT_S
    grace_period: int | None = None  # None: 3 heartbeats
    poll_s: float = POLL_S
    timeout: float | None = None
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for this worker's trials


def default_run_fn() -> RunFn:
    from bench.trial import run_trial_isolated

    return run_trial_isolated


def run_trial_in_worker(
    config: TrialConfig, timeout: float | None = None, on_epoch: Any = None
) -> TrialRecord:
    """A ``run_fn`` that trains in the worker's own process: no interpreter start-up and
    imports per trial (about 10 s of a smoke trial's 13 here), for ``reproduce --quick``; a
    crash takes the worker down (the sweep records the trial as lost), and memory is metered
    beside what earlier trials left alive (a step's added bytes are still its own)."""
    from bench.trial import run_trial

    if timeout is not None:
        config = config.replace(timeout=min(timeout, config.timeout or timeout))
    return run_trial(config, on_epoch=on_epoch)


class Heartbeat:
    """Beats the storage's heartbeat for one trial while it runs (Optuna does this only inside
    ``study.optimize``; the grid queue asks and tells by hand)."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self._storage, self._trial_id = storage, trial_id
        self._stop = threading.Event()
        self._interval = (
            storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        )
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat must not kill the trial
                self._storage.record_heartbeat(self._trial_id)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> Heartbeat:
        if self._interval:
            self._storage.record_heartbeat(self._trial_id)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


@contextlib.contextmanager
def one_thread_on_cpu(device: str) -> Iterator[None]:
    """Run CPU trials on one thread each: a trial process inherits ``OMP_NUM_THREADS=1``, an
    in-worker trial gets ``torch.set_num_threads(1)``. Why: two workers on two cores would run
    four threads (a 50 s trial took over 5 min here), and step times would depend on
    ``--workers``. An ``OMP_NUM_THREADS`` the user set is kept."""
    if device != "cpu" or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
        torch.set_num_threads(threads)


def worker_loop(source: TrialSource, options: WorkerOptions, run_fn: RunFn | None = None) -> int:
    """Take turns until ``source`` has nothing left for this worker (or ``options.timeout``
    passes); returns how many trials this worker ran."""
    if options.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = options.gpu
    run_fn = run_fn or default_run_fn()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = source.create(open_storage(options.url, options.heartbeat, options.grace_period))
    deadline = time.monotonic() + options.timeout if options.timeout else math.inf
    ran = 0
    while time.monotonic() < deadline:
        turn = source.step(study, run_fn)
        if turn is Turn.DONE:
            break
        if turn is Turn.RAN:
            ran += 1
        elif turn is Turn.WAIT:
            time.sleep(options.poll_s)  # others are running: wait, they may die
    return ran


def worker_process(
    source: TrialSource, options: WorkerOptions, run_fn: RunFn | None, ran: Any
) -> None:
    """A spawned worker process: the loop, its count added to the shared ``ran``. Ctrl-C and
    SIGTERM interrupt it (:func:`interrupted_by_signals`: the trial in hand is closed and
    queued again), and the sweep's death sends it SIGTERM
    (:func:`bench.trial.lifeline.die_with_parent`). A storage that fails ends it without a
    traceback: the sweep says it once."""
    from bench.trial.lifeline import die_with_parent

    try:
        with interrupted_by_signals():
            parent = multiprocessing.parent_process()
            if parent is not None and parent.pid is not None:
                die_with_parent(parent.pid, signal.SIGTERM)
            count = worker_loop(source, options, run_fn)
    except KeyboardInterrupt:
        sys.exit(130)
    except STORAGE_ERRORS:
        sys.exit(STORAGE_FAILED_EXIT)
    with ran.get_lock():
        ran.value += count


STORAGE_FAILED_EXIT = 3  # a spawned worker's exit status when its storage failed


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM (a scheduler's or a shutdown's stop, ``kill``) both raise
    KeyboardInterrupt while the body runs: the trial in hand is closed and queued again, its
    process killed, and the command says how to resume. Without it SIGTERM ended a sweep on the
    spot, its trial RUNNING until the heartbeat went stale and its process running on. A
    SIGTERM after the first interruption is ignored: a sweep forwards SIGTERM to its workers,
    which may have taken the Ctrl-C themselves, and their closing must not be cut short (a
    second Ctrl-C still interrupts). Only the main thread can set handlers: elsewhere, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = threading.Event()

    def on_int(signum: int, frame: Any) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    def on_term(signum: int, frame: Any) -> None:
        if not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt

    term_handler = signal.signal(signal.SIGTERM, on_term)
    wrap_int = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # else: ignored
    if wrap_int:
        signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if term_handler is None else term_handler)
        if wrap_int:
            signal.signal(signal.SIGINT, signal.default_int_handler)
