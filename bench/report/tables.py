"""The report's tables as DataFrames of display strings (Markdown) beside raw CSVs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import paper
from bench.models import archs
from bench.report.claims import Finding, get_claim
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
from bench.report.select import FIGURE_BY_KEY

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
    if "code" in block and block["code"].astype(bool).any():
        table["code"] = block["code"].to_numpy()  # configurations that mix code versions
    equilibrium = archs.names(family="equilibrium")
    if block["arch"].isin(equilibrium).any():
        table["DEQ residual fwd / bwd"] = [
            _residuals(r) if r["arch"] in equilibrium else "" for _, r in block.iterrows()
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


def claims_table(findings: list[Finding]) -> pd.DataFrame:
    """Every case of every claim with its claim's kind and threshold (``tables/claims.csv``)."""
    return pd.DataFrame([{"claim": f.key, "kind": get_claim(f.key).kind, "figure": f.figure,
                          "slice": f.slice, "case": f.case, "evidence": f.evidence,
                          "threshold": get_claim(f.key).threshold, "verdict": f.verdict}
                         for f in findings])  # fmt: skip


def paper_vs_measured(df: pd.DataFrame, summary: pd.DataFrame, gpu: pd.DataFrame | None,
                      commit: str) -> pd.DataFrame:  # fmt: skip
    """The paper's ratios beside ours measured like for like (same models, depth, width and
    batch, on one GPU), each paper point beside the GPU check's measurement and any trial of
    exactly its shape, then the parameter counts at the paper's shapes."""
    return pd.concat(
        [_ratio_rows(gpu, commit), _point_rows(summary, gpu, commit), parameter_count_rows()],
        ignore_index=True,
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


GPU_RATIOS = (
    ("RevGNN / ResGNN peak memory", "RevGNN-64", "ResGNN-64", "peak_memory_gb", "peak_bytes"),
    ("WT-RevGNN / WT-ResGNN peak memory", "WT-RevGNN-64", "WT-ResGNN-64", "peak_memory_gb",
     "peak_bytes"),
    ("DEQ-GNN / ResGNN peak memory", "DEQ-GNN-64", "ResGNN-64", "peak_memory_gb", "peak_bytes"),
    ("WT-RevGNN / RevGNN parameters", "WT-RevGNN-64", "RevGNN-64", "params", "params"),
    ("DEQ-GNN / RevGNN parameters", "DEQ-GNN-64", "RevGNN-64", "params", "params"),
)  # fmt: skip


def _gpu_row(gpu: pd.DataFrame | None, label: str) -> pd.Series | None:
    if gpu is None:
        return None
    rows = gpu[(gpu["label"] == label) & (gpu["status"] == "ok")]
    return rows.iloc[0] if len(rows) else None


def _card(row: pd.Series, commit: str) -> str:
    from bench.report.load import device_short

    return f"{device_short('cuda (' + str(row['device']) + ')')}, commit {commit}"


def _ratio_rows(gpu: pd.DataFrame | None, commit: str) -> pd.DataFrame:
    """The paper's 112-layer ratios beside the GPU check's, both on one proteins training part
    at 64 channels: like for like (a ratio of CPU trials at other depths would not be)."""
    out = []
    for name, a, b, paper_field, gpu_field in GPU_RATIOS:
        pa, pb = paper.point(a), paper.point(b)
        ra, rb = _gpu_row(gpu, a), _gpu_row(gpu, b)
        same = ra is not None and rb is not None and ra["device"] == rb["device"]
        ours = fmt_ratio(ra[gpu_field] / rb[gpu_field]) if same else "not measured"
        out.append({"quantity": f"{name} ({a} / {b})",
                    "paper": fmt_ratio(getattr(pa, paper_field) / getattr(pb, paper_field)),
                    "paper setting": "ogbn-proteins, 112 layers, 64 ch", "paper hardware": paper.V100,
                    "ours": ours, "our setting": "one proteins-sized training part, 112 layers, "
                    "64 ch (gpu-check)" if same else "—",
                    "our device [meter]": f"{_card(ra, commit)} [cuda-allocator]" if same else "—",
                    "our trials": 0})  # fmt: skip
    return pd.DataFrame(out)


def _point_rows(summary: pd.DataFrame, gpu: pd.DataFrame | None, commit: str) -> pd.DataFrame:
    """Each paper point beside the GPU check's measurement of its shape, and beside any trial
    of exactly its arch, depth and width."""
    out = []
    for pt in paper.ALL_POINTS:
        paper_text = ("out of memory" if pt.oom else
                      f"params {fmt_num(pt.params)}, peak {pt.peak_memory_gb} GB, test {pt.test_score}")  # fmt: skip
        base = {"quantity": f"{pt.label} (L{pt.layers})", "paper": paper_text,
                "paper setting": f"{pt.dataset}{' (transcribed)' if pt.transcribed else ''}",
                "paper hardware": pt.hardware}  # fmt: skip
        row = _gpu_row(gpu, pt.label)
        if row is not None:
            out.append({**base, "ours": f"params {fmt_num(row['params'])}, peak "
                        f"{row['peak_bytes'] / 1e9:.2f} GB (no score: one metered step)",
                        "our setting": "one proteins-sized training part (gpu-check)",
                        "our device [meter]": f"{_card(row, commit)} [cuda-allocator]",
                        "our trials": 0})  # fmt: skip
        match = summary[(summary["arch"] == pt.arch) & (summary["layers"] == pt.layers)
                        & (summary["channels"] == pt.channels) & (summary["n_ok"] > 0)]  # fmt: skip
        for _, m in match.iterrows():
            out.append({**base, "ours": f"params {fmt_num(m['params_mean'])}, peak "
                        f"{fmt_bytes(m['peak_memory_bytes_mean'])}, test "
                        f"{fmt_mean_std(m['score_mean'], m['score_std'])} (n={m['n_ok']})",
                        "our setting": f"{m['dataset']}, {m['study']}",
                        "our device [meter]": m["slice"], "our trials": int(m["n_trials"])})  # fmt: skip
        if row is None and match.empty:
            out.append({**base, "ours": "not measured at this configuration", "our setting": "—",
                        "our device [meter]": "—", "our trials": 0})  # fmt: skip
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
