"""Memory claims: reversible (and weight-tied, and every convolution's) step memory flat in
depth while the residual one grows linearly; mini-batches below full batches; DEQ flat in its
iteration cap. Every claim reads one measure, step memory (``step_added_bytes``: what a training
step adds to the memory alive before it, activations and gradients), never the absolute peak,
which the data held before the step dilutes."""

from __future__ import annotations

import math

import pandas as pd

from bench import paper
from bench.measure.memory_model import DEQ_HISTORY
from bench.report.aggregate import depth_means
from bench.report.claims.base import (
    ARCH_SPECIFIC,
    NOT_SUPPORTED,
    PEAK,
    STEP,
    Claim,
    Series,
    first_oom,
    fit_series,
    ok_depths,
    per_slice,
    ratio_text,
    series_pairs,
    split_series,
    step_column,
)
from bench.report.claims.rules import (
    DEQ_GROWTH,
    DEQ_ITER_SPREAD,
    FLAT_FRACTION,
    LINEAR_R2,
    MIN_DEPTHS,
)
from bench.report.fmt import fmt_bytes, fmt_num
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import NO_DATA, SUPPORTED


def slope_column(rows: pd.DataFrame) -> str:
    """Slopes read step memory; exports from before it was recorded, peak minus model state
    (what the model's own state does not explain), never the absolute peak, whose model-state
    growth would pass for activations."""
    return STEP if step_column(rows) == STEP else "activation_bytes"


def flat_claim(key: str, fig: str, slice_: str, lo: Series, hi: Series) -> Claim:
    """Is ``lo``'s step memory flat in depth while ``hi``'s grows linearly?"""
    case = f"{lo.label} vs {hi.label}"
    if min(ok_depths(lo), ok_depths(hi)) < MIN_DEPTHS:
        return Claim(key, fig, slice_, case, f"ok depths: {lo.arch} {ok_depths(lo)}, "
                     f"{hi.arch} {ok_depths(hi)} (need {MIN_DEPTHS})", NO_DATA)  # fmt: skip
    column = slope_column(pd.concat([lo.rows, hi.rows]))
    what = "step memory" if column == STEP else "activation memory"
    lo_fit, hi_fit = fit_series(lo, column), fit_series(hi, column)
    assert lo_fit is not None and hi_fit is not None
    parts = [
        f"{hi.arch} {what} {fmt_bytes(hi_fit.slope, signed=True)}/layer (R²={hi_fit.r2:.3f})",
        f"{lo.arch} {fmt_bytes(lo_fit.slope, signed=True)}/layer "
        f"(= {_share(lo_fit.slope, hi_fit.slope)} of {hi.arch}'s)"
        if hi_fit.slope > 0 else f"{lo.arch} {fmt_bytes(lo_fit.slope, signed=True)}/layer",
    ]  # fmt: skip
    parts += _peak_ratio_evidence(lo, hi) + _model_state_evidence(lo)
    oom = first_oom(hi)
    if not math.isnan(oom):
        parts.append(f"{hi.arch} OOM from depth {fmt_num(oom)}")
    ok = (
        hi_fit.slope > 0 and hi_fit.r2 >= LINEAR_R2 and lo_fit.slope <= FLAT_FRACTION * hi_fit.slope
    )
    return Claim(key, fig, slice_, case, "; ".join(parts), SUPPORTED if ok else NOT_SUPPORTED)


# the coarsest meter's resolution: CUDA's caching allocator rounds every block to 512 B (the
# CPU meter is exact to the byte); peak growth across the depths below it is no growth
METER_RESOLUTION_BYTES = 512


def _share(part: float, whole: float) -> str:
    share = part / whole
    return "0%" if abs(share) < 0.0005 else f"{share:.1%}"


def _peak_ratio_evidence(lo: Series, hi: Series) -> list[str]:
    column = step_column(pd.concat([lo.rows, hi.rows]))
    lo_m = pd.DataFrame({c: depth_means(lo.rows, c) for c in {column, PEAK}})
    hi_m = pd.DataFrame({c: depth_means(hi.rows, c) for c in {column, PEAK}})
    common = sorted(set(lo_m.index) & set(hi_m.index))
    if not common:
        return []
    d = common[-1]
    return [
        f"{lo.arch}/{hi.arch} at depth {fmt_num(d)}: {ratio_text(lo_m.loc[d], hi_m.loc[d], column)}"
    ]


