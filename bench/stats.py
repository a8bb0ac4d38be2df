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

**Bounded metrics.** A test score (ROC-AUC, accuracy) lies in [0, 1] (:data:`SCORE_BOUNDS`), so
its interval is the t-interval *intersected with* [0, 1], and a difference of two scores' is
intersected with [-1, 1]. Why this and not a logit or bootstrap interval: the true mean lies in
the range, so an interval that covers it still covers it after the cut (coverage unchanged,
only impossible values go), the interval stays the one kind the report uses everywhere, and the
verdict against any margin inside the range is the same; a logit interval is undefined at a
score of exactly 1.0 (which the ground-truth task gives), and a bootstrap of 5 seeds undercovers.

**Seeds that would decide.** :meth:`Difference.seeds_to_decide` is the smallest n (seeds a
side) at which the 95% t half-width, at the observed spread, falls below |difference − margin|:
how many seeds an inconclusive comparison needs if the observed difference were the true one
(paired: the per-seed differences' sd; Welch: sqrt(sd_a² + sd_b²) with n seeds on each side and
the Welch–Satterthwaite df). None when the difference equals the margin (no n decides it) or
when a side has fewer than two seeds (no spread to size it from).

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
SCORE_BOUNDS = (0.0, 1.0)  # every test score the suite records (ROC-AUC, accuracy) lies here
MAX_SEEDS = 100_000  # seeds_to_decide searches no further ("more than" beyond it)

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
    """The difference of means A - B and its t-interval; ``method`` says how it was made.
    ``spread`` is the sd the half-width scales with per seed (paired: the differences' sd;
    Welch: sqrt(sd_a² + sd_b²)), ``df_ratio`` the df per seed beyond the first (paired 1;
    Welch the Welch–Satterthwaite ratio, in [1, 2]); both NaN without an interval."""

    mean: float
    lo: float
    hi: float
    n_a: int
    n_b: int
    method: str  # "paired t (n=5)", "Welch t (df=7.3)", or why there is none
    confidence: float = CONFIDENCE
    spread: float = math.nan
    df_ratio: float = math.nan

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

    def half_width_at(self, n: int) -> float:
        """The half-width n seeds a side would give at the observed spread."""
        return _t(self.confidence, self.df_ratio * (n - 1)) * self.spread / math.sqrt(n)

    def seeds_to_decide(self, margin: float) -> int | None:
        """The fewest seeds a side whose half-width, at the observed spread, falls below
        |difference - margin| (module docstring); None when no n would or there is no spread."""
        gap = abs(self.mean - margin)
        if math.isnan(self.spread) or math.isnan(gap) or gap <= 1e-12:
            return None
        if self.spread == 0:
            return MIN_SEEDS
        lo, hi = MIN_SEEDS, MAX_SEEDS + 1  # the half-width falls with n: bisect
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if self.half_width_at(mid) < gap else (mid + 1, hi)
        return lo

    def seeds_text(self, margin: float) -> str:
        """What :meth:`seeds_to_decide` says, in words for a claim's evidence."""
        n = self.seeds_to_decide(margin)
        if n is not None:
            count = f"more than {MAX_SEEDS:,}" if n > MAX_SEEDS else f"{n:,}"
            return f"seeds a side that decide it at this spread (sd {self.spread:.2g}): {count}"
        if math.isnan(self.spread):
            return "seeds that decide it: unknown (a side has under 2 seeds: no spread)"
        return "seeds that decide it: - (the difference equals the margin)"


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=float)
    return array[np.isfinite(array)]


