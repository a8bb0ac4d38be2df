"""A trial's record from start to end: how it starts (:func:`new_record`), the curve's point
per epoch, what a failure says, and :func:`finish`, which puts everything measured so far into
it whatever the status. Shared by the in-process trial and the parent of an isolated one (which
writes the record of a child that printed none).
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from bench.config import TrialConfig
from bench.record import TrialRecord
from bench.trial.state import TrialState

TRACEBACK_LINES = 12


def new_record(config: TrialConfig, **fields: Any) -> TrialRecord:
    """A trial's record as it starts (status ``error`` until it ends otherwise): the
    configuration, its hops, the library versions and the commit, plus ``fields``. A trial
    trained here and the record a parent writes for a child that printed none both start so."""
    from bench.measure.provenance import git_commit, library_versions, source_hash
    from bench.trial.hops import record_hops

    return TrialRecord(
        status="error",
        config=config.to_dict(),
        versions=library_versions(),
        commit=git_commit(),
        source_hash=source_hash(),
        **record_hops(config),
        **fields,
    )


def epoch_event(
    epoch: int, losses: list[float], valid: float | None, test: float | None, time_s: float
) -> dict[str, Any]:
    """The curve's point for the epoch; ``time_s`` is the whole epoch, evaluation included."""
    return {
        "epoch": epoch,
        "loss": _mean(losses),
        "valid": valid,
        "test": test,
        "time_s": time_s,
    }


def error_message(exc: BaseException) -> str:
    """The exception and the last ``TRACEBACK_LINES`` of its traceback: enough to place a
    failure, short enough for a record."""
    tail = traceback.format_exception(type(exc), exc, exc.__traceback__)
    lines = "".join(tail).rstrip().splitlines()[-TRACEBACK_LINES:]
    return f"{type(exc).__name__}: {exc}\n" + "\n".join(lines)


def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failure that surfaced as another exception: CUDA's, or the CPU
    allocator's (a ``RuntimeError``)."""
    import torch

    text = str(exc).lower()
    return (
        isinstance(exc, torch.OutOfMemoryError)
        or "out of memory" in text
        or "can't allocate memory" in text  # CPU allocator failure surfaced as RuntimeError
    )


def oom_message(exc: BaseException, config: TrialConfig) -> str:
    """An out-of-memory failure names the depth: what a capacity search reads first."""
    return f"out of memory at {config.layers} layers: {type(exc).__name__}: {exc}"


def finish(record: TrialRecord, state: TrialState, started: float) -> None:
    """Everything measured so far goes into the record, whatever the status."""
    record.curve = [dict(point) for point in state.curve]
    best_of_curve(record)
    _memory_into(record, state)
    record.model_state_bytes = state.model_state_bytes
    # only unmetered steps were timed; the first epoch (or, in a one-epoch CUDA trial, the
    # first step) is the warm-up
    later = [t for epoch, t in state.step_times if epoch > 1]
    record.step_time_s = _mean(later or [t for _, t in state.step_times[1:]])
    later_epochs = [t for epoch, t in state.epoch_times if epoch > 1]
    record.epoch_time_s = _mean(later_epochs or [t for _, t in state.epoch_times])
    if state.compile_clock is not None:
        record.compile_time_s = state.compile_clock.seconds
    if state.solver:
        record.solver = {"steps": len(next(iter(state.solver.values())))}
        for key, values in sorted(state.solver.items()):
            record.solver[f"{key}_mean"] = _mean(values)
            record.solver[f"{key}_max"] = max(values)
    record.stopped_epoch = int(state.curve[-1]["epoch"]) if state.curve else None
    if state.stop_reason is not None:
        record.stop_reason = state.stop_reason
    else:
        record.stop_reason = "max-epochs" if record.status == "ok" else record.status
    record.wall_time_s = time.perf_counter() - started


def _memory_into(record: TrialRecord, state: TrialState) -> None:
    """Maxima over the steps metered after the warm-up step; a trial that took one step only
    falls back to that step (``metered_steps`` = 0 says so)."""
    steps = state.memory or ([state.warmup_memory] if state.warmup_memory is not None else [])
    record.metered_steps = len(state.memory)
    if not steps:
        return
    record.peak_memory_bytes = max(m.peak_bytes for m in steps)
    record.baseline_bytes = max(m.baseline_bytes for m in steps)
    record.fwd_bwd_peak_bytes = max(m.fwd_bwd_peak_bytes for m in steps)
    record.optimizer_peak_bytes = max(m.optimizer_peak_bytes for m in steps)
    record.step_added_bytes = max(m.step_added_bytes for m in steps)
    reserved = [m.reserved_peak_bytes for m in steps if m.reserved_peak_bytes is not None]
    record.reserved_peak_bytes = max(reserved) if reserved else None


def best_of_curve(record: TrialRecord) -> None:
    """The test score at the best validation score (the earliest epoch on ties)."""
    best = None
    for point in record.curve:
        valid = point.get("valid")
        if valid is not None and (best is None or valid > best["valid"]):
            best = point
    if best is not None:
        record.best_valid = best["valid"]
        record.test_at_best_valid = best["test"]
        record.best_epoch = best["epoch"]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