def _model_state_evidence(series: Series) -> list[str]:
    peak, state = fit_series(series, "peak_memory_bytes"), fit_series(series, "model_state_bytes")
    if peak is None or state is None:
        return []
    depths = series.rows.loc[series.rows["status"] == "ok", "depth"]
    if peak.slope * (depths.max() - depths.min()) < METER_RESOLUTION_BYTES:
        return []  # no growth to share out: a ratio of two round-off slopes is noise
    paper_share = paper.REV_DEPTH_EXTRA_PARAMS * 16 / (paper.REV_DEPTH_GROWTH_GB * 1e9)
    return [f"{series.arch} model state is {state.slope / peak.slope:.0%} of its peak growth "
            f"(paper: {paper_share:.0%}, 112->1001 layers)"]  # fmt: skip


def linear_claim(fig: str, slice_: str, series: Series) -> Claim:
    """Does ``series``' step memory grow linearly with depth?"""
    n = ok_depths(series)
    if n < MIN_DEPTHS:
        return Claim("res-linear", fig, slice_, series.label, f"{n} ok depths", NO_DATA)
    column = slope_column(series.rows)
    fit = fit_series(series, column)
    assert fit is not None
    what = "step memory" if column == STEP else "activation memory"
    evidence = f"{what} {fmt_bytes(fit.slope, signed=True)}/layer, R²={fit.r2:.3f} over {n} depths"
    oom = first_oom(series)
    if not math.isnan(oom):
        evidence += f"; OOM from depth {fmt_num(oom)}"
    ok = fit.slope > 0 and fit.r2 >= LINEAR_R2
    return Claim(
        "res-linear", fig, slice_, series.label, evidence, SUPPORTED if ok else NOT_SUPPORTED
    )


def depth_claims(df: pd.DataFrame) -> list[Claim]:
    """Figures 2, 3 and 5: flat vs linear memory in depth."""
    out: list[Claim] = []
    for fig, key, lo, hi in (
        ("fig2", "rev-flat", "rev", "res"),
        ("fig3", "wt-rev-flat", "wt-rev", "wt-res"),
    ):
        rows, _ = ablation_rows(df, FIGURE_BY_KEY[fig])
        for slice_, panel in per_slice(rows):
            series = split_series(panel)
            out += [flat_claim(key, fig, slice_, a, b) for a, b in series_pairs(series, lo, hi)]
            if fig == "fig2":
                out += [linear_claim(fig, slice_, s) for s in series if s.arch == "res"]
    return out + batching_claims(df)


def batching_claims(df: pd.DataFrame) -> list[Claim]:
    """Figure 5: rev flat in both batching modes, and mini-batch needs less memory."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY["fig5"])
    out = []
    for slice_, panel in per_slice(rows):
        series = split_series(panel)
        flats = [
            flat_claim("batching", "fig5", slice_, a, b)
            for a, b in series_pairs(series, "rev", "res")
        ]
        evidence, ok = _mini_vs_full(series)
        if not flats:
            continue
        verdicts = {c.verdict for c in flats}
        verdict = NO_DATA if NO_DATA in verdicts or ok is None else (
            SUPPORTED if verdicts == {SUPPORTED} and ok else NOT_SUPPORTED)  # fmt: skip
        text = " | ".join(f"{c.case}: {c.evidence}" for c in flats) + f" | {evidence}"
        out.append(Claim("batching", "fig5", slice_, "full vs mini, rev vs res", text, verdict))
    return out


def _mini_vs_full(series: list[Series]) -> tuple[str, bool | None]:
    """Mini/full peak ratios at common depths per arch; ok if every ratio <= 1."""
    ratios = []
    for mini in (s for s in series if s.values.get("batching") == "mini"):
        for full in (
            s for s in series if s.values.get("batching") == "full" and s.arch == mini.arch
        ):
            if not mini.matches(
                full, ignore=(*ARCH_SPECIFIC, "batching", "train_parts", "eval_parts")
            ):
                continue
            column = step_column(pd.concat([mini.rows, full.rows]))
            a, b = depth_means(mini.rows, column), depth_means(full.rows, column)
            pa, pb = depth_means(mini.rows, PEAK), depth_means(full.rows, PEAK)
            ratios += [(mini.arch, d, a[d] / b[d], pa[d] / pb[d], column)
                       for d in sorted(set(a.index) & set(b.index))]  # fmt: skip
    if not ratios:
        return "no mini/full pair at a common depth", None
    text = "mini/full " + ", ".join(
        f"{arch}@{fmt_num(d)} {'step' if c == STEP else 'peak'} {r:.3g}×"
        + (f" (peak {p:.3g}×)" if c == STEP else "")
        for arch, d, r, p, c in ratios
    )
    return text, all(r <= 1.0 for _, _, r, _, _ in ratios)


def deq_claims(df: pd.DataFrame) -> list[Claim]:
    """Figure 4: DEQ peak memory vs the iteration cap, with the iterations really done."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY["fig4"])
    out = []
    for slice_, panel in per_slice(rows):
        for series in (s for s in split_series(panel) if s.arch == "deq"):
            out.append(_deq_claim(slice_, series))
    return out


