"""Mean ± std over seeds, one row per configuration, and the depth at which a config ran out
of memory. Only ``ok`` trials enter a mean: a failed trial has no meaningful score or peak."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.exports.table import GROUP_COLUMNS
from bench.models import archs
from bench.report.load import as_key
from bench.stats import SCORE_BOUNDS, summarize

METRICS: tuple[str, ...] = (
    "score", "best_valid", "peak_memory_bytes", "activation_bytes", "model_state_bytes",
    "params", "step_time_s", "epoch_time_s", "solver_fwd_iters_mean", "solver_bwd_iters_mean",
    "solver_fwd_rel_residual_max", "solver_bwd_rel_residual_max", "step_added_bytes",
)  # fmt: skip


def deq_tolerance(rows: pd.DataFrame) -> pd.Series:
    """Each trial's solver tolerance (its ``deq_tol``, else the DEQ default)."""
    defaults = {a.name: a.tol for a in archs.registered() if a.family == "equilibrium"}
    return rows["deq_tol"].fillna(rows["arch"].map(defaults))


def unconverged(rows: pd.DataFrame) -> pd.Series:
    """True for a DEQ trial whose forward or backward solve ended above its tolerance."""
    tol = deq_tolerance(rows)
    worst = rows[["solver_fwd_rel_residual_max", "solver_bwd_rel_residual_max"]].max(axis=1)
    return rows["arch"].isin(archs.names(family="equilibrium")) & (worst > tol)


# compared scores: each also gets its 95% Student-t interval of the mean (bench.stats)
INTERVAL_METRICS: tuple[str, ...] = ("score", "best_valid")

SORT_COLUMNS: tuple[str, ...] = ("study", "profile", "dataset", "device_name", "arch", "layers",
                                 "channels", "groups", "config_id")  # fmt: skip
DEPTH_COLUMNS: tuple[str, ...] = ("layers", "deq_max_iter")


def status_counts(statuses: pd.Series) -> str:
    """'ok:3 oom:1': every status seen, in a fixed order."""
    counts = statuses.value_counts()
    return " ".join(f"{s}:{int(counts[s])}" for s in sorted(counts.index))


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: n trials, n ok, seeds, statuses, and mean/std (ddof=1) of
    each metric over the ok trials (std is NaN for a single seed: shown as such); the scores
    also get n and the 95% t-interval of the mean, inside [0, 1] (``score_n``,
    ``score_ci_lo``/``_hi``; NaN with fewer than two seeds)."""
    keys = df.groupby("config_id", sort=False)[[*GROUP_COLUMNS, "slice", "metric"]].first()
    counts = df.groupby("config_id").agg(
        n_trials=("status", "size"),
        statuses=("status", status_counts),
        seeds=("seed", lambda s: ",".join(str(int(v)) for v in sorted(s.dropna().unique()))),
    )
    ok = df[df["status"] == "ok"]
    stats = ok.groupby("config_id")[list(METRICS)].agg(["mean", "std"])
    stats.columns = [f"{m}_{stat}" for m, stat in stats.columns]
    n_ok = ok.groupby("config_id").size().rename("n_ok")
    n_unconverged = unconverged(ok).groupby(ok["config_id"]).sum().rename("n_unconverged")
    out = keys.join(counts).join(n_ok).join(stats).join(n_unconverged).join(_intervals(ok))
    out["n_unconverged"] = out["n_unconverged"].fillna(0).astype(int)
    out["n_ok"] = out["n_ok"].fillna(0).astype(int)
    for metric in INTERVAL_METRICS:
        out[f"{metric}_n"] = out[f"{metric}_n"].fillna(0).astype(int)
    out = out.reset_index()
    return out.sort_values(list(SORT_COLUMNS), kind="mergesort", na_position="first").reset_index(
        drop=True
    )


def _intervals(ok: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and compared score: n (finite values) and the t-interval bounds."""
    rows = {}
    for config, group in ok.groupby("config_id"):
        row = {}
        for metric in INTERVAL_METRICS:
            iv = summarize(group[metric], bounds=SCORE_BOUNDS)  # scores lie in [0, 1]
            row.update({f"{metric}_n": iv.n, f"{metric}_ci_lo": iv.lo, f"{metric}_ci_hi": iv.hi})
        rows[config] = row
    columns = [f"{m}_{s}" for m in INTERVAL_METRICS for s in ("n", "ci_lo", "ci_hi")]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def oom_depths(df: pd.DataFrame) -> pd.DataFrame:
    """Per config family (all but seed and depth): deepest ok depth and first OOM depth."""
    family = [c for c in GROUP_COLUMNS if c not in DEPTH_COLUMNS]
    oom = df[df["status"] == "oom"]
    if oom.empty:
        return pd.DataFrame(columns=[*family, "slice", "max_ok_depth", "first_oom_depth", "n_oom"])
    rows = []
    for _, group in df.groupby([as_key(df[c]) for c in family], sort=True):
        failed = group[group["status"] == "oom"]
        if failed.empty:
            continue
        ok = group[group["status"] == "ok"]
        row = group.iloc[0][[*family, "slice"]].to_dict()
        row["max_ok_depth"] = ok["depth"].max() if len(ok) else np.nan
        row["first_oom_depth"] = failed["depth"].min()
        row["n_oom"] = len(failed)
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(["study", "slice", "arch", "channels", "first_oom_depth"],
                           kind="mergesort").reset_index(drop=True)  # fmt: skip


@dataclass(frozen=True)
class Fit:
    """Least-squares line y = slope * x + intercept over per-depth means."""

    slope: float
    intercept: float
    r2: float
    n: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(x, dtype=float) + self.intercept


def linear_fit(x: pd.Series | np.ndarray, y: pd.Series | np.ndarray) -> Fit | None:
    """Fit of y on x, or None with fewer than two distinct x (a line needs two points)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(np.sum((y - (slope * x + intercept)) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else 1.0
    return Fit(float(slope), float(intercept), r2, len(np.unique(x)))


def depth_means(rows: pd.DataFrame, value: str) -> pd.Series:
    """Mean of ``value`` per depth over ok rows (index: depth, sorted)."""
    ok = rows[(rows["status"] == "ok") & rows[value].notna()]
    return ok.groupby("depth")[value].mean().sort_index()
