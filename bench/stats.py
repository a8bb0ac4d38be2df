"""Seeds, intervals and verdicts: how the report compares scores without reading noise.

Each configuration is trained with several seeds. Its score is summarised by the mean, the
sample standard deviation (ddof=1), n and a **95% Student-t confidence interval of the mean**
(``mean ± t(0.975, n-1) · std / √n``). A comparison of two configurations A and B is judged by
the t-interval of the *difference* of their mean scores:

- **paired** by seed when both ran the same seeds on the same data split (the trial seed then
  fixes the same training partitions, evaluation clusters and so on for both, so the per-seed
  differences cancel what the seeds share): the one-sample t-interval of ``a_s - b_s``;
- otherwise **Welch**'s interval (unequal variances, Welch–Satterthwaite degrees of freedom).

A claim "A - B > margin" (``margin`` < 0 for "A is no worse than B by more than |margin|") is

- ``supported`` when the whole interval lies above the margin,
- ``contradicted`` when the whole interval lies below it,
- ``inconclusive`` when the interval contains it (the seeds cannot tell),

and there is no verdict (``not enough data``) with fewer than two seeds on a side: one seed has
no spread, so any difference it shows may be noise.

Example::

    from bench.stats import compare, judge
    d = compare({0: .71, 1: .73, 2: .72}, {0: .69, 1: .70, 2: .70}, paired=True)
    d.mean, d.lo, d.hi, judge(d, margin=0.0)      # 0.0233, 0.0090, 0.0377, 'supported'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95
MIN_SEEDS = 2  # no interval, and no verdict, from fewer seeds than this

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NO_DATA = "not enough data"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NO_DATA)


@dataclass(frozen=True)
class Interval:
    """Mean, std (ddof=1), n and the t-interval [lo, hi] of the mean (NaN with n < 2)."""

    mean: float
    std: float
    n: int
    lo: float
    hi: float
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def text(self, digits: int = 4) -> str:
        """'0.7123 [0.7011, 0.7235] (n=5)': mean, interval, n; 'n=1, no interval' for one seed."""
        if math.isnan(self.mean):
            return "—"
        if self.n < MIN_SEEDS:
            return f"{self.mean:.{digits}f} (n={self.n}, no interval)"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}] (n={self.n})"


@dataclass(frozen=True)
class Difference:
    """The difference of means A - B and its t-interval; ``method`` says how it was made."""

    mean: float
    lo: float
    hi: float
    n_a: int
    n_b: int
    method: str  # "paired t (n=5)", "Welch t (df=7.3)", or why there is none
    confidence: float = CONFIDENCE

    @property
    def enough(self) -> bool:
        return min(self.n_a, self.n_b) >= MIN_SEEDS and not math.isnan(self.lo)

    def text(self, digits: int = 4) -> str:
        """'+0.0233 [+0.0090, +0.0377] (paired t (n=3))'."""
        if math.isnan(self.mean):
            return f"no difference ({self.method})"
        if not self.enough:
            return f"{self.mean:+.{digits}f} ({self.method})"
        return (f"{self.mean:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}] "
                f"({self.method})")  # fmt: skip


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=float)
    return array[np.isfinite(array)]


def summarize(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean, std, n and the Student-t interval of the mean of ``values`` (NaNs dropped)."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan, math.nan, confidence)
    mean = float(x.mean())
    if n < MIN_SEEDS:
        return Interval(mean, math.nan, n, math.nan, math.nan, confidence)
    std = float(x.std(ddof=1))
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half, confidence)


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE
) -> Difference:
    """The t-interval of the per-seed differences ``a[s] - b[s]`` over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    d = _finite(float(a[s]) - float(b[s]) for s in seeds)
    summary = summarize(d, confidence)
    return Difference(summary.mean, summary.lo, summary.hi, len(d), len(d),
                      f"paired t (n={len(d)})", confidence)  # fmt: skip


def welch_difference(
    a: Iterable[float], b: Iterable[float], confidence: float = CONFIDENCE
) -> Difference:
    """Welch's t-interval of mean(a) - mean(b) (unequal variances)."""
    x, y = _finite(a), _finite(b)
    na, nb = len(x), len(y)
    if na == 0 or nb == 0:
        return Difference(math.nan, math.nan, math.nan, na, nb, "a side has no score", confidence)
    mean = float(x.mean() - y.mean())
    if min(na, nb) < MIN_SEEDS:
        return Difference(mean, math.nan, math.nan, na, nb, f"n={na} vs {nb}: no interval",
                          confidence)  # fmt: skip
    va, vb = float(x.var(ddof=1)) / na, float(y.var(ddof=1)) / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(mean, mean, mean, na, nb, "Welch t (no spread)", confidence)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Difference(mean, mean - half, mean + half, na, nb, f"Welch t (df={df:.1f})",
                      confidence)  # fmt: skip


def compare(
    a: Mapping[int, float], b: Mapping[int, float], paired: bool,
    confidence: float = CONFIDENCE,
) -> Difference:  # fmt: skip
    """A - B by seed: paired when ``paired`` (the two share the data split) and both ran the
    same seeds (at least two); otherwise Welch over all the seeds of each."""
    a = {s: v for s, v in a.items() if _finite([v]).size}
    b = {s: v for s, v in b.items() if _finite([v]).size}
    if paired and set(a) == set(b) and len(a) >= MIN_SEEDS:
        return paired_difference(a, b, confidence)
    return welch_difference(a.values(), b.values(), confidence)


def judge(diff: Difference, margin: float = 0.0) -> str:
    """The verdict on "A - B > margin" from the interval of the difference (module docstring)."""
    if not diff.enough:
        return NO_DATA
    if diff.lo > margin:
        return SUPPORTED
    if diff.hi < margin:
        return CONTRADICTED
    return INCONCLUSIVE
