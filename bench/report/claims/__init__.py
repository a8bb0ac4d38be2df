"""Each claim of the paper held against our trials, in numbers, with a verdict decided by the
claim's own thresholds (stated in REPORT.md beside each claim, with where they come from).

A claim is one registered object (:class:`Claim`, :mod:`.registry`): statement, the paper's
number, threshold and its source, figure, kind and judging function. The board, REPORT.md's
claim sections and ``tables/claims.csv`` read the registry and nothing else; adding a claim is
declaring one object and registering it (:func:`register_claim`), and a claim with a missing
piece is refused there.

Claims are checked per measurement slice (profile, dataset, device, meter) and per configuration:
numbers from different devices never mix. Each case gives a :class:`Finding`. Memory, parameter
and time thresholds give *supported* / *not supported*. Score comparisons are judged by the 95%
t-interval of the difference of scores over seeds (``bench.stats``): the interval above the
margin is *supported*, below it *contradicted*, containing it *inconclusive*, and fewer than two
seeds a side give *not enough data*. A case the budget or the training recipe decided, not the
model, is said so (*not testable at this budget*, *recipe-limited*) and decides nothing else.

One module per family of claims, each declaring its claims next to their judging code:
:mod:`.memory` (flat vs linear in depth, batching, DEQ, every convolution), :mod:`.params`
(groups, weight tying), :mod:`.scores` (figure 1: rev vs res, tied trade-off), :mod:`.accuracy`
(depth buys accuracy, one claim per memory-efficient arch; its memory budget in :mod:`.budget`),
:mod:`.step_time` (the time target); :mod:`.base` holds what they share (verdicts,
:class:`Finding`, :class:`Series`, score differences). This module registers the
built-in claims in the board's order (:data:`BUILT_IN`; the families interleave on the board).
"""

from __future__ import annotations

import pandas as pd

from bench.report.claims.accuracy import DEPTH_BUYS_ACCURACY
from bench.report.claims.base import (
    NOT_SUPPORTED,
    NOT_TESTABLE,
    RECIPE_LIMITED,
    VERDICT_ORDER,
    Finding,
    claim_verdict,
)
from bench.report.claims.ground_truth import TASK_NEEDS_K
from bench.report.claims.memory import (
    BATCHING,
    CONV_FLAT,
    DEQ_FLAT,
    RES_LINEAR,
    REV_FLAT,
    WT_REV_FLAT,
)
from bench.report.claims.params import GROUPS_COUNT, GROUPS_PARAMS, TIED_PARAMS
from bench.report.claims.registry import (
    DESIGN_TARGET,
    KINDS,
    PAPER_CLAIM,
    SANITY_CHECK,
    Claim,
    ClaimError,
    get_claim,
    register_claim,
    registered_claims,
    unregister_claim,
)
from bench.report.claims.scores import REV_VS_RES, TIED_TRADEOFF
from bench.report.claims.step_time import REV_TIME
from bench.stats import CONTRADICTED, INCONCLUSIVE, NO_DATA, SUPPORTED

__all__ = [
    "BUILT_IN",
    "CONTRADICTED",
    "DESIGN_TARGET",
    "INCONCLUSIVE",
    "KINDS",
    "NOT_SUPPORTED",
    "NOT_TESTABLE",
    "NO_DATA",
    "PAPER_CLAIM",
    "RECIPE_LIMITED",
    "SANITY_CHECK",
    "SUPPORTED",
    "VERDICT_ORDER",
    "Claim",
    "ClaimError",
    "Finding",
    "all_claims",
    "claim_verdict",
    "get_claim",
    "register_claim",
    "registered_claims",
    "unregister_claim",
]

#: the suite's claims in the board's order (and the order of ``tables/claims.csv``)
BUILT_IN: tuple[Claim, ...] = (
    REV_FLAT, RES_LINEAR, WT_REV_FLAT, DEQ_FLAT, BATCHING, GROUPS_PARAMS, TIED_PARAMS, REV_VS_RES,
    TIED_TRADEOFF, GROUPS_COUNT, *DEPTH_BUYS_ACCURACY, TASK_NEEDS_K, REV_TIME, CONV_FLAT,
)  # fmt: skip
for _claim in BUILT_IN:
    register_claim(_claim)


def all_claims(df: pd.DataFrame) -> list[Finding]:
    """Every registered claim's findings on every slice, in registration order (then by slice
    and case); a claim with no case at all gets one 'not enough data'."""
    out: list[Finding] = []
    for claim in registered_claims():
        found = claim.judge(df)
        strays = sorted({f.key for f in found} - {claim.key})
        if strays:
            raise ClaimError(f"claim {claim.key!r}: its judge returned cases of {strays}")
        if not found:
            found = [Finding(claim.key, claim.figure, "—", "—", "no trials to test it", NO_DATA)]
        out += sorted(found, key=lambda f: (f.slice, f.case))
    return out
