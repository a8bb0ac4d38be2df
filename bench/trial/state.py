"""What the training loop and its step share: the trial's state so far, what setup builds once,
and the exception that ends training early with a status. A module of its own so that
:mod:`bench.trial.training` and :mod:`bench.trial.step` both import it and not each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


class Stop(Exception):
    """Ends training early with a non-error status (timeout, pruned, diverged)."""

    def __init__(self, status: str, message: str | None = None) -> None:
        super().__init__(message or status)
        self.status = status
        self.message = message


@dataclasses.dataclass
class TrialState:
    """What a trial has produced so far: survives any exception, becomes the record."""

    phase: str = "setup"
    curve: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    memory: list[Any] = dataclasses.field(default_factory=list)  # StepMemory after warm-up
    snapshot_dir: str | None = None  # --memory-snapshot: where the CUDA snapshot goes
    warmup_memory: Any = None  # the first step's StepMemory (Adam's moments not yet there)
    steps_done: int = 0
    model_state_bytes: int | None = None
    step_times: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (epoch, s)
    epoch_times: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # unmetered
    solver: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    start: dict[str, Any] = dataclasses.field(default_factory=dict)
    stop_reason: str | None = None  # "patience" when early stopping ended training
    compile_clock: Any = None  # compile=True: a bench.models.compiled.CompileClock


@dataclasses.dataclass(frozen=True)
class Setup:
    """What setup builds once for all epochs."""

    device: Any
    dataset: Any  # bench.data.GraphDataset
    model: Any
    optimizer: Any
    amp: Any  # bench.measure.precision.MixedPrecision: autocast, fp16 scaler
    loss_fn: Callable[[Any, Any], Any]
    train_mask: Any  # bool [N]: the training nodes
    eval_batches: list[Any]  # drawn once: every evaluation scores the same clusters
    eager_metered: bool  # metered steps run compiled blocks eagerly (see training._set_up)
