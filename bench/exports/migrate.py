"""``python -m bench migrate-results [DIR]``: rewrite the exports under ``results/`` as this
schema version, once.

The report reads one schema version and refuses any other table in one line naming this
command, so what older exports lack is said once, here, not guessed per column on every read.
Schema 1 (written before the ``schema`` column) or 2 (before ``source_hash``) -> 3:

* columns added to the record since a table was written stay empty: its trials did not
  record them (a setting's value then is a fact of that code, not of the record; the report
  has always read such cells as empty beside newer tables, and still does);
* ``failure_kind`` and ``current``, where missing, as the export decides them today
  (:func:`bench.record.failure_kind_of`; no row was superseded);
* ``receptive_hops`` and ``needed_hops`` filled where empty, from each row's configuration
  (:func:`bench.exports.table.hops_of`), so the report reads them instead of computing them;
* a ``schema`` column, and the columns in the order a fresh export has them.

Every cell that was there is kept as written (the table is read and written back as text), and
a table already of this version is left untouched: running it twice changes nothing.

Example::

    python -m bench migrate-results            # every results/*.csv
    python -m bench migrate-results build/quick/results
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import pandas as pd

from bench.errors import DataError
from bench.exports.schema import SCHEMA_COLUMN, SCHEMA_VERSION, in_schema_order
from bench.exports.table import export_paths, hops_of
from bench.record import failure_kind_of


def migrate_table(path: pathlib.Path) -> bool:
    """Rewrite one export as this schema version; False (and untouched) when it already is.
    Raises ``DataError`` for a table of a newer or unknown version."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if SCHEMA_COLUMN in table.columns:
        found = set(table[SCHEMA_COLUMN])
        if found <= {str(SCHEMA_VERSION)}:
            return False
        if not found <= {str(v) for v in range(1, SCHEMA_VERSION)}:
            raise DataError(f"{path}: schema {'/'.join(sorted(found))} is not one this version "
                            f"migrates (it writes {SCHEMA_VERSION}); update bench")  # fmt: skip
    upgrade(table).to_csv(path, index=False)
    return True


def upgrade(table: pd.DataFrame) -> pd.DataFrame:
    """An older table (every cell text) as this schema (see the module docstring)."""
    out = table.reindex(columns=in_schema_order(table.columns), fill_value="")
    out[SCHEMA_COLUMN] = str(SCHEMA_VERSION)
    if "failure_kind" not in table.columns:
        kinds = [failure_kind_of(s, e) for s, e in zip(out["status"], out["error"], strict=True)]
        out["failure_kind"] = [kind or "" for kind in kinds]
    if "current" not in table.columns:  # no row was superseded then
        failed_here = out["failure_kind"] == "environment"
        out["current"] = [str(bool(s) and not env)
                          for s, env in zip(out["status"], failed_here, strict=True)]  # fmt: skip
    for index, row in out.iterrows():
        hops = hops_of(row.to_dict())
        for column, value in hops.items():
            if row[column] == "" and value is not None:
                out.at[index, column] = str(value)
    return out


def migrate_results(results_dir: pathlib.Path) -> list[pathlib.Path]:
    """Migrate every ``*.csv`` export in ``results_dir`` (not its subfolders: GPU, benchmark and
    drift tables are not records); the paths rewritten."""
    return [path for path in export_paths(results_dir) if migrate_table(path)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results_dir", nargs="?", type=pathlib.Path,
                        default=pathlib.Path("results"), help="folder of exports (default: results)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """Exit 0 with one line per rewritten table; 1 with one line for a table it cannot read."""
    if not args.results_dir.is_dir():
        print(f"migrate-results: no folder {args.results_dir}", file=sys.stderr)
        return 1
    try:
        done = migrate_results(args.results_dir)
    except (DataError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        print(f"migrate-results: {exc}", file=sys.stderr)
        return 1
    for path in done:
        print(f"migrated {path} to schema {SCHEMA_VERSION}")
    kept = len(export_paths(args.results_dir)) - len(done)
    print(f"{len(done)} table(s) migrated, {kept} of schema {SCHEMA_VERSION} already")
    return 0
