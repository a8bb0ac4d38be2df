"""Mean ± std over seeds, one row per configuration, and the depth at which a config ran out
of memory. Only ``ok`` trials enter a mean: a failed trial has no meaningful score or peak.

Fits are closed forms in exact rational arithmetic and per-depth means exact sums
(``math.fsum``), never BLAS or LAPACK (``np.polyfit`` solves by a kernel the CPU picks, so its
last bits, and once in a while a printed digit, changed from one x86 CPU to another); the trials
enter in one canonical order
(:func:`canonical_order`), so neither the CPU nor the order of the rows in ``results/`` changes a
byte of the report."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

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


# a trial's identity in the exports: no two rows share it (the tables' own order is not kept)
ORDER_COLUMNS: tuple[str, ...] = ("source_file", "study", "trial_number", "attempt")


def canonical_order(df: pd.DataFrame) -> pd.DataFrame:
    """The trials sorted by their identity (file, study, trial number, attempt), then, should two
    rows share it, by their whole content: the same order whatever order the exports hold them
    in, so every later mean, ``first`` and label sees the same rows in the same order."""
    keys = [c for c in ORDER_COLUMNS if c in df.columns]
    content = pd.Series([repr(tuple(r)) for r in df.itertuples(index=False)], index=df.index)
    out = (df.assign(_content=content)
           .sort_values([*keys, "_content"], kind="mergesort", na_position="first")
           .drop(columns="_content").reset_index(drop=True))  # fmt: skip
    out.attrs = dict(df.attrs)
    return out


def exact_mean(values: Iterable[float]) -> float:
    """The mean from the exactly rounded sum (``math.fsum``): the same bits in any order."""
    values = [float(v) for v in values]
    return math.fsum(values) / len(values) if values else math.nan


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
    """Least-squares fit of y on x, or None with fewer than two distinct x (a line needs two
    points). The closed form, slope = sum of centred products / sum of centred squares, in exact
    rational arithmetic on the float64 inputs, each result rounded once: the correctly rounded
    slope, intercept and R², the same bits on any CPU and for the points in any order."""
    pairs = [(Fraction(float(a)), Fraction(float(b)))
             for a, b in zip(np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel(),
                             strict=True) if math.isfinite(a) and math.isfinite(b)]  # fmt: skip
    distinct = len({a for a, _ in pairs})
    if distinct < 2:
        return None
    mx = sum(a for a, _ in pairs) / len(pairs)
    my = sum(b for _, b in pairs) / len(pairs)
    slope = sum((a - mx) * (b - my) for a, b in pairs) / sum((a - mx) ** 2 for a, _ in pairs)
    intercept = my - slope * mx
    residual = sum((b - slope * a - intercept) ** 2 for a, b in pairs)
    total = sum((b - my) ** 2 for _, b in pairs)
    r2 = 1 - residual / total if total > 0 else Fraction(1)
    return Fit(float(slope), float(intercept), float(r2), distinct)


def depth_means(rows: pd.DataFrame, value: str) -> pd.Series:
    """Mean of ``value`` per depth over ok rows (index: depth, sorted), summed exactly."""
    ok = rows[(rows["status"] == "ok") & rows[value].notna()]
    return ok.groupby("depth")[value].agg(exact_mean).astype(float).sort_index()
