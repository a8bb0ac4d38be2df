"""Training one configuration in this process: data, model, optimiser; the epochs with
metered steps; evaluation; everything measured so far becomes the record, whatever happens.

Training follows the paper's recipe: Adam, BCE-with-logits (multilabel) or cross-entropy
(multiclass), gradient-norm clipping, a random node partition redrawn every epoch (every
cluster visited once per epoch, loss on the training nodes of each cluster), evaluation on
``eval_parts`` clusters drawn once (or the whole graph with ``batching="full"``), and the test
score taken at the best validation score. Measurement choices: see :mod:`bench.trial`.
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
from bench.trial.protocol import CONFIG_ERROR_PREFIX, FAULT_ENV

TRACEBACK_LINES = 12

OnEpoch = Callable[[dict[str, Any]], Any]


class _Stop(Exception):
    """Ends training early with a non-error status (timeout, pruned, diverged)."""

    def __init__(self, status: str, message: str | None = None) -> None:
        super().__init__(message or status)
        self.status = status
        self.message = message


@dataclasses.dataclass
class _Progress:
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
    from bench.measure.provenance import device_description, git_commit, library_versions
    from bench.trial.hops import record_hops

    clock = time.perf_counter()
    config = config.validated()
    state = _Progress()
    record = TrialRecord(
        status="error",
        config=config.to_dict(),
        versions=library_versions(),
        commit=git_commit(),
        **record_hops(config),
    )

    def enter(phase: str) -> None:
        state.phase = phase
        if on_phase is not None:
            on_phase(phase)

    enter("setup")
    import torch

    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        record.device_name = device_description(config.device)
        state.snapshot_dir = memory_snapshot
        _train(config, state, record, clock, progress, on_epoch, stop, on_start, enter)
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
        if _is_cuda_oom(exc):
            record.status = "oom"
            record.error = _oom_message(exc, config)
        else:
            record.status = "error"
            record.error = error_message(exc)
            record.failure_kind = failure_kind_of(record.status, exc)  # data, device: retried
    finally:
        _finish(record, state, clock)
        # the caller's process-wide setting is theirs: restore it (in-process callers, tests)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    if record.status != "ok":
        record.failed_phase = state.phase
        record.failure_kind = record.kind_of_failure()
    return record


def _is_cuda_oom(exc: BaseException) -> bool:
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
    config: TrialConfig,
    state: _Progress,
    record: TrialRecord,
    clock: float,
    progress: bool,
    on_epoch: OnEpoch | None,
    stop: threading.Event | None,
    on_start: Callable[[dict[str, Any]], None] | None,
    enter: Callable[[str], None],
) -> None:
    """Setup, then the epochs; fills ``state``/``record`` as it goes so a failure keeps them."""
    import torch

    from bench.data import load
    from bench.data.partition import derived_seed, trial_batches
    from bench.measure import memory_model
    from bench.measure.meters import (
        count_parameters,
        device_memory_bytes,
        meter_name,
        metered_step,
        model_state_bytes,
        optimizer_implementation,
    )
    from bench.measure.precision import MixedPrecision
    from bench.models import build_model
    from bench.models.compiled import CompileClock, compile_blocks, eager_if

    _seed_everything(config.seed, config.device, config.deterministic_algorithms)
    device = torch.device(config.device)
    record.memory_meter = meter_name(device)
    record.deterministic = config.deterministic_algorithms
    record.device_memory_bytes = device_memory_bytes(device)

    def check_budget() -> None:
        if stop is not None and stop.is_set():
            raise _Stop("pruned", "stopped by the caller")
        if config.timeout is not None and time.perf_counter() - clock > config.timeout:
            raise _Stop("timeout", f"time budget of {config.timeout:g} s used up")

    dataset = load(config.dataset, root=config.data_root, **config.dataset_options)
    data = dataset.data
    record.metric = dataset.metric
    record.dataset_split = dataset.info.get("split_rule")
    sizes = memory_model.sizes_for(config, dataset)
    prediction = memory_model.predict(config, sizes)
    record.predicted_params = prediction.params
    record.predicted_peak_bytes = prediction.total_bytes
    model = build_model(
        config.model, dataset.num_features, dataset.edge_dim, dataset.num_outputs
    ).to(device)
    record.params = count_parameters(model)
    if config.compile:
        compile_blocks(model)
        state.compile_clock = CompileClock()
    clock_ = state.compile_clock or contextlib.nullcontext()
    # the CPU meter (and a CUDA memory cap) watch ops through a TorchDispatchMode, under which
    # compiled code cannot run: metered steps run the blocks eagerly (their memory is eager's)
    eager_metered = config.compile and (device.type == "cpu" or config.memory_cap_bytes is not None)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    record.optimizer_impl = optimizer_implementation(optimizer)
    amp = MixedPrecision.for_config(config.precision, device)  # autocast, fp16 scaler
    loss_fn = _loss_fn(dataset.task, bool(dataset.info.get("unlabelled_targets")))
    train_mask = torch.zeros(data.num_nodes, dtype=torch.bool)
    train_mask[dataset.split["train"]] = True
    eval_batches = trial_batches(
        data, config.eval_parts, derived_seed(config.seed, 0), config.batching, "eval_parts"
    )
    state.start = {
        "params": record.params,
        "predicted_params": record.predicted_params,
        "predicted_peak_bytes": record.predicted_peak_bytes,
        "device_name": record.device_name,
        "memory_meter": record.memory_meter,
        "metric": record.metric,
    }
    if on_start is not None:
        on_start(state.start)
    fault = os.environ.get(FAULT_ENV)

    bar = _progress_bar(config.epochs) if progress else None
    patience = _Patience(config.patience, config.min_delta)
    try:
        clock_.__enter__()
        for epoch in range(1, config.epochs + 1):
            epoch_start, epoch_compiled = time.perf_counter(), _compiled_s(state)
            enter("train")
            if fault == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault == "hang":
                time.sleep(3600)
            model.train()
            losses: list[float] = []
            epoch_metered = False
            batches = trial_batches(
                data, config.train_parts, derived_seed(config.seed, 1, epoch), config.batching
            )
            for batch in batches:
                check_budget()
                mask = train_mask[batch.n_id]
                if not bool(mask.any()):
                    continue  # a tiny graph's cluster may hold no training node
                # CUDA: every step (the allocator's counters are free). CPU: the first epoch
                # (the cap is enforced there), and on until one step after the warm-up step
                # has been metered (a full-batch epoch is a single step, taken before Adam's
                # moments exist)
                metered = device.type == "cuda" or epoch == 1 or not state.memory
                epoch_metered |= metered
                step_start, step_compiled = time.perf_counter(), _compiled_s(state)
                inputs = _on_device(batch, mask, device)
                optimizer.zero_grad(set_to_none=True)  # before the meter: not in the baseline
                forward_backward = functools.partial(
                    _forward_backward, model, loss_fn, amp, state, epoch, *inputs
                )
                update = functools.partial(_update, model, optimizer, amp, config.grad_clip)
                snapshot = state.steps_done == 1 and device.type == "cuda"
                with _memory_history(state.snapshot_dir if snapshot else None):
                    if metered:
                        with eager_if(eager_metered):
                            loss_value, memory = metered_step(
                                device, forward_backward, update, config.memory_cap_bytes
                            )
                        if state.steps_done:
                            state.memory.append(memory)
                        else:
                            state.warmup_memory = memory
                    else:
                        loss_value = forward_backward()
                        update()
                del inputs, forward_backward
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                # the CPU meter's overhead is not timed, nor is a step that compiled something
                timed = (not metered or device.type == "cuda") and (
                    _compiled_s(state) == step_compiled
                )
                if timed:
                    state.step_times.append((epoch, time.perf_counter() - step_start))
                state.steps_done += 1
                if state.model_state_bytes is None:
                    state.model_state_bytes = model_state_bytes(model, optimizer)
                losses.append(loss_value)
            compiled = _compiled_s(state) != epoch_compiled
            if (not epoch_metered or device.type == "cuda") and not compiled:
                state.epoch_times.append((epoch, time.perf_counter() - epoch_start))
            check_budget()
            valid = test = None
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                enter("eval")
                with eager_if(config.compile and config.memory_cap_bytes is not None):
                    valid, test = _evaluate(
                        model, dataset, eval_batches, device, config.memory_cap_bytes
                    )
            event = {
                "epoch": epoch,
                "loss": sum(losses) / len(losses) if losses else None,
                "valid": valid,
                "test": test,
                "time_s": time.perf_counter() - epoch_start,
            }
            state.curve.append(event)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(epoch_line(event))
            elif progress:
                log_epoch(event)
            if on_epoch is not None and on_epoch(dict(event)):
                raise _Stop("pruned", f"stopped by the caller after epoch {epoch}")
            if valid is not None and patience.exhausted(valid):
                state.stop_reason = "patience"
                break
    finally:
        clock_.__exit__(None, None, None)
        if bar is not None:
            bar.close()


def _compiled_s(state: _Progress) -> float:
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
    state: _Progress,
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


def _collect_solver(model: Any, state: _Progress, direction: str) -> None:
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


def _finish(record: TrialRecord, state: _Progress, clock: float) -> None:
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
    record.wall_time_s = time.perf_counter() - clock


def _memory_into(record: TrialRecord, state: _Progress) -> None:
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
