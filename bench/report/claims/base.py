"""The pieces every claim is judged with: the verdicts, a claim's finding on one case, the
series of one configuration family along depth, and score differences over seeds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.exports.versions import code_version
from bench.report.aggregate import Fit, depth_means, linear_fit
from bench.report.load import as_key, canonical, readable, varying_columns
from bench.report.stale import MARK, stale_configs
from bench.stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    NO_DATA,
    SCORE_BOUNDS,
    SUPPORTED,
    Difference,
    compare,
)

NOT_SUPPORTED = "not supported"
# A case the budget or the recipe decides, not the model: said so, and it decides nothing else
# (ranked after every verdict of the model, like "not enough data").
RECIPE_LIMITED = "recipe-limited"  # the training recipe stopped the side that lost too early
NOT_TESTABLE = "not testable at this budget"  # the arch cannot reach the depth within the budget
# every verdict a case can get, in the order a claim's overall verdict prefers them
VERDICT_ORDER = (
    NOT_SUPPORTED, CONTRADICTED, INCONCLUSIVE, SUPPORTED, RECIPE_LIMITED, NOT_TESTABLE, NO_DATA,
)  # fmt: skip

ARCH_SPECIFIC = ("groups", "deq_solver", "deq_tol", "deq_grad")
ARCH_OPTIONAL = ("tie",)  # None for the archs it does not apply to: compared where both have one
DEPTH_AXIS = ("arch", "layers", "deq_max_iter")


@dataclass(frozen=True)
class Finding:
    """One claim checked on one case (a configuration pair in one measurement slice): the
    verdict and the evidence it rests on. ``key`` names the claim (:mod:`.registry`); ``figure``
    is the figure that shows this case (a claim's cases may sit on different figures)."""

    key: str
    figure: str
    slice: str
    case: str
    evidence: str
    verdict: str


@dataclass(frozen=True)
class Series:
    """The trials of one configuration family along an axis (depth or groups)."""

    arch: str
    values: dict[str, object]  # the config columns that vary in the panel, this series' values
    rows: pd.DataFrame

    @property
    def label(self) -> str:
        """The arch and its differing settings; flagged when its trials mix code versions."""
        extra = ", ".join(part for k, v in sorted(self.values.items())
                          if (part := readable(k, v)) is not None)  # fmt: skip
        label = f"{self.arch} ({extra})" if extra else self.arch
        return f"{label} {MARK}" if stale_configs(self.rows) else label

    def matches(self, other: Series, ignore: tuple[str, ...] = ARCH_SPECIFIC) -> bool:
        keys = (set(self.values) | set(other.values)) - set(ignore)
        return all(
            self.values.get(k) == other.values.get(k)
            for k in keys
            if not (k in ARCH_OPTIONAL and None in (self.values.get(k), other.values.get(k)))
        )


def case_label(a: Series, b: Series) -> str:
    """ "a vs b", flagged when the two sides ran on different code versions though each is of
    one (a series mixing versions is flagged by its own label): a difference between them may
    then be the code's, not the architectures'."""
    label = f"{a.label} vs {b.label}"
    if stale_configs(a.rows) or stale_configs(b.rows):
        return label
    sides = [sorted(set(s.rows.loc[s.rows["status"].notna(), "commit"].map(code_version)))
             for s in (a, b)]  # fmt: skip
    if sides[0] == sides[1] or not all(sides):
        return label
    return f"{label} {MARK}: {a.arch} on {', '.join(sides[0])}, {b.arch} on {', '.join(sides[1])}"


def split_series(rows: pd.DataFrame, axis: tuple[str, ...] = DEPTH_AXIS) -> list[Series]:
    """Rows of one slice split into series: one per arch and per value of every other config
    column that varies (so different configurations are never pooled)."""
    vary = varying_columns(rows, exclude=axis)
    out = []
    keys = [rows["arch"]] + [as_key(rows[c]) for c in vary]
    for _, group in rows.groupby(keys, sort=True):
        first = group.iloc[0]
        out.append(Series(str(first["arch"]), {c: canonical(first[c]) for c in vary}, group))
    return out


def fit_series(series: Series, value: str) -> Fit | None:
    means = depth_means(series.rows, value)
    return linear_fit(means.index.to_numpy(), means.to_numpy())


def ok_depths(series: Series) -> int:
    return int(series.rows.loc[series.rows["status"] == "ok", "depth"].nunique())


def first_oom(series: Series) -> float:
    oom = series.rows.loc[series.rows["status"] == "oom", "depth"]
    return float(oom.min()) if len(oom) else math.nan


def per_slice(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(str(s), g) for s, g in rows.groupby("slice", sort=True)]


STEP = "step_added_bytes"  # what a step adds to what was alive before it (see bench.measure.meters)
PEAK = "peak_memory_bytes"


def step_column(rows: pd.DataFrame) -> str:
    """Ratios are judged on the step's own memory; exports from before it was recorded fall
    back to the absolute peak (then diluted by everything alive before the step)."""
    return STEP if STEP in rows and rows.loc[rows["status"] == "ok", STEP].notna().all() else PEAK


def ratio_text(a: pd.Series, b: pd.Series, column: str) -> str:
    """ "step X× (absolute peak Y×)": the judged ratio first, the diluted one beside it."""
    text = (
        f"step {a[column] / b[column]:.3g}×" if column == STEP else f"peak {a[PEAK] / b[PEAK]:.3g}×"
    )
    if column == STEP:
        text += f" (absolute peak {a[PEAK] / b[PEAK]:.3g}×)"
    return text


def series_pairs(series: list[Series], lo: str, hi: str) -> list[tuple[Series, Series]]:
    his = [s for s in series if s.arch == hi]
    return [(a, b) for a in series if a.arch == lo for b in his if a.matches(b)]


def seed_scores(rows: pd.DataFrame, column: str = "score") -> dict[int, float]:
    """The ok trials' scores by seed (a repeated seed: its mean), NaN scores dropped."""
    ok = rows[(rows["status"] == "ok") & rows[column].notna() & rows["seed"].notna()]
    return {int(s): float(v) for s, v in ok.groupby("seed")[column].mean().items()}


def shares_split(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """True when every trial of both ran on one dataset with one set of options: the data split
    is fixed by those (not by the trial seed), so equal seeds can be paired."""
    both = pd.concat([a, b])
    return bool(both["dataset"].nunique() == 1 and as_key(both["dataset_options"]).nunique() <= 1)


def score_difference(a: pd.DataFrame, b: pd.DataFrame) -> Difference:
    """Test score A - B over seeds: paired where the split is shared, else Welch; inside
    [-1, 1], the range of a difference of two scores (``bench.stats``)."""
    return compare(seed_scores(a), seed_scores(b), paired=shares_split(a, b), bounds=SCORE_BOUNDS)


def claim_verdict(findings: list[Finding], key: str) -> str:
    """One verdict per claim over all its cases, the first of VERDICT_ORDER any case has: a
    missed threshold wins, then a contradicting interval, then one that cannot tell; the claim
    is supported only when every case tested is (cases the recipe or the budget decided, and
    those without data, test nothing)."""
    verdicts = {f.verdict for f in findings if f.key == key}
    return next((v for v in VERDICT_ORDER if v in verdicts), NO_DATA)
