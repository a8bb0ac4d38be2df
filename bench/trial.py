"""One trial end to end: data, model, optimiser; train, evaluate, measure; a ``TrialRecord``.

Two ways to run one:

* :func:`run_trial` trains in *this* process. ``python -m bench trial ...`` calls it: a CLI
  invocation is itself a fresh process, so it is the isolation (clean allocator statistics, a
  crash takes down nothing else). ``--isolated`` runs it through :func:`run_trial_isolated`.
* :func:`run_trial_isolated` starts ``python -m bench trial --config-json ... --json --events``
  in a fresh process, streams its per-epoch events back (``on_epoch`` may stop it), enforces
  the time budget and turns every way a child can end -- a record, a crash, the kernel's OOM
  killer -- into a record. It never raises for a trial failure.

The child protocol (stdout, one line each): ``@phase NAME`` when the trial enters setup, train
or eval; ``@start {json}`` once the model is built (params, predicted memory, device);
``@epoch {json}`` after every epoch; the record as the last line. Writing ``stop`` to the
child's stdin ends it after the current step with status ``pruned``.

Training follows the paper's recipe: Adam, BCE-with-logits (multilabel) or cross-entropy
(multiclass), gradient-norm clipping, a random node partition redrawn every epoch (every
cluster visited once per epoch, loss on the training nodes of each cluster), evaluation on
``eval_parts`` clusters drawn once (or the whole graph with ``batching="full"``), and the test
score taken at the best validation score.

Measurement choices (also in the record's docs):

* Memory (:func:`bench.measure.metered_step`): the batch is moved to the device and the
  gradients are dropped *before* a metered step, so its ``baseline_bytes`` holds the model
  state and the data; the step is split into forward+backward (``fwd_bwd_peak_bytes``;
  ``step_added_bytes`` = that minus the baseline: what the step itself adds) and clipping +
  optimiser step (``optimizer_peak_bytes``); ``peak_memory_bytes`` is the larger, the number a
  user compares with their device. Each is the maximum over the metered steps *after* the first
  one (the warm-up step runs before Adam's moments exist). On CUDA (allocator statistics, free)
  every step is metered. On CPU the live-tensor meter slows each op, so it meters the steps of
  the first epoch and goes on until one step after the warm-up has been metered (a full-batch
  epoch is one step); a ``memory_cap_bytes`` is enforced on metered steps (later epochs repeat
  the same shapes: a random partition into k parts has the same part sizes every epoch).
* ``step_time_s`` / ``epoch_time_s``: means over the epochs after the first (the warm-up
  epoch, which on CPU is also the metered one: the meter's per-op overhead would distort the
  times, more for architectures with many small ops such as reversible backward passes). A
  one-epoch CPU trial therefore has no step time (None); on CUDA (no meter overhead) a
  one-epoch trial's step time is the mean over its steps after the first. ``epoch_time_s`` is training only
  (partitioning included, evaluation excluded); a curve point's ``time_s`` is the whole epoch,
  evaluation included.
* DEQ: ``solver`` holds the mean and max, over training steps, of forward and backward solver
  iterations and relative residuals.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
import typing
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from bench import units
from bench.config import TrialConfig
from bench.errors import ConfigError, DataError, is_environment_error
from bench.record import TrialRecord

EVENT_PREFIX = "@epoch "
START_PREFIX = "@start "
PHASE_PREFIX = "@phase "
STOP_COMMAND = "stop"
#: test hook (documented, used by tests only): ``sigkill`` makes the child kill itself with
#: SIGKILL as training starts (what the kernel's OOM killer does); ``hang`` makes it sleep
#: there instead, without checking its time budget (a step that overruns the budget).
FAULT_ENV = "BENCH_TRIAL_FAULT"
#: seconds a child may overrun its time budget (interpreter start-up and imports included)
#: before the parent kills it, and may take to stop after a ``stop`` command
DEFAULT_GRACE_S = 60.0
STOP_GRACE_S = 30.0
TRACEBACK_LINES = 12
#: an ``error`` record whose message starts with this was refused input (CLI exit code 2)
CONFIG_ERROR_PREFIX = "invalid setting "

OnEpoch = Callable[[dict[str, Any]], Any]


# ============================================================================================
# Command line
# ============================================================================================
#: extra spellings of fields whose natural flag reads better than the field name
_FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "memory_cap_bytes": ("--memory-cap",),
    "dataset_options": ("--dataset-option",),
}


def parse_bytes(text: str | int) -> int:
    """``--memory-cap`` values: ``4GiB``, ``500MB``, ``1e9`` (see :func:`bench.units.parse_bytes`)."""
    try:
        return units.parse_bytes(text, "memory_cap_bytes")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def _option_value(text: str) -> Any:
    """A dataset option's value: JSON when it parses (``200``, ``true``, ``0.5``), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), _option_value(value.strip())


