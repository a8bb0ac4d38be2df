"""The verdict board: REPORT.md's first screen after the scope box. One line per registered
claim (:mod:`bench.report.claims`): its verdict, the case that decides it (a GPU slice's where
one exists), the paper's number, what the GPU check measured beside it, and links to the claim's
section and figure. The paper's claims, the sanity checks and the design targets are apart.

No cell is longer than :data:`CELL_LIMIT` characters, so a row reads in one glance: a longer
text is cut at a clause and said whole under the claim's anchor (:func:`details_md`)."""

from __future__ import annotations

import pathlib
import re

import pandas as pd

from bench.report.aggregate import linear_fit
from bench.report.claims import (
    PAPER_CLAIM,
    VERDICT_ORDER,
    Claim,
    Finding,
    claim_verdict,
    registered_claims,
)
from bench.report.fmt import clip, markdown_table
from bench.report.load import device_short
from bench.report.select import FIGURE_BY_KEY

CELL_LIMIT = 160  # characters a board cell may hold (the rest is under the claim's anchor)


def _gb(value: float) -> str:
    return f"{value / 1e9:.2f}"


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
        fit = linear_fit(rows["layers"], rows["step_added_bytes"]) if len(rows) >= 3 else None
        if fit is not None:
            out["res-linear"] = (f"ResGNN-64 +{fit.slope / 1e9:.3f} GB a layer, "
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
        out["depth-buys-accuracy-rev"] = (f"RevGNN-Deep fits in {_gb(deep['peak_bytes'])} GB "
                                      f"({_card(deep)}); no GPU score yet")  # fmt: skip
    return out


def deciding_case(findings: list[Finding], key: str) -> Finding | None:
    """The case the claim's verdict comes from: one with that verdict, a GPU slice first."""
    verdict = claim_verdict(findings, key)
    cases = [f for f in findings if f.key == key and f.verdict == verdict]
    cases.sort(key=lambda f: ("GPU" not in f.slice, f.slice, f.case))
    return cases[0] if cases else None


def _decider(case: Finding | None) -> str:
    """'slice: the evidence', cut to a board cell (the whole row is in the claim's section)."""
    if case is None or case.slice == "—":
        return "no trials"
    return clip(f"{case.slice}: {case.evidence}", CELL_LIMIT)


def claim_groups() -> tuple[list[Claim], list[Claim]]:
    """The registered claims as the report shows them: the paper's claims, then the sanity
    checks and design targets (each in registration order)."""
    claims = registered_claims()
    return ([c for c in claims if c.kind == PAPER_CLAIM],
            [c for c in claims if c.kind != PAPER_CLAIM])  # fmt: skip


def board_md(findings: list[Finding], gpu: pd.DataFrame | None, commit: str) -> str:
    """The board (Markdown): the paper's claims, then the sanity checks and design targets."""
    gpus = gpu_numbers(gpu)

    def table(claims: list[Claim]) -> str:
        rows = []
        for claim in claims:
            fig = FIGURE_BY_KEY[claim.figure]
            rows.append({
                "claim": f"[{claim.key}](#{claim.key}): {claim.short}",
                "verdict": f"**{claim_verdict(findings, claim.key)}**",
                "deciding case": _decider(deciding_case(findings, claim.key)),
                "paper": clip(claim.paper, CELL_LIMIT),
                "GPU check": clip(gpus.get(claim.key, "—"), CELL_LIMIT),
                "figure": f"[{claim.figure_number}](figures/{fig.stem}.png)",
            })  # fmt: skip
        return markdown_table(pd.DataFrame(rows))

    papers, others = claim_groups()
    order = ", ".join(f"*{v}*" for v in VERDICT_ORDER)
    return ("## Verdicts\n\n" + table(papers)
            + "\n**Sanity checks and design targets** (not claims of the paper)\n\n"
            + table(others)
            + f"\nA claim takes the first of {order} that any of its cases has; a cell cut "
              "short (…) is whole under the claim's link. *GPU check*: "
              f"`python -m bench gpu-check` on one ogbn-proteins-sized training part, commit "
              f"{commit}; its peaks are `max_memory_allocated`. How each verdict is reached: "
              "[How claims are judged](#how-claims-are-judged).\n")  # fmt: skip


def details_md(claim: Claim, findings: list[Finding], gpu: pd.DataFrame | None) -> str:
    """What the board says of ``claim`` in full, under its anchor: the deciding case, the
    paper's number and the GPU check's."""
    case = deciding_case(findings, claim.key)
    decider = (f"{case.slice}, {case.case}" if case is not None and case.slice != "—"
               else "no trials")  # fmt: skip
    lines = [f"Deciding case: {decider} (its row below)."]
    if claim.paper != "—":
        lines.append(f"Paper: {claim.paper}.")
    measured = gpu_numbers(gpu).get(claim.key)
    if measured:
        lines.append(f"GPU check: {measured}.")
    return " ".join(lines) + "\n"
