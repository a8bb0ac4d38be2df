"""The columns of an export (``results/*.csv``) and its schema version.

An export row is a record's flat row (:meth:`bench.record.TrialRecord.flat`, whose columns
derive from the record's declaration) between the study's lead columns and the sweep's
bookkeeping, then ``schema``. Why the version is a column, on every row: a CSV has no header
block that pandas or a spreadsheet keeps (a ``#`` comment line breaks every reader not told to
skip it, a side file gets separated from its table), while a column survives any tool, and
tables concatenated from several exports still say, row by row, what they were written as.
Tables written before the column are schema 1; ``python -m bench migrate-results`` rewrites
them (:mod:`bench.exports.migrate`).
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.record import numeric_columns, record_columns

# 3: the record's ``source_hash`` (empty in rows written before it); 2: a ``schema`` column,
# every column of the record, hops filled; 1: before versions
SCHEMA_VERSION = 3
SCHEMA_COLUMN = "schema"
# the study a row belongs to, first in every export (trial_number: the trial's within it)
LEAD_COLUMNS = ("study", "spec", "profile", "kind", "trial_number", "optuna_state")
# the sweep's bookkeeping (trial user attrs written by bench.harness.queue), after the record
POINT_COLUMNS = ("label", "point", "point_key", "attempt")
# True for the row that stands for its grid point (bench.harness.export.trial_rows)
CURRENT_COLUMN = "current"
_LEAD_NUMERIC = ("trial_number", "point", "attempt")


def export_columns() -> tuple[str, ...]:
    """Every column an export of this version has, in order (a tuning export adds its own)."""
    return (*LEAD_COLUMNS, *record_columns(), *POINT_COLUMNS, CURRENT_COLUMN, SCHEMA_COLUMN)


def numeric_export_columns(columns: Iterable[str]) -> list[str]:
    """Which of ``columns`` hold numbers: the record's numeric columns and the row counters."""
    columns = list(columns)
    numeric = set(numeric_columns(columns))
    return [c for c in columns if c in _LEAD_NUMERIC or c in numeric]


def in_schema_order(columns: Iterable[str]) -> list[str]:
    """``columns`` with every missing export column added: each right after the column it
    follows in :func:`export_columns`, so present columns keep their order (a tuning export's
    own columns included) and a table reads like a fresh export; ``schema`` last."""
    out = [c for c in dict.fromkeys(columns) if c != SCHEMA_COLUMN]
    canonical = export_columns()[:-1]
    for i, column in enumerate(canonical):
        if column in out:
            continue
        before = next((c for c in reversed(canonical[:i]) if c in out), None)
        out.insert(out.index(before) + 1 if before is not None else 0, column)
    return [*out, SCHEMA_COLUMN]


__all__ = [
    "CURRENT_COLUMN",
    "LEAD_COLUMNS",
    "POINT_COLUMNS",
    "SCHEMA_COLUMN",
    "SCHEMA_VERSION",
    "export_columns",
    "in_schema_order",
    "numeric_export_columns",
]
