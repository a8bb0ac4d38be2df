"""The benchmark's headline ratios and their verdicts: step time over rounds (an interval),
memory from single points, the two estimates a reversible step is read against."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.instruments.benchmark.options import DEQ_RATIO_ITERS, MAIN, PEER
from bench.instruments.benchmark.plan import ratio_depth
from bench.stats import Interval, summarize

# rev / res step-time targets per small graph (issue 14; others are printed as INFO)
SMALL_TARGETS = {(500, 2500): 1.6, (1000, 10_000): 1.4}
# compiled / eager rev step time: issue 26 asks for a measured speed-up on the 500-node graph
COMPILE_TARGETS = {"500x2500": 1.0}


def point_value(
    df: pd.DataFrame, arch: str, depth: int, column: str, graph: str = MAIN,
    impl: str | None = None, compiled: bool | None = None,
) -> float:  # fmt: skip
    """The value of one point in its first round (``impl`` / ``compiled`` None: the main rows'
    implementation and compile setting)."""
    rows = point_rounds(df, arch, depth, column, graph, impl, compiled)
    return float(rows.iloc[0]) if len(rows) else math.nan


def point_rounds(
    df: pd.DataFrame, arch: str, depth: int, column: str, graph: str = MAIN,
    impl: str | None = None, compiled: bool | None = None,
) -> pd.Series:  # fmt: skip
    """One point's ``column`` in every round it ran, indexed by round (first round first)."""
    rows = df[(df.arch == arch) & (df.depth == depth) & (df.status == "ok") & (df.graph == graph)]
    rows = rows[rows.aggr_impl == (impl or df.attrs.get("aggr_impl", "fused"))]
    if "compile" in rows:  # CSVs written before the column existed ran eagerly
        want = df.attrs.get("compile", False) if compiled is None else compiled
        rows = rows[rows["compile"].astype("boolean").fillna(False) == want]
    rounds = rows["round"] if "round" in rows else pd.Series(0, index=rows.index)
    return rows.set_index(rounds.fillna(0).astype(int))[column].sort_index()


