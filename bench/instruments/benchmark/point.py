"""``python -m bench bench``: the engines side by side on one seeded synthetic graph.

For every architecture and depth it measures one full training step (forward, backward, Adam
step): peak memory, peak minus model state (parameters + gradients + Adam moments: what is
left is activations and the graph itself), mean step time after warm-up, parameter count and
the meter used. PyG's ``GroupAddRev`` wrapping the same :class:`ResPlusBlock` is the peer row
(same parameters, same function; only the reversible engine differs).
For ``deq`` the depth is the iteration cap and the tolerance is set unreachably small (1e-12,
below float32 resolution), so the forward and adjoint solves really run that many iterations;
the CSV records the iterations each solve ran.

Each step sequence is: one warm-up step (allocates gradients and Adam state), one step under
the memory meter, then ``repeats`` timed steps (the meter's bookkeeping is not timed). The
metered step is split: ``baseline_bytes`` (alive at its entry: weights, Adam moments, the
graph), ``fwd_bwd_peak_bytes``, ``optimizer_peak_bytes`` (foreach Adam's temporaries on CUDA
land here, not in the activations), ``step_added_bytes`` (forward+backward peak minus the
baseline) and ``activation_bytes`` (that minus 4 B per parameter of gradients: exact when every
gradient exists at the peak, as in a reversible backward, whose peak comes at its end; a
residual one peaks at the start of its backward and is under-counted by at most its gradients,
under 0.2% of its activations here). The activation ratios are judged on ``activation_bytes``:
data and model state, which exist before the step, cannot dilute them.

Side by side in the same run (so their ratios share one machine state): the main graph at
``--aggr-impl`` (default ``fused``: :mod:`bench.nn.aggr`), ``res`` and ``rev`` again with the
other max-aggregation implementation at ``--compare-aggr-depths`` (ResGNN's activation bytes per
layer and RevGNN's peak, both ways), and the ``--small-graphs`` (default 500 nodes / 2,500 edges
and 1,000 / 10,000, ``--small-channels`` 16, ``--small-depth`` 64 layers: the ablations' batch
sizes, where per-operator overhead dominates) with ``res``, ``rev`` and the peer. Every row says
its ``graph``, ``nodes``, ``edges``, ``channels`` and ``aggr_impl``; the targets of issue 14 are
printed with PASS/FAIL.

Each point runs in its own process. On CPU both the warm-up and the metered step run under a
memory cap (default: 60% of the memory available when the benchmark starts: the cap counts
live tensors, and the process's resident memory runs well above that), so a point that does
not fit -- ResGNN at 256 layers on a small machine -- is recorded as ``oom``; a point the
kernel kills anyway is recorded as ``oom`` too, and the benchmark goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import math
import multiprocessing
import signal
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.instruments.benchmark.graph import Graph, GraphSource
from bench.instruments.benchmark.options import PEER
from bench.instruments.benchmark.peer import PygGroupAddRevGNN
from bench.measure.meters import (
    PeakMemory,
    count_parameters,
    device_memory_bytes,
    meter_name,
    metered_step,
    model_state_bytes,
    optimizer_implementation,
    retain_freed_cpu_memory,
    time_steps,
)
from bench.measure.precision import MixedPrecision
from bench.models import archs as registry
from bench.models.blocks import DeepGNN
from bench.models.compiled import CompileClock, compile_blocks, eager_if

DEQ_BENCH_TOL = 1e-12  # unreachable in float32: the solver runs to its iteration cap
GRAD_BYTES_PER_PARAM = 4  # float32 gradients, allocated by the backward


def build(arch: str, depth: int, graph: Graph, args: argparse.Namespace) -> DeepGNN:
    """``arch`` (or the PyG peer, on RevGNN's settings) at ``depth`` for the benchmark graph;
    an equilibrium model iterates to its cap ``depth`` (an unreachable tolerance)."""
    from bench.models import ModelConfig, build_model

    edge_dim = graph.edge_attr.size(1) if graph.edge_attr is not None else None
    settings = dict(layers=depth, channels=args.channels, groups=args.groups,
                    dropout=args.dropout, aggr=args.aggr, norm="layer", aggr_impl=args.aggr_impl,
                    conv=args.conv, heads=args.heads)  # fmt: skip
    sizes = (graph.x.size(1), edge_dim, graph.y.size(1))
    if arch == PEER:
        return PygGroupAddRevGNN(ModelConfig(arch="rev", **settings), *sizes)
    if "deq_max_iter" in registry.get(arch).accepts():
        settings.update(deq_max_iter=depth, deq_tol=DEQ_BENCH_TOL, deq_solver=args.deq_solver)
    return build_model(ModelConfig(arch=arch, **settings), *sizes)


def _depth_means(arch: str) -> str:
    """What a row's depth counts: "iterations" for an equilibrium model, else "layers"."""
    known = arch in registry.names()
    return "iterations" if known and registry.get(arch).depth_unit == "iteration" else "layers"


def forward_backward(model: nn.Module, graph: Graph, amp: MixedPrecision | None = None) -> None:
    """Forward, binary cross-entropy (under ``amp``'s autocast), backward: the part of a step
    activations belong to."""
    amp = amp or MixedPrecision.for_config("fp32", graph.x.device)
    with amp.autocast():
        out = model(graph.x, graph.edge_index, graph.edge_attr)
        loss = F.binary_cross_entropy_with_logits(out, graph.y)
    amp.backward(loss)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, graph: Graph,
               amp: MixedPrecision | None = None) -> None:  # fmt: skip
    """One full training step: forward, binary cross-entropy, backward, Adam step."""
    amp = amp or MixedPrecision.for_config("fp32", graph.x.device)
    optimizer.zero_grad(set_to_none=True)
    forward_backward(model, graph, amp)
    amp.step(optimizer)


