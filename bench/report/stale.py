"""The report's flag on configurations measured by more than one version of the code (why:
:mod:`bench.exports.versions`): the mark and the line that names the commits and their seeds."""

from __future__ import annotations

import pandas as pd

from bench.exports.versions import mixed_versions

MARK = "⚠ mixed code"


def stale_configs(df: pd.DataFrame) -> dict[str, str]:
    """``config_id`` -> why it is flagged, for configurations whose finished trials come from
    two or more code versions (trials without a recorded commit count as their own version)."""
    out = {}
    for config, versions in mixed_versions(df).items():
        parts = [f"{v} (seeds {','.join(map(str, seeds))})" for v, seeds in versions.items()]
        out[config] = f"{MARK}: trials from {len(parts)} commits, " + "; ".join(parts)
    return out