def _clip(lo: float, hi: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    """[lo, hi] intersected with ``bounds`` (unchanged without bounds or without an interval)."""
    if bounds is None or math.isnan(lo):
        return lo, hi
    return max(lo, bounds[0]), min(hi, bounds[1])


def summarize(
    values: Iterable[float], confidence: float = CONFIDENCE,
    bounds: tuple[float, float] | None = None,
) -> Interval:  # fmt: skip
    """Mean, std, n and the Student-t interval of the mean of ``values`` (NaNs dropped),
    intersected with ``bounds``, the range the values can take (module docstring)."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan, math.nan, confidence)
    mean = float(x.mean())
    if n < MIN_SEEDS:
        return Interval(mean, math.nan, n, math.nan, math.nan, confidence)
    std = float(x.std(ddof=1))
    half = _t(confidence, n - 1) * std / math.sqrt(n)
    lo, hi = _clip(mean - half, mean + half, bounds)
    return Interval(mean, std, n, lo, hi, confidence)


def _t(confidence: float, df: float) -> float:
    return float(_scipy_stats.t.ppf(0.5 + confidence / 2, df))


def _difference_bounds(bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    """The range of A - B when A and B lie in ``bounds``: [lo - hi, hi - lo]."""
    return None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE,
    bounds: tuple[float, float] | None = None,
) -> Difference:  # fmt: skip
    """The t-interval of the per-seed differences ``a[s] - b[s]`` over the seeds both have
    (``bounds``: the range a and b lie in; the interval is cut to the differences' range)."""
    seeds = sorted(set(a) & set(b))
    d = _finite(float(a[s]) - float(b[s]) for s in seeds)
    summary = summarize(d, confidence, _difference_bounds(bounds))
    return Difference(summary.mean, summary.lo, summary.hi, len(d), len(d),
                      f"paired t (n={len(d)})", confidence, summary.std, 1.0)  # fmt: skip


def welch_difference(
    a: Iterable[float], b: Iterable[float], confidence: float = CONFIDENCE,
    bounds: tuple[float, float] | None = None,
) -> Difference:  # fmt: skip
    """Welch's t-interval of mean(a) - mean(b) (unequal variances), cut to the range of a
    difference of two values in ``bounds``."""
    x, y = _finite(a), _finite(b)
    na, nb = len(x), len(y)
    if na == 0 or nb == 0:
        return Difference(math.nan, math.nan, math.nan, na, nb, "a side has no score", confidence)
    mean = float(x.mean() - y.mean())
    if min(na, nb) < MIN_SEEDS:
        return Difference(mean, math.nan, math.nan, na, nb, f"n={na} vs {nb}: no interval",
                          confidence)  # fmt: skip
    sa, sb = float(x.var(ddof=1)), float(y.var(ddof=1))
    spread = math.sqrt(sa + sb)
    ratio = (sa + sb) ** 2 / (sa**2 + sb**2) if spread else 1.0
    va, vb = sa / na, sb / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(mean, mean, mean, na, nb, "Welch t (no spread)", confidence, 0.0, 1.0)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = _t(confidence, df) * se
    lo, hi = _clip(mean - half, mean + half, _difference_bounds(bounds))
    return Difference(mean, lo, hi, na, nb, f"Welch t (df={df:.1f})", confidence, spread, ratio)


def compare(
    a: Mapping[int, float], b: Mapping[int, float], paired: bool,
    confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None,
) -> Difference:  # fmt: skip
    """A - B by seed: paired when ``paired`` (the two share the data split) and both ran the
    same seeds (at least two); otherwise Welch over all the seeds of each. ``bounds``: the range
    A and B lie in (:data:`SCORE_BOUNDS` for test scores)."""
    a = {s: v for s, v in a.items() if _finite([v]).size}
    b = {s: v for s, v in b.items() if _finite([v]).size}
    if paired and set(a) == set(b) and len(a) >= MIN_SEEDS:
        return paired_difference(a, b, confidence, bounds)
    return welch_difference(a.values(), b.values(), confidence, bounds)


def judge(diff: Difference, margin: float = 0.0) -> str:
    """The verdict on "A - B > margin" from the interval of the difference (module docstring)."""
    if not diff.enough:
        return NO_DATA
    if diff.lo > margin:
        return SUPPORTED
    if diff.hi < margin:
        return CONTRADICTED
    return INCONCLUSIVE
