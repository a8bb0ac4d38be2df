"""Training one configuration in this process: data, model, optimiser; the epochs with
metered steps; evaluation; everything measured so far becomes the record, whatever happens.

Training follows the paper's recipe: Adam, BCE-with-logits (multilabel) or cross-entropy
(multiclass), gradient-norm clipping, a random node partition redrawn every epoch (every
cluster visited once per epoch, loss on the training nodes of each cluster), evaluation on
``eval_parts`` clusters drawn once (or the whole graph with ``batching="full"``), and the test
score taken at the best validation score. What is metered and timed, and why: docs/memory.md
and docs/trial.md ("Times").

:func:`_train` reads top to bottom: setup once, then per epoch the batches, the steps (each
metered or timed, :func:`bench.trial.step.meters`), the epoch's time, evaluation when due, the
epoch event for the caller and the display, and early stopping. Each is a call with a name;
what they produce accumulates in a :class:`bench.trial.state.TrialState`, which becomes the
record (:func:`bench.trial.outcome.finish`) even when a phase raises.

This module keeps the story; the mechanics live beside it: one step and one evaluation in
:mod:`bench.trial.step`, the epoch line and bar in :mod:`bench.trial.display`, the record's
start, curve points and end in :mod:`bench.trial.outcome`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.record import TrialRecord, failure_kind_of
from bench.trial.display import EpochDisplay
from bench.trial.outcome import (
    epoch_event,
    error_message,
    finish,
    is_out_of_memory,
    new_record,
    oom_message,
)
from bench.trial.protocol import CONFIG_ERROR_PREFIX, FAULT_ENV, START_FIELDS
from bench.trial.state import Setup, Stop, TrialState
from bench.trial.step import Stopwatch, evaluate, meters, step, task_loss

OnEpoch = Callable[[dict[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class _Caller:
    """What the caller of :func:`run_trial` asked to see and hear, and how it may stop it."""

    progress: bool = False  # a bar (terminal) or a log line per epoch on stderr
    on_epoch: OnEpoch | None = None
    stop: threading.Event | None = None
    on_start: Callable[[dict[str, Any]], None] | None = None
    on_phase: Callable[[str], None] | None = None

    def enter(self, state: TrialState, phase: str) -> None:
        """The trial enters ``phase`` (setup, train, eval): a failure from now on is its."""
        state.phase = phase
        if self.on_phase is not None:
            self.on_phase(phase)


def run_trial(
    config: TrialConfig,
    progress: bool = False,
    on_epoch: OnEpoch | None = None,
    *,
    stop: threading.Event | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
    memory_snapshot: str | None = None,
) -> TrialRecord:
    """Train ``config`` in this process and return its record; trial failures become statuses.

    ``memory_snapshot`` (CUDA): a folder for a ``torch.cuda.memory`` snapshot of the first
    metered step after the warm-up step, to open in PyTorch's memory visualiser.

    ``on_epoch(event)`` gets ``{"epoch", "loss", "valid", "test", "time_s"}`` after each epoch;
    a truthy return stops the trial (status ``pruned``). ``stop`` (set from another thread)
    does the same after the current step. ``on_start``/``on_phase`` serve the child protocol.
    """
    from bench.measure.provenance import device_description

    started = time.perf_counter()
    config = config.validated()
    state = TrialState(snapshot_dir=memory_snapshot)
    record = new_record(config)
    caller = _Caller(progress, on_epoch, stop, on_start, on_phase)
    caller.enter(state, "setup")
    import torch

    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        record.device_name = device_description(config.device)
        _train(config, state, record, caller, started)
        record.status = "ok"
    except Stop as stopped:
        record.status = stopped.status
        record.error = stopped.message
    except ConfigError as exc:  # a setting only checkable against the data (e.g. parts > nodes)
        record.status = "error"
        record.error = f"{CONFIG_ERROR_PREFIX}{exc.for_cli()}"
    except MemoryError as exc:  # MemoryCapExceeded, CPU allocation failure
        record.status = "oom"
        record.error = oom_message(exc, config)
    except Exception as exc:  # noqa: BLE001 - every failure must become a record
        if is_out_of_memory(exc):
            record.status = "oom"
            record.error = oom_message(exc, config)
        else:
            record.status = "error"
            record.error = error_message(exc)
            record.failure_kind = failure_kind_of(record.status, exc)  # data, device: retried
    finally:
        finish(record, state, started)
        # the caller's process-wide setting is theirs: restore it (in-process callers, tests)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    if record.status != "ok":
        record.failed_phase = state.phase
        record.failure_kind = record.kind_of_failure()
    return record


def _train(
    config: TrialConfig, state: TrialState, record: TrialRecord, caller: _Caller, started: float
) -> None:
    """Setup, then the epochs; fills ``state``/``record`` as it goes so a failure keeps them."""
    setup = _set_up(config, state, record)
    if caller.on_start is not None:
        caller.on_start(state.start)
    budget = _Budget(caller.stop, config.timeout, started)
    patience = _Patience(config.patience, config.min_delta)
    display = EpochDisplay(caller.progress, config.epochs)
    with contextlib.closing(display), state.compile_clock or contextlib.nullcontext():
        for epoch in range(1, config.epochs + 1):
            epoch_watch = Stopwatch(state)
            caller.enter(state, "train")
            _inject_fault()
            batches = _epoch_batches(setup, config, epoch)
            losses, metered = _train_epoch(setup, config, state, epoch, batches, budget)
            epoch_watch.keep(state.epoch_times, epoch, setup.device, metered)
            budget.check()
            valid, test = _evaluate_if_due(setup, config, state, caller, epoch)
            event = epoch_event(epoch, losses, valid, test, epoch_watch.seconds())
            state.curve.append(event)
            display.show_epoch(event)
            if caller.on_epoch is not None and caller.on_epoch(dict(event)):
                raise Stop("pruned", f"stopped by the caller after epoch {epoch}")
            if valid is not None and patience.exhausted(valid):
                state.stop_reason = "patience"
                break


# --- setup ------------------------------------------------------------------------------------
def _set_up(config: TrialConfig, state: TrialState, record: TrialRecord) -> Setup:
    """Seed, device, data, model, optimiser; the record gets what is known before a step, and
    ``state.start`` the facts a parent keeps should the trial die later."""
    import torch

    from bench.data import load
    from bench.data.partition import derived_seed, trial_batches
    from bench.measure.meters import device_memory_bytes, meter_name, optimizer_implementation
    from bench.measure.precision import MixedPrecision

    _seed_everything(config.seed, config.device, config.deterministic_algorithms)
    device = torch.device(config.device)
    record.memory_meter = meter_name(device)
    record.deterministic = config.deterministic_algorithms
    record.device_memory_bytes = device_memory_bytes(device)
    dataset = load(config.dataset, root=config.data_root, **config.dataset_options)
    record.metric = dataset.metric
    record.dataset_split = dataset.info.get("split_rule")
    _predict_memory(config, dataset, record)
    model = _build_model(config, dataset, device, state, record)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    record.optimizer_impl = optimizer_implementation(optimizer)
    amp = MixedPrecision.for_config(config.precision, device)
    loss_fn = task_loss(dataset.task, bool(dataset.info.get("unlabelled_targets")))
    train_mask = torch.zeros(dataset.data.num_nodes, dtype=torch.bool)
    train_mask[dataset.split["train"]] = True
    eval_batches = trial_batches(
        dataset.data, config.eval_parts, derived_seed(config.seed, 0), config.batching, "eval_parts"
    )
    state.start = {field: getattr(record, field) for field in START_FIELDS}
    # the CPU meter (and a CUDA memory cap) watch ops through a TorchDispatchMode, under which
    # compiled code cannot run: metered steps run the blocks eagerly (their memory is eager's)
    eager_metered = config.compile and (device.type == "cpu" or config.memory_cap_bytes is not None)
    return Setup(
        device, dataset, model, optimizer, amp, loss_fn, train_mask, eval_batches, eager_metered
    )


def _seed_everything(seed: int, device: str, deterministic: bool) -> None:
    """Same seed, same config, same device -> the same numbers, bit for bit (CPU; on CUDA only
    with ``deterministic``, which selects slower scatter kernels, so timings are not taken
    with it unless asked)."""
    import random

    import numpy as np
    import torch

    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # warn_only: a CUDA op without a deterministic kernel (scatter-max) warns instead of failing
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def _predict_memory(config: TrialConfig, dataset: Any, record: TrialRecord) -> None:
    """The analytic memory model's parameters and peak, recorded beside what is measured."""
    from bench.measure import memory_model

    sizes = memory_model.sizes_for(config, dataset)
    prediction = memory_model.predict(config, sizes)
    record.predicted_params = prediction.params
    record.predicted_peak_bytes = prediction.total_bytes


