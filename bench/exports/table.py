"""One export read and written: checked, of this schema version, in the schema's columns; the
rows that are results (:func:`finished`), and what identifies each row's configuration
(:func:`normalise`, ``config_id``). The harness writes with it and the report reads with it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bench.config import TrialConfig
from bench.errors import DataError
from bench.exports.schema import (
    SCHEMA_COLUMN,
    SCHEMA_VERSION,
    export_columns,
    in_schema_order,
    numeric_export_columns,
)
from bench.record import STATUSES, keyed_columns

# the command that rewrites older exports; every refusal of one names it
MIGRATE_COMMAND = "python -m bench migrate-results"
# the configuration's settings, in TrialConfig's order (the order tables list them in)
CONFIG_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrialConfig))
# What identifies one configuration: everything but the seed, per study and per device.
GROUP_COLUMNS: tuple[str, ...] = (
    "study", "spec", "kind", "profile",
    *(c for c in CONFIG_COLUMNS if c != "seed"),
    "device_name", "memory_meter",
)  # fmt: skip
# what the report calls rows of trials that failed for a reason outside their configuration
ENVIRONMENT_DROPPED = "environment failures (not results; retried next run)"


#: results/ tables that are not study exports: the verification of the committed ones
#: (bench.harness.verify), one row per rerun point, read by the report beside the exports
VERIFY_FILE = "verify.csv"


def export_paths(results_dir: pathlib.Path) -> list[pathlib.Path]:
    """The study exports in ``results_dir`` (``*.csv``, not its subfolders: GPU, benchmark and
    drift tables are not records; not ``verify.csv``), in name order."""
    return [p for p in sorted(pathlib.Path(results_dir).glob("*.csv")) if p.name != VERIFY_FILE]


def write_table(frame: pd.DataFrame, path: pathlib.Path) -> pathlib.Path:
    """Write ``frame`` as an export of this schema version (:func:`as_export`), replacing any
    file there (:func:`bench.exports.merge.write_export` merges into one instead)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    as_export(frame).to_csv(path, index=False)
    return path


