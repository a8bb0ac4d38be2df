"""The verdict board: REPORT.md's first screen. One row per claim: its verdict, the case that
decides it (a GPU slice's where one exists), the paper's number, what the GPU check measured
beside it, and links to the claim's section and figure. The paper's claims, the sanity checks
and the design targets are apart."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pandas as pd

from bench import paper
from bench.report.claims.base import VERDICT_ORDER, Claim, claim_verdict
from bench.report.claims.rules import FIGURE_OF, KIND, STATEMENTS
from bench.report.fmt import markdown_table
from bench.report.load import device_short
from bench.report.select import FIGURE_BY_KEY

SHORT: dict[str, str] = {
    "rev-flat": "RevGNN memory flat in depth",
    "res-linear": "ResGNN memory linear in depth",
    "wt-rev-flat": "WT-RevGNN flat, WT-ResGNN linear",
    "deq-flat": "DEQ memory flat in iterations",
    "batching": "flat in both batchings; mini below full",
    "groups-params": "grouping divides a layer's parameters by ~G",
    "tied-params": "tied/DEQ parameters independent of depth",
    "rev-vs-res": "RevGNN matches ResGNN in far less memory",
    "tied-tradeoff": "tied/DEQ: far fewer parameters, some accuracy",
    "depth-buys-accuracy": "depth buys accuracy within a budget",
    "conv-flat": "flat for every convolution",
    "groups-count": "grouped layers hold the predicted parameters",
    "rev-time": "a reversible step costs ~4/3 of a residual one",
}


def _gb(value: float) -> str:
    return f"{value / 1e9:.2f}"


def paper_numbers() -> dict[str, str]:
    """The paper's number beside each claim (its figure 1 and text, bench.paper)."""
    p = paper.point
    res, rev, wtres, wtrev = p("ResGNN-64"), p("RevGNN-64"), p("WT-ResGNN-64"), p("WT-RevGNN-64")
    deq, deep, wide = p("DEQ-GNN-64"), p("RevGNN-Deep"), p("RevGNN-Wide")
    return {
        "rev-flat": f"RevGNN-80 +{paper.REV_DEPTH_GROWTH_GB:g} GB from 112 to 1001 layers (its "
        f"parameters only); ResGNN ~{paper.RES_GB_PER_LAYER:g} GB a layer",
        "res-linear": f"ResGNN-64 ~{paper.RES_GB_PER_LAYER:g} GB a layer; ResGNN-224 out of memory",
        "wt-rev-flat": f"{wtrev.label} {wtrev.peak_memory_gb:g} GB, {wtres.label} "
        f"{wtres.peak_memory_gb:g} GB at 112 layers",
        "deq-flat": f"{deq.label} {deq.peak_memory_gb:g} GB at 112 iterations (figure 4)",
        "batching": "figure 5, ogbn-products: both flat for RevGNN, mini-batch lower",
        "groups-params": f"{rev.label} {rev.params / 1e6:.2f}M vs {res.label} "
        f"{res.params / 1e6:.2f}M parameters ({rev.params / res.params:.3f}×)",
        "rev-vs-res": f"{rev.label} {rev.test_score} vs {res.label} {res.test_score} ROC-AUC at "
        f"{rev.peak_memory_gb} vs {res.peak_memory_gb} GB "
        f"({rev.peak_memory_gb / res.peak_memory_gb:.3f}×)",
        "tied-tradeoff": f"{wtrev.label} {wtrev.params / 1e3:.1f}K vs {rev.label} "
        f"{rev.params / 1e6:.2f}M parameters ({wtrev.params / rev.params:.3f}×), "
        f"{wtrev.test_score} vs {rev.test_score} ROC-AUC",
        "depth-buys-accuracy": f"{deep.label} {deep.test_score}, {wide.label} {wide.test_score} "
        f"ROC-AUC against {res.label}'s {res.test_score}",
        "conv-flat": "RevGAT (ogbn-arxiv) and SAGE blocks (ogbn-products); no depth figure",
        "rev-time": f"none (the suite's target {paper.REV_STEP_TIME_TARGET:.3g}×)",
    }


def gpu_commit(results_dir: pathlib.Path, gpu: pd.DataFrame | None) -> str:
    """The commit the GPU check ran: its ``commit`` column, else what its SUMMARY.md names."""
    if gpu is not None and "commit" in gpu and gpu["commit"].notna().any():
        return ", ".join(sorted({str(c)[:7] + ("-dirty" if str(c).endswith("-dirty") else "")
                                 for c in gpu["commit"].dropna()}))  # fmt: skip
    summary = results_dir / "gpu" / "SUMMARY.md"
    found = re.search(r"commit ([0-9a-f]{7,40})(-dirty)?", summary.read_text()) if (
        summary.exists()) else None  # fmt: skip
    return f"{found.group(1)[:7]}{found.group(2) or ''}" if found else "not recorded"