def _build_model(
    config: TrialConfig, dataset: Any, device: Any, state: TrialState, record: TrialRecord
) -> Any:
    """The configured model on the device, its parameters counted; with ``compile``, its
    blocks compiled and a clock for the seconds compiling takes."""
    from bench.measure.meters import count_parameters
    from bench.models import build_model
    from bench.models.compiled import CompileClock, compile_blocks

    model = build_model(
        config.model, dataset.num_features, dataset.edge_dim, dataset.num_outputs
    ).to(device)
    record.params = count_parameters(model)
    if config.compile:
        compile_blocks(model)
        state.compile_clock = CompileClock()
    return model


# --- an epoch ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Budget:
    """When a trial must end early: the caller's ``stop`` event, or ``timeout`` seconds after
    ``started``. Checked before every step and after every epoch's steps."""

    stop: threading.Event | None
    timeout: float | None
    started: float

    def check(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Stop("pruned", "stopped by the caller")
        if self.timeout is not None and time.perf_counter() - self.started > self.timeout:
            raise Stop("timeout", f"time budget of {self.timeout:g} s used up")


def _inject_fault() -> None:
    """The test hook ``FAULT_ENV`` (:mod:`bench.trial.protocol`), as training starts: die by
    SIGKILL (what the kernel's OOM killer does) or hang without checking the budget."""
    fault = os.environ.get(FAULT_ENV)
    if fault == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "hang":
        time.sleep(3600)


def _epoch_batches(setup: Setup, config: TrialConfig, epoch: int) -> list[Any]:
    """The epoch's training batches: a fresh random partition (or the whole graph)."""
    from bench.data.partition import derived_seed, trial_batches

    seed = derived_seed(config.seed, 1, epoch)
    return trial_batches(setup.dataset.data, config.train_parts, seed, config.batching)


def _train_epoch(
    setup: Setup,
    config: TrialConfig,
    state: TrialState,
    epoch: int,
    batches: list[Any],
    budget: _Budget,
) -> tuple[list[float], bool]:
    """One step per batch with training nodes: the losses, and whether any step was metered."""
    setup.model.train()
    losses: list[float] = []
    any_metered = False
    for batch in batches:
        budget.check()
        mask = setup.train_mask[batch.n_id]
        if not bool(mask.any()):
            continue  # a tiny graph's cluster may hold no training node
        metered = meters(setup.device, epoch, state)
        any_metered |= metered
        losses.append(step(setup, config, state, epoch, batch, mask, metered))
    return losses, any_metered


def _evaluate_if_due(
    setup: Setup, config: TrialConfig, state: TrialState, caller: _Caller, epoch: int
) -> tuple[float | None, float | None]:
    """Valid and test scores every ``eval_every`` epochs and after the last; else None."""
    from bench.models.compiled import eager_if

    if epoch % config.eval_every != 0 and epoch != config.epochs:
        return None, None
    caller.enter(state, "eval")
    with eager_if(config.compile and config.memory_cap_bytes is not None):
        return evaluate(
            setup.model, setup.dataset, setup.eval_batches, setup.device, config.memory_cap_bytes
        )


class _Patience:
    """Early stopping: counts evaluations since validation last rose by more than
    ``min_delta``; ``patience=None`` never stops (the paper's fixed-epoch recipe)."""

    def __init__(self, patience: int | None, min_delta: float | None) -> None:
        self.patience = patience
        self.min_delta = min_delta or 0.0
        self.best = -math.inf
        self.stale = 0

    def exhausted(self, valid: float) -> bool:
        """Record one evaluation; True when ``patience`` evaluations in a row brought no gain."""
        if valid > self.best + self.min_delta:
            self.best, self.stale = valid, 0
        else:
            self.stale += 1
        return self.patience is not None and self.stale >= self.patience