def as_export(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as an export of this schema version: every export column (empty where no row
    has it, e.g. a study with no trial yet), ``schema`` on every row."""
    frame = frame.reindex(columns=in_schema_order(frame.columns))
    frame[SCHEMA_COLUMN] = SCHEMA_VERSION
    return frame


def read_table(path: pathlib.Path) -> pd.DataFrame:
    """One export, checked (:func:`check_file`, :func:`check_schema`); the file name is kept in
    ``source_file`` for messages."""
    lines = check_file(path)
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header); re-export it") from None
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: unreadable table ({str(err).strip()}); re-export it") from None
    check_schema(path, df)
    check_numbers(path, df, lines)
    df["source_file"] = path.name
    return df


def check_numbers(path: pathlib.Path, df: pd.DataFrame, lines: list[int]) -> None:
    """Refuse, naming the file, line and column, a value that is not a number in a numeric
    column (``lines``: each row's line in the file, :func:`check_file`). Why: read as missing,
    a ``banana`` peak silently changed the report's counts; a missing value is an empty cell."""
    for column in numeric_export_columns(df.columns):
        values = df[column]
        if pd.api.types.is_numeric_dtype(values):
            continue
        bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            shown = str(values.iloc[row])
            shown = shown if len(shown) <= 40 else shown[:39] + "…"
            line = lines[row] if row < len(lines) else row + 2
            raise DataError(f"{path}: line {line}, column {column}: {shown!r} is not a number "
                            "(a missing value is an empty cell); correct it or re-export it")  # fmt: skip


def check_schema(path: pathlib.Path, df: pd.DataFrame) -> None:
    """Refuse, in one line naming the file and what to run, a table of another schema version
    (an older one is migrated once, never read through per-column fallbacks) or one missing
    a column of its version (not an export, or edited by hand)."""
    found = sorted({int(v) for v in df[SCHEMA_COLUMN].dropna()}) if SCHEMA_COLUMN in df else [1]
    if found and found != [SCHEMA_VERSION]:
        older = max(found) < SCHEMA_VERSION
        what = f"schema {'/'.join(map(str, found))}, this version reads {SCHEMA_VERSION}"
        todo = (f"migrate it once: {MIGRATE_COMMAND} {path.parent}" if older
                else "it was written by a newer bench; update this one")  # fmt: skip
        raise DataError(f"{path}: an export of {what}; {todo}")
    missing = [c for c in export_columns() if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing required column(s) {', '.join(missing)} (schema "
                        f"{SCHEMA_VERSION}); is it a `python -m bench export` table? re-export it")  # fmt: skip


def check_file(path: pathlib.Path) -> list[int]:
    """Refuse a garbled or truncated table, naming the file and the line, before pandas reads
    it: a parser error is a traceback to a reader, and a table cut mid-row would be read short
    without a word (pandas pads a short last row with NaN). Refused rather than skipped: a
    report missing a table would judge claims on part of the evidence and not say so. Returns
    the line each row starts on (a quoted cell may span lines), for later messages."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"{path}: empty file (no header); re-export it")
    if not text.endswith("\n"):
        raise DataError(f"{path}: truncated (no newline after line {text.count(chr(10)) + 1}, "
                        "its last row may be cut); re-export it")  # fmt: skip
    reader = csv.reader(io.StringIO(text))
    starts = []
    try:
        width = len(next(reader))
        ended = reader.line_num
        for row in reader:
            if row and len(row) != width:
                raise DataError(f"{path}: line {reader.line_num} has {len(row)} fields, the "
                                f"header {width}: a garbled or cut table; re-export it")  # fmt: skip
            if row:  # pandas skips blank lines too
                starts.append(ended + 1)
            ended = reader.line_num
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: {err}; re-export it") from None
    return starts


def finished(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that stand for a finished trial: a status, not an environment failure (data
    missing, device gone: no result; the next sweep retries it) and not superseded by a retry
    (export's ``current`` column). ``attrs['dropped']`` counts what was left out and why."""
    no_status = df["status"].isna() | (df["status"].astype(str).str.strip() == "")
    environment = (df["failure_kind"].astype(str) == "environment") & ~no_status
    superseded = ~_truthy(df["current"]) & ~no_status & ~environment
    keep = df[~no_status & ~environment & ~superseded].copy()
    keep.attrs["dropped"] = {"unfinished (no record)": int(no_status.sum()),
                             "superseded by a retry": int(superseded.sum())}  # fmt: skip
    if environment.any():
        keep.attrs["dropped"][ENVIRONMENT_DROPPED] = int(environment.sum())
    if keep.empty:
        raise DataError("no finished trials in the results tables (every row lacks a status)")
    return keep


def _truthy(values: pd.Series) -> pd.Series:
    return values.astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Types and the fills every reader relies on, then ``config_id``: numbers as numbers, the
    solver's columns where no DEQ trial wrote them, a tuning study's profile (its kind), a
    failed trial's device and meter (its peers')."""
    dropped = df.attrs.get("dropped", {})
    df = df.copy()
    for column in keyed_columns():
        if column not in df.columns:
            df[column] = np.nan
    df["kind"] = df["kind"].fillna("ablation")
    df["spec"] = df["spec"].where(df["spec"].notna(), df["study"])
    df["profile"] = df["profile"].where(df["profile"].notna(), df["kind"])  # tuning: no profile
    for column in numeric_export_columns(df.columns):
        df[column] = pd.to_numeric(df[column], errors="coerce")
    bad = sorted(set(df["status"].astype(str)) - set(STATUSES))
    if bad:
        raise DataError(f"unknown trial status(es) {', '.join(bad)}; expected one of "
                        f"{', '.join(STATUSES)}")  # fmt: skip
    df["device_name"] = df["device_name"].where(
        df["device_name"].notna(), df["device"].astype(str) + " (device not recorded)"
    )
    df["memory_meter"] = _fill_meter(df)
    df["config_id"] = df.apply(config_id, axis=1)
    df.attrs["dropped"] = dropped
    return df


def _fill_meter(df: pd.DataFrame) -> pd.Series:
    """A failed trial may lack its meter: take the one its ok peers on the same device used."""
    meter = df["memory_meter"].astype(object).copy()
    peers = df[df["memory_meter"].notna()].groupby(["study", "profile", "device_name"])
    known = peers["memory_meter"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else None)
    for idx in df.index[meter.isna()]:
        key = (df.at[idx, "study"], df.at[idx, "profile"], df.at[idx, "device_name"])
        meter.at[idx] = known.get(key) or "meter not recorded"
    return meter


def canonical(value: Any) -> Any:
    """A JSON-stable form of a cell: NaN -> None, whole floats -> int, numpy -> python."""
    if value is None:
        return None
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    return value


def config_id(row: pd.Series) -> str:
    """One string per configuration (everything but the seed): the key rows are grouped by."""
    return json.dumps({c: canonical(row[c]) for c in GROUP_COLUMNS}, sort_keys=True)


def hops_of(row: Mapping[str, Any]) -> dict[str, int | None]:
    """A record's two depth fields from its configuration (a record or an export row, the
    dataset's options as a dict or JSON): ``receptive_hops`` (:mod:`bench.trial.hops`) and
    ``needed_hops`` (the dataset registry). For a record that lacks them: stored before the
    fields, or failed before its trial built them."""
    from bench.data.registry import needed_hops
    from bench.trial.hops import receptive_hops

    options = row.get("dataset_options")
    options = json.loads(options) if isinstance(options, str) and options else options
    options = dict(options) if isinstance(options, dict) else {}
    return {
        "receptive_hops": receptive_hops(row),
        "needed_hops": needed_hops(str(row.get("dataset")), options),
    }