def _bool(text: str) -> bool:
    """A yes/no flag value: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options generated from ``TrialConfig``'s fields (one flag per field, defaults from the
    dataclass), so the CLI can never drift from the config; then the harness options."""
    hints = typing.get_type_hints(TrialConfig)
    settings = parser.add_argument_group("trial settings (one per TrialConfig field)")
    for f in dataclasses.fields(TrialConfig):
        # a friendlier alias (shown first) where the field name reads badly as a flag
        flags = [*_FLAG_ALIASES.get(f.name, ()), "--" + f.name.replace("_", "-")]
        base, optional = _unwrap_optional(hints[f.name])
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        if f.name == "dataset_options":
            settings.add_argument(
                *flags,
                dest=f.name,
                action="append",
                type=_key_value,
                default=None,
                metavar="KEY=VALUE",
                help="a dataset loader option (repeatable), e.g. --dataset-option num_nodes=200",
            )
            continue
        kind = parse_bytes if f.name == "memory_cap_bytes" else _bool if base is bool else base
        metavar = "BYTES" if f.name == "memory_cap_bytes" else f.name.upper()
        arch_default = f.name.startswith("deq_") or f.name == "tie"
        shown = "the arch's default" if optional and arch_default else default
        settings.add_argument(
            *flags,
            dest=f.name,
            type=kind,
            default=None,
            metavar=metavar,
            help=f"default: {shown}",
        )
    harness = parser.add_argument_group("harness")
    harness.add_argument(
        "--config-json",
        metavar="JSON",
        help="the whole TrialConfig as a JSON object (flags given as well override it)",
    )
    harness.add_argument(
        "--json",
        action="store_true",
        help="print the record as one JSON object, the last stdout line",
    )
    harness.add_argument(
        "--events",
        action="store_true",
        help="child protocol: print @phase/@start/@epoch lines on stdout and accept 'stop' on stdin",
    )
    harness.add_argument(
        "--dry-run",
        action="store_true",
        help="print the predicted parameters and peak memory, train nothing "
        "(with --device cuda: a GPU run predicted from any machine)",
    )
    harness.add_argument(
        "--target-memory",
        type=parse_bytes,
        default=None,
        metavar="BYTES",
        help="with --dry-run: the target device's memory (e.g. 32GB for a V100): says whether "
        "the predicted peak fits",
    )
    mode = harness.add_mutually_exclusive_group()
    mode.add_argument(
        "--in-process",
        action="store_true",
        help="train in this process (the default: the CLI invocation is itself a fresh process)",
    )
    mode.add_argument(
        "--isolated",
        action="store_true",
        help="train in a child process (survives crashes and the kernel's OOM killer)",
    )
    harness.add_argument(
        "--no-progress", action="store_true", help="no progress bar or log lines on stderr"
    )