def measure_one(
    arch: str, depth: int, source: GraphSource, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Load the graph, build, warm up, meter one step, time ``repeats`` steps; never raises for
    OOM. The metered step is split (``bench.measure.meters.metered_step``): the baseline alive at its
    entry, the forward+backward peak and the optimiser-step peak."""
    row = _point_columns(arch, depth, source, args)
    if device.type == "cpu":
        row["cpu_heap"] = retain_freed_cpu_memory()
    torch.manual_seed(args.seed)
    try:
        point = _build_point(row, arch, depth, source, args, device)
        compile_clock = CompileClock()
        _meter_point(row, point, args, device, compile_clock)
        solver_stats = dict(point.model.solver_stats or {})  # the metered step's solves
        _time_point(row, point, depth, args, device, compile_clock)
        for key in ("fwd_iters", "fwd_rel_residual", "bwd_iters", "bwd_rel_residual"):
            row[key] = solver_stats.get(key, math.nan)
    except (MemoryError, torch.OutOfMemoryError) as err:
        row.update(status="oom", error=str(err).splitlines()[0][:200], meter=meter_name(device))
    except Exception as err:  # noqa: BLE001 - a point that fails is a row that says why
        # (e.g. PyG's GroupAddRev under bf16 autocast: it recomputes in float32 and fails)
        message = f"{type(err).__name__}: {str(err).splitlines()[0]}"[:200]
        row.update(status="error", error=message, meter=meter_name(device))
    finally:
        point = None  # free before the next point is measured
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def _point_columns(
    arch: str, depth: int, source: GraphSource, args: argparse.Namespace
) -> dict[str, Any]:
    """The columns that say which point a row is (first in the CSV, in this order)."""
    return {
        "arch": arch,
        "conv": args.conv,
        "precision": args.precision,
        "depth": depth,
        "depth_means": _depth_means(arch),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "graph": args.graph,
        "nodes": source.nodes,
        "edges": source.edges,
        "channels": args.channels,
        "aggr_impl": args.aggr_impl,
        "compile": args.compile,
        "round": args.round,
    }


@dataclasses.dataclass(frozen=True)
class _Point:
    """One point's graph, model, optimiser and precision, and its full training step."""

    graph: Graph
    model: nn.Module
    optimizer: torch.optim.Optimizer
    amp: MixedPrecision
    step: Callable[[], None]


def _build_point(
    row: dict[str, Any],
    arch: str,
    depth: int,
    source: GraphSource,
    args: argparse.Namespace,
    device: torch.device,
) -> _Point:
    """The graph on the device and the model with its optimiser; their sizes into ``row``."""
    graph = source.load(device)
    model = build(arch, depth, graph, args).to(device).train()
    if args.compile:
        compile_blocks(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    row["params"] = count_parameters(model)
    row["optimizer_impl"] = optimizer_implementation(optimizer)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        row["setup_bytes"] = torch.cuda.memory_allocated(device)
        row["device_memory_bytes"] = device_memory_bytes(device)
    amp = MixedPrecision.for_config(row["precision"], device)
    step = functools.partial(train_step, model, optimizer, graph, amp)
    return _Point(graph, model, optimizer, amp, step)


def _meter_point(
    row: dict[str, Any],
    point: _Point,
    args: argparse.Namespace,
    device: torch.device,
    compile_clock: CompileClock,
) -> None:
    """A warm-up step, then one step under the memory meter; its memory columns into ``row``."""
    cap = args.memory_cap if device.type == "cpu" else None
    # the CPU meter watches ops through a dispatch mode, under which compiled code cannot
    # run: on CPU a compiled row's warm-up and metered steps are eager (its memory, eager's)
    with compile_clock, eager_if(args.compile and device.type == "cpu"):
        with PeakMemory(device, cap_bytes=cap):
            point.step()  # warm-up: gradients and Adam state now exist (CUDA: compiles)
        point.optimizer.zero_grad(set_to_none=True)
        _, memory = metered_step(
            device,
            functools.partial(forward_backward, point.model, point.graph, point.amp),
            functools.partial(point.amp.step, point.optimizer),
            cap,
        )
    state = model_state_bytes(point.model, point.optimizer)
    row.update(peak_bytes=memory.peak_bytes, model_state_bytes=state,
               peak_minus_state_bytes=memory.peak_bytes - state,
               baseline_bytes=memory.baseline_bytes, fwd_bwd_peak_bytes=memory.fwd_bwd_peak_bytes,
               optimizer_peak_bytes=memory.optimizer_peak_bytes,
               step_added_bytes=memory.step_added_bytes,
               activation_bytes=memory.step_added_bytes - GRAD_BYTES_PER_PARAM * row["params"],
               reserved_peak_bytes=memory.reserved_peak_bytes, meter=meter_name(device))  # fmt: skip


def _time_point(
    row: dict[str, Any],
    point: _Point,
    depth: int,
    args: argparse.Namespace,
    device: torch.device,
    compile_clock: CompileClock,
) -> None:
    """``repeats`` timed steps (and, with ``step_parts``, a step's parts); no timed step may
    compile, so a compiled CPU row compiles first, in a step of its own."""
    repeats = args.deep_repeats if depth > max(args.depths) else args.repeats
    repeats = args.point_repeats or repeats
    with compile_clock:
        if args.compile and device.type == "cpu":
            point.step()  # compiles: the warm-up and metered steps ran eagerly
        compiled = compile_clock.seconds
        mean, std = time_steps(point.step, warmup=0, repeats=repeats, device=device)
        row.update(step_time_s=mean, step_time_std_s=std, status="ok")
        if args.compile:  # a timed step that compiled would be an error of method
            row.update(compile_time_s=compiled, recompiled_s=compile_clock.seconds - compiled)
        if args.step_parts:
            row.update(step_parts(point.model, point.graph, point.amp, repeats, device))


def step_parts(model: nn.Module, graph: Graph, amp: MixedPrecision, repeats: int,
               device: torch.device) -> dict[str, float]:  # fmt: skip
    """Median seconds of a no-grad forward and of forward+backward: a reversible step's parts
    (its backward is ``fwd_bwd - forward_nograd``: its forward builds no graph)."""

    def forward_nograd() -> None:
        with torch.no_grad(), amp.autocast():
            model(graph.x, graph.edge_index, graph.edge_attr)

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        forward_backward(model, graph, amp)

    out = {}
    for name, fn in (("forward_nograd_s", forward_nograd), ("fwd_bwd_s", fwd_bwd)):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times)
    return out


def _child(conn: Any, arch: str, depth: int, source: GraphSource, args: argparse.Namespace,
           device: torch.device) -> None:  # fmt: skip
    conn.send(measure_one(arch, depth, source, args, device))
    conn.close()


@functools.cache
def _context(device_type: str) -> Any:
    """CPU: a fork server with torch, PyG and this module imported once, so each point forks a
    fresh process in milliseconds instead of re-importing for seconds. CUDA: spawn, a fresh
    interpreter per point (a process forked from one whose imports touched the CUDA driver
    fails with "CUDA error: initialization error", as PyG's import does on an H200)."""
    if device_type == "cuda" or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["torch", "torch_geometric", "bench.instruments.benchmark.point", "bench.models"]
    )
    return ctx


