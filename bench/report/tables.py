"""The report's tables as DataFrames of display strings (Markdown) beside raw CSVs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import paper
from bench.report.aggregate import depth_means
from bench.report.claims.base import Claim, series_pairs, split_series
from bench.report.fmt import (
    byte_unit,
    fmt_bytes,
    fmt_interval,
    fmt_mean_std,
    fmt_num,
    fmt_ratio,
    is_missing,
)
from bench.report.load import CONFIG_COLUMNS, as_key, canonical
from bench.report.select import FIGURE_BY_KEY, ablation_rows

ALWAYS_SHOWN = ("arch", "layers")
SCORE_CI = "test score 95% CI (t-interval, n)"  # the column's header names the interval
HIDDEN = ("seed", "dataset", "device", "data_root")  # named by the section's slice instead


def summary_sections(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Per (study, slice): a display table with the config columns that vary in it."""
    out = []
    for (study, slice_), block in summary.groupby(["study", "slice"], sort=True):
        out.append((f"{study} — {slice_}", display_summary(block)))
    return out


def display_summary(block: pd.DataFrame) -> pd.DataFrame:
    """mean ± std per configuration; n is the ok trials behind each mean (of all trials); the
    test score also gets its 95% Student-t interval of the mean and the seeds behind it."""
    vary = [c for c in CONFIG_COLUMNS if c not in (*ALWAYS_SHOWN, *HIDDEN)
            and as_key(block[c]).nunique() > 1]  # fmt: skip
    unit, scale = byte_unit(
        float(np.nanmax(block["peak_memory_bytes_mean"].to_numpy(dtype=float), initial=1.0))
    )
    table = pd.DataFrame({c: block[c].map(lambda v: fmt_num(canonical(v)) if isinstance(canonical(v), (int, float)) else ("—" if canonical(v) is None else str(v)))
                          for c in (*ALWAYS_SHOWN, *vary)})  # fmt: skip
    table["n ok/trials"] = [
        f"{a}/{b}" for a, b in zip(block["n_ok"], block["n_trials"], strict=True)
    ]
    table["seeds"] = block["seeds"].to_numpy()
    table["statuses"] = block["statuses"].to_numpy()
    table["test score"] = _ms(block, "score")
    table[SCORE_CI] = _ci(block, "score")
    table[f"peak ({unit})"] = _ms(block, "peak_memory_bytes", scale)
    table[f"activation ({unit})"] = _ms(block, "activation_bytes", scale)
    table[f"model state ({unit})"] = _ms(block, "model_state_bytes", scale)
    table["params"] = [fmt_num(v) for v in block["params_mean"]]
    table["step (s)"] = _ms(block, "step_time_s")
    if (block["arch"] == "deq").any():
        table["DEQ residual fwd / bwd"] = [
            _residuals(r) if r["arch"] == "deq" else "" for _, r in block.iterrows()
        ]
    return table.reset_index(drop=True)


def _residuals(row: pd.Series) -> str:
    """Mean over seeds of each trial's largest final relative residual, forward / backward,
    and how many trials ended above the solver's tolerance (their scores are unconverged)."""
    fwd, bwd = row["solver_fwd_rel_residual_max_mean"], row["solver_bwd_rel_residual_max_mean"]
    text = f"{fwd:.2g} / {bwd:.2g}" if pd.notna(fwd) and pd.notna(bwd) else "—"
    if row.get("n_unconverged", 0):
        text += f" ⚠ {int(row['n_unconverged'])}/{int(row['n_ok'])} above tolerance"
    return text


def _ms(block: pd.DataFrame, metric: str, scale: float = 1.0) -> list[str]:
    return [
        fmt_mean_std(m, s, scale)
        for m, s in zip(block[f"{metric}_mean"], block[f"{metric}_std"], strict=True)
    ]


def _ci(block: pd.DataFrame, metric: str) -> list[str]:
    return [
        fmt_interval(lo, hi, n)
        for lo, hi, n in zip(
            block[f"{metric}_ci_lo"], block[f"{metric}_ci_hi"], block[f"{metric}_n"], strict=True
        )
    ]


def display_oom(oom: pd.DataFrame) -> pd.DataFrame:
    """First depth at which each config family ran out of memory, and its deepest ok depth."""
    if oom.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "study": oom["study"], "slice": oom["slice"], "arch": oom["arch"],
        "channels": oom["channels"].map(fmt_num), "batching": oom["batching"],
        "deepest ok depth": oom["max_ok_depth"].map(fmt_num),
        "first OOM depth": oom["first_oom_depth"].map(fmt_num), "OOM trials": oom["n_oom"],
    })  # fmt: skip


