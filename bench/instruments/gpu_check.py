"""``python -m bench gpu-check``: the paper's memory numbers at the paper's scale on one GPU, in
one command that fits a few minutes, without the paper's dataset.

GPU time is scarce and comes without internet, so ogbn-proteins cannot be fetched onto it.
What the paper's memory figures depend on is the *shape* of a training batch, not its labels:
one part of a random 10-partition of ogbn-proteins (13.3k nodes, 0.79M edges, 8-dim edge
features, 112 tasks). ``synthetic-proteins-paper`` has those sizes, so this command cuts one
training part from it (the same partition a trial's first epoch draws) and measures, on that
batch, every point of the paper's figure 1 table (112 layers), the depth series of figure 2
(RevGNN to 1001 layers; ResGNN until it runs out of memory) and RevGNN-Deep/-Wide; the timing
rows (ResGNN, RevGNN and PyG's peer, eager and compiled, over fresh-process rounds with an
interval: :mod:`bench.instruments.gpu_timing`); then the engines' benchmark (``bench bench
--device cuda``) on its own 10k-node graph. First of all, a ``torch.profiler`` summary of a
RevGNN step (:mod:`bench.instruments.gpu_profile`, ``profile-rev.md``).

Each point is one training step measured like ``bench bench`` does it: in its own process,
which loads the batch from disk onto its own device (a CUDA tensor handed to a spawned child
would be the parent's allocation, invisible to the child's allocator statistics); a warm-up
step; then a metered step split into forward+backward and optimiser step
(:func:`bench.measure.meters.metered_step`): ``torch.cuda.max_memory_allocated`` (the headline, what
the paper read), ``max_memory_reserved``, the baseline after setup and at the step's entry;
then timed steps. Deterministic algorithms stay off (their slower scatter kernels would be
timed). Beside each point: the paper's number and the memory model's prediction.

Every row carries the commit it ran (``commit``; ``commit_source``: ``run``, or ``SUMMARY.md``
for the rows measured before the column, whose commit their run's summary names), so a later
call can tell today's rows from older ones (``python -m bench gpu-backlog`` reruns the others).
It prints progress, writes ``results/gpu/gpu-check.csv`` and ``results/gpu/SUMMARY.md`` after
every point, and stops starting points when ``--budget-s`` is spent (a running point is killed
at the budget and recorded as ``timeout``), so what it measured is kept. ``--dry-run`` lists
the plan and the predicted memory of every point on any machine; without a CUDA device the
real run is refused before anything runs.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import paper
from bench.units import format_bytes, parse_bytes

DATASET = "synthetic-proteins-paper"
OUT = "results/gpu"
ENV_COLUMNS = ("device", "device_memory_bytes", "torch", "cuda", "commit", "source_hash")
#: where a row's ``commit`` comes from: "run" (recorded by it) or "SUMMARY.md" (filled afterwards)
COMMIT_SOURCE = "commit_source"
ENGINES_GRAPH = (10_000, 100_000)  # the engines' graph: nodes, edges
DEFAULT_BUDGET_S = 450.0
#: a point is not started with less than this left of the budget (start-up, load, 3 steps)
MIN_POINT_S = 20.0
#: the machine, not the models, is at fault after this many errors in a row: stop measuring
MAX_ERRORS_IN_A_ROW = 3
#: points this deep are timed over one step (after warm-up and the metered step), not --repeats
DEEP_FROM = 257
#: the profile's process is killed after this long (start-up, load, compile, 5 steps)
PROFILE_TIMEOUT_S = 240.0
DEFAULT_TIMING_ROUNDS = 3


@dataclass(frozen=True)
class Point:
    """One measurement: a model shape on a graph, with the paper's number when it has one."""

    group: str  # "figure 1", "depth", "headline", "engines"
    label: str
    arch: str
    layers: int
    channels: int
    groups: int = 2
    dropout: float = 0.1
    graph: str = "paper"  # "paper": one proteins-sized training part; "bench": the engines' graph
    paper_point: paper.PaperPoint | None = None
    stop_series_on_oom: bool = False  # ResGNN's depth series ends at its first out-of-memory
    compile: bool = False  # block functions under torch.compile (timing rows; else --compile)
    round: int = 0  # timing rows: the fresh-process round


def _figure1() -> list[Point]:
    return [
        Point("figure 1", p.label, p.arch, p.layers, p.channels, paper_point=p)
        for p in paper.FIGURE1
    ]


