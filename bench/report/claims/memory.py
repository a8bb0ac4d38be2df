"""Memory claims: reversible (and weight-tied, and every convolution's) step memory flat in
depth while the residual one grows linearly; mini-batches below full batches; DEQ flat in its
iteration cap. Every claim reads one measure, step memory (``step_added_bytes``: what a training
step adds to the memory alive before it, activations and gradients), never the absolute peak,
which the data held before the step dilutes.

Declares ``rev-flat``, ``res-linear``, ``wt-rev-flat``, ``deq-flat``, ``batching`` and
``conv-flat`` at the end of the module; their thresholds' numbers are the constants at its top."""

from __future__ import annotations

import math

import pandas as pd

from bench import paper
from bench.measure.memory_model import DEQ_HISTORY
from bench.models import archs
from bench.report.aggregate import depth_means
from bench.report.claims.base import (
    ARCH_SPECIFIC,
    NOT_SUPPORTED,
    PEAK,
    STEP,
    Finding,
    Series,
    case_label,
    first_oom,
    fit_series,
    ok_depths,
    per_slice,
    ratio_text,
    series_pairs,
    split_series,
    step_column,
)
from bench.report.claims.registry import Claim
from bench.report.fmt import fmt_bytes, fmt_num
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import NO_DATA, SUPPORTED

# Thresholds (the verdicts follow from these and nothing else).
MIN_DEPTHS = 3  # ok depths a series needs before its slope is trusted
FLAT_FRACTION = 0.10  # "flat": step-memory slope <= 10% of the growing arch's slope
LINEAR_R2 = 0.95  # "linear": R² of a line through memory vs depth
DEQ_GROWTH = 1.10  # DEQ step memory at the largest iteration cap <= 1.10x the smallest cap's
DEQ_ITER_SPREAD = 2.0  # ...and the solver really iterated >= 2x more at the largest cap


def slope_column(rows: pd.DataFrame) -> str:
    """Slopes read step memory; exports from before it was recorded, peak minus model state
    (what the model's own state does not explain), never the absolute peak, whose model-state
    growth would pass for activations."""
    return STEP if step_column(rows) == STEP else "activation_bytes"


