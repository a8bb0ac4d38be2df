"""Parameter claims: grouping cuts each layer's parameters (judged against the paper's counts
and its wording); weight tying and DEQ make them independent of depth. Counts at the paper's
shapes are built on the meta device (no data, no training): slice ``COUNTED``.

Like with like: the paper's only grouping number is 1 -> 2 groups (ResGNN-64 against RevGNN-64,
GENConv with edge features), so ``groups-params`` holds our 1 -> 2 division against it: at the
paper's shapes (counted, and per layer from the architecture,
:func:`bench.measure.memory_model.per_layer_params`), and measured from every slice whose trials
have res and rev at the same width over >= 2 depths (per-layer parameters: the slope of
parameters over depth). A layer's division depends on its width (GENConv's per-group edge
re-encoders keep C² whatever G), so a measured case at another width is held against the
paper's alpha moved by the architecture's own width dependence; the 2 -> 3 -> 4 group series
are the sanity check ``groups-count``.

Declares ``groups-params`` and the sanity checks ``tied-params`` and ``groups-count`` (at the
end of the module)."""

from __future__ import annotations

import functools
import math

import pandas as pd

from bench import paper
from bench.measure.memory_model import per_layer_params
from bench.models import archs
from bench.report.aggregate import depth_means, linear_fit
from bench.report.claims.base import (
    NOT_SUPPORTED,
    PEAK,
    Finding,
    Series,
    per_slice,
    series_pairs,
    split_series,
)
from bench.report.claims.registry import NO_PAPER, SANITY_CHECK, Claim
from bench.report.fmt import fmt_num
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import NO_DATA, SUPPORTED

# Thresholds (the verdicts follow from these and nothing else).
GROUPS_TOLERANCE = 0.01  # measured per-layer params ratio within 1% of the architecture's
TIED_GROWTH = 1.01  # params at the deepest / shallowest depth
PAPER_DIGITS = 3  # the paper prints parameter counts to 3 significant digits (1.46M, 35.0K)
# the slice of cases counted on our models built at the paper's shapes (no trial)
COUNTED = "counted at the paper's shapes"


def rounding_bounds(value: float, digits: int = PAPER_DIGITS) -> tuple[float, float]:
    """The interval a number printed to ``digits`` significant digits stands for."""
    half = 0.5 * 10 ** (math.floor(math.log10(abs(value))) - digits + 1)
    return value - half, value + half


def groups_params_claims(df: pd.DataFrame) -> list[Finding]:
    """Grouping against the paper, 1 -> 2 groups: its own counts (RevGNN-64 vs ResGNN-64,
    counted at its shapes), the architecture's per-layer division at its width, and every
    measured res / rev pair at equal width ("roughly by G", read no stricter than the paper)."""
    found = [_paper_count_claim(), _paper_width_claim()]
    for finding in (_split_claim(s, res, rev) for s, res, rev in _res_rev_pairs(df)):
        if finding is not None and finding not in found:  # specs sharing a shape: once
            found.append(finding)
    return found


def groups_count_claims(df: pd.DataFrame) -> list[Finding]:
    """The sanity check: every group ablation series' per-layer division against our
    architecture's own prediction (a series that cannot say, ``groups-params`` says why)."""
    found = (_count_claim(s, series) for s, series in _group_series(df))
    return [finding for finding in found if finding is not None]


def _group_series(df: pd.DataFrame) -> list[tuple[str, Series]]:
    rows, _ = ablation_rows(df, FIGURE_BY_KEY["fig6"])
    return [(slice_, series) for slice_, panel in per_slice(rows)
            for series in split_series(panel, axis=("arch", "groups", "layers", "deq_max_iter"))]  # fmt: skip


@functools.cache
def paper_shape_params(label: str) -> int:
    """Our model's parameters at a paper point's shape on the proteins input (meta device)."""
    from bench.config import TrialConfig
    from bench.measure.memory_model import GraphSizes, predict_params

    pt = paper.point(label)
    sizes = GraphSizes(nodes=1, edges=1, batch_nodes=1, batch_edges=1, batch_train_nodes=1,
                       **paper.PROTEINS_INPUT)  # fmt: skip
    config = TrialConfig(arch=pt.arch, layers=pt.layers, channels=pt.channels,
                         groups=pt.groups or 2, tie=pt.tie)  # fmt: skip
    return predict_params(config, sizes)


def _paper_ratio(a: str, b: str) -> tuple[float, float, float]:
    """The paper's params(a) / params(b) and the interval its printed rounding allows."""
    pa, pb = (float(paper.point(k).params or math.nan) for k in (a, b))
    (a_lo, a_hi), (b_lo, b_hi) = rounding_bounds(pa), rounding_bounds(pb)
    return pa / pb, a_lo / b_hi, a_hi / b_lo