def _depth_series() -> list[Point]:
    rev = [Point("depth", f"RevGNN-64 x {L}", "rev", L, 64) for L in (3, 28, 448, 1001)]
    res = [
        Point("depth", f"ResGNN-64 x {L}", "res", L, 64, stop_series_on_oom=True)
        for L in (3, 28, 56, 224, 448)
    ]
    return rev + res


def _headline() -> list[Point]:
    return [
        Point("headline", p.label, p.arch, p.layers, p.channels, p.groups or 2,
              dropout=0.2 if p.label == "RevGNN-Wide" else 0.1, paper_point=p)
        for p in paper.HEADLINE
    ]  # fmt: skip


def _engines(depths: list[int], deep: list[int], peer: list[int]) -> list[Point]:
    from bench.instruments.benchmark.plan import plan, point_args
    from bench.models import archs

    args = point_args(archs=list(archs.names()), depths=depths, deep_depths=deep, peer_depths=peer)
    return [
        Point("engines", f"{arch} x {depth}", arch, depth, 64, graph="bench")
        for arch, depth in plan(args)
    ]


def plan_points(engines: bool = True, timing_rounds: int = 0) -> list[Point]:
    """Figure 1's points first (the paper's table), then figure 2's depth series, the headline
    models, the timing rows and the engines' benchmark: what matters most runs first when
    time is short (``--only timing profile`` for the step times alone)."""
    from bench.instruments import gpu_timing

    points = _figure1() + _depth_series() + _headline() + gpu_timing.plan(Point, timing_rounds)
    if engines:
        points += _engines([16, 64, 256], [1001], [16, 64])
    return points


# --- sizes and predictions --------------------------------------------------------------------
def paper_sizes() -> Any:
    """Expected sizes of one proteins training part (for predictions without the graph)."""
    from bench.measure.memory_model import GraphSizes

    nodes, edges = paper.proteins_batch()
    return _sizes(nodes, edges, paper.PROTEINS_NODE_FEATURES, paper.PROTEINS_EDGE_DIM,
                  paper.PROTEINS_TASKS, GraphSizes)  # fmt: skip


def _sizes(nodes: int, edges: int, features: int, edge_dim: int, outputs: int, cls: Any) -> Any:
    batch_bytes = 4 * nodes * features + 16 * edges + 4 * edges * edge_dim + 4 * nodes * outputs
    return cls(nodes=nodes, edges=edges, features=features, edge_dim=edge_dim, outputs=outputs,
               batch_nodes=nodes, batch_edges=edges, batch_train_nodes=nodes,
               batch_bytes=batch_bytes)  # fmt: skip


def graph_sizes(graph: Any) -> Any:
    """Sizes of a :class:`bench.instruments.benchmark.graph.Graph` (loss over every node, as the check's step)."""
    from bench.measure.memory_model import GraphSizes

    edge_dim = graph.edge_attr.size(1) if graph.edge_attr is not None else 0
    return _sizes(graph.x.size(0), graph.edge_index.size(1), graph.x.size(1), edge_dim,
                  graph.y.size(1), GraphSizes)  # fmt: skip


def predict(point: Point, sizes: Any, aggr_impl: str = "fused") -> Any:
    """The memory model's CUDA prediction for ``point`` (None for the PyG peer)."""
    from bench.config import TrialConfig
    from bench.measure.memory_model import predict as model_predict
    from bench.models import archs

    if point.arch not in archs.names():
        return None
    grouped = "groups" in archs.get(point.arch).accepts()
    config = TrialConfig.from_dict(
        {"arch": point.arch, "layers": point.layers, "channels": point.channels,
         "groups": point.groups if grouped else 2,
         "dropout": point.dropout, "device": "cuda", "aggr_impl": aggr_impl,
         "dataset_options": {"num_tasks": sizes.outputs}},
        check_device=False,
    )  # fmt: skip
    return model_predict(config, sizes)


