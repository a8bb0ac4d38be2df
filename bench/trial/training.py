"""Training one configuration in this process: data, model, optimiser; the epochs with
metered steps; evaluation; everything measured so far becomes the record, whatever happens.

Training follows the paper's recipe: Adam, BCE-with-logits (multilabel) or cross-entropy
(multiclass), gradient-norm clipping, a random node partition redrawn every epoch (every
cluster visited once per epoch, loss on the training nodes of each cluster), evaluation on
``eval_parts`` clusters drawn once (or the whole graph with ``batching="full"``), and the test
score taken at the best validation score. What is metered and timed, and why: docs/memory.md
and docs/trial.md ("Times").

:func:`_train` reads top to bottom: setup once, then per epoch the batches, the steps (each
metered or timed, :func:`_meters`), the epoch's time, evaluation when due, the epoch event
for the caller and the display, and early stopping. Each is a call with a name; what they
produce accumulates in a :class:`_TrialState`, which becomes the record even when a phase
raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.record import TrialRecord, failure_kind_of
from bench.trial.protocol import CONFIG_ERROR_PREFIX, FAULT_ENV, START_FIELDS

TRACEBACK_LINES = 12

OnEpoch = Callable[[dict[str, Any]], Any]


class _Stop(Exception):
    """Ends training early with a non-error status (timeout, pruned, diverged)."""

    def __init__(self, status: str, message: str | None = None) -> None:
        super().__init__(message or status)
        self.status = status
        self.message = message


@dataclasses.dataclass
class _TrialState:
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
class _Caller:
    """What the caller of :func:`run_trial` asked to see and hear, and how it may stop it."""

    progress: bool = False  # a bar (terminal) or a log line per epoch on stderr
    on_epoch: OnEpoch | None = None
    stop: threading.Event | None = None
    on_start: Callable[[dict[str, Any]], None] | None = None
    on_phase: Callable[[str], None] | None = None

    def enter(self, state: _TrialState, phase: str) -> None:
        """The trial enters ``phase`` (setup, train, eval): a failure from now on is its."""
        state.phase = phase
        if self.on_phase is not None:
            self.on_phase(phase)


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What setup builds once for all epochs."""

    device: Any
    dataset: Any  # bench.data.GraphDataset
    model: Any
    optimizer: Any
    amp: Any  # bench.measure.precision.MixedPrecision: autocast, fp16 scaler
    loss_fn: Callable[[Any, Any], Any]
    train_mask: Any  # bool [N]: the training nodes
    eval_batches: list[Any]  # drawn once: every evaluation scores the same clusters
    eager_metered: bool  # metered steps run compiled blocks eagerly (see _set_up)


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


def _loss_fn(task: str, unlabelled: bool = False) -> Callable[[Any, Any], Any]:
    """The task's loss; ``unlabelled``: multilabel targets hold NaN (a graph file's unlabelled
    node-task pairs), left out of the mean without a host sync (no boolean indexing)."""
    import torch
    import torch.nn.functional as F

    if task == "multilabel" and unlabelled:

        def labelled_bce(out: Any, y: Any) -> Any:
            known = ~torch.isnan(y)
            target = torch.where(known, y, 0).to(out.dtype)
            loss = F.binary_cross_entropy_with_logits(out, target, reduction="none")
            return (loss * known).sum() / known.sum().clamp_min(1)

        return labelled_bce
    if task == "multilabel":
        return lambda out, y: F.binary_cross_entropy_with_logits(out, y.to(out.dtype))
    if task == "multiclass":
        return lambda out, y: F.cross_entropy(out, y.reshape(-1).long())
    raise ValueError(f"unknown task {task!r}")