def counted_ratio_claim(key: str, fig: str, a: str, b: str) -> Finding:
    ours = paper_shape_params(a) / paper_shape_params(b)
    value, lo, hi = _paper_ratio(a, b)
    evidence = (f"params {a} / {b} at {paper.point(a).layers} layers: ours "
                f"{fmt_num(paper_shape_params(a))} / {fmt_num(paper_shape_params(b))} = "
                f"{ours:.4f}; paper {value:.4f} (its rounding allows [{lo:.4f}, {hi:.4f}])")  # fmt: skip
    verdict = SUPPORTED if lo <= ours <= hi else NOT_SUPPORTED
    return Finding(key, fig, COUNTED, f"{a} vs {b}", evidence, verdict)


def _paper_count_claim() -> Finding:
    return counted_ratio_claim("groups-params", "fig6", "RevGNN-64", "ResGNN-64")


def paper_division() -> tuple[float, float]:
    """How far the paper's own counts divide a layer when going from 1 to 2 groups: the
    per-layer factor D (ResGNN-64 over RevGNN-64, less each model's encoders and head) and
    alpha = log D / log 2, at the end of the paper's rounding least favourable to us."""
    res, rev = paper.point("ResGNN-64"), paper.point("RevGNN-64")
    shared = {k: paper_shape_params(k) - k_layers * per_layer_params(64, g, True)
              for k, k_layers, g in (("ResGNN-64", 112, 1), ("RevGNN-64", 112, 2))}  # fmt: skip
    res_lo, _ = rounding_bounds(float(res.params or math.nan))
    _, rev_hi = rounding_bounds(float(rev.params or math.nan))
    factor = (res_lo - shared["ResGNN-64"]) / (rev_hi - shared["RevGNN-64"])
    return factor, math.log(factor) / math.log(2)


def _division(series: Series) -> tuple[pd.DataFrame, pd.Series] | str:
    """Mean params, peak and score per group count with the per-layer params of each; or why
    the series cannot say how grouping divides a layer."""
    ok = series.rows[series.rows["status"] == "ok"]
    by_g = ok.groupby("groups")[["params", PEAK, "score"]].mean().sort_index()
    if len(by_g) < 2:
        return f"{len(by_g)} group counts"
    per_layer = _per_layer_params(ok)
    if per_layer is None or by_g.index[0] not in per_layer or by_g.index[-1] not in per_layer:
        return "per-layer params need >= 2 depths per group count (untied archs)"
    return by_g, per_layer


PAPER_WIDTH = 64  # the paper's grouping pair: ResGNN-64 and RevGNN-64, GENConv with edges


def architecture_alpha(channels: int, groups: int, has_edges: bool) -> float:
    """Our architecture's alpha for 1 -> ``groups`` groups at ``channels``: log D / log G with
    D the per-layer parameters of a residual layer over a grouped one."""
    d = per_layer_params(channels, 1, has_edges) / per_layer_params(channels, groups, has_edges)
    return math.log(d) / math.log(groups)


def _paper_width_claim() -> Finding:
    """The architecture's per-layer division at the paper's width, against the paper's."""
    ours = architecture_alpha(PAPER_WIDTH, 2, True)
    factor, paper_alpha = paper_division()
    layer = [per_layer_params(PAPER_WIDTH, g, True) for g in (1, 2)]
    evidence = (f"per-layer params 1 -> 2 groups at {PAPER_WIDTH} channels (edge features): "
                f"{fmt_num(layer[0])} -> {fmt_num(layer[1])}, divided by {layer[0] / layer[1]:.3g} "
                f"(alpha {ours:.3f}); the paper's ResGNN-64 -> RevGNN-64 divides by {factor:.3g} "
                f"(alpha {paper_alpha:.3f})")  # fmt: skip
    return Finding("groups-params", "fig6", COUNTED, "per layer, ResGNN-64 vs RevGNN-64",
                   evidence, SUPPORTED if ours >= paper_alpha else NOT_SUPPORTED)  # fmt: skip


def _res_rev_pairs(df: pd.DataFrame) -> list[tuple[str, Series, Series]]:
    """Every res / rev pair of series at equal width (and every other setting), per slice."""
    rows = df[(df["kind"] == "ablation") & df["arch"].isin(["res", "rev"])]
    return [(str(slice_), res, rev) for slice_, panel in per_slice(rows)
            for rev, res in series_pairs(split_series(panel), "rev", "res")]  # fmt: skip


