"""``python -m bench export NAME``: a study's trials as a tidy CSV under ``results/``, one row per
trial in grid order (lead columns, the record's flat fields, the sweep's bookkeeping, the schema
version: :mod:`bench.exports`); what the report reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import optuna

from bench.errors import ConfigError, DataError
from bench.exports.paths import UnsafeName, check_name, file_in
from bench.exports.schema import LEAD_COLUMNS, POINT_COLUMNS
from bench.harness.credentials import mask_url, storage_from
from bench.harness.storage import (
    config_of,
    load_records,
    open_storage,
    record_of,
    storage_url,
    study_names,
)
from bench.record import TrialRecord


def trial_rows(
    study: optuna.Study, extra_columns: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One flat dict per trial: lead columns, ``TrialRecord.flat()``, then sweep bookkeeping.

    ``current`` is True for the row that stands for its grid point: the latest attempt that
    finished with a record (earlier attempts were superseded by ``--retry-failed``). An
    environment failure (``failure_kind`` = ``environment``: data missing, device gone) is never
    current: it is not a result of its configuration, and the next sweep retries it. Trials
    without a record (lost, duplicate claims, waiting) get their configuration from the one
    stored when the point was queued (:func:`~bench.harness.storage.config_of`), and an empty
    ``status``.
    A record without hops (failed before its trial built them) gets them from its config."""
    from bench.exports.table import hops_of  # pandas: imported when a table is made

    extra = {
        "spec": study.user_attrs.get("spec", study.study_name),
        "profile": study.user_attrs.get("profile"),
        "kind": study.user_attrs.get("kind"),
        **(extra_columns or {}),
    }
    pairs = load_records(study)
    latest: dict[str, int] = {}
    for trial, record in pairs:
        key = trial.user_attrs.get("point_key")
        if record is not None and key is not None and not record.is_environment_failure:
            latest[key] = max(latest.get(key, -1), trial.number)
    rows = []
    for trial, record in pairs:
        row: dict[str, Any] = {"study": study.study_name}
        row.update({k: extra.get(k) for k in LEAD_COLUMNS if k in extra})
        row.update({k: v for k, v in extra.items() if k not in LEAD_COLUMNS})
        row["trial_number"] = trial.number
        row["optuna_state"] = trial.state.name
        if record is not None:
            row.update(record.flat())
        else:
            row.update(TrialRecord(status="", config=config_of(trial)).flat())
            row["status"] = None
            row["epochs_done"] = None
        for column, value in hops_of(row).items():
            if row.get(column) is None:
                row[column] = value
        for key in POINT_COLUMNS:
            row[key] = trial.user_attrs.get(key)
        point_key = trial.user_attrs.get("point_key")
        row["current"] = (
            record is not None
            and not record.is_environment_failure
            and (point_key is None or latest.get(point_key) == trial.number)
        )
        rows.append(row)

    def order(row: dict[str, Any]) -> tuple[Any, ...]:
        point = row.get("point")
        return (point is None, point if point is not None else 0, row["trial_number"])

    return sorted(rows, key=order)


def export_study(
    study: optuna.Study,
    out_path: Path,
    extra_columns: dict[str, Any] | None = None,
    keys: set[str] | None = None,
    replace: bool = False,
) -> Path:
    """Write ``study``'s trials as a tidy CSV (one row per trial, rows in grid order) of this
    schema version, merged into the table already there unless ``replace``
    (:func:`bench.exports.merge.write_export`: rows of points the study does not hold are
    kept; a table that cannot be merged raises :class:`~bench.errors.DataError`).

    ``keys``: the point keys of the spec as it is now; trials of points no longer in it (the
    spec changed since they ran) stay in the storage but not in the export, so the report
    judges what the spec asks for."""
    return export_table(study, out_path, extra_columns, keys, replace)[0]


def export_table(
    study: optuna.Study,
    out_path: Path,
    extra_columns: dict[str, Any] | None = None,
    keys: set[str] | None = None,
    replace: bool = False,
) -> tuple[Path, int]:
    """:func:`export_study`, and how many rows of the table already there it kept."""
    import pandas as pd

    from bench.exports.merge import write_export

    rows = trial_rows(study, extra_columns)
    held = pd.DataFrame(rows)
    if keys is not None:
        rows = [r for r in rows if r.get("point_key") is None or r["point_key"] in keys]
    kept = write_export(pd.DataFrame(rows), Path(out_path), held=held, replace=replace)
    return Path(out_path), kept


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="spec (or tuning study) name, e.g. depth")
    parser.add_argument("--profile", help="export only the study NAME-PROFILE (default: all)")
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: $BENCH_STORAGE, else sqlite:///RESULTS/NAME.db)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=Path("results"), help="default: results"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="rewrite each table from the study alone (default: merge into the table there, "
        "keeping the rows of points the study does not hold)",
    )


def main(args: argparse.Namespace) -> int:
    name = Path(args.name).stem if args.name.endswith(".toml") else args.name
    try:
        check_name(name, "name")
        if args.profile is not None:
            check_name(args.profile, "profile")
    except UnsafeName as exc:
        print(f"export: {exc.field} {exc.message}", file=sys.stderr)
        return 2
    try:
        storage = storage_from(args.storage, "export")
    except ConfigError as exc:
        print(f"export: {exc.for_cli()}", file=sys.stderr)
        return 2
    url = storage_url(storage, name, args.results_dir)
    if storage is None and not (args.results_dir / f"{name}.db").exists():
        print(
            f"export: nothing stored for {name!r} (no {args.results_dir / name}.db); "
            f"run 'python -m bench ablate {name}' first",
            file=sys.stderr,
        )
        return 1 if args.profile else 0
    names = study_names(url, name)
    if args.profile:
        names = [n for n in names if n == f"{name}-{args.profile}"]
    if not names:
        which = f"{name}-{args.profile}" if args.profile else f"{name} or {name}-*"
        print(f"export: no study named {which} in {mask_url(url)}", file=sys.stderr)
        return 1 if args.profile else 0
    from bench.exports.merge import existing_table

    try:  # every table checked before any is written: a refusal writes nothing
        paths = {n: file_in(args.results_dir, n, ".csv", "study") for n in names}
        if not args.replace:
            for path in paths.values():
                if path.exists():
                    existing_table(path)
    except (UnsafeName, DataError) as exc:
        text = f"{exc.field} {exc.message}" if isinstance(exc, UnsafeName) else str(exc)
        print(f"export: {text}", file=sys.stderr)
        return 2
    storage = open_storage(url, heartbeat_interval=None)
    for study_name in names:
        study = optuna.load_study(study_name=study_name, storage=storage)
        path, kept = export_table(study, paths[study_name], replace=args.replace)
        note = f"; kept {kept} rows of points this study does not hold" if kept else ""
        print(f"wrote {path} ({_summary(study)}{note})")
    return 0


def _summary(study: optuna.Study) -> str:
    """``N trials: ok 3, oom 1, ...``: what the study holds."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        status = trial.user_attrs.get("status") or trial.state.name.lower()
        record = record_of(trial)
        if record is not None and record.is_environment_failure:
            status += " (environment: not a result)"
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"{len(study.trials)} trials: {summary}"
