"""``python -m bench bench``: run the plan point by point (each in its own process), write the
CSV, print the tables and the ratios with their verdicts (method: :mod:`.point`)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from bench.errors import ConfigError
from bench.instruments.benchmark.options import add_arguments, memory_cap
from bench.instruments.benchmark.plan import points
from bench.instruments.benchmark.point import measure_isolated
from bench.instruments.benchmark.ratios import ratios
from bench.instruments.benchmark.tables import format_rounds, format_table
from bench.measure.meters import (
    device_description,
    meter_name,
)

__all__ = ["add_arguments", "main", "run"]  # the command's entry points (bench.cli)


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
                   compile=point_args.compile, round=point_args.round)  # fmt: skip
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["aggr_impl"] = args.aggr_impl
    df.attrs["compile"] = args.compile
    for column in ("peak_bytes", "peak_minus_state_bytes", "activation_bytes", "model_state_bytes",
                   "params", "step_time_s", "compile_time_s", "fwd_iters", "bwd_iters",
                 "error"):  # fmt: skip
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
        f"{args.aggr_impl}; compiled: {'yes' if args.compile else 'no'}; meter: "
        f"{meter_name(device)}")  # fmt: skip
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


def main(args: argparse.Namespace) -> int:
    try:
        args.memory_cap = memory_cap(args.memory_cap)
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
        if args.compare_compile is None:  # compiling takes tens of seconds: not a smoke test
            args.compare_compile = "none"
    if args.compare_compile is None:
        args.compare_compile = "all"
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