def _row(gpu: pd.DataFrame, label: str) -> pd.Series | None:
    rows = gpu[(gpu["label"] == label) & (gpu["status"] == "ok")]
    return rows.iloc[0] if len(rows) else None


def _card(row: pd.Series) -> str:
    return device_short(f"cuda ({row['device']})")


def gpu_numbers(gpu: pd.DataFrame | None) -> dict[str, str]:
    """What the GPU check measured for each claim it bears on (peaks: max_memory_allocated)."""
    if gpu is None:
        return {}
    out: dict[str, str] = {}
    low, high = _row(gpu, "RevGNN-64 x 3"), _row(gpu, "RevGNN-64 x 1001")
    if low is not None and high is not None and low["device"] == high["device"]:
        out["rev-flat"] = (f"RevGNN-64 step adds {_gb(low['step_added_bytes'])} GB at 3 layers, "
                           f"{_gb(high['step_added_bytes'])} at 1001 ({_card(low)})")  # fmt: skip
    res = gpu[gpu["label"].str.match(r"ResGNN-64 x \d+$") & (gpu["status"] == "ok")]
    for _, rows in res.groupby("device", sort=True):
        if len(rows) >= 3:
            slope = np.polyfit(rows["layers"], rows["step_added_bytes"], 1)[0]
            out["res-linear"] = (f"ResGNN-64 +{slope / 1e9:.3f} GB a layer, "
                                 f"{int(rows['layers'].min())}-{int(rows['layers'].max())} layers "
                                 f"({_card(rows.iloc[0])})")  # fmt: skip
    for key, a, b in (("rev-vs-res", "RevGNN-64", "ResGNN-64"),
                      ("wt-rev-flat", "WT-RevGNN-64", "WT-ResGNN-64"),
                      ("deq-flat", "DEQ-GNN-64", "ResGNN-64")):  # fmt: skip
        ra, rb = _row(gpu, a), _row(gpu, b)
        if ra is not None and rb is not None and ra["device"] == rb["device"]:
            out[key] = (f"{a} / {b} peak at 112: {_gb(ra['peak_bytes'])} / "
                        f"{_gb(rb['peak_bytes'])} GB = {ra['peak_bytes'] / rb['peak_bytes']:.3f}× "
                        f"({_card(ra)})")  # fmt: skip
    deep = _row(gpu, "RevGNN-Deep")
    if deep is not None:
        out["depth-buys-accuracy"] = (f"RevGNN-Deep fits in {_gb(deep['peak_bytes'])} GB "
                                      f"({_card(deep)}); no GPU score yet")  # fmt: skip
    return out


def deciding_case(claims: list[Claim], key: str) -> Claim | None:
    """The case the claim's verdict comes from: one with that verdict, a GPU slice first."""
    verdict = claim_verdict(claims, key)
    cases = [c for c in claims if c.key == key and c.verdict == verdict]
    cases.sort(key=lambda c: ("GPU" not in c.slice, c.slice, c.case))
    return cases[0] if cases else None


def _decider(case: Claim | None) -> str:
    if case is None or case.slice == "—":
        return "no trials"
    clauses = case.evidence.split("; ")
    text = "; ".join(clauses[:2])
    return f"{case.slice}: {text if len(text) <= 170 else text[:167] + '...'}"


def board_md(claims: list[Claim], gpu: pd.DataFrame | None, commit: str) -> str:
    """The board (Markdown): the paper's claims, then the sanity checks and design targets."""
    papers, gpus = paper_numbers(), gpu_numbers(gpu)

    def table(keys: list[str]) -> str:
        rows = []
        for key in keys:
            fig = FIGURE_BY_KEY[FIGURE_OF[key]]
            rows.append({
                "claim": f"[{key}](#{key}): {SHORT.get(key, STATEMENTS[key])}",
                "verdict": f"**{claim_verdict(claims, key)}**",
                "deciding case": _decider(deciding_case(claims, key)),
                "paper": papers.get(key, "—"), "GPU check": gpus.get(key, "—"),
                "figure": f"[{FIGURE_OF[key].replace('fig', '')}](figures/{fig.stem}.png)",
            })  # fmt: skip
        return markdown_table(pd.DataFrame(rows))

    paper_keys = [k for k in STATEMENTS if k not in KIND]
    other_keys = [k for k in STATEMENTS if k in KIND]
    order = ", ".join(f"*{v}*" for v in VERDICT_ORDER)
    return ("## Verdicts\n\n" + table(paper_keys)
            + "\n**Sanity checks and design targets** (not claims of the paper)\n\n"
            + table(other_keys)
            + f"\nA claim takes the first of {order} that any of its cases has. *GPU check*: "
              f"`python -m bench gpu-check` on one ogbn-proteins-sized training part, commit "
              f"{commit}; its peaks are `max_memory_allocated`. How each verdict is reached: "
              "[How claims are judged](#how-claims-are-judged).\n")  # fmt: skip