def _slope(series: Series) -> float | None:
    """Parameters per layer: the slope of mean parameters over >= 2 depths of ok trials."""
    ok = series.rows[series.rows["status"] == "ok"]
    means = ok.groupby("layers")["params"].mean()
    fit = linear_fit(means.index.to_numpy(), means.to_numpy())
    return None if fit is None else round(fit.slope, 1)


def _split_claim(slice_: str, res: Series, rev: Series) -> Finding | None:
    """1 -> G groups measured (res vs rev per-layer parameters at equal width) against the
    paper's alpha at this width; None where either side has fewer than 2 depths."""
    res_layer, rev_layer = _slope(res), _slope(rev)
    if not res_layer or not rev_layer:
        return None
    ok = rev.rows[rev.rows["status"] == "ok"]
    channels, groups = int(ok["channels"].iloc[0]), int(ok["groups"].iloc[0])
    conv = str(ok["conv"].iloc[0])
    alpha = math.log(res_layer / rev_layer) / math.log(groups)
    threshold, why = _threshold_at(channels, groups, conv, str(ok["dataset"].iloc[0]))
    evidence = (f"alpha {alpha:.3f} against {threshold:.3f} (1 -> {groups} groups at {channels} "
                f"channels, {conv}); per-layer params {fmt_num(res_layer)} -> {fmt_num(rev_layer)}, "
                f"divided by {res_layer / rev_layer:.3g}; the threshold: {why}")  # fmt: skip
    case = f"rev vs res, {conv}, {channels} channels"
    return Finding("groups-params", "fig6", slice_, case, evidence,
                   SUPPORTED if alpha >= threshold else NOT_SUPPORTED)  # fmt: skip


def _threshold_at(channels: int, groups: int, conv: str, dataset: str) -> tuple[float, str]:
    """The paper's alpha read at this shape: for GENConv (the paper's layer, whose counts our
    architecture reproduces at the paper's shapes), moved by the architecture's alpha here
    less at the paper's shape (width, edge features); other convolutions, as it stands."""
    _, paper_alpha = paper_division()
    edges = _has_edge_features(dataset)
    if conv != "gen" or edges is None:
        return (
            paper_alpha,
            f"the paper's alpha as it stands (1 -> 2 groups, {PAPER_WIDTH} channels)",
        )
    here, there = (
        architecture_alpha(channels, groups, edges),
        architecture_alpha(PAPER_WIDTH, 2, True),
    )
    return paper_alpha + here - there, (
        f"the paper's {paper_alpha:.3f} moved by the architecture's alpha at this shape "
        f"({here:.3f}: {channels} channels, {'with' if edges else 'no'} edge features) less at "
        f"the paper's ({there:.3f})")  # fmt: skip


def _count_claim(slice_: str, series: Series) -> Finding | None:
    """The measured per-layer division against our architecture's prediction."""
    division = _division(series)
    if isinstance(division, str):
        return None
    by_g, per_layer = division
    g_lo, g_hi = by_g.index[0], by_g.index[-1]
    measured = per_layer[g_lo] / per_layer[g_hi]
    ok = series.rows[series.rows["status"] == "ok"]
    channels = int(ok["channels"].iloc[0])
    has_edges = _has_edge_features(str(ok["dataset"].iloc[0]))
    if has_edges is None:
        return Finding("groups-count", "fig6", slice_, series.label,
                       "the dataset's edge features are unknown: no prediction", NO_DATA)  # fmt: skip
    predicted = per_layer_params(channels, int(g_lo), has_edges) / per_layer_params(
        channels, int(g_hi), has_edges
    )
    count = (f"measured per-layer division {measured:.4g}× against the architecture's "
             f"{predicted:.4g}× ({'with' if has_edges else 'no'} edge re-encoders, C={channels})")  # fmt: skip
    return Finding("groups-count", "fig6", slice_, series.label, count,
                   SUPPORTED if abs(measured / predicted - 1) <= GROUPS_TOLERANCE else NOT_SUPPORTED)  # fmt: skip


def _has_edge_features(dataset: str) -> bool | None:
    from bench.data.registry import SPECS

    spec = SPECS.get(dataset)
    return None if spec is None else spec.edge_features


def _per_layer_params(ok: pd.DataFrame) -> pd.Series | None:
    """Params per layer for each group count, from the slope over >= 2 depths (untied only)."""
    if ok["arch"].iloc[0] in archs.names(flat_params=True):
        return None
    slopes = {}
    for g, part in ok.groupby("groups"):
        means = part.groupby("layers")["params"].mean()
        fit = linear_fit(means.index.to_numpy(), means.to_numpy())
        if fit is not None:
            slopes[g] = round(fit.slope, 1)
    return pd.Series(slopes) if slopes else None


