"""Intervals and verdicts against scipy's own t-intervals and hand-made cases: a supported, a
contradicted and an inconclusive comparison, and no verdict from one seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    NO_DATA,
    SUPPORTED,
    compare,
    judge,
    paired_difference,
    summarize,
    welch_difference,
)

A = [0.712, 0.735, 0.701, 0.748, 0.725]
B = [0.690, 0.731, 0.688, 0.702, 0.711, 0.695]


def test_summary_is_the_student_t_interval_of_the_mean() -> None:
    s = summarize(A)
    lo, hi = scipy_stats.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=scipy_stats.sem(A))
    assert (s.n, s.mean, s.std) == (5, pytest.approx(np.mean(A)), pytest.approx(np.std(A, ddof=1)))
    assert (s.lo, s.hi) == (pytest.approx(lo), pytest.approx(hi))
    # a known case: 1, 2, 3 -> mean 2, std 1, half width t(0.975, 2) / sqrt(3) = 2.4841
    known = summarize([1.0, 2.0, 3.0])
    assert known.half_width == pytest.approx(4.302652729911275 / math.sqrt(3))


def test_one_seed_has_a_mean_but_no_interval() -> None:
    s = summarize([0.7, float("nan")])
    assert s.n == 1 and s.mean == 0.7 and math.isnan(s.std) and math.isnan(s.lo)
    assert "no interval" in s.text()
    assert summarize([]).n == 0 and summarize([]).text() == "—"


def test_paired_matches_scipy_ttest_rel() -> None:
    a, b = dict(enumerate(A)), dict(enumerate(B[:5]))
    d = paired_difference(a, b)
    ci = scipy_stats.ttest_rel(A, B[:5]).confidence_interval(0.95)
    assert (d.lo, d.hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert d.mean == pytest.approx(np.mean(A) - np.mean(B[:5]))
    assert d.method == "paired t (n=5)"


def test_welch_matches_scipy_ttest_ind_unequal_variances() -> None:
    d = welch_difference(A, B)
    ci = scipy_stats.ttest_ind(A, B, equal_var=False).confidence_interval(0.95)
    assert (d.lo, d.hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert d.method.startswith("Welch t (df=")


def test_compare_pairs_only_with_the_same_seeds_on_a_shared_split() -> None:
    a, b = dict(enumerate(A)), dict(enumerate(B[:5]))
    assert compare(a, b, paired=True).method.startswith("paired")
    assert compare(a, b, paired=False).method.startswith("Welch")  # split not shared
    b_other = {s + 1: v for s, v in b.items()}  # seeds 1..5 vs 0..4
    assert compare(a, b_other, paired=True).method.startswith("Welch")


def test_pairing_removes_what_the_seeds_share() -> None:
    # per-seed offsets dominate the spread; B is A minus 0.01 minus small noise
    offsets = np.array([0.0, 0.05, -0.04, 0.08, -0.06])
    a = dict(enumerate(0.7 + offsets))
    b = dict(enumerate(0.69 + offsets + np.array([0.001, -0.001, 0.002, 0.0, -0.002])))
    assert judge(compare(a, b, paired=True)) == SUPPORTED
    assert judge(compare(a, b, paired=False)) == INCONCLUSIVE


def test_three_verdicts_and_the_margin() -> None:
    better = compare(dict(enumerate([0.80, 0.81, 0.82])), dict(enumerate([0.70, 0.71, 0.70])),
                     paired=True)  # fmt: skip
    assert judge(better) == SUPPORTED
    assert judge(better, margin=0.2) == CONTRADICTED  # "better by more than 0.2": no
    worse = compare(dict(enumerate([0.60, 0.61, 0.60])), dict(enumerate([0.70, 0.71, 0.70])),
                    paired=True)  # fmt: skip
    assert judge(worse) == CONTRADICTED
    # non-inferiority within 0.01: differences of -0.005 +- noise straddle -0.01
    close = compare(dict(enumerate([0.700, 0.712, 0.695, 0.704])),
                    dict(enumerate([0.710, 0.708, 0.705, 0.705])), paired=True)  # fmt: skip
    assert close.lo < -0.01 < close.hi
    assert judge(close, margin=-0.01) == INCONCLUSIVE


def test_no_verdict_from_one_seed() -> None:
    one = compare({0: 0.9}, {0: 0.1}, paired=True)
    assert not one.enough and judge(one) == NO_DATA
    assert judge(compare({0: 0.9, 1: 0.91}, {0: 0.1}, paired=False)) == NO_DATA
    assert judge(compare({}, {0: 0.1, 1: 0.2}, paired=False)) == NO_DATA
