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
import functools
import gc
import math
import multiprocessing
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from bench.config import CONVS
from bench.errors import ConfigError
from bench.measure import (
    PeakMemory,
    count_parameters,
    device_description,
    device_memory_bytes,
    meter_name,
    metered_step,
    model_state_bytes,
    optimizer_implementation,
    retain_freed_cpu_memory,
    time_steps,
)
from bench.models.blocks import DeepGNN, ResPlusBlock, block_maker
from bench.precision import MixedPrecision
from bench.stats import Interval, summarize
from bench.units import parse_bytes

ALL_ARCHS = ("res", "ckpt", "rev", "wt-res", "wt-rev", "deq")
DEEP_ARCHS = ("rev", "wt-rev", "deq")  # the ones that also run at the "deep" depths
PEER = "pyg-groupaddrev"
DEQ_RATIO_ITERS = (5, 50)
MAIN = "main"  # the ``graph`` of the rows on the --nodes/--edges graph
AGGR_IMPLS = ("fused", "pyg")
# rev / res step-time targets per small graph (issue 14; others are printed as INFO)
SMALL_TARGETS = {(500, 2500): 1.6, (1000, 10_000): 1.4}
DEQ_BENCH_TOL = 1e-12  # unreachable in float32: the solver runs to its iteration cap
GRAD_BYTES_PER_PARAM = 4  # float32 gradients, allocated by the backward


@dataclass
class Graph:
    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor | None
    y: Tensor

    def to(self, device: torch.device | str) -> Graph:
        return Graph(*(t.to(device) if t is not None else None for t in
                       (self.x, self.edge_index, self.edge_attr, self.y)))  # type: ignore[arg-type]  # fmt: skip


@dataclass(frozen=True)
class GraphSource:
    """How a measured process gets its graph: a seeded synthetic graph it generates itself, or a
    batch saved with ``torch.save`` (a :class:`Graph`'s four tensors). Each process builds or
    loads its own copy on its own device: a CUDA tensor handed to a spawned child arrives
    through inter-process sharing, allocated by the parent, so the child's allocator
    statistics would leave the graph out while the CPU meter counts it."""

    nodes: int = 0
    edges: int = 0
    edge_dim: int = 8
    features: int = 8
    outputs: int = 112
    seed: int = 0
    path: str | None = None

    def load(self, device: torch.device | str) -> Graph:
        if self.path is not None:
            saved = torch.load(self.path, weights_only=True)
            graph = Graph(saved["x"], saved["edge_index"], saved.get("edge_attr"), saved["y"])
        else:
            graph = synthetic_graph(self.nodes, self.edges, self.edge_dim, self.features,
                                    self.outputs, self.seed)  # fmt: skip
        return graph.to(device)


