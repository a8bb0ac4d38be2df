"""What a study shows while and after it runs, for every way of choosing trials: the progress
bar, one line per kind of failure with the command that reruns it (and that command, built once
for ``ablate`` and ``tune``); for a grid, the closing table per point."""

from __future__ import annotations

import math
import shlex
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from bench.harness.credentials import mask_url
from bench.harness.queue import point_state, trials_by_key
from bench.harness.source import TrialSource
from bench.harness.spec import Point
from bench.harness.storage import STORAGE_ERRORS
from bench.harness.worker import POLL_S
from bench.record import count_failures


def show_progress(
    source: TrialSource, study: optuna.Study, stop: threading.Event, show: bool
) -> None:
    """A bar of ``source.counts`` until ``stop`` is set, redrawn when the counts change; a
    storage that fails meanwhile leaves the bar as it was (no traceback from this thread)."""
    from tqdm import tqdm

    try:
        counts = source.counts(study)
    except STORAGE_ERRORS:
        return
    bar = tqdm(
        total=counts.total,
        initial=counts.done,
        desc=study.study_name,
        unit="trial",
        disable=not show,
        dynamic_ncols=True,
    )
    shown = None
    try:
        while True:
            stopping = stop.wait(POLL_S)
            try:
                counts = source.counts(study)
            except STORAGE_ERRORS:  # the bar stays as it was; the sweep says it, once
                counts = shown or counts
            if counts != shown:  # redraw on change only: logs stay short when not a terminal
                bar.set_postfix(failed=counts.failed, running=counts.running, refresh=False)
                bar.update(counts.done - bar.n)
                bar.refresh()
                shown = counts
            if stopping:
                return
    finally:
        bar.close()


def failure_lines(source: TrialSource, study: optuna.Study, command: str) -> list[str]:
    """One line per kind of failure among ``source.failed(study)``, worded by the source
    (``failure_wording[kind]``: a format string of ``n``, ``s`` (plural ending), ``shown``,
    ``example`` and ``command``), with ``command`` (what reruns the study) in it."""
    lines = []
    for kind, failed in count_failures(source.failed(study)).items():
        lines.append(source.failure_wording[kind].format(
            n=failed.total, s="" if failed.total == 1 else "s", shown=failed.shown(),
            example=failed.example, command=command))  # fmt: skip
    return lines


def command_words(
    command: str,
    target: str,
    given: Any,
    flags: Sequence[str],
    defaults: Mapping[str, Any] | None = None,
) -> list[str]:
    """``python -m bench COMMAND TARGET`` and each of ``flags`` that ``given`` (parsed arguments,
    or options named like them) sets: not None or False, nor its entry in ``defaults``. A True
    flag is written bare; ``--storage`` with its password masked (:func:`mask_url`). Why here:
    the rerun commands of ``ablate`` and ``tune`` and the grid's worker jobs are built alike."""
    words = ["python", "-m", "bench", command, str(target)]
    for flag in flags:
        value = getattr(given, flag, None)
        default = (defaults or {}).get(flag)
        if value is None or value is False or value == "" or _same(value, default):
            continue
        name = "--" + flag.replace("_", "-")
        if value is True:
            words.append(name)
        else:
            words += [name, mask_url(value) if flag == "storage" else str(value)]
    return words


def _same(value: Any, default: Any) -> bool:
    if default is None:
        return False
    if isinstance(default, Path):
        return Path(value) == default
    return bool(value == default)


def command_line(
    command: str,
    target: str,
    given: Any,
    flags: Sequence[str],
    defaults: Mapping[str, Any] | None = None,
) -> str:
    """:func:`command_words` as one line to print (quoted for a shell)."""
    return shlex.join(command_words(command, target, given, flags, defaults))


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
