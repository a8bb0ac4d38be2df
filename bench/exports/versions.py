"""Configurations measured by more than one version of the code.

A configuration's trials are pooled over seeds; when they ran on different commits (a
``-dirty`` commit is a version of its own), the pool can mix measurements: the CPU meter reads
the same bytes for the same commit and seed, but a change between the commits (the reversible
backward's in-place inversion lowered rev's step memory by one group tensor) moves them. The
report flags such a configuration wherever it shows it (:mod:`bench.report.stale`), and
``python -m bench reproduce --rerun-stale`` runs its points again on today's code
(:func:`stale_point_keys`): both read the same :func:`mixed_versions`.
"""

from __future__ import annotations

import pandas as pd


def code_version(commit: object) -> str:
    """A commit as a version: its first 10 characters, ``-dirty`` kept; unrecorded its own."""
    if pd.isna(commit):  # type: ignore[arg-type]
        return "unrecorded"
    return str(commit)[:10] + ("-dirty" if str(commit).endswith("-dirty") else "")


def mixed_versions(df: pd.DataFrame) -> dict[str, dict[str, list[int]]]:
    """``config_id`` -> {code version: the seeds its finished trials ran} for configurations
    whose finished trials come from two or more code versions (sorted, as shown)."""
    out = {}
    done = df[df["status"].notna()]
    versions = done["commit"].map(code_version)
    for config, group in done.assign(_version=versions).groupby("config_id", sort=True):
        if group["_version"].nunique() < 2:
            continue
        out[config] = {
            version: [int(s) for s in sorted(trials["seed"].dropna().unique())]
            for version, trials in group.groupby("_version", sort=True)
        }
    return out


def stale_point_keys(df: pd.DataFrame) -> set[str]:
    """The stored point keys of every configuration of mixed versions (what ``--rerun-stale``
    reruns)."""
    rows = df[df["config_id"].isin(set(mixed_versions(df)))]
    if "point_key" not in rows:
        return set()
    return {str(k) for k in rows["point_key"].dropna().unique()}
