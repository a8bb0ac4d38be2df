"""An export written where a table already is: merged into it, never a silent replacement.

Why: the study databases are not committed, the exports are. On a fresh clone an ablation runs
into an empty storage, and rewriting ``results/<study>.csv`` from it kept only the points it
had just run (the 12 committed rows of ``depth-cpu`` became 4, without a word). So an export
meets an existing table point by point:

* a *point* is a row's ``point_key`` (configuration and seed) within its study; the rows of a
  tuning study, which have no key, are one point per study;
* the study decides a point when it has a result for it (a ``current`` row: a record that is
  not an environment failure, its latest attempt); else the table does, when it has one; else
  the study does if it holds the point at all (its lost or queued trials); whichever side
  decides gives all of the point's rows;
* so the rows of points the study does not hold stay as they were, byte for byte, and a point
  the study ran again is the study's newer record. A study that holds every point of the
  table writes what a plain export writes.

A table that is not an export this version reads (garbled, cut, another schema, a malformed
number: :func:`bench.exports.table.read_table`) is never overwritten: the merge refuses in one
line naming ``--replace``, the plain rewrite from the study alone.

Example::

    import pandas as pd
    from pathlib import Path
    from bench.exports.merge import write_export
    kept = write_export(pd.DataFrame(rows), Path("results/depth-cpu.csv"))  # rows it kept
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
import pandas as pd

from bench.errors import DataError
from bench.exports.schema import SCHEMA_COLUMN, SCHEMA_VERSION, in_schema_order
from bench.exports.table import as_export, read_table, write_table

REPLACE_FLAG = "--replace"


def write_export(
    frame: pd.DataFrame,
    path: pathlib.Path,
    held: pd.DataFrame | None = None,
    replace: bool = False,
) -> int:
    """Write ``frame`` (a study's rows) to ``path``, merged into the table there (see the
    module docstring) unless ``replace``; how many rows of that table were kept.

    ``held``: every row of the study, also those ``frame`` leaves out (points no longer in
    the spec), so the study still decides those points; default ``frame``. Raises
    :class:`~bench.errors.DataError` (nothing written) for a table that cannot be merged."""
    path = pathlib.Path(path)
    if replace or not path.exists():
        write_table(frame, path)
        return 0
    table = existing_table(path)
    merged, kept = merge(_as_text(frame), table, frame if held is None else held)
    merged.to_csv(path, index=False)
    return kept


def existing_table(path: pathlib.Path) -> pd.DataFrame:
    """The table at ``path`` as text, every cell as written (so kept rows stay byte for
    byte), once it reads as an export of this version; else one line naming ``--replace``."""
    try:
        read_table(path)
    except DataError as exc:
        raise DataError(
            f"{str(exc).removesuffix('; re-export it')}; an export merges into the table "
            f"there, so it was left as it is: repair or move it, or rewrite it from the study "
            f"alone with {REPLACE_FLAG}"
        ) from None
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def merge(fresh: pd.DataFrame, table: pd.DataFrame, held: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``fresh`` (the study's rows, as text) merged with ``table`` (as text), point by point
    as the module docstring says; ``held`` (all the study's rows) says which points the study
    holds and has a result for. Returns the merged table (text, in schema order, grid order)
    and how many of ``table``'s rows it kept."""
    held_ids, held_results = _points(held), _points(held, results_only=True)
    table_results = _points(table, results_only=True)

    def study_decides(point: tuple[str, str]) -> bool:
        return point in held_results or (point not in table_results and point in held_ids)

    from_study = np.array([study_decides(p) for p in _ids(fresh)], dtype=bool)
    from_table = np.array([not study_decides(p) for p in _ids(table)], dtype=bool)
    # the table's column order where it keeps rows (they stay byte for byte), else the study's
    first, then = (table, fresh) if from_table.any() else (fresh, table)
    columns = in_schema_order([*first.columns, *(c for c in then.columns if c not in first)])
    parts = [part.reindex(columns=columns, fill_value="")
             for part in (fresh.loc[from_study], table.loc[from_table])]  # fmt: skip
    merged = pd.concat(parts, ignore_index=True).fillna("")
    merged[SCHEMA_COLUMN] = str(SCHEMA_VERSION)
    order = sorted(range(len(merged)), key=lambda i: _grid_order(merged.iloc[i]))
    return merged.iloc[order].reset_index(drop=True), int(from_table.sum())


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as its export's text reads back: each cell exactly as a plain export writes
    it, so study rows and kept rows are written alike."""
    text = as_export(frame).to_csv(index=False)
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def _ids(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Each row's point: (study, point key); a row without a key is its study's point."""
    if frame.empty:
        return []
    keys = frame["point_key"] if "point_key" in frame else pd.Series("", index=frame.index)
    keys = keys.where(keys.notna(), "").astype(str)
    return list(zip(frame["study"].astype(str), keys, strict=True))


def _points(frame: pd.DataFrame, results_only: bool = False) -> set[tuple[str, str]]:
    """The points of ``frame``'s rows (with ``results_only``: of its ``current`` rows)."""
    ids = _ids(frame)
    if not results_only or not ids:
        return set(ids)
    current = frame["current"].astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))
    return {point for point, is_current in zip(ids, current, strict=True) if is_current}


def _grid_order(row: pd.Series) -> tuple[bool, float, float]:
    """Rows in grid order (point, then trial number), as a plain export sorts them."""

    def number(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            return 0.0

    return (row.get("point", "") == "", number(row.get("point", "")),
            number(row.get("trial_number", "")))  # fmt: skip


__all__ = ["REPLACE_FLAG", "existing_table", "merge", "write_export"]
