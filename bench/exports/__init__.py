"""The tidy exports under ``results/``: tables of :class:`~bench.record.TrialRecord`, one row per
trial, and the one place that reads and writes them.

The harness writes them (``python -m bench export``, sweeps, tuning) and reads them back
(``reproduce --rerun-stale``); the report reads them. Neither knows the columns: they derive
from the record's declaration (:mod:`bench.record`) and :mod:`bench.exports.schema`.

| module | job |
| --- | --- |
| ``schema`` | the columns of an export, their order, which are numbers, the schema version |
| ``table`` | write one; read one (checked, of this version); finished rows; config identity |
| ``merge`` | an export written where a table is: merged into it point by point, never a loss |
| ``paths`` | the names that become file names (spec, profile, study), kept inside their folder |
| ``versions`` | configurations whose trials ran on more than one commit |
| ``migrate`` | ``python -m bench migrate-results``: older exports rewritten once |

The package imports nothing itself (``schema`` needs no pandas; the others do), so a command
that only names columns starts fast.

Example::

    from pathlib import Path
    from bench.exports.table import finished, normalise, read_table
    table = normalise(finished(read_table(Path("results/depth-cpu.csv"))))
    table.groupby("config_id")["peak_memory_bytes"].mean()
"""
