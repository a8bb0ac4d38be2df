"""Configurations measured by more than one version of the code.

A configuration's trials are pooled over seeds; when they ran on different commits (a
``-dirty`` commit is a version of its own), the pool can mix measurements: the CPU meter reads
the same bytes for the same commit and seed, but a change between the commits (the reversible
backward's in-place inversion lowered rev's step memory by one group tensor) moves them. Such a
configuration is flagged wherever it is shown, with the commits and the seeds each ran, and
``python -m bench reproduce --rerun-stale`` runs its points again on today's code.
"""

from __future__ import annotations

import pandas as pd

MARK = "⚠ mixed code"


def _commit(value: object) -> str:
    return str(value)[:10] + ("-dirty" if str(value).endswith("-dirty") else "")


def stale_configs(df: pd.DataFrame) -> dict[str, str]:
    """``config_id`` -> why it is flagged, for configurations whose finished trials come from
    two or more code versions (trials without a recorded commit count as their own version)."""
    out = {}
    done = df[df["status"].notna()]
    commits = done["commit"].map(lambda c: _commit(c) if pd.notna(c) else "unrecorded")
    for config, group in done.assign(_commit=commits).groupby("config_id", sort=True):
        if group["_commit"].nunique() < 2:
            continue
        parts = []
        for commit, trials in group.groupby("_commit", sort=True):
            seeds = ",".join(str(int(s)) for s in sorted(trials["seed"].dropna().unique()))
            parts.append(f"{commit} (seeds {seeds})")
        out[config] = f"{MARK}: trials from {len(parts)} commits, " + "; ".join(parts)
    return out


def stale_point_keys(df: pd.DataFrame) -> set[str]:
    """The stored point keys of every flagged configuration (what ``--rerun-stale`` reruns)."""
    flagged = set(stale_configs(df))
    rows = df[df["config_id"].isin(flagged)]
    if "point_key" not in rows:
        return set()
    return {str(k) for k in rows["point_key"].dropna().unique()}