def flat_claim(key: str, fig: str, slice_: str, lo: Series, hi: Series) -> Finding:
    """Is ``lo``'s step memory flat in depth while ``hi``'s grows linearly?"""
    case = case_label(lo, hi)
    if min(ok_depths(lo), ok_depths(hi)) < MIN_DEPTHS:
        return Finding(key, fig, slice_, case, f"ok depths: {lo.arch} {ok_depths(lo)}, "
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
    return Finding(key, fig, slice_, case, "; ".join(parts), SUPPORTED if ok else NOT_SUPPORTED)


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


def linear_claim(fig: str, slice_: str, series: Series) -> Finding:
    """Does ``series``' step memory grow linearly with depth?"""
    n = ok_depths(series)
    if n < MIN_DEPTHS:
        return Finding("res-linear", fig, slice_, series.label, f"{n} ok depths", NO_DATA)
    column = slope_column(series.rows)
    fit = fit_series(series, column)
    assert fit is not None
    what = "step memory" if column == STEP else "activation memory"
    evidence = f"{what} {fmt_bytes(fit.slope, signed=True)}/layer, R²={fit.r2:.3f} over {n} depths"
    oom = first_oom(series)
    if not math.isnan(oom):
        evidence += f"; OOM from depth {fmt_num(oom)}"
    ok = fit.slope > 0 and fit.r2 >= LINEAR_R2
    return Finding(
        "res-linear", fig, slice_, series.label, evidence, SUPPORTED if ok else NOT_SUPPORTED
    )


def _flat_claims(df: pd.DataFrame, key: str, fig: str, lo: str, hi: str) -> list[Finding]:
    """``lo`` flat in depth while ``hi`` grows, for every matching pair of series in ``fig``."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY[fig])
    out: list[Finding] = []
    for slice_, panel in per_slice(rows):
        series = split_series(panel)
        out += [flat_claim(key, fig, slice_, a, b) for a, b in series_pairs(series, lo, hi)]
    return out


def rev_flat_claims(df: pd.DataFrame) -> list[Finding]:
    """Figure 2: rev's step memory flat in depth while res's grows."""
    return _flat_claims(df, "rev-flat", "fig2", "rev", "res")


def wt_rev_flat_claims(df: pd.DataFrame) -> list[Finding]:
    """Figure 3: the same with weight tying."""
    return _flat_claims(df, "wt-rev-flat", "fig3", "wt-rev", "wt-res")


def res_linear_claims(df: pd.DataFrame) -> list[Finding]:
    """Figure 2: res's step memory linear in depth."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY["fig2"])
    return [linear_claim("fig2", slice_, s) for slice_, panel in per_slice(rows)
            for s in split_series(panel) if s.arch == "res"]  # fmt: skip


def batching_claims(df: pd.DataFrame) -> list[Finding]:
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
        out.append(Finding("batching", "fig5", slice_, "full vs mini, rev vs res", text, verdict))
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


def deq_claims(df: pd.DataFrame) -> list[Finding]:
    """Figure 4: DEQ peak memory vs the iteration cap, with the iterations really done."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY["fig4"])
    out = []
    for slice_, panel in per_slice(rows):
        for series in (
            s for s in split_series(panel) if s.arch in archs.names(family="equilibrium")
        ):
            out.append(_deq_claim(slice_, series))
    return out


def _deq_claim(slice_: str, series: Series) -> Finding:
    """Flat from the cap at which the solver's history is full: Anderson and Broyden keep the
    last DEQ_HISTORY iterates, so below that cap each added iteration stores one more."""
    column = step_column(series.rows)
    mem, peak = depth_means(series.rows, column), depth_means(series.rows, PEAK)
    below = [c for c in mem.index if c < DEQ_HISTORY]
    mem = mem[mem.index >= DEQ_HISTORY]
    skipped = (f"; caps {', '.join(fmt_num(c) for c in below)} left out (below the solver's "
               f"{DEQ_HISTORY}-iterate history, each iteration there adds one)" if below else "")  # fmt: skip
    if len(mem) < 2:
        return Finding("deq-flat", "fig4", slice_, series.label,
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
        return Finding("deq-flat", "fig4", slice_, series.label,
                       evidence + "; no solver iterations recorded" + skipped, NO_DATA)  # fmt: skip
    spread = iters[hi] / iters[lo] if iters[lo] > 0 else math.inf
    evidence += f"; forward iterations done {iters[lo]:.3g} -> {iters[hi]:.3g}" + skipped
    if spread < DEQ_ITER_SPREAD:
        evidence += " (the cap barely changed the work, so depth-independence is untested)"
        return Finding("deq-flat", "fig4", slice_, series.label, evidence, NO_DATA)
    verdict = SUPPORTED if growth <= DEQ_GROWTH else NOT_SUPPORTED
    return Finding("deq-flat", "fig4", slice_, series.label, evidence, verdict)


def conv_claims(df: pd.DataFrame) -> list[Finding]:
    """The conv ablation: rev's step memory flat while res's grows, judged like
    ``rev-flat`` (:func:`flat_claim`) for each convolution on its own (series split by conv)."""
    return _flat_claims(df, "conv-flat", "fig9", "rev", "res")


# --- the claims ---------------------------------------------------------------------------

_WT_REV, _WT_RES, _DEQ = (paper.point(k) for k in ("WT-RevGNN-64", "WT-ResGNN-64", "DEQ-GNN-64"))

REV_FLAT = Claim(
    key="rev-flat",
    statement="Activation memory of a reversible GNN is O(1) in depth; a residual GNN's is O(L) "
    "(figure 2): only parameters and optimiser state grow with depth for RevGNN.",
    short="RevGNN memory flat in depth",
    paper=f"RevGNN-80 +{paper.REV_DEPTH_GROWTH_GB:g} GB from 112 to 1001 layers (its "
    f"parameters only); ResGNN ~{paper.RES_GB_PER_LAYER:g} GB a layer",
    figure="fig2",
    threshold=f">= {MIN_DEPTHS} ok depths per arch; rev step-memory slope <= "
    f"{FLAT_FRACTION:.0%} of res's; res slope > 0 with R² >= {LINEAR_R2}",
    threshold_source="the architecture: a reversible stack keeps no per-layer activation, so "
    "its step memory grows by its gradients only (4 B a parameter); the paper's figure 2 has "
    "RevGNN's *whole* memory grow 0.34 MB/layer against ResGNN's ~200 MB/layer (0.17%); 10% is "
    "a generous bound. R² 0.95: a residual layer saves the same tensors at every depth (memory "
    "model), so a line must explain nearly all variance",
    judge=rev_flat_claims,
)
RES_LINEAR = Claim(
    key="res-linear",
    statement="ResGNN memory grows linearly with depth until it runs out of memory (figure 2).",
    short="ResGNN memory linear in depth",
    paper=f"ResGNN-64 ~{paper.RES_GB_PER_LAYER:g} GB a layer; ResGNN-224 out of memory",
    figure="fig2",
    threshold=f">= {MIN_DEPTHS} ok depths; step-memory slope > 0 and R² >= {LINEAR_R2}",
    threshold_source="the memory model: every residual layer saves the same tensors, so step "
    "memory is affine in depth",
    judge=res_linear_claims,
)
WT_REV_FLAT = Claim(
    key="wt-rev-flat",
    statement="The same holds with weight tying: WT-RevGNN flat, WT-ResGNN linear (figure 3).",
    short="WT-RevGNN flat, WT-ResGNN linear",
    paper=f"{_WT_REV.label} {_WT_REV.peak_memory_gb:g} GB, {_WT_RES.label} "
    f"{_WT_RES.peak_memory_gb:g} GB at 112 layers",
    figure="fig3",
    threshold="as rev-flat, for wt-rev vs wt-res",
    threshold_source="as rev-flat (tying shares weights, not activations)",
    judge=wt_rev_flat_claims,
)
DEQ_FLAT = Claim(
    key="deq-flat",
    statement="DEQ-GNN memory does not grow with the number of solver iterations (figure 4).",
    short="DEQ memory flat in iterations",
    paper=f"{_DEQ.label} {_DEQ.peak_memory_gb:g} GB at 112 iterations (figure 4)",
    figure="fig4",
    threshold="caps from the solver's history size up (below it each iteration stores one "
    f"more iterate), >= 2 of them; step memory(max cap) <= {DEQ_GROWTH}x step memory(min cap), "
    f"with the solver doing >= {DEQ_ITER_SPREAD:g}x more forward iterations at the max cap",
    threshold_source="the architecture: one recorded evaluation plus a solver history of at "
    "most 6 past iterates (bench.nn.deq's default), full from cap 6; 10% bounds allocator/meter "
    "noise. The 2x work spread makes the test meaningful: a cap the solver never reaches proves "
    "nothing",
    judge=deq_claims,
)
BATCHING = Claim(
    key="batching",
    statement="Full-batch and mini-batch training both keep RevGNN flat in depth while ResGNN "
    "grows; mini-batches need less memory (figure 5).",
    short="flat in both batchings; mini below full",
    paper="figure 5, ogbn-products: both flat for RevGNN, mini-batch lower",
    figure="fig5",
    threshold="rev-flat holds in both batching modes and mini-batch step memory <= "
    "full-batch step memory at every common depth",
    threshold_source="the paper's figure 5 (mini-batches need less memory, both modes flat)",
    judge=batching_claims,
)
CONV_FLAT = Claim(
    key="conv-flat",
    statement="Reversible activation memory is flat in depth for every convolution (GENConv, "
    "GAT, GraphSAGE, GCN), as for GENConv (figure 2): the suite's extension of the paper, "
    "which shows RevGNN (GENConv), RevGAT (ogbn-arxiv) and SAGE blocks (ogbn-products).",
    short="flat for every convolution",
    paper="RevGAT (ogbn-arxiv) and SAGE blocks (ogbn-products); no depth figure",
    figure="fig9",
    threshold="as rev-flat, per convolution (gen, gat, sage, gcn): every conv's rev vs res",
    threshold_source="as rev-flat: the reversible engine keeps no per-layer activation "
    "whatever the group function is",
    judge=conv_claims,
)