def save_graph(graph: Graph, path: str | Path) -> None:
    """Write a batch for :class:`GraphSource` (atomically: a partial file is never read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {"x": graph.x, "edge_index": graph.edge_index, "y": graph.y}
    if graph.edge_attr is not None:
        tensors["edge_attr"] = graph.edge_attr
    torch.save(tensors, tmp)
    os.replace(tmp, path)


def synthetic_graph(
    nodes: int, edges: int, edge_dim: int, features: int, outputs: int, seed: int
) -> Graph:
    """A seeded random graph with proteins-like shapes (multi-label binary targets)."""
    gen = torch.Generator().manual_seed(seed)
    return Graph(
        x=torch.randn(nodes, features, generator=gen),
        edge_index=torch.randint(0, nodes, (2, edges), generator=gen),
        edge_attr=torch.rand(edges, edge_dim, generator=gen) if edge_dim else None,
        y=(torch.rand(nodes, outputs, generator=gen) < 0.3).float(),
    )


class _FullEdgeGroup(nn.Module):
    """One group's function for the peer: our :class:`ResPlusBlock`, fed the full edge
    embedding. GroupAddRev splits every extra tensor whose last dimension equals the channel
    count across groups (a silent trap: each group would get a slice of the embedding); the
    embedding is therefore handed over as [E, channels, 1], which GroupAddRev replicates, and
    squeezed back here. Parameters and function are then exactly those of our RevGNN's groups."""

    def __init__(self, block: ResPlusBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        return self.block(x, edge_index, edge_attr.squeeze(-1) if edge_attr is not None else None)


class PygGroupAddRevGNN(DeepGNN):
    """The peer: PyG's ``GroupAddRev`` around the same res+ block (one per group), ``layers``
    times. PyG's dropout is plain ``nn.functional.dropout`` inside the block (no mask replay),
    so with dropout its reconstruction is inexact; its cost, which is what is measured, is not
    affected."""

    def __init__(
        self, in_channels: int, edge_dim: int | None, out_channels: int, layers: int, channels: int,
        groups: int = 2, dropout: float = 0.0, aggr: str = "max", norm: str = "layer",
        conv: str = "gen", heads: int | None = None,
        aggr_impl: str = "fused",
    ) -> None:  # fmt: skip
        from torch_geometric.nn import GroupAddRev

        super().__init__(in_channels, edge_dim, out_channels, channels, dropout, norm)
        width = channels // groups
        block_edge_dim = channels if edge_dim else None
        make = block_maker(block_edge_dim, aggr, norm, dropout, conv, heads, aggr_impl)
        self.layers = nn.ModuleList(
            GroupAddRev(nn.ModuleList(_FullEdgeGroup(make(width)) for _ in range(groups)))
            for _ in range(layers)
        )

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> Tensor:
        if edge_attr is None:
            for layer in self.layers:
                h = layer(h, edge_index)
            return h
        edge_attr = edge_attr.unsqueeze(-1)  # replicated to every group, not split
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return h


def build(arch: str, depth: int, graph: Graph, args: argparse.Namespace) -> DeepGNN:
    edge_dim = graph.edge_attr.size(1) if graph.edge_attr is not None else None
    common = dict(dropout=args.dropout, aggr=args.aggr, norm="layer", aggr_impl=args.aggr_impl,
                  conv=args.conv, heads=args.heads)  # fmt: skip
    if arch == PEER:
        return PygGroupAddRevGNN(graph.x.size(1), edge_dim, graph.y.size(1), depth, args.channels,
                                 groups=args.groups, **common)  # type: ignore[arg-type]  # fmt: skip
    from bench.models import build_model

    deq = (
        {"deq_max_iter": depth, "deq_tol": DEQ_BENCH_TOL, "deq_solver": args.deq_solver}
        if arch == "deq"
        else {}
    )
    return build_model(arch, graph.x.size(1), edge_dim, graph.y.size(1), depth, args.channels,
                       groups=args.groups, **common, **deq)  # type: ignore[arg-type]  # fmt: skip


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
    OOM. The metered step is split (``bench.measure.metered_step``): the baseline alive at its
    entry, the forward+backward peak and the optimiser-step peak."""
    row: dict[str, Any] = {
        "arch": arch,
        "conv": args.conv,
        "precision": args.precision,
        "depth": depth,
        "depth_means": "iterations" if arch == "deq" else "layers",
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "graph": args.graph,
        "nodes": source.nodes,
        "edges": source.edges,
        "channels": args.channels,
        "aggr_impl": args.aggr_impl,
        "round": args.round,
    }
    if device.type == "cpu":
        row["cpu_heap"] = retain_freed_cpu_memory()
    torch.manual_seed(args.seed)
    model = optimizer = step = graph = None
    try:
        graph = source.load(device)
        model = build(arch, depth, graph, args).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        row["params"] = count_parameters(model)
        row["optimizer_impl"] = optimizer_implementation(optimizer)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            row["setup_bytes"] = torch.cuda.memory_allocated(device)
            row["device_memory_bytes"] = device_memory_bytes(device)

        amp = MixedPrecision.for_config(row["precision"], device)
        step = functools.partial(train_step, model, optimizer, graph, amp)

        cap = args.memory_cap if device.type == "cpu" else None
        with PeakMemory(device, cap_bytes=cap):
            step()  # warm-up: gradients and Adam state now exist
        optimizer.zero_grad(set_to_none=True)
        _, memory = metered_step(
            device,
            functools.partial(forward_backward, model, graph, amp),
            functools.partial(amp.step, optimizer),
            cap,
        )
        state = model_state_bytes(model, optimizer)
        row.update(peak_bytes=memory.peak_bytes, model_state_bytes=state,
                   peak_minus_state_bytes=memory.peak_bytes - state,
                   baseline_bytes=memory.baseline_bytes, fwd_bwd_peak_bytes=memory.fwd_bwd_peak_bytes,
                   optimizer_peak_bytes=memory.optimizer_peak_bytes,
                   step_added_bytes=memory.step_added_bytes,
                   activation_bytes=memory.step_added_bytes - GRAD_BYTES_PER_PARAM * row["params"],
                   reserved_peak_bytes=memory.reserved_peak_bytes, meter=meter_name(device))  # fmt: skip
        stats = dict(model.solver_stats or {})
        repeats = args.deep_repeats if depth > max(args.depths) else args.repeats
        repeats = args.point_repeats or repeats
        mean, std = time_steps(step, warmup=0, repeats=repeats, device=device)
        row.update(step_time_s=mean, step_time_std_s=std, status="ok")
        if args.step_parts:
            row.update(step_parts(model, graph, amp, repeats, device))
        for key in ("fwd_iters", "fwd_rel_residual", "bwd_iters", "bwd_rel_residual"):
            row[key] = stats.get(key, math.nan)
    except (MemoryError, torch.OutOfMemoryError) as err:
        row.update(status="oom", error=str(err).splitlines()[0][:200], meter=meter_name(device))
    except Exception as err:  # noqa: BLE001 - a point that fails is a row that says why
        # (e.g. PyG's GroupAddRev under bf16 autocast: it recomputes in float32 and fails)
        message = f"{type(err).__name__}: {str(err).splitlines()[0]}"[:200]
        row.update(status="error", error=message, meter=meter_name(device))
    finally:
        model = optimizer = step = graph = None  # free before the next point is measured
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


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
    ctx.set_forkserver_preload(["torch", "torch_geometric", "bench.benchmark", "bench.models"])
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
            "arch": arch, "depth": depth, "depth_means": "iterations" if arch == "deq" else "layers",
            "status": "timeout", "meter": meter_name(device),
            "error": f"killed: still running after {timeout:.0f} s",
        }  # fmt: skip
    killed = child.exitcode == -signal.SIGKILL
    return {
        "arch": arch, "depth": depth, "depth_means": "iterations" if arch == "deq" else "layers",
        "status": "oom" if killed else "error", "meter": meter_name(device),
        "error": "killed by the kernel (out of memory)" if killed else f"exit code {child.exitcode}",
    }  # fmt: skip


#: settings a point may override that the command line does not have
POINT_DEFAULTS: dict[str, Any] = {"point_repeats": None, "step_parts": False, "round": 0}


@dataclass(frozen=True)
class Point:
    """One measurement: an arch at a depth on a graph, with the settings that differ from the
    command line's (``overrides``: channels, aggregation implementation, timed repeats)."""

    arch: str
    depth: int
    source: GraphSource
    graph: str = MAIN
    overrides: tuple[tuple[str, Any], ...] = ()

    def args(self, args: argparse.Namespace) -> argparse.Namespace:
        settings = {**POINT_DEFAULTS, **vars(args), "graph": self.graph}
        return argparse.Namespace(**{**settings, **dict(self.overrides)})


def point_args(**overrides: Any) -> argparse.Namespace:
    """The settings one measured point reads: this command's defaults with ``overrides`` (how
    other callers, the GPU check and tests, build them, so every setting is always there)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(memory_cap=None, graph=MAIN, **POINT_DEFAULTS)
    for key, value in overrides.items():
        if not hasattr(args, key):
            raise TypeError(f"unknown benchmark setting {key!r}")
        setattr(args, key, value)
    return args


def main_source(args: argparse.Namespace) -> GraphSource:
    return GraphSource(
        args.nodes, args.edges, args.edge_dim, args.features, args.outputs, args.seed
    )


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(arch, depth) of the main graph's rows: every arch at its depths, then the peer."""
    runs: list[tuple[str, int]] = []
    for arch in args.archs:
        depths = list(args.depths) + (list(args.deep_depths) if arch in DEEP_ARCHS else [])
        if arch == "deq":
            depths = list(DEQ_RATIO_ITERS) + depths
        runs += [(arch, d) for d in sorted(set(depths))]
    runs += [(PEER, d) for d in sorted(set(args.peer_depths))]
    return runs


def ratio_depth(depths: list[int]) -> int:
    """The depth the main graph's rev / res ratios are read at: 64, else the deepest."""
    return 64 if 64 in depths else max(depths)


def points(args: argparse.Namespace) -> list[Point]:
    """Main graph (:func:`plan`), the other aggregation's res/rev rows, the small graphs."""
    main = main_source(args)
    mid = ratio_depth(list(args.depths))
    parts = (("step_parts", True),)  # the rev / res ratio's parts, at the depth it is read
    runs = [Point(arch, depth, main, MAIN, parts if arch in ("res", "rev") and depth == mid else ())
            for arch, depth in plan(args)]  # fmt: skip
    other = (("aggr_impl", _other_impl(args.aggr_impl)),)
    for arch in ("res", "rev"):
        if arch in args.archs and args.aggr == "max":
            runs += [
                Point(arch, d, main, MAIN, other) for d in sorted(set(args.compare_aggr_depths))
            ]
    for nodes, edges in args.small_graphs:
        source = GraphSource(nodes, edges, args.edge_dim, args.features, args.outputs, args.seed)
        small = (("channels", args.small_channels), ("point_repeats", args.small_repeats),
                 ("step_parts", True))  # fmt: skip
        for arch in ("res", "rev", PEER):
            runs.append(Point(arch, args.small_depth, source, f"{nodes}x{edges}", small))
    return runs + timing_rounds(args, runs)


def timing_rounds(args: argparse.Namespace, runs: list[Point]) -> list[Point]:
    """Rounds 1 .. R-1 of the points the step-time ratios read (res, rev and the peer at the
    ratio depth of each graph), each a fresh process, the round's points back to back.

    Why: a step time moves by up to 20% between processes (allocator and page-fault state), far
    more than between the steps of one process, so a ratio of two single points is not a
    verdict. Each round gives one rev / res (and rev / peer) ratio measured side by side; the
    verdict reads the t-interval of their logarithms (:func:`time_ratio`)."""
    mid = ratio_depth(list(args.depths))
    timed = [
        p for p in runs
        if p.arch in ("res", "rev", PEER) and "aggr_impl" not in dict(p.overrides)
        and (p.graph != MAIN or p.depth == mid)
    ]  # fmt: skip
    return [
        Point(p.arch, p.depth, p.source, p.graph,
              (*((k, v) for k, v in p.overrides if k != "step_parts"), ("round", r)))
        for r in range(1, args.time_rounds)
        for p in timed
    ]  # fmt: skip


def _other_impl(impl: str) -> str:
    return AGGR_IMPLS[1 - AGGR_IMPLS.index(impl)]


def _value(
    df: pd.DataFrame, arch: str, depth: int, column: str, graph: str = MAIN,
    impl: str | None = None,
) -> float:  # fmt: skip
    """The value of one point in its first round (``impl`` None: the main rows' implementation)."""
    rows = _rounds(df, arch, depth, column, graph, impl)
    return float(rows.iloc[0]) if len(rows) else math.nan


def _rounds(
    df: pd.DataFrame, arch: str, depth: int, column: str, graph: str = MAIN,
    impl: str | None = None,
) -> pd.Series:  # fmt: skip
    """One point's ``column`` in every round it ran, indexed by round (first round first)."""
    rows = df[(df.arch == arch) & (df.depth == depth) & (df.status == "ok") & (df.graph == graph)]
    rows = rows[rows.aggr_impl == (impl or df.attrs.get("aggr_impl", "fused"))]
    rounds = rows["round"] if "round" in rows else pd.Series(0, index=rows.index)
    return rows.set_index(rounds.fillna(0).astype(int))[column].sort_index()


def time_ratio(df: pd.DataFrame, arch: str, other: str, depth: int, graph: str = MAIN) -> Interval:
    """``arch`` / ``other`` step time from the rounds both finished: the geometric mean of the
    per-round ratios and the exponentiated 95% t-interval of their logarithms (a ratio's
    noise is multiplicative: a step 20% slow in one round is 20% slow whatever its size);
    ``std`` is the geometric standard deviation, a factor."""
    a, b = (
        _rounds(df, arch, depth, "step_time_s", graph),
        _rounds(df, other, depth, "step_time_s", graph),
    )
    common = sorted(set(a.index) & set(b.index))
    logs = summarize([math.log(a[r] / b[r]) for r in common])
    return Interval(*(math.exp(v) for v in (logs.mean, logs.std)), logs.n,
                    *(math.exp(v) for v in (logs.lo, logs.hi)))  # fmt: skip


def ratios(
    df: pd.DataFrame, depths: list[int], peer_depths: list[int],
    compare_depths: list[int] | None = None, small_depth: int = 64, groups: int = 2,
) -> list[dict[str, Any]]:  # fmt: skip
    """The headline ratios, measured in this run, with their targets (None: informational)."""
    mid = ratio_depth(depths)
    low, high = min(depths), max(depths)
    # res may run out of memory at the deepest depth: compare at the deepest one it finished
    res_ok = [d for d in depths if not math.isnan(_value(df, "res", d, "peak_bytes"))]
    res_high = max(res_ok, default=high)
    rows: list[tuple[str, int, float | Interval, float | None]] = [
        ("rev / res step time", mid, time_ratio(df, "rev", "res", mid), 1.30),
        ("rev / pyg-groupaddrev step time", mid, time_ratio(df, "rev", PEER, mid), 0.8),
        *_floor_ratios(df, MAIN, mid, groups),
        (f"rev activations {high} / {low} layers", high,
         _value(df, "rev", high, "activation_bytes") / _value(df, "rev", low, "activation_bytes"), 1.10),
        (f"wt-rev activations {high} / {low} layers", high,
         _value(df, "wt-rev", high, "activation_bytes") / _value(df, "wt-rev", low, "activation_bytes"), 1.10),
        (f"res activations {res_high} / {low} layers (grows ~linearly)", res_high,
         _value(df, "res", res_high, "activation_bytes") / _value(df, "res", low, "activation_bytes"), None),
        (f"deq activations {DEQ_RATIO_ITERS[1]} / {DEQ_RATIO_ITERS[0]} iterations", DEQ_RATIO_ITERS[1],
         _value(df, "deq", DEQ_RATIO_ITERS[1], "activation_bytes")
         / _value(df, "deq", DEQ_RATIO_ITERS[0], "activation_bytes"), 1.10),
    ]  # fmt: skip
    for d in sorted(set(peer_depths) & set(depths)):
        rows.append((f"rev / pyg-groupaddrev peak at {d} layers", d,
                     _value(df, "rev", d, "peak_bytes") / _value(df, PEER, d, "peak_bytes"), 1.0))  # fmt: skip
    rows += _aggr_ratios(df, sorted(set(compare_depths or []) & set(depths)))
    for graph in dict.fromkeys(df.graph[df.graph != MAIN]):
        nodes, edges = (int(v) for v in graph.split("x"))
        rows.append((f"rev / res step time on {graph}", small_depth,
                     time_ratio(df, "rev", "res", small_depth, graph),
                     SMALL_TARGETS.get((nodes, edges))))  # fmt: skip
        rows.append((f"rev / pyg-groupaddrev step time on {graph}", small_depth,
                     time_ratio(df, "rev", PEER, small_depth, graph), 0.8))  # fmt: skip
        rows += _floor_ratios(df, graph, small_depth, groups)
    out = []
    for name, depth, value, target in rows:
        found = {"ratio": name, "depth": depth, "target": target}
        if isinstance(value, Interval):  # a step-time ratio over rounds
            found.update(value=value.mean, lo=value.lo, hi=value.hi, rounds=value.n)
        else:
            found.update(value=value, lo=math.nan, hi=math.nan, rounds=math.nan)
        found["verdict"] = verdict(found)
        out.append(found)
    return out


def verdict(found: dict[str, Any]) -> str:
    """PASS / FAIL against the target; a step-time ratio is judged on its interval over the
    rounds: PASS when all of it lies at or below the target, FAIL when all of it lies above,
    NOISE when it straddles the target (the rounds cannot tell), n/a with fewer than 2 rounds."""
    value, target = found["value"], found["target"]
    if target is None:
        return "INFO"
    if math.isnan(value):
        return "n/a"
    if math.isnan(found["rounds"]):  # deterministic (memory) or single-point ratios
        return "PASS" if value <= target else "FAIL"
    if found["rounds"] < 2:
        return "n/a"
    return "PASS" if found["hi"] <= target else ("FAIL" if found["lo"] > target else "NOISE")


def _floor_ratios(
    df: pd.DataFrame, graph: str, depth: int, groups: int
) -> list[tuple[str, int, float, Any]]:
    """Where a reversible step's time goes, between two estimates. Its forward builds no
    graph; its backward evaluates each of the G group functions (1/G the width) once with grad
    and backpropagates it. Where a block's cost is proportional to its width, that backward
    costs one residual forward+backward, so rev / res = 1 + (no-grad forward / forward+backward)
    (the *width-proportional estimate*: DESIGN.md's 4/3 when a backward costs twice a forward;
    nearer 3/2 when it is as cheap as the fused max makes it). Where per-operation overhead
    dominates (small graphs) a 1/G-width block costs nearly a full one, and rev / res tends to
    (rev no-grad forward + G x res forward+backward) / res forward+backward, whatever the engine
    (the *dispatch-bound estimate*). The engine's own overhead is what its backward costs beyond
    G residual forward+backward passes."""
    if "fwd_bwd_s" not in df:
        return []
    where = "" if graph == MAIN else f" on {graph}"
    res_fb = _value(df, "res", depth, "fwd_bwd_s", graph)
    rev_fb = _value(df, "rev", depth, "fwd_bwd_s", graph)
    rev_fwd = _value(df, "rev", depth, "forward_nograd_s", graph)
    res_fwd = _value(df, "res", depth, "forward_nograd_s", graph)
    return [
        (f"rev / res forward+backward{where}", depth, rev_fb / res_fb, None),
        (f"width-proportional estimate: 1 + res no-grad forward / res forward+backward{where}",
         depth, 1 + res_fwd / res_fb, None),
        (f"dispatch-bound estimate: (rev no-grad forward + {groups} x res forward+backward) / "
         f"res forward+backward{where}", depth, (rev_fwd + groups * res_fb) / res_fb, None),
        (f"rev backward / ({groups} x res forward+backward){where} (engine overhead)", depth,
         (rev_fb - rev_fwd) / (groups * res_fb), None),
    ]  # fmt: skip


def _aggr_ratios(df: pd.DataFrame, depths: list[int]) -> list[tuple[str, int, float, Any]]:
    """fused / pyg max aggregation: ResGNN's activation bytes per layer (the slope between the
    lowest and highest compared depths), RevGNN's peak minus model state, both step times."""
    if not depths:
        return []
    act, low, high = "activation_bytes", min(depths), max(depths)

    def per_layer(impl: str) -> float:
        if high == low:
            return _value(df, "res", high, act, impl=impl) / high
        grown = _value(df, "res", high, act, impl=impl) - _value(df, "res", low, act, impl=impl)
        return grown / (high - low)

    def ratio(arch: str, depth: int, column: str) -> float:
        return _value(df, arch, depth, column, impl="fused") / _value(
            df, arch, depth, column, impl="pyg"
        )

    span = f"{low}-{high}" if high > low else f"{high}"
    return [
        (f"res activations per layer ({span} layers), fused / pyg aggregation", high,
         per_layer("fused") / per_layer("pyg"), 0.6),
        (f"rev peak minus state at {high} layers, fused / pyg aggregation", high,
         ratio("rev", high, "peak_minus_state_bytes"), 0.999),
        (f"res step time at {high} layers, fused / pyg aggregation", high,
         ratio("res", high, "step_time_s"), 1.10),
        (f"rev step time at {high} layers, fused / pyg aggregation", high,
         ratio("rev", high, "step_time_s"), 1.10),
    ]  # fmt: skip


def _mib(b: float) -> str:
    return "" if b is None or (isinstance(b, float) and math.isnan(b)) else f"{b / 2**20:,.1f}"


def format_table(df: pd.DataFrame) -> str:
    """A readable table (plain text: ``tabulate`` is not a dependency)."""
    view = pd.DataFrame({
        "graph": df.graph, "aggr": df.aggr_impl, "ch": df.channels,
        "arch": df.arch, "depth": df.depth, "status": df.status,
        "peak MiB": df.peak_bytes.map(_mib), "activations MiB": df.activation_bytes.map(_mib),
        "state MiB": df.model_state_bytes.map(_mib), "step s": df.step_time_s.map(lambda t: f"{t:.3f}"),
        "params": df.params.map(lambda p: "" if pd.isna(p) else f"{int(p):,}"),
        "iters fwd/bwd": [("" if pd.isna(f) else f"{int(f)}/{int(b)}") for f, b in zip(df.fwd_iters, df.bwd_iters, strict=True)],
    })  # fmt: skip
    return view.to_string(index=False)


def format_rounds(df: pd.DataFrame) -> str:
    """Step seconds of the points that ran in several rounds, one column per round."""
    table = df[df.status == "ok"].pivot_table(
        index=["graph", "arch", "depth", "aggr_impl"], columns="round", values="step_time_s"
    )
    table = table[table.notna().sum(axis=1) > 1]
    table.columns = [f"round {r} s" for r in table.columns]
    return "step time per round:\n" + table.map(lambda t: f"{t:.3f}").to_string()


def run(
    args: argparse.Namespace, log: Callable[[str], None] | None = None
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Run the plan, write the CSV, log the table and ratios (``log`` defaults to print)."""
    log = log or print
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: cuda was asked for, but no CUDA device is available")
    runs = points(args)
    rows = []
    started = time.perf_counter()
    for point in tqdm(runs, desc="bench", file=sys.stderr, disable=args.no_progress):
        point_args = point.args(args)
        row = measure_isolated(point.arch, point.depth, point.source, point_args, device)
        # rows the child did not write (timeouts, kills) still say which point they are
        row.update(graph=point.graph, nodes=point.source.nodes, edges=point.source.edges,
                   channels=point_args.channels, aggr_impl=point_args.aggr_impl,
                   round=point_args.round)  # fmt: skip
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["aggr_impl"] = args.aggr_impl
    for column in ("peak_bytes", "peak_minus_state_bytes", "activation_bytes", "model_state_bytes",
                   "params", "step_time_s", "fwd_iters", "bwd_iters", "error"):  # fmt: skip
        if column not in df:
            df[column] = math.nan
    df["device"] = device_description(device)
    df["dropout"] = args.dropout
    found = ratios(df, list(args.depths), list(args.peer_depths), list(args.compare_aggr_depths),
                   args.small_depth, args.groups)  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    log(f"device: {device_description(device)}; graph: {args.nodes:,} nodes, {args.edges:,} edges, "
        f"{args.edge_dim}-dim edge features; {args.channels} channels; max aggregation: "
        f"{args.aggr_impl}; meter: {meter_name(device)}")  # fmt: skip
    log(format_table(df[df["round"] == 0]))
    log("")
    if df["round"].max() > 0:
        log(format_rounds(df))
        log("")
    for r in found:
        target = "" if r["target"] is None else f" (target <= {r['target']:.2f})"
        spread = ""
        if r["rounds"] >= 2:
            spread = f" [{r['lo']:.3f}, {r['hi']:.3f}] over {r['rounds']} rounds"
        elif r["rounds"] == 1:
            spread = " (1 round: no interval)"
        log(f"{r['verdict']:>5}  {r['ratio']}: {r['value']:.3f}{spread}{target}")
    log(f"\nwrote {out} ({len(df)} rows) in {time.perf_counter() - started:.0f} s")
    return df, found


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"depths must be positive, got {text!r}")
    return values


def _ints_or_none(text: str) -> list[int]:
    return _ints(text) if text.strip() else []


def _graphs(text: str) -> list[tuple[int, int]]:
    out = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        nodes, _, edges = item.lower().partition("x")
        if not (nodes.isdigit() and edges.isdigit() and int(nodes) > 0 and int(edges) > 0):
            raise argparse.ArgumentTypeError(f"expected NODESxEDGES (e.g. 500x2500), got {item!r}")
        out.append((int(nodes), int(edges)))
    return out


def _archs(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in ALL_ARCHS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown arch {bad[0]!r}; choose from {', '.join(ALL_ARCHS)}"
        )
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nodes", type=int, default=10_000, help="synthetic graph nodes (default 10000)"
    )
    parser.add_argument(
        "--edges", type=int, default=100_000, help="synthetic graph edges (default 100000)"
    )
    parser.add_argument("--edge-dim", type=int, default=8, help="edge feature width; 0 for none")
    parser.add_argument("--features", type=int, default=8, help="node feature width")
    parser.add_argument(
        "--outputs", type=int, default=112, help="binary targets per node (proteins: 112)"
    )
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--aggr", default="max")
    parser.add_argument(
        "--conv", default="gen", choices=CONVS, help="every block's convolution (default gen)"
    )
    parser.add_argument("--heads", type=int, default=None, help="GAT's heads (--conv gat only)")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        help="every row's precision: forward and loss under autocast (bf16 on CPU or CUDA, fp16 "
        "with a gradient scaler on CUDA only); one run per precision, the CSV says which",
    )
    parser.add_argument(
        "--aggr-impl",
        default="fused",
        choices=AGGR_IMPLS,
        help="max aggregation of the main rows: fused (N x C argmax saved, bench.nn.aggr) or "
        "pyg (PyG's scatter_reduce path); default fused",
    )
    parser.add_argument(
        "--compare-aggr-depths",
        type=_ints_or_none,
        default=[16, 64],
        help="depths at which res and rev also run with the other aggregation implementation "
        "('' for none; default 16,64)",
    )
    parser.add_argument(
        "--small-graphs",
        type=_graphs,
        default=[(500, 2500), (1000, 10_000)],
        help="extra graphs NODESxEDGES (comma-separated; '' for none) measured with res, rev "
        "and the peer at --small-depth and --small-channels (default 500x2500,1000x10000)",
    )
    parser.add_argument("--small-channels", type=int, default=16)
    parser.add_argument("--small-depth", type=int, default=64)
    parser.add_argument(
        "--small-repeats", type=int, default=10, help="timed steps per small-graph point"
    )
    parser.add_argument("--archs", type=_archs, default=list(ALL_ARCHS), help="comma-separated")
    parser.add_argument("--depths", type=_ints, default=[16, 64, 256], help="depths for every arch")
    parser.add_argument(
        "--deep-depths", type=_ints, default=[1001], help="extra depths for rev, wt-rev, deq"
    )
    parser.add_argument(
        "--peer-depths", type=_ints, default=[16, 64], help="depths for PyG GroupAddRev"
    )
    parser.add_argument(
        "--deq-solver", default="anderson", choices=("fixed_point", "anderson", "broyden")
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed steps per point (after warm-up)"
    )
    parser.add_argument("--deep-repeats", type=int, default=1, help="timed steps beyond --depths")
    parser.add_argument(
        "--time-rounds",
        type=int,
        default=5,
        help="rounds of the step-time ratio points (res, rev, peer at the ratio depth of each "
        "graph), each point a fresh process; the time verdicts read the interval over the "
        "rounds (default 5; 1 for single points and no time verdicts)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--out",
        default="results/benchmark/benchmark.csv",
        help="CSV to write (a subfolder: results/*.csv are trial tables the report reads)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument(
        "--memory-cap",
        default="auto",
        help="CPU only: a point whose live tensors exceed this is recorded as oom (e.g. 12GiB; "
        "'auto': 60%% of the memory available at start; 'none')",
    )
    parser.add_argument("--no-progress", action="store_true")


def _memory_cap(text: str) -> int | None:
    if text == "none":
        return None
    if text == "auto":
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return int(0.6 * available)
    return parse_bytes(text, "memory_cap")


def main(args: argparse.Namespace) -> int:
    try:
        args.memory_cap = _memory_cap(args.memory_cap)
    except ConfigError as err:
        raise SystemExit(f"--memory-cap: {err.message}") from None
    if args.precision == "fp16" and args.device != "cuda":
        print("--precision: fp16 needs --device cuda (its gradient scaler); bf16 runs on CPU",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.quick:
        args.nodes, args.edges, args.channels = 200, 1000, 16
        args.depths, args.deep_depths, args.peer_depths, args.repeats = [2, 4], [], [2, 4], 1
        args.deep_repeats = 1
        args.compare_aggr_depths = [2, 4]
        args.small_graphs, args.small_depth, args.small_repeats = [(100, 400)], 4, 1
        args.time_rounds = 2
    for name in ("nodes", "edges", "channels", "repeats", "deep_repeats", "features", "outputs",
                 "small_channels", "small_depth", "small_repeats", "time_rounds"):  # fmt: skip
        if getattr(args, name) < 1:
            print(f"--{name.replace('_', '-')}: must be a positive integer", file=sys.stderr)
            return 2
    if args.conv in ("sage", "gcn") and args.edge_dim:
        print(f"--conv: {args.conv} cannot read edge features; add --edge-dim 0", file=sys.stderr)
        return 2
    if args.heads is not None and (args.conv != "gat" or args.heads < 1):
        print("--heads: a positive count, with --conv gat only", file=sys.stderr)
        return 2
    if args.conv == "gat" and (args.channels // args.groups) % (args.heads or 1):
        print("--heads: must divide channels / groups", file=sys.stderr)
        return 2
    for flag, channels in (("channels", args.channels), ("small-channels", args.small_channels)):
        if channels % args.groups:
            print(
                f"--{flag}: channels ({channels}) must be divisible by groups ({args.groups})",
                file=sys.stderr,
            )
            return 2
    run(args)
    return 0
