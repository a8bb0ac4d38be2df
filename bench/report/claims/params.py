"""Parameter claims: grouping cuts each layer's parameters; weight tying and DEQ make them
independent of depth."""

from __future__ import annotations

import pandas as pd

from bench.measure.memory_model import per_layer_params
from bench.report.aggregate import depth_means, linear_fit
from bench.report.claims.base import NOT_SUPPORTED, PEAK, Claim, Series, per_slice, split_series
from bench.report.claims.rules import GROUPS_TOLERANCE, TIED_GROWTH
from bench.report.fmt import fmt_num
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import NO_DATA, SUPPORTED


def groups_claims(df: pd.DataFrame) -> list[Claim]:
    """Group ablation: params(G_min)/params(G_max) against the ideal G_max/G_min."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY["fig6"])
    out = []
    for slice_, panel in per_slice(rows):
        for series in split_series(panel, axis=("arch", "groups", "layers", "deq_max_iter")):
            out.append(_groups_claim(slice_, series))
    return out


def _groups_claim(slice_: str, series: Series) -> Claim:
    ok = series.rows[series.rows["status"] == "ok"]
    by_g = ok.groupby("groups")[["params", PEAK, "score"]].mean().sort_index()
    if len(by_g) < 2:
        return Claim(
            "groups-params", "fig6", slice_, series.label, f"{len(by_g)} group counts", NO_DATA
        )
    g_lo, g_hi = by_g.index[0], by_g.index[-1]
    per_layer = _per_layer_params(ok)
    if per_layer is None or g_lo not in per_layer or g_hi not in per_layer:
        return Claim("groups-params", "fig6", slice_, series.label,
                     "per-layer params need >= 2 depths per group count (untied archs)", NO_DATA)  # fmt: skip
    channels = int(ok["channels"].iloc[0])
    has_edges = _has_edge_features(str(ok["dataset"].iloc[0]))
    if has_edges is None:
        return Claim("groups-params", "fig6", slice_, series.label,
                     "the dataset's edge features are unknown: no prediction", NO_DATA)  # fmt: skip
    predicted = per_layer_params(channels, int(g_lo), has_edges) / per_layer_params(
        channels, int(g_hi), has_edges
    )
    ideal, measured = g_hi / g_lo, per_layer[g_lo] / per_layer[g_hi]
    evidence = (f"per-layer params G={fmt_num(g_lo)} -> G={fmt_num(g_hi)}: {fmt_num(per_layer[g_lo])} -> "
                f"{fmt_num(per_layer[g_hi])} = {measured:.4g}× fewer; architecture predicts "
                f"{predicted:.4g}× ({'with' if has_edges else 'no'} edge re-encoders, C={channels}; "
                f"ideal {ideal:.3g}×); peak {by_g.at[g_hi, PEAK] / by_g.at[g_lo, PEAK]:.3g}×; "
                f"score {by_g.at[g_lo, 'score']:.4g} -> {by_g.at[g_hi, 'score']:.4g}")  # fmt: skip
    ok_ = abs(measured / predicted - 1) <= GROUPS_TOLERANCE
    return Claim("groups-params", "fig6", slice_, series.label, evidence,
                 SUPPORTED if ok_ else NOT_SUPPORTED)  # fmt: skip


def _has_edge_features(dataset: str) -> bool | None:
    from bench.data.registry import SPECS

    spec = SPECS.get(dataset)
    return None if spec is None else spec.edge_features


def _per_layer_params(ok: pd.DataFrame) -> pd.Series | None:
    """Params per layer for each group count, from the slope over >= 2 depths (untied only)."""
    if ok["arch"].iloc[0] in ("wt-res", "wt-rev", "deq"):
        return None
    slopes = {}
    for g, part in ok.groupby("groups"):
        means = part.groupby("layers")["params"].mean()
        fit = linear_fit(means.index.to_numpy(), means.to_numpy())
        if fit is not None:
            slopes[g] = round(fit.slope, 1)
    return pd.Series(slopes) if slopes else None


def tied_params_claims(df: pd.DataFrame) -> list[Claim]:
    """Weight-tied and DEQ params vs depth (any ablation that varies depth)."""
    rows = df[(df["kind"] == "ablation") & df["arch"].isin(("wt-res", "wt-rev", "deq"))]
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
            out.append(Claim("tied-params", "fig3" if series.arch != "deq" else "fig4", str(slice_),
                             f"{series.label} [{series.rows['spec'].iloc[0]}]", evidence, verdict))  # fmt: skip
    return out