def time_ratio(
    df: pd.DataFrame, arch: str, other: str, depth: int, graph: str = MAIN,
    compiled: bool | None = None, other_compiled: bool | None = None,
) -> Interval:  # fmt: skip
    """``arch`` / ``other`` step time from the rounds both finished: the geometric mean of the
    per-round ratios and the exponentiated 95% t-interval of their logarithms (a ratio's
    noise is multiplicative: a step 20% slow in one round is 20% slow whatever its size);
    ``std`` is the geometric standard deviation, a factor. ``compiled`` / ``other_compiled``
    pick each side's compile setting (None: the main rows')."""
    a, b = (
        point_rounds(df, arch, depth, "step_time_s", graph, compiled=compiled),
        point_rounds(df, other, depth, "step_time_s", graph, compiled=other_compiled),
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
    res_ok = [d for d in depths if not math.isnan(point_value(df, "res", d, "peak_bytes"))]
    res_high = max(res_ok, default=high)
    rows: list[tuple[str, int, float | Interval, float | None]] = [
        ("rev / res step time", mid, time_ratio(df, "rev", "res", mid), 1.30),
        ("rev / pyg-groupaddrev step time", mid, time_ratio(df, "rev", PEER, mid), 0.8),
        *floor_ratios(df, MAIN, mid, groups),
        (f"rev activations {high} / {low} layers", high,
         point_value(df, "rev", high, "activation_bytes") / point_value(df, "rev", low, "activation_bytes"), 1.10),
        (f"wt-rev activations {high} / {low} layers", high,
         point_value(df, "wt-rev", high, "activation_bytes") / point_value(df, "wt-rev", low, "activation_bytes"), 1.10),
        (f"res activations {res_high} / {low} layers (grows ~linearly)", res_high,
         point_value(df, "res", res_high, "activation_bytes") / point_value(df, "res", low, "activation_bytes"), None),
        (f"deq activations {DEQ_RATIO_ITERS[1]} / {DEQ_RATIO_ITERS[0]} iterations", DEQ_RATIO_ITERS[1],
         point_value(df, "deq", DEQ_RATIO_ITERS[1], "activation_bytes")
         / point_value(df, "deq", DEQ_RATIO_ITERS[0], "activation_bytes"), 1.10),
    ]  # fmt: skip
    for d in sorted(set(peer_depths) & set(depths)):
        rows.append((f"rev / pyg-groupaddrev peak at {d} layers", d,
                     point_value(df, "rev", d, "peak_bytes") / point_value(df, PEER, d, "peak_bytes"), 1.0))  # fmt: skip
    rows += aggr_ratios(df, sorted(set(compare_depths or []) & set(depths)))
    for graph in dict.fromkeys(df.graph[df.graph != MAIN]):
        nodes, edges = (int(v) for v in graph.split("x"))
        rows.append((f"rev / res step time on {graph}", small_depth,
                     time_ratio(df, "rev", "res", small_depth, graph),
                     SMALL_TARGETS.get((nodes, edges))))  # fmt: skip
        rows.append((f"rev / pyg-groupaddrev step time on {graph}", small_depth,
                     time_ratio(df, "rev", PEER, small_depth, graph), 0.8))  # fmt: skip
        rows += floor_ratios(df, graph, small_depth, groups)
    rows += compile_ratios(df, mid, small_depth)
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


def compile_ratios(
    df: pd.DataFrame, mid: int, small_depth: int
) -> list[tuple[str, int, Interval, float | None]]:
    """Where the other compile setting ran (``--compare-compile``): compiled / eager step time
    of res, rev and the peer, and rev / res and rev / peer with both compiled, per graph."""
    if "compile" not in df or df["compile"].astype("boolean").fillna(False).nunique() < 2:
        return []
    rows: list[tuple[str, int, Interval, float | None]] = []
    for graph in dict.fromkeys(df.graph):
        depth = mid if graph == MAIN else small_depth
        if math.isnan(point_value(df, "rev", depth, "step_time_s", graph, compiled=True)):
            continue
        where = "" if graph == MAIN else f" on {graph}"
        for arch in ("res", "rev", PEER):
            target = COMPILE_TARGETS.get(graph) if arch == "rev" else None
            rows.append((f"{arch} step time compiled / eager{where}", depth,
                         time_ratio(df, arch, arch, depth, graph, True, False), target))  # fmt: skip
        for other in ("res", PEER):
            rows.append((f"rev / {other} step time, both compiled{where}", depth,
                         time_ratio(df, "rev", other, depth, graph, True, True), None))  # fmt: skip
    return rows


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


def floor_ratios(
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
    res_fb = point_value(df, "res", depth, "fwd_bwd_s", graph)
    rev_fb = point_value(df, "rev", depth, "fwd_bwd_s", graph)
    rev_fwd = point_value(df, "rev", depth, "forward_nograd_s", graph)
    res_fwd = point_value(df, "res", depth, "forward_nograd_s", graph)
    return [
        (f"rev / res forward+backward{where}", depth, rev_fb / res_fb, None),
        (f"width-proportional estimate: 1 + res no-grad forward / res forward+backward{where}",
         depth, 1 + res_fwd / res_fb, None),
        (f"dispatch-bound estimate: (rev no-grad forward + {groups} x res forward+backward) / "
         f"res forward+backward{where}", depth, (rev_fwd + groups * res_fb) / res_fb, None),
        (f"rev backward / ({groups} x res forward+backward){where} (engine overhead)", depth,
         (rev_fb - rev_fwd) / (groups * res_fb), None),
    ]  # fmt: skip


def aggr_ratios(df: pd.DataFrame, depths: list[int]) -> list[tuple[str, int, float, Any]]:
    """fused / pyg max aggregation: ResGNN's activation bytes per layer (the slope between the
    lowest and highest compared depths), RevGNN's peak minus model state, both step times."""
    if not depths:
        return []
    act, low, high = "activation_bytes", min(depths), max(depths)

    def per_layer(impl: str) -> float:
        if high == low:
            return point_value(df, "res", high, act, impl=impl) / high
        grown = point_value(df, "res", high, act, impl=impl) - point_value(
            df, "res", low, act, impl=impl
        )
        return grown / (high - low)

    def ratio(arch: str, depth: int, column: str) -> float:
        return point_value(df, arch, depth, column, impl="fused") / point_value(
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
