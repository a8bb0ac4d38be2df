"""One training step and one evaluation: the pieces the epoch loop of
:mod:`bench.trial.training` calls.

A step moves its batch to the device (before the meter, so it is baseline), then runs forward,
the loss (:func:`task_loss`, picked at setup) and backward, then clipping and the optimiser update: under the memory meter (and the
cap) when :func:`meters` says so, else timed by a :class:`Stopwatch`. A DEQ model's solver
statistics are collected after the forward and the backward. :func:`evaluate` scores the
evaluation clusters once, without gradients.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.config import TrialConfig
from bench.trial.state import Setup, Stop, TrialState


def task_loss(task: str, unlabelled: bool = False) -> Callable[[Any, Any], Any]:
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


def meters(device: Any, epoch: int, state: TrialState) -> bool:
    """Whether the next step runs under the memory meter. CUDA: every step (the allocator's
    counters are free). CPU: the first epoch (the cap is enforced there), and on until one
    step after the warm-up step has been metered (a full-batch epoch is a single step, taken
    before Adam's moments exist)."""
    return device.type == "cuda" or epoch == 1 or not state.memory


class Stopwatch:
    """Wall seconds of a step or an epoch, kept only when they time training alone: not the CPU
    meter's per-op overhead, not a compilation (its seconds go to ``compile_time_s``)."""

    def __init__(self, state: TrialState) -> None:
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


def _compiled_s(state: TrialState) -> float:
    """Seconds compiled so far (0 without compile=True): a step or epoch that compiled is not
    timed, its compile time goes to ``compile_time_s``."""
    return state.compile_clock.seconds if state.compile_clock is not None else 0.0


def step(
    setup: Setup,
    config: TrialConfig,
    state: TrialState,
    epoch: int,
    batch: Any,
    mask: Any,
    metered: bool,
) -> float:
    """One training step on the batch's training nodes (``mask``); its loss."""
    import torch

    from bench.measure.meters import model_state_bytes

    watch = Stopwatch(state)
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
    setup: Setup,
    config: TrialConfig,
    state: TrialState,
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
    state: TrialState,
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
        raise Stop("diverged", f"non-finite training loss ({value}) in epoch {epoch}")
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


def _collect_solver(model: Any, state: TrialState, direction: str) -> None:
    stats = getattr(model, "solver_stats", None)
    if not stats:
        return
    for key in ("iters", "rel_residual"):
        value = stats.get(f"{direction}_{key}")
        if value is not None:
            state.solver.setdefault(f"{direction}_{key}", []).append(float(value))


def evaluate(
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
        raise Stop("diverged", "non-finite model outputs at evaluation")
    y = data.y
    result = []
    for split in ("valid", "test"):
        idx = dataset.split[split]
        result.append(float(dataset.evaluate(y[idx], scores[idx])))
    return result[0], result[1]