def tied_params_claims(df: pd.DataFrame) -> list[Finding]:
    """Weight-tied and DEQ params vs depth (any ablation that varies depth)."""
    rows = df[(df["kind"] == "ablation") & df["arch"].isin(archs.names(flat_params=True))]
    out = []
    for (slice_, _), panel in rows.groupby(["slice", "spec"], sort=True):
        for series in split_series(panel):
            params = depth_means(series.rows, "params")
            if "tie" in series.rows and (series.rows["tie"] == "after-first").all():
                params = params[params.index >= 2]  # one untied layer, then the shared block
            if len(params) < 2:
                continue
            growth = params.iloc[-1] / params.iloc[0]
            evidence = (f"params at depth {fmt_num(params.index[0])}: {fmt_num(params.iloc[0])}, at "
                        f"{fmt_num(params.index[-1])}: {fmt_num(params.iloc[-1])} ({growth:.4g}×)")  # fmt: skip
            verdict = SUPPORTED if growth <= TIED_GROWTH else NOT_SUPPORTED
            figure = "fig4" if archs.get(series.arch).depth_unit == "iteration" else "fig3"
            out.append(Finding("tied-params", figure, str(slice_),
                               f"{series.label} [{series.rows['spec'].iloc[0]}]", evidence, verdict))  # fmt: skip
    return out


# --- the claims ---------------------------------------------------------------------------

_REV, _RES = paper.point("RevGNN-64"), paper.point("ResGNN-64")

GROUPS_PARAMS = Claim(
    key="groups-params",
    statement="Grouping divides a layer's parameters roughly by the number of groups.",
    short="grouping divides a layer's parameters by ~G",
    paper=f"{_REV.label} {_REV.params / 1e6:.2f}M vs {_RES.label} {_RES.params / 1e6:.2f}M "
    f"parameters ({_REV.params / _RES.params:.3f}×)",
    figure="fig6",
    threshold="the paper's 1 -> 2 groups, like with like. Its counts: our RevGNN-64 / ResGNN-64 "
    "parameter ratio at 112 layers inside the interval the paper's printed counts allow. Its "
    "wording, 1 -> 2 groups per layer (res against rev at equal width): divided by D, alpha = "
    "log D / log 2 at least the paper's own alpha, at its width from the architecture "
    "(per_layer_params) and on every slice whose trials have res and rev at >= 2 depths (the "
    "slopes of parameters over depth), there against the paper's alpha moved by the "
    "architecture's width dependence (GENConv; other convolutions: the paper's as it stands)",
    threshold_source="the paper's own numbers: figure 1's 1.46M (RevGNN-64, 2 groups) and "
    "2.37M (ResGNN-64) parameters, each standing for an interval of +-0.005M; and its wording "
    "'roughly by the number of groups', read no stricter than its own 2-group model meets it "
    "(its alpha at the end of its rounding least favourable to us). Its only grouping pair is "
    "1 -> 2 groups at 64 channels, so 2 -> 4 series are not held to it (groups-count checks "
    "them against the architecture)",
    judge=groups_params_claims,
)
TIED_PARAMS = Claim(
    key="tied-params",
    statement="Weight-tied and DEQ models have parameters independent of depth.",
    short="tied/DEQ parameters independent of depth",
    paper=NO_PAPER,
    figure="fig3",
    threshold=f">= 2 depths; params(deepest)/params(shallowest) <= {TIED_GROWTH}",
    threshold_source="construction: one block shared by every layer (after the first, with "
    "tie=after-first); a sanity check of the implementation, not a test of the paper",
    judge=tied_params_claims,
    kind=SANITY_CHECK,
)
GROUPS_COUNT = Claim(
    key="groups-count",
    statement="Our grouped layers hold the parameters the architecture predicts.",
    short="grouped layers hold the predicted parameters",
    paper=NO_PAPER,
    figure="fig6",
    threshold=f"per-layer params(G_min)/params(G_max) within {GROUPS_TOLERANCE:.0%} of the "
    "architecture's prediction",
    threshold_source="our architecture (bench.measure.memory_model.per_layer_params): G groups "
    "of width w = C/G hold G(4w² + Cw + 10w) parameters, the per-group edge re-encoders keeping "
    "C² whatever G; a sanity check of the implementation, 1% for the slope fit",
    judge=groups_count_claims,
    kind=SANITY_CHECK,
)
