"""A sweep worker: claim a queued trial, run it in its own process while beating its heartbeat,
attach the record, repeat until every point has one (:mod:`bench.harness.queue`)."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.harness.queue import (
    POLL_S,
    claim,
    close_without_running,
    duplicate_of,
    finish,
    reconcile,
)
from bench.harness.spec import Point
from bench.harness.storage import DEFAULT_HEARTBEAT_S, open_storage
from bench.record import TrialRecord, failure_kind_of

RunFn = Callable[..., TrialRecord]  # run_fn(config, timeout=None, on_epoch=None) -> TrialRecord


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


class _Heartbeat:
    """Beats the storage's heartbeat for one trial while it runs (Optuna does this only inside
    ``study.optimize``; we ask and tell by hand)."""

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

    def __enter__(self) -> _Heartbeat:
        if self._interval:
            self._storage.record_heartbeat(self._trial_id)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _set_device(config: TrialConfig, device: str) -> TrialConfig:
    return config if config.device == device else config.replace(device=device)


@dataclass
class WorkerOptions:
    url: str
    study_name: str
    points: list[Point]
    device: str = "cpu"
    heartbeat: int = DEFAULT_HEARTBEAT_S
    trial_timeout: float | None = None
    poll_s: float = POLL_S
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for this worker's trials


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


def worker_loop(options: WorkerOptions, run_fn: RunFn | None = None) -> int:
    """Claim and run trials until every point has a record; returns how many this worker ran."""
    with one_thread_on_cpu(options.device):
        return _work(options, run_fn)


def _work(options: WorkerOptions, run_fn: RunFn | None) -> int:
    if options.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = options.gpu
    run_fn = run_fn or default_run_fn()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=options.study_name,
        storage=open_storage(options.url, heartbeat_interval=options.heartbeat),
    )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ran = 0
    while True:
        trial = claim(study)
        if trial is None:
            reconcile(study, options.points)
            trial = claim(study)
        if trial is None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not running:
                return ran
            time.sleep(options.poll_s)  # others are running: wait, they may die
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "worker", worker)
        owner = duplicate_of(study, trial)
        if owner is not None:
            study._storage.set_trial_user_attr(trial._trial_id, "duplicate_of", owner)
            close_without_running(
                study,
                trial._trial_id,
                f"duplicate of trial {owner}: the same point was queued twice by workers "
                "reconciling at once; not run",
            )
            continue
        trial_id = trial._trial_id
        try:
            config = _set_device(TrialConfig.from_dict(trial.user_attrs["config"]), options.device)
        except ConfigError as exc:  # e.g. a stored point this machine cannot run
            error = f"{exc.flag}: {exc.message}"
            bad = TrialRecord(
                "error",
                trial.user_attrs["config"],
                error=error,
                failed_phase="setup",
                failure_kind=failure_kind_of("error", exc),
            )
            finish(study, trial, bad)
            ran += 1
            continue

        def on_epoch(event: dict[str, Any], _id: int = trial_id) -> bool:
            valid = event.get("valid")
            if isinstance(valid, (int, float)) and math.isfinite(valid):
                study._storage.set_trial_intermediate_value(_id, int(event["epoch"]), float(valid))
            return False

        try:
            with _Heartbeat(study._storage, trial_id):
                record = run_fn(config, timeout=options.trial_timeout, on_epoch=on_epoch)
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM) or the runner itself broke: the trial is lost,
            # not failed; the next reconcile enqueues its point again
            study._storage.set_trial_user_attr(trial_id, "interrupted", True)
            close_without_running(study, trial_id, "interrupted: the point was queued again")
            raise
        finish(study, trial, record)
        ran += 1


def worker_process(options: WorkerOptions, run_fn: RunFn | None, ran: Any) -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        count = worker_loop(options, run_fn)
    except KeyboardInterrupt:
        sys.exit(130)
    with ran.get_lock():
        ran.value += count