def _deq_claim(slice_: str, series: Series) -> Claim:
    """Flat from the cap at which the solver's history is full: Anderson and Broyden keep the
    last DEQ_HISTORY iterates, so below that cap each added iteration stores one more."""
    column = step_column(series.rows)
    mem, peak = depth_means(series.rows, column), depth_means(series.rows, PEAK)
    below = [c for c in mem.index if c < DEQ_HISTORY]
    mem = mem[mem.index >= DEQ_HISTORY]
    skipped = (f"; caps {', '.join(fmt_num(c) for c in below)} left out (below the solver's "
               f"{DEQ_HISTORY}-iterate history, each iteration there adds one)" if below else "")  # fmt: skip
    if len(mem) < 2:
        return Claim("deq-flat", "fig4", slice_, series.label,
                     f"{len(mem)} ok caps of at least {DEQ_HISTORY}{skipped}", NO_DATA)  # fmt: skip
    lo, hi = mem.index[0], mem.index[-1]
    growth = mem[hi] / mem[lo]
    iters = depth_means(series.rows, "solver_fwd_iters_mean")
    what = "step memory" if column == STEP else "peak"
    evidence = (f"{what} at cap {fmt_num(hi)} / cap {fmt_num(lo)} = {growth:.3g}× "
                f"({fmt_bytes(mem[hi])} vs {fmt_bytes(mem[lo])})")  # fmt: skip
    if column == STEP:
        evidence += f"; absolute peak {peak[hi] / peak[lo]:.3g}×"
    if lo not in iters.index or hi not in iters.index:
        return Claim("deq-flat", "fig4", slice_, series.label,
                     evidence + "; no solver iterations recorded" + skipped, NO_DATA)  # fmt: skip
    spread = iters[hi] / iters[lo] if iters[lo] > 0 else math.inf
    evidence += f"; forward iterations done {iters[lo]:.3g} -> {iters[hi]:.3g}" + skipped
    if spread < DEQ_ITER_SPREAD:
        evidence += " (the cap barely changed the work, so depth-independence is untested)"
        return Claim("deq-flat", "fig4", slice_, series.label, evidence, NO_DATA)
    verdict = SUPPORTED if growth <= DEQ_GROWTH else NOT_SUPPORTED
    return Claim("deq-flat", "fig4", slice_, series.label, evidence, verdict)


def conv_claims(df: pd.DataFrame) -> list[Claim]:
    """The conv ablation: rev's step memory flat while res's grows, judged like
    ``rev-flat`` (:func:`flat_claim`) for each convolution on its own (series split by conv)."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY["fig9"])
    out: list[Claim] = []
    for slice_, panel in per_slice(rows):
        series = split_series(panel)
        out += [
            flat_claim("conv-flat", "fig9", slice_, a, b)
            for a, b in series_pairs(series, "rev", "res")
        ]
    return out