def new_record(config: TrialConfig, **fields: Any) -> TrialRecord:
    """A trial's record as it starts (status ``error`` until it ends otherwise): the
    configuration, its hops, the library versions and the commit, plus ``fields``. A trial
    trained here and the record a parent writes for a child that printed none both start so."""
    from bench.measure.provenance import git_commit, library_versions
    from bench.trial.hops import record_hops

    return TrialRecord(
        status="error",
        config=config.to_dict(),
        versions=library_versions(),
        commit=git_commit(),
        **record_hops(config),
        **fields,
    )


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
    state = _TrialState(snapshot_dir=memory_snapshot)
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
    except _Stop as stopped:
        record.status = stopped.status
        record.error = stopped.message
    except ConfigError as exc:  # a setting only checkable against the data (e.g. parts > nodes)
        record.status = "error"
        record.error = f"{CONFIG_ERROR_PREFIX}{exc.for_cli()}"
    except MemoryError as exc:  # MemoryCapExceeded, CPU allocation failure
        record.status = "oom"
        record.error = _oom_message(exc, config)
    except Exception as exc:  # noqa: BLE001 - every failure must become a record
        if _is_out_of_memory(exc):
            record.status = "oom"
            record.error = _oom_message(exc, config)
        else:
            record.status = "error"
            record.error = error_message(exc)
            record.failure_kind = failure_kind_of(record.status, exc)  # data, device: retried
    finally:
        _finish(record, state, started)
        # the caller's process-wide setting is theirs: restore it (in-process callers, tests)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    if record.status != "ok":
        record.failed_phase = state.phase
        record.failure_kind = record.kind_of_failure()
    return record


def _is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failure that surfaced as another exception: CUDA's, or the CPU
    allocator's (a ``RuntimeError``)."""
    import torch

    text = str(exc).lower()
    return (
        isinstance(exc, torch.OutOfMemoryError)
        or "out of memory" in text
        or "can't allocate memory" in text  # CPU allocator failure surfaced as RuntimeError
    )


def _oom_message(exc: BaseException, config: TrialConfig) -> str:
    return f"out of memory at {config.layers} layers: {type(exc).__name__}: {exc}"


def error_message(exc: BaseException) -> str:
    tail = traceback.format_exception(type(exc), exc, exc.__traceback__)
    lines = "".join(tail).rstrip().splitlines()[-TRACEBACK_LINES:]
    return f"{type(exc).__name__}: {exc}\n" + "\n".join(lines)


def _train(
    config: TrialConfig, state: _TrialState, record: TrialRecord, caller: _Caller, started: float
) -> None:
    """Setup, then the epochs; fills ``state``/``record`` as it goes so a failure keeps them."""
    setup = _set_up(config, state, record)
    if caller.on_start is not None:
        caller.on_start(state.start)
    budget = _Budget(caller.stop, config.timeout, started)
    patience = _Patience(config.patience, config.min_delta)
    display = _EpochDisplay(caller.progress, config.epochs)
    with contextlib.closing(display), state.compile_clock or contextlib.nullcontext():
        for epoch in range(1, config.epochs + 1):
            epoch_watch = _Stopwatch(state)
            caller.enter(state, "train")
            _inject_fault()
            batches = _epoch_batches(setup, config, epoch)
            losses, metered = _train_epoch(setup, config, state, epoch, batches, budget)
            epoch_watch.keep(state.epoch_times, epoch, setup.device, metered)
            budget.check()
            valid, test = _evaluate_if_due(setup, config, state, caller, epoch)
            event = _epoch_event(epoch, losses, valid, test, epoch_watch)
            state.curve.append(event)
            display.show_epoch(event)
            if caller.on_epoch is not None and caller.on_epoch(dict(event)):
                raise _Stop("pruned", f"stopped by the caller after epoch {epoch}")
            if valid is not None and patience.exhausted(valid):
                state.stop_reason = "patience"
                break


