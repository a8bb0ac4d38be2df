"""What a benchmark run measures: the points of the main graph, the other aggregation's rows,
the small graphs, and the extra rounds of the points the step-time ratios read."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from bench.instruments.benchmark.graph import GraphSource
from bench.instruments.benchmark.options import (
    AGGR_IMPLS,
    DEQ_RATIO_ITERS,
    MAIN,
    PEER,
    add_arguments,
)
from bench.models import archs as registry

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
        flat = registry.get(arch).flat_memory  # memory-efficient: also at the "deep" depths
        depths = list(args.depths) + (list(args.deep_depths) if flat else [])
        if registry.get(arch).depth_unit == "iteration":
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
    runs += compile_points(args, runs)
    return runs + timing_rounds(args, runs)


def compile_points(args: argparse.Namespace, runs: list[Point]) -> list[Point]:
    """res, rev and the peer with the other compile setting (``--compare-compile``): at the
    small graphs' depth, and with ``all`` at the main graph's ratio depth too; their rounds
    come with the others' (:func:`timing_rounds`), so compiled / eager has an interval."""
    mode = args.compare_compile or "all"
    if mode == "none":
        return []
    mid = ratio_depth(list(args.depths))
    chosen = [
        p for p in runs
        if p.arch in ("res", "rev", PEER) and "aggr_impl" not in dict(p.overrides)
        and (p.graph != MAIN if mode == "small" else p.graph != MAIN or p.depth == mid)
    ]  # fmt: skip
    other = ("compile", not args.compile)
    return [Point(p.arch, p.depth, p.source, p.graph, (*p.overrides, other)) for p in chosen]


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