def config_from_args(args: argparse.Namespace, *, check_device: bool = True) -> TrialConfig:
    """The validated config the flags describe. Raises ConfigError naming the flag at fault.
    ``check_device=False`` (dry runs) lets ``--device cuda`` describe a GPU this machine lacks."""
    values: dict[str, Any] = {}
    if getattr(args, "config_json", None):
        try:
            values = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise ConfigError("config_json", f"not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError("config_json", "must be a JSON object of settings")
    for f in dataclasses.fields(TrialConfig):
        given = getattr(args, f.name, None)
        if given is None:
            continue
        if f.name == "dataset_options":
            values["dataset_options"] = {**values.get("dataset_options", {}), **dict(given)}
        else:
            values[f.name] = given
    return TrialConfig.from_dict(values, check_device=check_device)


def main(args: argparse.Namespace) -> int:
    """``python -m bench trial``: 0 when the trial ends ``ok``, 1 for any other status (the
    record is printed all the same), 2 for bad input (nothing is loaded or trained)."""
    try:
        config = config_from_args(args, check_device=not args.dry_run)
    except ConfigError as exc:
        print(f"error: {exc.for_cli()}", file=sys.stderr)
        return 2
    if args.target_memory is not None and not args.dry_run:
        print("error: --target-memory: only with --dry-run", file=sys.stderr)
        return 2
    if args.dry_run:
        try:
            return _dry_run(config, as_json=args.json, target_memory=args.target_memory)
        except ConfigError as exc:
            print(f"error: {exc.for_cli()}", file=sys.stderr)
            return 2
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    progress = not args.no_progress and not args.events
    if args.isolated:
        record = run_trial_isolated(config, on_epoch=_log_epoch if progress else None)
    elif args.events:
        record = _run_child(config)
    else:
        record = run_trial(config, progress=progress)
    if args.json:
        print(record.to_json(), flush=True)
    else:
        print(_summary(record), flush=True)
    if record.status == "error" and (record.error or "").startswith(CONFIG_ERROR_PREFIX):
        print(f"error: {record.error[len(CONFIG_ERROR_PREFIX) :]}", file=sys.stderr)
        return 2
    return 0 if record.status == "ok" else 1


def _dry_run(config: TrialConfig, as_json: bool, target_memory: int | None = None) -> int:
    """Predict without training: data sizes (loads the dataset), then a meta-device model.

    ``--device cuda`` predicts a GPU run from any machine (the batch alone on the device,
    CUDA's dropout masks and foreach Adam); ``--target-memory`` says whether it fits."""
    from bench import memory_model
    from bench.data import load

    dataset = load(config.dataset, root=config.data_root, **config.dataset_options)
    sizes = memory_model.sizes_for(config, dataset)
    prediction = memory_model.predict(config, sizes)
    fits = None if target_memory is None else prediction.total_bytes <= target_memory
    if as_json:
        extra = {} if fits is None else {"target_memory_bytes": target_memory, "fits": fits}
        print(
            json.dumps(
                {"config": config.to_dict(), **prediction.to_dict(), **extra}, sort_keys=True
            )
        )
    else:
        print(prediction.describe(config))
        if target_memory is not None:
            share = prediction.total_bytes / target_memory
            verdict = "fits" if fits else "does NOT fit"
            print(f"  target: {units.format_bytes(target_memory)} -> {verdict} ({share:.0%} of it)")
    return 0


def _summary(record: TrialRecord) -> str:
    from bench.units import format_bytes

    cfg = record.config
    parts = [
        f"{record.status}: {cfg['arch']} L={cfg['layers']} C={cfg['channels']} on {cfg['dataset']}"
    ]
    if record.best_valid is not None:
        parts.append(
            f"best valid {record.metric} {record.best_valid:.4f} at epoch {record.best_epoch}, "
            f"test {record.test_at_best_valid:.4f}"
        )
    if record.peak_memory_bytes is not None:
        predicted = (
            f" (predicted {format_bytes(record.predicted_peak_bytes)})"
            if record.predicted_peak_bytes
            else ""
        )
        parts.append(
            f"peak {format_bytes(record.peak_memory_bytes)} [{record.memory_meter}]{predicted}"
        )
    if record.params is not None:
        parts.append(f"{record.params:,} params")
    if record.step_time_s is not None:
        parts.append(f"{record.step_time_s:.3f} s/step")
    if record.error:
        parts.append(f"error: {record.error.splitlines()[0]}")
    return "; ".join(parts)


def _log_epoch(event: dict[str, Any]) -> None:
    print(_epoch_line(event), file=sys.stderr, flush=True)


def _epoch_line(event: dict[str, Any]) -> str:
    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}"

    return (
        f"epoch {event['epoch']}: loss {num(event['loss'])} valid {num(event['valid'])} "
        f"test {num(event['test'])} ({event['time_s']:.1f} s)"
    )


# ============================================================================================
# In-process trial
# ============================================================================================
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
    warmup_memory: Any = None  # the first step's StepMemory (Adam's moments not yet there)
    steps_done: int = 0
    model_state_bytes: int | None = None
    step_times: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (epoch, s)
    epoch_times: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # unmetered
    solver: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    start: dict[str, Any] = dataclasses.field(default_factory=dict)


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