# --- setup ------------------------------------------------------------------------------------
def _set_up(config: TrialConfig, state: _TrialState, record: TrialRecord) -> _Setup:
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
    loss_fn = _loss_fn(dataset.task, bool(dataset.info.get("unlabelled_targets")))
    train_mask = torch.zeros(dataset.data.num_nodes, dtype=torch.bool)
    train_mask[dataset.split["train"]] = True
    eval_batches = trial_batches(
        dataset.data, config.eval_parts, derived_seed(config.seed, 0), config.batching, "eval_parts"
    )
    state.start = {field: getattr(record, field) for field in START_FIELDS}
    # the CPU meter (and a CUDA memory cap) watch ops through a TorchDispatchMode, under which
    # compiled code cannot run: metered steps run the blocks eagerly (their memory is eager's)
    eager_metered = config.compile and (device.type == "cpu" or config.memory_cap_bytes is not None)
    return _Setup(
        device, dataset, model, optimizer, amp, loss_fn, train_mask, eval_batches, eager_metered
    )


def _predict_memory(config: TrialConfig, dataset: Any, record: TrialRecord) -> None:
    """The analytic memory model's parameters and peak, recorded beside what is measured."""
    from bench.measure import memory_model

    sizes = memory_model.sizes_for(config, dataset)
    prediction = memory_model.predict(config, sizes)
    record.predicted_params = prediction.params
    record.predicted_peak_bytes = prediction.total_bytes