def groups_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The group-count ablation: params, memory, score per group count."""
    rows = summary[summary["spec"].isin(FIGURE_BY_KEY["fig6"].specs)]
    if rows.empty:
        return pd.DataFrame()
    unit, scale = byte_unit(
        float(np.nanmax(rows["peak_memory_bytes_mean"].to_numpy(dtype=float), initial=1.0))
    )
    return pd.DataFrame({
        "slice": rows["slice"], "arch": rows["arch"], "layers": rows["layers"].map(fmt_num),
        "channels": rows["channels"].map(fmt_num), "groups": rows["groups"].map(fmt_num),
        "n ok/trials": [f"{a}/{b}" for a, b in zip(rows["n_ok"], rows["n_trials"], strict=True)],
        "params": rows["params_mean"].map(fmt_num),
        f"peak ({unit})": _ms(rows, "peak_memory_bytes", scale),
        "test score": _ms(rows, "score"), SCORE_CI: _ci(rows, "score"),
    }).reset_index(drop=True)  # fmt: skip


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    from bench.report.claims.rules import KIND

    return pd.DataFrame([{"claim": c.key, "kind": KIND.get(c.key, "paper's claim"),
                          "figure": c.figure, "slice": c.slice, "case": c.case,
                          "evidence": c.evidence, "threshold": c.threshold, "verdict": c.verdict}
                         for c in claims])  # fmt: skip


def paper_vs_measured(df: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's ratios beside ours (each with its hardware/device), then the paper's points
    beside any trial of exactly the same arch, depth and width, then the paper's parameter
    counts beside ours at the same configuration (counted, no trial needed)."""
    return pd.concat(
        [_ratio_rows(df), _point_rows(summary), parameter_count_rows()], ignore_index=True
    )


def parameter_count_rows() -> pd.DataFrame:
    """Each paper point's parameter count beside our model's at the same arch, depth, width,
    groups and weight tying, built on the proteins input (exact, no data or training)."""
    from bench.config import TrialConfig
    from bench.measure.memory_model import GraphSizes, predict_params

    sizes = GraphSizes(nodes=1, edges=1, batch_nodes=1, batch_edges=1, batch_train_nodes=1,
                       **paper.PROTEINS_INPUT)  # fmt: skip
    out = []
    for pt in paper.ALL_POINTS:
        if pt.params is None or pt.dataset != "ogbn-proteins":
            continue
        config = TrialConfig(arch=pt.arch, layers=pt.layers, channels=pt.channels,
                             groups=pt.groups or 2, tie=pt.tie)  # fmt: skip
        ours = predict_params(config, sizes)
        tie = f", tie {pt.tie}" if pt.tie else ""
        given = paper.PROTEINS_INPUT
        out.append({"quantity": f"{pt.label} (L{pt.layers}) parameters",
                    "paper": fmt_num(pt.params),
                    "paper setting": f"{pt.dataset}{' (transcribed)' if pt.transcribed else ''}",
                    "paper hardware": pt.hardware,
                    "ours": f"{fmt_num(ours)} ({ours / pt.params - 1:+.2%})",
                    "our setting": f"counted: same shape{tie}; input {given['features']} node / "
                                   f"{given['edge_dim']} edge features, {given['outputs']} tasks",
                    "our device [meter]": "— (model built on the meta device)",
                    "our trials": 0})  # fmt: skip
    return pd.DataFrame(out)


