"""What a sweep shows while and after it runs: the progress bar, the closing table per grid
point, and one line per kind of failure with the command that reruns it."""

from __future__ import annotations

import math
import threading
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.harness.queue import POLL_S, point_state, trials_by_key
from bench.harness.spec import Point
from bench.harness.storage import record_of
from bench.record import count_failures


def progress_counts(study: optuna.Study, points: list[Point]) -> dict[str, int]:
    """Points with a record (``done``), not ``ok`` (``failed``), failed by the environment
    (``environment``: no result, retried next run) and running now."""
    groups = trials_by_key(study.get_trials(deepcopy=False))
    counts = {"done": 0, "failed": 0, "environment": 0, "running": 0}
    for point in points:
        trials = groups.get(point.key, [])
        records = [(t.number, record_of(t)) for t in trials]
        records = [(n, r) for n, r in records if r is not None]
        if records:
            counts["done"] += 1
            latest = max(records, key=lambda pair: pair[0])[1]
            if latest.status != "ok":
                counts["failed"] += 1
            if latest.is_environment_failure:
                counts["environment"] += 1
        if any(t.state == TrialState.RUNNING for t in trials):
            counts["running"] += 1
    return counts


def show_progress(
    study: optuna.Study, points: list[Point], stop: threading.Event, show: bool
) -> None:
    from tqdm import tqdm

    counts = progress_counts(study, points)
    bar = tqdm(
        total=len(points),
        initial=counts["done"],
        desc=study.study_name,
        unit="trial",
        disable=not show,
        dynamic_ncols=True,
    )
    shown: dict[str, int] | None = None
    try:
        while True:
            stopping = stop.wait(POLL_S)
            counts = progress_counts(study, points)
            if counts != shown:  # redraw on change only: logs stay short when not a terminal
                bar.set_postfix(failed=counts["failed"], running=counts["running"], refresh=False)
                bar.update(counts["done"] - bar.n)
                bar.refresh()
                shown = counts
            if stopping:
                return
    finally:
        bar.close()


def failure_lines(study: optuna.Study, points: list[Point], command: str) -> list[str]:
    """One line per kind of failure among the points' latest records, with the command that
    runs them again (``command`` reruns this sweep)."""
    groups = trials_by_key(study.get_trials(deepcopy=False))
    found = count_failures(point_state(groups.get(p.key, []))[1] for p in points)
    lines = []
    for kind, failed in found.items():
        points_ = f"{failed.total} point{'s' if failed.total != 1 else ''}"
        if kind == "config":
            lines.append(f"configuration failures: {points_} ({failed.shown()}) are final "
                         f"results; to run them again: {command} --retry-failed")  # fmt: skip
        else:
            lines.append(f"environment failures: {points_} ({failed.shown()}; e.g. "
                         f"{failed.example}) are not results; once that is fixed, a plain rerun "
                         f"retries them: {command}")  # fmt: skip
    return lines


def summary_table(study: optuna.Study, points: list[Point]) -> str:
    """Per grid point (seeds pooled): status counts, mean test score, peak memory, params."""
    import pandas as pd

    groups = trials_by_key(study.get_trials(deepcopy=False))
    rows = []
    for point in points:
        state, record = point_state(groups.get(point.key, []))
        row: dict[str, Any] = {"label": point.label or ""}
        row.update({k: v for k, v in point.varying.items() if k != "seed"})
        row["status"] = record.status if record else state
        row["score"] = record.test_at_best_valid if record else None
        peak = record.peak_memory_bytes if record else None
        row["peak_MiB"] = peak / 2**20 if peak is not None else None
        row["params"] = record.params if record else None
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return "(no points)"
    keys = [c for c in frame.columns if c not in ("status", "score", "peak_MiB", "params")]
    if not frame["label"].astype(bool).any():
        keys.remove("label")
        frame = frame.drop(columns="label")
    table = frame.groupby(keys, sort=False, dropna=False).agg(
        status=("status", lambda s: " ".join(f"{v} {k}" for k, v in s.value_counts().items())),
        score=("score", "mean"),
        peak_MiB=("peak_MiB", "mean"),
        params=("params", "max"),
    )
    return aligned(table.reset_index())


def aligned(frame: Any) -> str:
    """A plain-text table whose headers sit over their columns: text left-aligned, numbers
    right-aligned, the header aligned as its column (pandas' ``to_string`` right-aligns text
    columns under left-set headers)."""
    import pandas as pd

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    columns = []
    for name in frame.columns:
        texts = [cell(v) for v in frame[name]]
        numeric = pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(
            frame[name]
        )
        width = max([len(str(name)), *map(len, texts)])
        pad = str.rjust if numeric else str.ljust
        columns.append([pad(str(name), width), *(pad(t, width) for t in texts)])
    return "\n".join("  ".join(row).rstrip() for row in zip(*columns, strict=True))


def point_label(point: Point) -> str:
    """How a point is named in messages: its label and the values that vary across the grid."""
    shown = " ".join(f"{k}={v}" for k, v in point.varying.items())
    return f"{point.label} {shown}" if point.label else shown
