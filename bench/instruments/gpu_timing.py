"""The GPU check's timing rows: step time where users train, with an interval, eager and compiled.

Points: ResGNN, RevGNN and PyG's ``GroupAddRev`` peer (around the same block) at 112 layers on
one proteins-sized training part (the paper's figure 1 shape, 64 channels) and at 64 layers
on the engines' 10,000-node graph, each eager and with ``compile`` (block functions under
``torch.compile``, :mod:`bench.models.compiled`), over ``rounds`` rounds. As in the CPU
benchmark (:mod:`bench.instruments.benchmark.plan`), every point of every round is a fresh
process and a round's points run back to back, so a ratio's interval is over processes: the
geometric mean of the per-round ratios with the 95% t-interval of their logarithms
(:func:`bench.instruments.benchmark.ratios.time_ratio`). Compile time is its own column
(``compile_time_s``: the first round compiles cold; later rounds find torch's on-disk caches).

The targets (issue 26): rev / res <= 1.6 on the proteins part; rev <= 0.8 x the peer on the
engines graph (the single-evaluation backward's 4/3 over the peer's 5/3); RevGNN-Deep (1001 x
80, the headline row) <= 6 s per step on an H200, i.e. 2000 epochs of 10 parts in 34 hours.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

TIMING = "timing"  # the group of these rows
GRAPHS = (("paper", 112, "proteins part"), ("bench", 64, "engines graph"))
ARCHS = (("res", "ResGNN"), ("rev", "RevGNN"), ("pyg-groupaddrev", "GroupAddRev"))
DEFAULT_ROUNDS = 3
#: (ratio, graph, target): the step-time ratios the summary judges
TARGETS = (
    ("rev / res", "paper", 1.6),
    ("rev / pyg-groupaddrev", "bench", 0.8),
)
DEEP_LABEL, DEEP_TARGET_S = "RevGNN-Deep", 6.0


def label(arch: str, layers: int, graph: str, compiled: bool, round_: int) -> str:
    """A timing row's label (unique per round: ``--merge`` keys rows by label)."""
    name = dict(ARCHS)[arch]
    where = dict((g, w) for g, _, w in GRAPHS)[graph]
    return f"{name} x {layers}, {where}, {'compiled' if compiled else 'eager'} #{round_}"


def plan(point_type: Any, rounds: int) -> list[Any]:
    """The timing points, round by round (a short budget keeps whole rounds first);
    ``point_type`` is the GPU check's ``Point``."""
    return [
        point_type(TIMING, label(arch, layers, graph, compiled, r), arch, layers, 64,
                   graph=graph, compile=compiled, round=r)
        for r in range(rounds)
        for graph, layers, _ in GRAPHS
        for arch, _ in ARCHS
        for compiled in (False, True)
    ]  # fmt: skip


def _as_benchmark(frame: pd.DataFrame) -> pd.DataFrame:
    """The timing rows in the CPU benchmark's columns, for its ratio function."""
    rows = frame[frame["group"] == TIMING].copy()
    if rows.empty:
        return rows
    rows["depth"] = rows["layers"]
    rows["aggr_impl"] = rows.get("aggr_impl", "fused")
    compiled = rows["compile"] if "compile" in rows else pd.Series(False, index=rows.index)
    rows["compile"] = compiled.astype("boolean").fillna(False)
    rows.attrs["aggr_impl"] = rows["aggr_impl"].iloc[0] if len(rows) else "fused"
    return rows


def ratios(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """rev / res and rev / peer per graph, eager and compiled; compiled / eager per arch; with
    their intervals over the rounds and, where issue 26 sets one, a verdict."""
    from bench.instruments.benchmark.ratios import time_ratio, verdict

    rows = _as_benchmark(frame)
    out: list[dict[str, Any]] = []
    if rows.empty:
        return out
    targets = {(name, graph): target for name, graph, target in TARGETS}

    def add(name: str, graph: str, interval: Any, target: float | None) -> None:
        found = {"ratio": name, "graph": graph, "target": target, "value": interval.mean,
                 "lo": interval.lo, "hi": interval.hi, "rounds": interval.n}  # fmt: skip
        found["verdict"] = verdict(found)
        out.append(found)

    for graph, layers, where in GRAPHS:
        for compiled in (False, True):
            mode = "compiled" if compiled else "eager"
            for other in ("res", "pyg-groupaddrev"):
                name = f"rev / {other}"
                interval = time_ratio(rows, "rev", other, layers, graph, compiled, compiled)
                add(f"{name} ({mode})", where, interval, targets.get((name, graph)))
        for arch, _ in ARCHS:
            interval = time_ratio(rows, arch, arch, layers, graph, True, False)
            add(f"{arch} compiled / eager", where, interval, None)
    return out


def summary_lines(frame: pd.DataFrame) -> list[str]:
    """The summary's timing section: the ratios with intervals and verdicts, compile times,
    and RevGNN-Deep's step against its target."""
    found = ratios(frame)
    if not found:
        return []
    lines = [
        "## timing: ratios over rounds",
        "",
        "Step-time ratios over fresh-process rounds: geometric mean [95% interval] of the "
        "per-round ratios; PASS/FAIL only when the whole interval is on one side of the target "
        "(NOISE otherwise; n/a with fewer than 2 rounds).",
        "",
        "| ratio | graph | value | interval | rounds | target | verdict |",
        "| --- | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for r in found:
        interval = "" if r["rounds"] < 2 else f"[{r['lo']:.3f}, {r['hi']:.3f}]"
        value = "" if math.isnan(r["value"]) else f"{r['value']:.3f}"
        target = "" if r["target"] is None else f"<= {r['target']:.2f}"
        lines.append(f"| {r['ratio']} | {r['graph']} | {value} | {interval} | {r['rounds']} | "
                     f"{target} | {r['verdict']} |")  # fmt: skip
    timed = frame[(frame["group"] == TIMING) & (frame["status"] == "ok")]
    if "compile_time_s" in timed and timed["compile_time_s"].notna().any():
        first = timed[timed["label"].str.endswith("#0") & timed["compile_time_s"].notna()]
        later = timed[~timed["label"].str.endswith("#0") & timed["compile_time_s"].notna()]
        lines += ["", f"Compile time per compiled point: round 0 (cold caches) "
                  f"{_span(first['compile_time_s'])} s, later rounds {_span(later['compile_time_s'])} s."]  # fmt: skip
    deep = frame[(frame["label"] == DEEP_LABEL) & (frame["status"] == "ok")]
    if len(deep):
        step = float(deep["step_time_s"].iloc[0])
        verdict = "PASS" if step <= DEEP_TARGET_S else "FAIL"
        lines += ["", f"{DEEP_LABEL} (1001 x 80, one proteins part): {step:.2f} s per step "
                  f"(target <= {DEEP_TARGET_S:.0f} s): {verdict}; 2000 epochs of 10 parts: "
                  f"{step * 20_000 / 3600:.0f} hours."]  # fmt: skip
    return [*lines, ""]


def _span(values: pd.Series) -> str:
    if values.empty:
        return "-"
    return f"{values.min():.0f}-{values.max():.0f}" if len(values) > 1 else f"{values.iloc[0]:.0f}"