# --- the graphs -------------------------------------------------------------------------------
def prepare_paper_batch(work: Path, log: Any) -> Path:
    """Cut the first training part of ``synthetic-proteins-paper`` (as a trial's first epoch
    draws it) and save it for the measuring processes; cached by the work directory."""
    from bench.instruments.benchmark.graph import Graph, save_graph

    path = work / "paper-batch.pt"
    if path.exists():
        log(f"paper batch: cached {path}")
        return path
    from bench.data import load
    from bench.data.partition import derived_seed, trial_batches

    started = time.perf_counter()
    dataset = load(DATASET)
    data = dataset.data
    log(f"{DATASET}: {data.num_nodes:,} nodes, {data.edge_index.size(1):,} edges "
        f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    batch = trial_batches(data, paper.PROTEINS_TRAIN_PARTS, derived_seed(0, 1, 1), "mini")[0]
    save_graph(Graph(batch.x, batch.edge_index, batch.edge_attr, batch.y.float()), path)
    log(f"paper batch: {batch.num_nodes:,} nodes, {batch.edge_index.size(1):,} edges -> {path}")
    return path


# --- running ----------------------------------------------------------------------------------
def _point_args(point: Point, base: argparse.Namespace) -> argparse.Namespace:
    from bench.instruments.benchmark.plan import point_args

    return point_args(channels=point.channels, groups=point.groups, dropout=point.dropout,
                      repeats=base.repeats, aggr_impl=base.aggr_impl, deep_repeats=1,
                      depths=[DEEP_FROM - 1], compile=point.compile or base.compile,
                      round=point.round)  # fmt: skip


def _row(point: Point, measured: dict[str, Any], prediction: Any, sizes: Any) -> dict[str, Any]:
    pp = point.paper_point
    row: dict[str, Any] = {
        "group": point.group, "label": point.label, "arch": point.arch, "layers": point.layers,
        "channels": point.channels, "groups": point.groups, "dropout": point.dropout,
        "graph": point.graph, "batch_nodes": sizes.batch_nodes, "batch_edges": sizes.batch_edges,
        "paper_params": pp.params if pp else None,
        "paper_peak_gb": pp.peak_memory_gb if pp else None,
        "paper_oom": bool(pp and pp.oom),
        "predicted_params": prediction.params if prediction else None,
        "predicted_peak_bytes": prediction.total_bytes if prediction else None,
        "predicted_fwd_bwd_bytes": prediction.fwd_bwd_bytes if prediction else None,
    }  # fmt: skip
    # the measurement's own graph name is the benchmark's ("main"); the check names its graphs
    row.update({k: v for k, v in measured.items() if k not in ("arch", "depth", "graph")})
    return row


def _environment() -> dict[str, Any]:
    import torch

    from bench.measure.provenance import git_commit, source_hash

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "commit": git_commit(),
        "source_hash": source_hash(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, device_memory_bytes=int(props.total_memory))
    return info


def run(args: argparse.Namespace, log: Any = print, device: str = "cuda") -> Any:
    """Measure the plan within the budget; write the CSV and summary after each point.
    (``device="cpu"`` runs the same plan under the CPU meter: the tests' way in.)"""
    import pandas as pd
    import torch

    from bench.instruments.benchmark.graph import GraphSource
    from bench.instruments.benchmark.point import measure_isolated

    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    env = _environment()
    log(f"gpu-check on {env.get('device')} ({format_bytes(env.get('device_memory_bytes'))}), "
        f"torch {env['torch']}, CUDA {env['cuda']}; budget {args.budget_s:.0f} s")  # fmt: skip
    points = [p for p in _plan(args) if _selected(p, args)]
    csv = out / "gpu-check.csv"
    previous = read_rows(csv) if args.merge and csv.exists() else None
    sources = {
        "bench": GraphSource(*ENGINES_GRAPH, 8, 8, 112, 0),
    }
    if any(p.graph == "paper" for p in points) or _profile_selected(args):
        sources["paper"] = GraphSource(path=str(prepare_paper_batch(work, log)))
    sizes = {name: graph_sizes(src.load("cpu")) for name, src in sources.items()}
    target = torch.device(device)
    if _profile_selected(args) and "paper" in sources:
        _profile(sources["paper"], args, target, out, log)
    rows: list[dict[str, Any]] = []
    stopped_series: set[tuple[str, str, int]] = set()
    failures = 0
    from tqdm import tqdm

    bar = tqdm(points, desc="gpu-check", file=sys.stderr, disable=args.no_progress)
    for point in bar:
        left = args.budget_s - (time.perf_counter() - started)
        series = (point.group, point.arch, point.channels)
        prediction = predict(point, sizes[point.graph], args.aggr_impl)
        if failures >= MAX_ERRORS_IN_A_ROW:
            measured = {"status": "skipped", "error": f"{failures} points in a row failed"}
        elif series in stopped_series:
            measured = {"status": "skipped", "error": "deeper than a point that ran out of memory"}
        elif left < MIN_POINT_S:
            measured = {"status": "skipped", "error": f"budget spent ({args.budget_s:.0f} s)"}
        else:
            bar.set_postfix_str(point.label)
            measured = measure_isolated(point.arch, point.layers, sources[point.graph],
                                        _point_args(point, args), target, timeout=left)  # fmt: skip
            if measured.get("status") == "oom" and point.stop_series_on_oom:
                stopped_series.add(series)
            failures = failures + 1 if measured.get("status") == "error" else 0
        rows.append(_row(point, measured, prediction, sizes[point.graph]))
        rows[-1]["aggr_impl"] = args.aggr_impl
        rows[-1].update({key: env.get(key) for key in ENV_COLUMNS})
        rows[-1][COMMIT_SOURCE] = "run"
        log(_point_line(rows[-1]))
        frame = pd.DataFrame(rows)
        if previous is not None:
            frame = merge_runs(previous, frame)
        frame.to_csv(out / "gpu-check.csv", index=False)
        (out / "SUMMARY.md").write_text(summary(frame, env, time.perf_counter() - started))
    bar.close()
    log(f"wrote {out / 'gpu-check.csv'} and {out / 'SUMMARY.md'} "
        f"({len(rows)} points, {time.perf_counter() - started:.0f} s)")  # fmt: skip
    return pd.DataFrame(rows)


def merge_runs(previous: Any, new: Any) -> Any:
    """A short lease's rows over an earlier run's: a point measured now (any status but
    skipped) replaces the earlier row; every other earlier row stays, with the device it ran
    on, in the earlier order."""
    import pandas as pd

    measured = new[new["status"] != "skipped"]
    unseen = new[~new["label"].isin(previous["label"]) & (new["status"] == "skipped")]
    kept = previous[~previous["label"].isin(measured["label"])]
    order = [*previous["label"], *new["label"][~new["label"].isin(previous["label"])]]
    merged = pd.concat([kept, measured, unseen], ignore_index=True).set_index("label")
    return merged.loc[order].reset_index()


def _plan(args: argparse.Namespace) -> list[Point]:
    return plan_points(engines=not args.skip_engines, timing_rounds=args.timing_rounds)


def read_rows(csv: Path) -> Any:
    """An earlier ``gpu-check.csv``, every row with its commit (:func:`with_commit`)."""
    import pandas as pd

    return with_commit(pd.read_csv(csv), csv.parent / "SUMMARY.md")


def with_commit(frame: Any, summary: Path) -> Any:
    """Rows measured before the ``commit`` column get the commit their run's ``SUMMARY.md``
    names (every call of a merged run wrote it), marked ``commit_source = "SUMMARY.md"``; a row
    that recorded its own commit keeps it, even an empty one (a run outside a git checkout)."""
    frame = frame.copy()
    for column in ("commit", COMMIT_SOURCE):
        if column not in frame:
            frame[column] = None
    unrecorded = frame[COMMIT_SOURCE].isna()
    found = documented_commit(summary)
    if found and unrecorded.any():
        frame[["commit", COMMIT_SOURCE]] = frame[["commit", COMMIT_SOURCE]].astype(object)
        frame.loc[unrecorded, "commit"] = found
        frame.loc[unrecorded, COMMIT_SOURCE] = "SUMMARY.md"
    return frame


def documented_commit(summary: Path) -> str | None:
    """The commit a ``SUMMARY.md`` names (``commit <sha>[-dirty]``), or None."""
    import re

    text = summary.read_text() if summary.exists() else ""
    found = re.search(r"commit ([0-9a-f]{7,40}(?:-dirty)?)", text)
    return found.group(1) if found else None


def _selected(point: Point, args: argparse.Namespace) -> bool:
    """``--only`` words: a point is chosen if one is in its label or is its group's name
    (with ``--exact``: if one is its whole label or its group's name)."""
    words = [w.lower() for w in args.only]
    label = point.label.lower()
    return not words or any(
        (w == label if args.exact else w in label) or w == point.group for w in words
    )


def _profile_selected(args: argparse.Namespace) -> bool:
    return not args.no_profile and (not args.only or "profile" in [w.lower() for w in args.only])


def _profile(source: Any, args: argparse.Namespace, device: Any, out: Path, log: Any) -> None:
    """The RevGNN step profile in its own process (``profile-rev.md``), before the points."""
    from bench.instruments import gpu_profile

    started = time.perf_counter()
    point = Point("profile", "profile", "rev", 112, 64)
    path, error = gpu_profile.run(source, _point_args(point, args), device, out,
                                  timeout=min(PROFILE_TIMEOUT_S, args.budget_s))  # fmt: skip
    took = time.perf_counter() - started
    log(f"profile: {path} ({took:.0f} s)" if path else f"profile: failed ({error})")


def _gb(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value / 1e9:.2f}"


def _point_line(row: dict[str, Any]) -> str:
    status = row.get("status")
    text = f"{row['label']:<22} {status:<8}"
    if status == "ok":
        text += (f" peak {_gb(row.get('peak_bytes'))} GB (reserved "
                 f"{_gb(row.get('reserved_peak_bytes'))}), step {row.get('step_time_s', 0):.3f} s")  # fmt: skip
    elif row.get("error"):
        text += f" {str(row['error']).splitlines()[0][:90]}"
    if row.get("paper_peak_gb"):
        text += f"; paper {row['paper_peak_gb']:.2f} GB"
    if row.get("predicted_peak_bytes"):
        text += f"; predicted {_gb(row['predicted_peak_bytes'])} GB"
    return text


def summary(frame: Any, env: dict[str, Any], seconds: float) -> str:
    from bench.instruments import gpu_timing

    """The Markdown summary: environment, then one table per group, beside paper and model."""
    devices = list(dict.fromkeys(frame["device"].dropna())) if "device" in frame else []
    where = (
        f"Devices: {', '.join(devices)} (the *device* column says which ran each point; "
        f"the last call ran on {env.get('device')}); "
        if len(devices) > 1
        else f"Device: {env.get('device')} ({format_bytes(env.get('device_memory_bytes'))}); "
    )
    lines = [
        "# GPU check",
        "",
        where + f"torch {env.get('torch')}, CUDA {env.get('cuda')}, Python {env.get('python')}; "
        f"commit {env.get('commit')}.{_commits(frame)} Meter: "
        "`torch.cuda.max_memory_allocated` (peak) and "
        f"`max_memory_reserved`, one process per point, deterministic algorithms off. "
        f"{len(frame)} points; the last call took {seconds:.0f} s (`python -m bench gpu-check`"
        + (", then `--only ... --merge`)." if len(devices) > 1 else ")."),
        "",
        "Memory in GB (10^9 bytes, as the paper prints it). Paper graph: one training part of "
        f"`{DATASET}` (ogbn-proteins' sizes, 10 parts); engines graph: 10,000 nodes, "
        "100,000 edges. *setup*: allocated after the model and optimiser are built; *baseline*: "
        "at the metered step's entry (weights, Adam moments, batch); *step adds*: forward + "
        "backward peak minus baseline; *opt. step*: the optimiser step's peak.",
        "",
    ]
    cols = ["label", "status", "params", "paper_params", "peak GB", "paper GB", "predicted GB",
            "reserved GB", "setup GB", "baseline GB", "step adds GB", "opt. step GB", "step s",
            *(["device"] if len(devices) > 1 else [])]  # fmt: skip
    for group, part in frame.groupby("group", sort=False):
        lines += [f"## {group}", "", "| " + " | ".join(cols) + " |",
                  "| " + " | ".join("---" if c in ("label", "status") else "---:" for c in cols) + " |"]  # fmt: skip
        for _, r in part.iterrows():
            paper_gb = "OOM" if r.get("paper_oom") else _num(r.get("paper_peak_gb"), "{:.2f}")
            cells = [
                str(r["label"]), str(r.get("status")), _num(r.get("params"), "{:,.0f}"),
                _num(r.get("paper_params"), "{:,.0f}"), _gb(r.get("peak_bytes")), paper_gb,
                _gb(r.get("predicted_peak_bytes")), _gb(r.get("reserved_peak_bytes")),
                _gb(r.get("setup_bytes")), _gb(r.get("baseline_bytes")),
                _gb(r.get("step_added_bytes")), _gb(r.get("optimizer_peak_bytes")),
                _num(r.get("step_time_s"), "{:.3f}"),
                *([str(r.get("device"))] if len(devices) > 1 else []),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines + gpu_timing.summary_lines(frame))


def _commits(frame: Any) -> str:
    """Which commits the rows come from, when a merged run spans more than one."""
    if "commit" not in frame or frame["commit"].nunique() < 2:
        return ""
    counts = frame["commit"].fillna("not recorded").value_counts(sort=False)
    return (" Rows by commit (the *commit* column): "
            + ", ".join(f"{c} ({n})" for c, n in counts.items()) + ".")  # fmt: skip


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return fmt.format(value)


def dry_run(args: argparse.Namespace) -> int:
    """The plan and each point's predicted CUDA memory, from the expected batch sizes."""
    from bench.measure.memory_model import GraphSizes

    sizes = {"paper": paper_sizes(), "bench": _sizes(*ENGINES_GRAPH, 8, 8, 112, GraphSizes)}
    points = [p for p in _plan(args) if _selected(p, args)]
    target = args.target_memory
    if _profile_selected(args):
        print("profile: a torch.profiler summary of RevGNN-64 x 112 on the paper batch "
              f"(eager{', compiled' if args.compile else ''}) -> profile-rev.md")  # fmt: skip
    print(f"gpu-check plan: {len(points)} points, budget {args.budget_s:.0f} s; predicted with "
          f"the memory model for CUDA (paper batch: {sizes['paper'].batch_nodes:,} nodes, "
          f"{sizes['paper'].batch_edges:,} edges expected)")  # fmt: skip
    print(f"{'group':<9} {'point':<44} {'params':>12} {'predicted':>11} {'paper':>9}"
          + ("  fits" if target else ""))  # fmt: skip
    for p in points:
        pred = predict(p, sizes[p.graph], args.aggr_impl)
        paper_gb = ("OOM" if p.paper_point.oom else _num(p.paper_point.peak_memory_gb, "{:.2f}")
                    ) if p.paper_point else ""  # fmt: skip
        fits = ""
        if target and pred is not None:
            fits = "  yes" if pred.total_bytes <= target else "  no"
        print(f"{p.group:<9} {p.label:<44} {(f'{pred.params:,}' if pred else ''):>12} "
              f"{(_gb(pred.total_bytes) + ' GB' if pred else ''):>11} {paper_gb:>9}{fits}")  # fmt: skip
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help=f"stop starting points after this many seconds (default {DEFAULT_BUDGET_S:.0f})")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true",
                        help="list the plan and each point's predicted memory; run nothing (any machine)")  # fmt: skip
    parser.add_argument("--target-memory", type=lambda t: parse_bytes(t, "target_memory"),
                        default=None, help="with --dry-run: a device size to check, e.g. 32GB")  # fmt: skip
    parser.add_argument("--only", nargs="*", default=[],
                        help="run only points whose label contains one of these words")  # fmt: skip
    parser.add_argument("--exact", action="store_true",
                        help="--only words match whole labels (or group names), not parts: "
                        "how gpu-backlog names the points still to measure")  # fmt: skip
    parser.add_argument(
        "--skip-engines", action="store_true", help="leave out the engines' benchmark"
    )
    parser.add_argument(
        "--aggr-impl",
        default="fused",
        choices=("fused", "pyg"),
        help="GENConv's max aggregation: fused (the default) or pyg (PyG's scatter_reduce, "
        "which saves two E x C tensors per layer; what the committed results/gpu/ ran)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per point")
    parser.add_argument("--compile", action="store_true",
                        help="run every point's block functions under torch.compile (the timing "
                        "rows run both ways whatever this says); compile time is its own column")  # fmt: skip
    parser.add_argument("--timing-rounds", type=int, default=DEFAULT_TIMING_ROUNDS,
                        help="fresh-process rounds of the timing rows (res, rev and the peer, "
                        f"eager and compiled; default {DEFAULT_TIMING_ROUNDS}; 0: none)")  # fmt: skip
    parser.add_argument("--no-profile", action="store_true",
                        help="leave out the torch.profiler summary of a RevGNN step")  # fmt: skip
    parser.add_argument(
        "--out", default=OUT, help=f"folder for the CSV and summary (default {OUT})"
    )
    parser.add_argument("--work-dir", default=None, help="where the paper batch is cached "
                        "(default: the data work directory)")  # fmt: skip
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of an earlier gpu-check.csv in --out for points "
                        "this run does not measure (a second short lease after --only)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    if args.budget_s <= 0 or args.repeats < 1:
        print("error: --budget-s and --repeats must be positive", file=sys.stderr)
        return 2
    if args.timing_rounds < 0:
        print("error: --timing-rounds must be 0 or more", file=sys.stderr)
        return 2
    if args.dry_run:
        return dry_run(args)
    import torch

    if not torch.cuda.is_available():
        print("error: gpu-check measures CUDA memory, and no CUDA device is available here "
              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
              "`python -m bench gpu-check --dry-run` lists the plan and its predictions on any "
              "machine.", file=sys.stderr)  # fmt: skip
        return 2
    if args.work_dir is None:
        from bench.data import paths

        args.work_dir = str(paths.work_dir() / "gpu-check")
    run(args)
    return 0