def _ratio_rows(df: pd.DataFrame) -> pd.DataFrame:
    p = {pt.label: pt for pt in paper.FIGURE1}
    specs = (
        ("RevGNN / ResGNN peak memory", "fig2", "rev", "res", "peak_memory_bytes",
         p["RevGNN-64"].peak_memory_gb / p["ResGNN-64"].peak_memory_gb, "112 layers, 64 ch"),
        ("WT-RevGNN / WT-ResGNN peak memory", "fig3", "wt-rev", "wt-res", "peak_memory_bytes",
         p["WT-RevGNN-64"].peak_memory_gb / p["WT-ResGNN-64"].peak_memory_gb, "112 layers, 64 ch"),
        ("DEQ-GNN / ResGNN peak memory", "fig4", "deq", "res", "peak_memory_bytes",
         p["DEQ-GNN-64"].peak_memory_gb / p["ResGNN-64"].peak_memory_gb, "112 layers/iters, 64 ch"),
        ("WT-RevGNN / RevGNN parameters", "fig1", "wt-rev", "rev", "params",
         p["WT-RevGNN-64"].params / p["RevGNN-64"].params, "112 layers, 64 ch"),
        ("DEQ-GNN / RevGNN parameters", "fig1", "deq", "rev", "params",
         p["DEQ-GNN-64"].params / p["RevGNN-64"].params, "112 layers, 64 ch"),
    )  # fmt: skip
    out = []
    for name, fig, lo, hi, column, paper_value, where in specs:
        found = _measured_ratios(df, fig, lo, hi, column)
        for slice_, setting, ratio, n in found or [("—", "not measured", np.nan, 0)]:
            out.append({"quantity": name, "paper": fmt_ratio(paper_value),
                        "paper setting": f"ogbn-proteins, {where}", "paper hardware": paper.V100,
                        "ours": fmt_ratio(ratio), "our setting": setting,
                        "our device [meter]": slice_, "our trials": n})  # fmt: skip
    return pd.DataFrame(out)


def _measured_ratios(df: pd.DataFrame, fig: str, lo: str, hi: str, column: str) -> list[tuple]:
    rows, _ = ablation_rows(df, FIGURE_BY_KEY[fig])
    out = []
    for slice_, panel in rows.groupby("slice", sort=True):
        for a, b in series_pairs(split_series(panel), lo, hi):
            ma, mb = depth_means(a.rows, column), depth_means(b.rows, column)
            common = sorted(set(ma.index) & set(mb.index))
            if common:
                d = common[-1]
                n = int(((a.rows["depth"] == d) | (b.rows["depth"] == d)).sum())
                out.append(
                    (str(slice_), f"{a.label} vs {b.label} at depth {fmt_num(d)}", ma[d] / mb[d], n)
                )
    return out


def _point_rows(summary: pd.DataFrame) -> pd.DataFrame:
    out = []
    for pt in paper.ALL_POINTS:
        match = summary[(summary["arch"] == pt.arch) & (summary["layers"] == pt.layers)
                        & (summary["channels"] == pt.channels) & (summary["n_ok"] > 0)]  # fmt: skip
        paper_text = ("out of memory" if pt.oom else
                      f"params {fmt_num(pt.params)}, peak {pt.peak_memory_gb} GB, test {pt.test_score}")  # fmt: skip
        for _, m in match.iterrows() if len(match) else [(None, None)]:
            ours = "not measured at this configuration" if m is None else (
                f"params {fmt_num(m['params_mean'])}, peak {fmt_bytes(m['peak_memory_bytes_mean'])}, "
                f"test {fmt_mean_std(m['score_mean'], m['score_std'])} (n={m['n_ok']})")  # fmt: skip
            out.append({"quantity": f"{pt.label} (L{pt.layers})", "paper": paper_text,
                        "paper setting": f"{pt.dataset}{' (transcribed)' if pt.transcribed else ''}",
                        "paper hardware": pt.hardware, "ours": ours,
                        "our setting": "—" if m is None else f"{m['dataset']}, {m['study']}",
                        "our device [meter]": "—" if m is None else m["slice"],
                        "our trials": 0 if m is None else int(m["n_trials"])})  # fmt: skip
    return pd.DataFrame(out)


def pareto_table(tune: pd.DataFrame, cost_col: str, score_col: str) -> pd.DataFrame:
    """The tuning studies' Pareto fronts, sorted by cost."""
    front = tune[tune["pareto"]].sort_values(["study", "slice", cost_col, "trial_number"])
    fmt_cost = fmt_bytes if cost_col.endswith("bytes") else fmt_num
    return pd.DataFrame({
        "study": front["study"], "slice": front["slice"], "trial": front["trial_number"].map(fmt_num),
        "arch": front["arch"], "layers": front["layers"].map(fmt_num),
        "channels": front["channels"].map(fmt_num), "groups": front["groups"].map(fmt_num),
        "dropout": front["dropout"].map(fmt_num), "lr": front["lr"].map(fmt_num),
        score_col: front[score_col].map(lambda v: "—" if is_missing(v) else f"{v:.4f}"),
        cost_col: front[cost_col].map(fmt_cost),
    }).reset_index(drop=True)  # fmt: skip
