"""Figure 1's claims at one width and depth: RevGNN matches ResGNN's score in far less memory;
weight-tied and DEQ models trade parameters for some accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import paper
from bench.report.aggregate import deq_tolerance, unconverged
from bench.report.claims.base import (
    NOT_SUPPORTED,
    PEAK,
    STEP,
    Claim,
    Series,
    per_slice,
    ratio_text,
    score_difference,
    series_pairs,
    split_series,
    step_column,
)
from bench.report.claims.params import counted_ratio_claim
from bench.report.claims.rules import PAPER_TIED_PAIRS, REV_MEMORY_FRACTION, SCORE_TOLERANCE
from bench.report.fmt import fmt_bytes, fmt_num
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import NO_DATA, SUPPORTED, judge


def overview_claims(df: pd.DataFrame) -> list[Claim]:
    """Figure 1: rev vs res at one width and depth; weight-tied / DEQ params vs rev."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY["fig1"])
    out: list[Claim] = []
    for slice_, panel in per_slice(rows):
        series = split_series(panel, axis=("arch",))
        for rev, res in series_pairs(series, "rev", "res"):
            out.append(_rev_vs_res(slice_, rev, res))
        for arch in ("wt-rev", "wt-res", "deq"):
            for tied, rev in series_pairs(series, arch, "rev"):
                out.append(_tradeoff(slice_, tied, rev))
    return out + counted_tradeoff_claims()


def _means(series: Series) -> pd.Series:
    ok = series.rows[series.rows["status"] == "ok"]
    columns = ["score", PEAK, "params"] + ([STEP] if STEP in ok else [])
    return ok[columns].mean()


def _rev_vs_res(slice_: str, rev: Series, res: Series) -> Claim:
    a, b = _means(rev), _means(res)
    case = f"{rev.label} vs {res.label}"
    if np.isnan(a["peak_memory_bytes"]):
        return Claim("rev-vs-res", "fig1", slice_, case, "no ok rev trial", NO_DATA)
    if np.isnan(b["peak_memory_bytes"]):
        oom = (res.rows["status"] == "oom").any()
        verdict = SUPPORTED if oom else NO_DATA
        return Claim("rev-vs-res", "fig1", slice_, case,
                     "res ran out of memory, rev fit" if oom else "no ok res trial", verdict)  # fmt: skip
    column = step_column(pd.concat([rev.rows, res.rows]))
    ratio = a[column] / b[column]
    diff = score_difference(rev.rows, res.rows)
    score = judge(diff, margin=-SCORE_TOLERANCE)
    evidence = (f"rev/res {ratio_text(a, b, column)} ({fmt_bytes(a[column])} vs "
                f"{fmt_bytes(b[column])}); score rev - res = {diff.text()}, margin "
                f"-{SCORE_TOLERANCE}: {score}")  # fmt: skip
    if ratio > REV_MEMORY_FRACTION:
        return Claim("rev-vs-res", "fig1", slice_, case, evidence, NOT_SUPPORTED)
    return Claim("rev-vs-res", "fig1", slice_, case, evidence, score)


def _tradeoff(slice_: str, tied: Series, rev: Series) -> Claim:
    """Fewer parameters (a gate), then the score given up against the most the paper's own
    tied models gave up (the interval rule)."""
    a, b = _means(tied), _means(rev)
    case = f"{tied.label} vs {rev.label}"
    if np.isnan(a["params"]) or np.isnan(b["params"]):
        return Claim("tied-tradeoff", "fig1", slice_, case, "missing ok trials", NO_DATA)
    ratio = a["params"] / b["params"]
    diff = score_difference(tied.rows, rev.rows)
    margin = tied_score_margin()
    score = judge(diff, margin=margin)
    evidence = (f"params {fmt_num(a['params'])} vs {fmt_num(b['params'])} ({ratio:.3g}×); score "
                f"{tied.arch} - rev = {diff.text()} against the paper's largest loss "
                f"{margin:+.4f}: {score}")  # fmt: skip
    if tied.arch == "deq":
        evidence += "; " + _convergence(tied.rows)
    if ratio >= 1:
        return Claim("tied-tradeoff", "fig1", slice_, case, evidence, NOT_SUPPORTED)
    return Claim("tied-tradeoff", "fig1", slice_, case, evidence, score)


def tied_score_margin() -> float:
    """The most test score (0..1) one of the paper's tied models gave up against its untied
    counterpart at the same width (figure 1): 'some accuracy', as the paper measured it."""
    losses = []
    for tied, untied in PAPER_TIED_PAIRS:
        t, u = paper.point(tied).test_score, paper.point(untied).test_score
        if t is not None and u is not None:
            losses.append((t - u) / 100)
    return min(losses)


def counted_tradeoff_claims() -> list[Claim]:
    """The paper's tied / untied parameter ratios at its own shapes, counted on our models."""
    return [counted_ratio_claim("tied-tradeoff", "fig1", tied, untied)
            for tied, untied in PAPER_TIED_PAIRS]  # fmt: skip


def _convergence(rows: pd.DataFrame) -> str:
    """How converged a DEQ score is: the worst final residuals beside the tolerance."""
    ok = rows[rows["status"] == "ok"]
    if ok.empty or ok["solver_bwd_rel_residual_max"].isna().all():
        return "solver residuals not recorded"
    fwd, bwd = ok["solver_fwd_rel_residual_max"].max(), ok["solver_bwd_rel_residual_max"].max()
    tol = float(deq_tolerance(ok).max())
    n = int(unconverged(ok).sum())
    state = f"{n}/{len(ok)} trials above it: score from unconverged solves" if n else "converged"
    return f"DEQ residual fwd {fwd:.2g} / bwd {bwd:.2g} (tolerance {tol:.2g}; {state})"