def _build_model(
    config: TrialConfig, dataset: Any, device: Any, state: _TrialState, record: TrialRecord
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
            raise _Stop("pruned", "stopped by the caller")
        if self.timeout is not None and time.perf_counter() - self.started > self.timeout:
            raise _Stop("timeout", f"time budget of {self.timeout:g} s used up")


def _inject_fault() -> None:
    """The test hook ``FAULT_ENV`` (:mod:`bench.trial.protocol`), as training starts: die by
    SIGKILL (what the kernel's OOM killer does) or hang without checking the budget."""
    fault = os.environ.get(FAULT_ENV)
    if fault == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "hang":
        time.sleep(3600)


def _epoch_batches(setup: _Setup, config: TrialConfig, epoch: int) -> list[Any]:
    """The epoch's training batches: a fresh random partition (or the whole graph)."""
    from bench.data.partition import derived_seed, trial_batches

    seed = derived_seed(config.seed, 1, epoch)
    return trial_batches(setup.dataset.data, config.train_parts, seed, config.batching)


def _train_epoch(
    setup: _Setup,
    config: TrialConfig,
    state: _TrialState,
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
        metered = _meters(setup.device, epoch, state)
        any_metered |= metered
        losses.append(_step(setup, config, state, epoch, batch, mask, metered))
    return losses, any_metered


def _meters(device: Any, epoch: int, state: _TrialState) -> bool:
    """Whether the next step runs under the memory meter. CUDA: every step (the allocator's
    counters are free). CPU: the first epoch (the cap is enforced there), and on until one
    step after the warm-up step has been metered (a full-batch epoch is a single step, taken
    before Adam's moments exist)."""
    return device.type == "cuda" or epoch == 1 or not state.memory


class _Stopwatch:
    """Wall seconds of a step or an epoch, kept only when they time training alone: not the CPU
    meter's per-op overhead, not a compilation (its seconds go to ``compile_time_s``)."""

    def __init__(self, state: _TrialState) -> None:
        self.state = state
        self.started = time.perf_counter()
        self.compiled_s = _compiled_s(state)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def keep(self, times: list[tuple[int, float]], epoch: int, device: Any, metered: bool) -> None:
        """Append ``(epoch, seconds)`` to ``times`` unless metered on CPU or compiled meanwhile."""
        compiled = _compiled_s(self.state) != self.compiled_s
        if (not metered or device.type == "cuda") and not compiled:
            times.append((epoch, self.seconds()))


def _step(
    setup: _Setup,
    config: TrialConfig,
    state: _TrialState,
    epoch: int,
    batch: Any,
    mask: Any,
    metered: bool,
) -> float:
    """One training step on the batch's training nodes (``mask``); its loss."""
    import torch

    from bench.measure.meters import model_state_bytes

    watch = _Stopwatch(state)
    inputs = _on_device(batch, mask, setup.device)
    setup.optimizer.zero_grad(set_to_none=True)  # before the meter: not in the baseline
    model, amp = setup.model, setup.amp
    forward_backward = functools.partial(
        _forward_backward, model, setup.loss_fn, amp, state, epoch, *inputs
    )
    update = functools.partial(_update, model, setup.optimizer, amp, config.grad_clip)
    snapshot = state.steps_done == 1 and setup.device.type == "cuda"
    with _memory_history(state.snapshot_dir if snapshot else None):
        if metered:
            loss_value = _metered_step(setup, config, state, forward_backward, update)
        else:
            loss_value = forward_backward()
            update()
    del inputs, forward_backward
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
    watch.keep(state.step_times, epoch, setup.device, metered)
    state.steps_done += 1
    if state.model_state_bytes is None:
        state.model_state_bytes = model_state_bytes(model, setup.optimizer)
    return loss_value


def _metered_step(
    setup: _Setup,
    config: TrialConfig,
    state: _TrialState,
    forward_backward: Callable[[], float],
    update: Callable[[], None],
) -> float:
    """The step under the memory meter (and the cap); the first one is the warm-up step, kept
    apart from those after it."""
    from bench.measure.meters import metered_step
    from bench.models.compiled import eager_if

    with eager_if(setup.eager_metered):
        loss_value, memory = metered_step(
            setup.device, forward_backward, update, config.memory_cap_bytes
        )
    if state.steps_done:
        state.memory.append(memory)
    else:
        state.warmup_memory = memory
    return loss_value


def _evaluate_if_due(
    setup: _Setup, config: TrialConfig, state: _TrialState, caller: _Caller, epoch: int
) -> tuple[float | None, float | None]:
    """Valid and test scores every ``eval_every`` epochs and after the last; else None."""
    from bench.models.compiled import eager_if

    if epoch % config.eval_every != 0 and epoch != config.epochs:
        return None, None
    caller.enter(state, "eval")
    with eager_if(config.compile and config.memory_cap_bytes is not None):
        return _evaluate(
            setup.model, setup.dataset, setup.eval_batches, setup.device, config.memory_cap_bytes
        )


def _epoch_event(
    epoch: int, losses: list[float], valid: float | None, test: float | None, watch: _Stopwatch
) -> dict[str, Any]:
    """The curve's point for the epoch; ``time_s`` is the whole epoch, evaluation included."""
    return {
        "epoch": epoch,
        "loss": _mean(losses),
        "valid": valid,
        "test": test,
        "time_s": watch.seconds(),
    }


class _EpochDisplay:
    """What a person sees of the epochs when ``show``: a tqdm bar on a terminal, else a log
    line per epoch on stderr."""

    def __init__(self, show: bool, epochs: int) -> None:
        self.show = show
        self.bar = _progress_bar(epochs) if show else None

    def show_epoch(self, event: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(epoch_line(event))
        elif self.show:
            log_epoch(event)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _compiled_s(state: _TrialState) -> float:
    """Seconds compiled so far (0 without compile=True): a step or epoch that compiled is not
    timed, its compile time goes to ``compile_time_s``."""
    return state.compile_clock.seconds if state.compile_clock is not None else 0.0


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


@contextlib.contextmanager
def _memory_history(folder: str | None) -> Iterator[None]:
    """Record CUDA allocator events for the block and dump a snapshot into ``folder`` (for
    https://pytorch.org/memory_viz); a no-op without a folder."""
    if folder is None:
        yield
        return
    import pathlib

    import torch

    torch.cuda.memory._record_memory_history(max_entries=1_000_000)
    try:
        yield
    finally:
        path = pathlib.Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        torch.cuda.memory._dump_snapshot(str(path / "step.pickle"))
        torch.cuda.memory._record_memory_history(enabled=None)
        print(f"memory snapshot of a metered step -> {path / 'step.pickle'} "
              "(open it at https://pytorch.org/memory_viz)", file=sys.stderr)  # fmt: skip


def _on_device(batch: Any, mask: Any, device: Any) -> tuple[Any, ...]:
    """A batch's tensors on the device, moved before a metered step so they are baseline."""
    edge_attr = batch.edge_attr.to(device) if batch.edge_attr is not None else None
    return (
        batch.x.to(device),
        batch.edge_index.to(device),
        edge_attr,
        batch.y.to(device),
        mask.to(device),
    )


def _forward_backward(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    amp: Any,
    state: _TrialState,
    epoch: int,
    x: Any,
    edge_index: Any,
    edge_attr: Any,
    y: Any,
    mask: Any,
) -> float:
    """Forward and loss (under ``amp``'s autocast) on the batch's training nodes, backward
    (scaled for fp16); the loss value."""
    with amp.autocast():
        out = model(x, edge_index, edge_attr)
        _collect_solver(model, state, "fwd")
        loss = loss_fn(out[mask], y[mask])
    value = float(loss.detach())
    if not math.isfinite(value):
        raise _Stop("diverged", f"non-finite training loss ({value}) in epoch {epoch}")
    amp.backward(loss)
    _collect_solver(model, state, "bwd")
    return value


def _update(model: Any, optimizer: Any, amp: Any, grad_clip: float) -> None:
    """Gradient-norm clipping (of unscaled gradients), then the optimiser step (metered as
    their own phase)."""
    import torch

    amp.unscale(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    amp.step(optimizer)


def _progress_bar(total: int) -> Any:
    """A tqdm bar on a terminal; None (plain log lines instead) when stderr is a file/pipe."""
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", file=sys.stderr, dynamic_ncols=True)


def _collect_solver(model: Any, state: _TrialState, direction: str) -> None:
    stats = getattr(model, "solver_stats", None)
    if not stats:
        return
    for key in ("iters", "rel_residual"):
        value = stats.get(f"{direction}_{key}")
        if value is not None:
            state.solver.setdefault(f"{direction}_{key}", []).append(float(value))


def _evaluate(
    model: Any, dataset: Any, batches: list[Any], device: Any, cap: int | None
) -> tuple[float, float]:
    """Valid and test scores from one pass over the evaluation clusters (no gradients)."""
    import torch

    from bench.measure.meters import PeakMemory

    model.eval()
    data = dataset.data
    scores: torch.Tensor | None = None
    meter = PeakMemory(device, cap_bytes=cap) if cap is not None else contextlib.nullcontext()
    with torch.no_grad(), meter:
        for batch in batches:
            edge_attr = batch.edge_attr.to(device) if batch.edge_attr is not None else None
            out = model(batch.x.to(device), batch.edge_index.to(device), edge_attr).float().cpu()
            if scores is None:
                scores = torch.zeros(data.num_nodes, out.size(-1))
            scores[batch.n_id] = out
    assert scores is not None
    if not bool(torch.isfinite(scores).all()):
        raise _Stop("diverged", "non-finite model outputs at evaluation")
    y = data.y
    result = []
    for split in ("valid", "test"):
        idx = dataset.split[split]
        result.append(float(dataset.evaluate(y[idx], scores[idx])))
    return result[0], result[1]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _finish(record: TrialRecord, state: _TrialState, started: float) -> None:
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


def _memory_into(record: TrialRecord, state: _TrialState) -> None:
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


def log_epoch(event: dict[str, Any]) -> None:
    print(epoch_line(event), file=sys.stderr, flush=True)


def epoch_line(event: dict[str, Any]) -> str:
    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}"

    return (
        f"epoch {event['epoch']}: loss {num(event['loss'])} valid {num(event['valid'])} "
        f"test {num(event['test'])} ({event['time_s']:.1f} s)"
    )
