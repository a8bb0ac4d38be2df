"""The claims the report judges, one registered object each.

A :class:`Claim` holds everything the report says about a claim: its statement, the paper's
number it is held against, its threshold and where that threshold comes from, the figure that
shows it, its kind, and the function that judges it on the trials. The board, the claim
sections of REPORT.md and ``tables/claims.csv`` read nothing else, so a claim with a missing
piece is refused here, at registration, not when a report is half written. Registration order
is the board's order (within each kind) and the order of ``claims.csv``.

The family modules (:mod:`.memory`, :mod:`.params`, ...) declare the built-in claims next to
their judging code; :mod:`bench.report.claims` registers them. A claim of your own::

    from bench.report.claims import Claim, Finding, register_claim
    from bench.stats import SUPPORTED

    def judge(df):  # every case of the claim, on all trials
        return [Finding("my-claim", "fig2", "all trials", "every trial",
                        f"{len(df)} trials", SUPPORTED)]

    register_claim(Claim(
        key="my-claim", statement="Something the trials can show.", short="something shown",
        paper="—", figure="fig2", threshold="at least one trial",
        threshold_source="a toy: any evidence will do", judge=judge, kind="sanity check"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import pandas as pd

from bench.report.claims.base import Finding
from bench.report.select import FIGURE_BY_KEY

PAPER_CLAIM = "paper's claim"
SANITY_CHECK = "sanity check"  # of our implementation, not of the paper
DESIGN_TARGET = "design target"  # the suite's own goal (DESIGN.md)
KINDS = (PAPER_CLAIM, SANITY_CHECK, DESIGN_TARGET)
NO_PAPER = "—"  # the paper gives no number for this claim


class ClaimError(ValueError):
    """A claim that cannot be reported: a missing piece, an unknown figure or kind, a key
    taken twice, or a judge that returned another claim's cases."""


@dataclass(frozen=True)
class Claim:
    """One claim: what it says, what it is judged against, and how it is judged.

    Args:
        key: short id, the anchor of its REPORT.md section (``rev-flat``).
        statement: the claim in full, as REPORT.md states it.
        short: the board's one-line name for it.
        paper: the paper's number(s) it is held against and where they come from, for the
            board's *paper* column; ``"—"`` when the paper gives none (not for a paper's claim).
        figure: the report figure that shows it (a key of ``select.FIGURE_BY_KEY``).
        threshold: what a case must meet, in words and numbers.
        threshold_source: where the threshold comes from (the paper, the architecture, ...).
        judge: ``(trials) -> list[Finding]``, every case of this claim on the exported trials.
        kind: :data:`PAPER_CLAIM`, :data:`SANITY_CHECK` or :data:`DESIGN_TARGET`; the board
            shows the paper's claims first and the others apart.
    """

    key: str
    statement: str
    short: str
    paper: str
    figure: str
    threshold: str
    threshold_source: str
    judge: Callable[[pd.DataFrame], list[Finding]]
    kind: str = PAPER_CLAIM

    @property
    def figure_number(self) -> str:
        """The figure as REPORT.md names it: ``fig2`` -> ``2``."""
        return self.figure.replace("fig", "")


_REGISTRY: dict[str, Claim] = {}


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _problems(claim: Claim) -> list[str]:
    """What keeps ``claim`` off the report (empty when nothing does)."""
    texts = [f.name for f in fields(claim) if f.name not in ("judge", "kind")]
    out = [f"no {name}" for name in texts if not _is_text(getattr(claim, name))]
    if claim.key in _REGISTRY:
        out.append("its key is already registered")
    if claim.figure and claim.figure not in FIGURE_BY_KEY:
        out.append(f"unknown figure {claim.figure!r} (known: {', '.join(FIGURE_BY_KEY)})")
    if claim.kind not in KINDS:
        out.append(f"unknown kind {claim.kind!r} (known: {', '.join(KINDS)})")
    if claim.kind == PAPER_CLAIM and str(claim.paper).strip() == NO_PAPER:
        out.append("a paper's claim needs the paper's number it is held against")
    if not callable(claim.judge):
        out.append("its judge is not callable")
    return out


def register_claim(claim: Claim) -> Claim:
    """Add ``claim`` to the report, after those registered before it; return it.

    Raises:
        ClaimError: naming the claim and every piece missing or wrong.
    """
    problems = _problems(claim)
    if problems:
        raise ClaimError(f"claim {claim.key!r} refused: {'; '.join(problems)}")
    _REGISTRY[claim.key] = claim
    return claim


def unregister_claim(key: str) -> Claim:
    """Take a claim off the report (a test's toy claim); KeyError names the known keys."""
    claim = get_claim(key)
    del _REGISTRY[key]
    return claim


def get_claim(key: str) -> Claim:
    """The registered claim ``key``; KeyError names the known keys."""
    if key not in _REGISTRY:
        raise KeyError(f"no claim {key!r}; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def registered_claims() -> tuple[Claim, ...]:
    """Every registered claim, in registration order (the board's order)."""
    return tuple(_REGISTRY.values())