def measure_isolated(
    arch: str,
    depth: int,
    source: GraphSource,
    args: argparse.Namespace,
    device: torch.device,
    timeout: float | None = None,
) -> dict[str, Any]:
    """``measure_one`` in a fresh process: clean peak statistics, and a point the kernel's
    out-of-memory killer ends (the meter's cap counts live tensors, not the allocator's
    retained pages) becomes an ``oom`` row instead of ending the benchmark. A point still
    running after ``timeout`` seconds is killed and recorded as ``timeout``."""
    ctx = _context(device.type)
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, arch, depth, source, args, device))
    child.start()
    send.close()
    row = None
    timed_out = False
    try:
        if receive.poll(timeout):
            row = receive.recv()
        else:
            timed_out = True
            child.kill()
    except EOFError:  # the child died without a row
        row = None
    child.join()
    if row is not None:
        return row
    if timed_out:
        return {
            "arch": arch, "depth": depth, "depth_means": _depth_means(arch),
            "status": "timeout", "meter": meter_name(device),
            "error": f"killed: still running after {timeout:.0f} s",
        }  # fmt: skip
    killed = child.exitcode == -signal.SIGKILL
    return {
        "arch": arch, "depth": depth, "depth_means": _depth_means(arch),
        "status": "oom" if killed else "error", "meter": meter_name(device),
        "error": "killed by the kernel (out of memory)" if killed else f"exit code {child.exitcode}",
    }  # fmt: skip