def _loss_fn(task: str) -> Callable[[Any, Any], Any]:
    import torch.nn.functional as F

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
) -> TrialRecord:
    """Train ``config`` in this process and return its record; trial failures become statuses.

    ``on_epoch(event)`` gets ``{"epoch", "loss", "valid", "test", "time_s"}`` after each epoch;
    a truthy return stops the trial (status ``pruned``). ``stop`` (set from another thread)
    does the same after the current step. ``on_start``/``on_phase`` serve the child protocol.
    """
    from bench.env_info import device_description, git_commit, library_versions

    clock = time.perf_counter()
    config = config.validated()
    state = _Progress()
    record = TrialRecord(
        status="error",
        config=config.to_dict(),
        versions=library_versions(),
        commit=git_commit(),
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
            record.error = _error_message(exc)
            if is_environment_error(exc):  # data missing, device gone: retried next run
                record.failure_kind = "environment"
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


def _error_message(exc: BaseException) -> str:
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

    from bench import memory_model
    from bench.data import load
    from bench.data.partition import derived_seed, trial_batches
    from bench.measure import (
        count_parameters,
        device_memory_bytes,
        meter_name,
        metered_step,
        model_state_bytes,
        optimizer_implementation,
    )
    from bench.models import build_from_config
    from bench.precision import MixedPrecision

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
    sizes = memory_model.sizes_for(config, dataset)
    prediction = memory_model.predict(config, sizes)
    record.predicted_params = prediction.params
    record.predicted_peak_bytes = prediction.total_bytes
    model = build_from_config(
        config, dataset.num_features, dataset.edge_dim, dataset.num_outputs
    ).to(device)
    record.params = count_parameters(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    record.optimizer_impl = optimizer_implementation(optimizer)
    amp = MixedPrecision.for_config(config.precision, device)  # autocast, fp16 scaler
    loss_fn = _loss_fn(dataset.task)
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
    best_valid = -math.inf
    try:
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
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
                step_start = time.perf_counter()
                inputs = _on_device(batch, mask, device)
                optimizer.zero_grad(set_to_none=True)  # before the meter: not in the baseline
                forward_backward = functools.partial(
                    _forward_backward, model, loss_fn, amp, state, epoch, *inputs
                )
                update = functools.partial(_update, model, optimizer, amp, config.grad_clip)
                if metered:
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
                if not metered or device.type == "cuda":  # the CPU meter's overhead is not timed
                    state.step_times.append((epoch, time.perf_counter() - step_start))
                state.steps_done += 1
                if state.model_state_bytes is None:
                    state.model_state_bytes = model_state_bytes(model, optimizer)
                losses.append(loss_value)
            if not epoch_metered or device.type == "cuda":
                state.epoch_times.append((epoch, time.perf_counter() - epoch_start))
            check_budget()
            valid = test = None
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                enter("eval")
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
                bar.set_postfix_str(_epoch_line(event))
            elif progress:
                _log_epoch(event)
            if valid is not None and valid > best_valid:
                best_valid = valid
            if on_epoch is not None and on_epoch(dict(event)):
                raise _Stop("pruned", f"stopped by the caller after epoch {epoch}")
    finally:
        if bar is not None:
            bar.close()


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

    from bench.measure import PeakMemory

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
    _best_of_curve(record)
    _memory_into(record, state)
    record.model_state_bytes = state.model_state_bytes
    # only unmetered steps were timed; the first epoch (or, in a one-epoch CUDA trial, the
    # first step) is the warm-up
    later = [t for epoch, t in state.step_times if epoch > 1]
    record.step_time_s = _mean(later or [t for _, t in state.step_times[1:]])
    later_epochs = [t for epoch, t in state.epoch_times if epoch > 1]
    record.epoch_time_s = _mean(later_epochs or [t for _, t in state.epoch_times])
    if state.solver:
        record.solver = {"steps": len(next(iter(state.solver.values())))}
        for key, values in sorted(state.solver.items()):
            record.solver[f"{key}_mean"] = _mean(values)
            record.solver[f"{key}_max"] = max(values)
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


def _best_of_curve(record: TrialRecord) -> None:
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


# ============================================================================================
# The child side of the protocol
# ============================================================================================
def _emit(prefix: str, payload: Any) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
    print(prefix + text, flush=True)


def _run_child(config: TrialConfig) -> TrialRecord:
    """``--events``: run in-process, narrating on stdout; ``stop`` on stdin ends the trial."""
    stop = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == STOP_COMMAND:
                stop.set()
                return

    threading.Thread(target=listen, daemon=True, name="stop-listener").start()
    return run_trial(
        config,
        on_epoch=lambda event: _emit(EVENT_PREFIX, event),
        stop=stop,
        on_start=lambda info: _emit(START_PREFIX, info),
        on_phase=lambda phase: _emit(PHASE_PREFIX, phase),
    )


# ============================================================================================
# Isolation: the parent side
# ============================================================================================
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
    clock = time.perf_counter()
    budget = _effective_timeout(config, timeout)
    if budget != config.timeout:
        config = dataclasses.replace(config, timeout=budget)
    command = [
        sys.executable,
        "-m",
        "bench",
        "trial",
        "--config-json",
        json.dumps(config.to_dict(), sort_keys=True),
        "--json",
        "--events",
    ]
    child = _Child(command)
    deadlines = [math.inf if budget is None else clock + budget + grace_s]  # [run, stop?]
    curve: list[dict[str, Any]] = []
    start: dict[str, Any] = {}
    phase = "setup"
    last_line: str | None = None
    stop_requested = False
    killed_for: str | None = None
    callback_error: str | None = None
    try:
        for line in child.lines(lambda: min(deadlines)):
            if line is None:  # a deadline passed
                killed_for = "pruned" if stop_requested else "timeout"
                child.kill()
                break
            if line.startswith(EVENT_PREFIX):
                event = json.loads(line[len(EVENT_PREFIX) :])
                curve.append(event)
                if on_epoch is not None and not stop_requested:
                    try:
                        wants_stop = bool(on_epoch(dict(event)))
                    except Exception as exc:  # noqa: BLE001 - the caller's bug ends the trial
                        wants_stop = True
                        callback_error = f"on_epoch raised {_error_message(exc)}"
                    if wants_stop:
                        stop_requested = True
                        deadlines.append(time.perf_counter() + STOP_GRACE_S)
                        child.send(STOP_COMMAND)
            elif line.startswith(START_PREFIX):
                start = json.loads(line[len(START_PREFIX) :])
            elif line.startswith(PHASE_PREFIX):
                phase = line[len(PHASE_PREFIX) :].strip()
            elif line.strip():
                last_line = line
    finally:
        child.kill()  # no-op when it already exited; always reaps it
    record = _parse_record(last_line)
    if record is None:
        record = _record_without_child_record(
            config, child.returncode, killed_for, child.stderr_tail(), curve, start, phase
        )
    if stop_requested and record.status == "ok":
        record.status = "pruned"
        record.failed_phase = record.failed_phase or phase
    if callback_error is not None:
        record.status = "error"
        record.error = callback_error
    if record.wall_time_s is None:
        record.wall_time_s = time.perf_counter() - clock
    return record


def _parse_record(line: str | None) -> TrialRecord | None:
    if not line:
        return None
    try:
        values = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(values, dict) or "status" not in values or "config" not in values:
        return None
    return TrialRecord.from_dict(values)


def _record_without_child_record(
    config: TrialConfig,
    returncode: int | None,
    killed_for: str | None,
    stderr_tail: str,
    curve: list[dict[str, Any]],
    start: dict[str, Any],
    phase: str,
) -> TrialRecord:
    """The record of a child that printed none: killed by us, by the kernel, or crashed."""
    from bench.env_info import git_commit, library_versions

    record = TrialRecord(
        status="error",
        config=config.to_dict(),
        curve=curve,
        params=start.get("params"),
        predicted_params=start.get("predicted_params"),
        predicted_peak_bytes=start.get("predicted_peak_bytes"),
        device_name=start.get("device_name"),
        memory_meter=start.get("memory_meter"),
        metric=start.get("metric"),
        versions=library_versions(),
        commit=git_commit(),
        failed_phase=phase,
    )
    _best_of_curve(record)
    if killed_for == "timeout":
        record.status = "timeout"
        record.error = f"killed: still running past its time budget of {config.timeout:g} s"
    elif killed_for == "pruned":
        record.status = "pruned"
        record.error = f"killed: did not stop within {STOP_GRACE_S:g} s of being asked to"
    elif returncode == -signal.SIGKILL:
        record.status = "oom"
        record.error = (
            f"out of memory at {config.layers} layers: the trial process was killed by SIGKILL "
            "(most likely the kernel's out-of-memory killer)"
            + (f"\nstderr tail:\n{stderr_tail}" if stderr_tail else "")
        )
    else:
        record.error = f"the trial process exited with code {returncode} without a record" + (
            f"\nstderr tail:\n{stderr_tail}" if stderr_tail else ""
        )
        if returncode is not None and -returncode in _OUTSIDE_SIGNALS:
            record.failure_kind = "environment"  # killed from outside: retried next run
    record.failure_kind = record.kind_of_failure()
    return record


# signals that end a trial from outside (a user, a scheduler, a shutdown), not by its own doing
_OUTSIDE_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Child:
    """A child process whose stdout lines arrive through a queue (so the parent can keep its
    own deadlines) and whose stderr is drained into a bounded tail (so it never blocks)."""

    def __init__(self, command: list[str]) -> None:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,  # a Ctrl-C aimed at the parent must not hit the child
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
