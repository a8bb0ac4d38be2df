"""A trial's time before it runs: step time from measured steps, times the steps it will take.

A training step of an L-layer model on a batch of ``n`` nodes and ``e`` edges at width ``C``
is modelled per architecture family as::

    step_s = L_eff * (overhead + cost * (n + e) * C)

``overhead`` (seconds per layer: kernel launches, Python) and ``cost`` (seconds per
node-or-edge channel per layer) are least-squares fits (non-negative) to committed step times
measured on the same kind of device: ``results/gpu/gpu-check.csv`` for CUDA (H100/H200, one
metered step each, 112-1001 layers on ogbn-proteins-sized parts and 64 layers on a
10k-node graph) and ``results/benchmark/benchmark.csv`` for CPU (one thread). One fit per
architecture family (``bench.models.archs``: residual, reversible, equilibrium), each member at
its ``time_factor`` of it (checkpointing at 4/3: its recomputation); ``L_eff`` is the arch's
depth (an equilibrium model's iteration cap, its worst case: the solver may stop earlier).
:func:`calibration` says how well each fit matches its own points.

A trial then takes ``epochs x (train_parts steps + eval_parts evaluation forwards at 1/3 of a
step each + the epoch's partition on the host)`` plus a fixed start-up. Batches: a random node
partition into k parts keeps E / k^2 edges a part, a component partition E / k. Two constants
are estimates, not measurements: the start-up (a fresh process: imports, data, CUDA context;
10 s) and the host partition (5e-8 s an edge: "a few seconds" at ogbn-proteins' 79M edges,
``bench.data.partition``). With ``patience`` a trial may stop earlier: the estimate is for all
``epochs`` (an upper bound). It ignores the device's memory (an OOM ends a trial in seconds),
a first generation of a cached graph, and the CPU meter's overhead on the first epoch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data.paths import REPO_ROOT
from bench.models import archs

STARTUP_S = 10.0  # per trial: a fresh process, imports, data, CUDA context (an estimate)
PARTITION_S_PER_EDGE = 5e-8  # a random partition per epoch, on the host: ~4 s at 79M edges
EVAL_SHARE = 1 / 3  # an evaluation forward (no grad) against a training step
CALIBRATION = {
    "cuda": REPO_ROOT / "results" / "gpu" / "gpu-check.csv",
    "cpu": REPO_ROOT / "results" / "benchmark" / "benchmark.csv",
}


@dataclass(frozen=True)
class Fit:
    """``step_s / L = overhead + cost * (nodes + edges) * channels`` for one family."""

    family: str
    overhead: float
    cost: float
    points: int
    worst_ratio: float  # the largest predicted/measured (or its inverse) over the fitted points

    def step_s(self, layers: int, nodes: int, edges: int, channels: int) -> float:
        return layers * (self.overhead + self.cost * (nodes + edges) * channels)


def _rows(device: str, path: Path | None = None) -> Any:
    """Measured ok steps as (arch, layers, nodes, edges, channels, step_s) columns."""
    import pandas as pd

    table = pd.read_csv(path or CALIBRATION[device])
    table = table[(table["status"] == "ok") & table["step_time_s"].notna()]
    if "batch_nodes" in table:  # gpu-check: the batch a step ran on
        nodes, edges, layers = table["batch_nodes"], table["batch_edges"], table["layers"]
    else:  # benchmark: a whole graph per step
        nodes, edges, layers = table["nodes"], table["edges"], table["depth"]
    known = {a.name: a for a in archs.registered()}
    keep = table["arch"].isin(known) & (table.get("precision", "fp32") == "fp32")
    if "aggr_impl" in table:
        keep &= table["aggr_impl"] == "fused"
    return pd.DataFrame({
        "family": table["arch"].map({n: a.family for n, a in known.items()}), "layers": layers,
        "nodes": nodes, "edges": edges, "channels": table["channels"],
        "step_s": table["step_time_s"],
        "factor": table["arch"].map({n: a.time_factor for n, a in known.items()}),
    })[keep]  # fmt: skip


@functools.cache
def calibration(device: str, path: Path | None = None) -> dict[str, Fit]:
    """The fitted families for ``device`` ("cuda" or "cpu"), from its calibration table."""
    import numpy as np
    from scipy.optimize import nnls

    rows = _rows(device, path)
    fits = {}
    for family, group in rows.groupby("family"):
        per_layer = group["step_s"] / group["layers"] / group["factor"]
        work = (group["nodes"] + group["edges"]) * group["channels"]
        # relative least squares: every point weighs the same, small and large
        a = np.column_stack([np.ones(len(group)), work]) / per_layer.to_numpy()[:, None]
        (overhead, cost), _ = nnls(a, np.ones(len(group)))
        predicted = overhead + cost * work
        ratio = np.maximum(predicted / per_layer, per_layer / predicted)
        fits[str(family)] = Fit(str(family), float(overhead), float(cost), len(group),
                                float(ratio.max()))  # fmt: skip
    return fits


def batch_size(dataset: str, nodes: int, edges: int, parts: int) -> tuple[int, int]:
    """Nodes and edges of one of ``parts`` batches: a random node partition keeps an edge when
    both its ends fall in the same part (E / k^2 a part, in expectation); a graph partitioned
    by component (``synthetic-depth``'s trees) keeps every edge (E / k a part)."""
    from bench.data.registry import SPECS

    spec = SPECS.get(dataset)
    whole = spec is not None and spec.extra.get("size") == "forest"
    return nodes // parts, edges // (parts if whole or parts == 1 else parts * parts)


def estimate_trial(config: Any, device: str, fits: dict[str, Fit] | None = None) -> float | None:
    """Seconds one trial of ``config`` takes on ``device`` ("cuda" or "cpu"); None where its
    graph's size or its arch's fit is unknown. The graph's size comes from the registry
    (:func:`bench.data.registry.graph_size`)."""
    from bench.data.registry import graph_size

    size = graph_size(config.dataset, config.dataset_options)
    fits = fits if fits is not None else calibration(device)
    arch = config.architecture
    fit = fits.get(arch.family)
    if size is None or fit is None:
        return None
    layers, factor = config.model.depth, arch.time_factor
    full = config.batching == "full"

    def steps(parts: int) -> float:  # seconds of ``parts`` training steps covering the graph
        nodes, edges = batch_size(config.dataset, *size, parts)
        return parts * factor * fit.step_s(layers, nodes, edges, config.channels)

    train = steps(1 if full else config.train_parts)
    evaluation = EVAL_SHARE * steps(1 if full else config.eval_parts) / config.eval_every
    partition = 0.0 if full else PARTITION_S_PER_EDGE * size[1]
    return STARTUP_S + config.epochs * (train + evaluation + partition)


def plan_lines(configs: list[Any], workers: int | None = None) -> list[str]:
    """The dry run's closing lines: the predicted time of every trial, summed, on one GPU and
    on this machine's CPU with ``workers`` trials at a time, and what it was calibrated on."""
    lines = []
    for device, where in (("cuda", "one GPU"), ("cpu", "CPU")):
        times = [estimate_trial(c, device) for c in configs]
        known = [t for t in times if t is not None]
        if not known:
            lines.append(f"predicted time on {where}: unknown (no calibration fits these points)")
            continue
        parallel = max(1, workers or 1) if device == "cpu" else 1
        total = sum(known) / parallel
        fits = calibration(device)
        worst = max(f.worst_ratio for f in fits.values())
        at = f", {parallel} workers" if parallel > 1 else ""
        missing = f" ({len(times) - len(known)} trials unknown)" if len(known) < len(times) else ""
        lines.append(
            f"predicted time on {where}{at}: {_duration(total)} for {len(known)} trials{missing}, "
            f"at most epochs, {STARTUP_S:g} s start-up each (calibrated on "
            f"{CALIBRATION[device].relative_to(REPO_ROOT)}: fits within x{worst:.1f} of its "
            "points)"
        )
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
