"""Each claim of the paper held against our trials, in numbers, with a verdict decided by the
thresholds of :mod:`.rules` (stated in REPORT.md beside each claim).

Claims are checked per measurement slice (profile, dataset, device, meter) and per configuration:
numbers from different devices never mix. Memory, parameter and time thresholds give *supported*
/ *not supported*. Score comparisons are judged by the 95% t-interval of the difference of scores
over seeds (``bench.stats``): the interval above the margin is *supported*, below it
*contradicted*, containing it *inconclusive*, and fewer than two seeds a side give *not enough
data*.

One module per family of claims: :mod:`.memory` (flat vs linear in depth, batching, DEQ),
:mod:`.params` (groups, weight tying), :mod:`.scores` (figure 1: rev vs res, tied trade-off),
:mod:`.accuracy` (depth buys accuracy), :mod:`.step_time` (the time target); :mod:`.base` holds
what they share (verdicts, :class:`Claim`, :class:`Series`, score differences), :mod:`.rules`
the statements and thresholds. Public names: :func:`all_claims`, :func:`claim_verdict`,
:class:`Claim`, the verdicts, ``STATEMENTS``, ``THRESHOLDS``, ``THRESHOLD_SOURCES``, ``KIND``,
``FIGURE_OF``, ``VERDICT_ORDER``.
"""

from __future__ import annotations

import pandas as pd

from bench.report.claims.accuracy import accuracy_claims
from bench.report.claims.base import NOT_SUPPORTED, VERDICT_ORDER, Claim, claim_verdict
from bench.report.claims.memory import conv_claims, depth_claims, deq_claims
from bench.report.claims.params import groups_claims, tied_params_claims
from bench.report.claims.rules import FIGURE_OF, KIND, STATEMENTS, THRESHOLD_SOURCES, THRESHOLDS
from bench.report.claims.scores import overview_claims
from bench.report.claims.step_time import time_claims
from bench.stats import CONTRADICTED, INCONCLUSIVE, NO_DATA, SUPPORTED

__all__ = [
    "CONTRADICTED",
    "FIGURE_OF",
    "INCONCLUSIVE",
    "KIND",
    "NOT_SUPPORTED",
    "NO_DATA",
    "STATEMENTS",
    "SUPPORTED",
    "THRESHOLDS",
    "THRESHOLD_SOURCES",
    "VERDICT_ORDER",
    "Claim",
    "all_claims",
    "claim_verdict",
]


def all_claims(df: pd.DataFrame) -> list[Claim]:
    """Every claim on every slice; a claim with no trials at all gets one 'not enough data'."""
    found = (overview_claims(df) + depth_claims(df) + deq_claims(df) + groups_claims(df)
             + tied_params_claims(df) + accuracy_claims(df) + time_claims(df) + conv_claims(df))  # fmt: skip
    seen = {c.key for c in found}
    missing = [Claim(k, FIGURE_OF[k], "—", "—", "no trials to test it", NO_DATA)
               for k in STATEMENTS if k not in seen]  # fmt: skip
    order = {k: i for i, k in enumerate(STATEMENTS)}
    return sorted(found + missing, key=lambda c: (order[c.key], c.slice, c.case))
