"""Assembling ``report/``: read, aggregate, check claims, draw, write REPORT.md."""

from __future__ import annotations

import functools
import pathlib
import re
from collections.abc import Callable

import pandas as pd

from bench.measure.provenance import source_hash
from bench.report import (
    board,
    cost_figures,
    depth_figures,
    drift,
    evidence,
    figures,
    gpu,
    scope,
    score_figure,
    tables,
)
from bench.report.accuracy_figure import accuracy_figure
from bench.report.aggregate import canonical_order, oom_depths, status_counts, summarise
from bench.report.claims import PAPER_CLAIM, Finding, all_claims, claim_verdict
from bench.report.fmt import markdown_table, write_csv
from bench.report.load import device_table, read_results, slice_table
from bench.report.select import FIGURES, FigureSpec, ablation_rows, tune_rows
from bench.report.stale import MARK as stale_mark
from bench.report.stale import stale_configs

CAVEAT = (
    "**Read ratios and slopes, not absolute numbers**, except on a GPU slice: the paper measured "
    "GPU bytes (`torch.cuda.max_memory_allocated`) on ogbn-proteins on a V100; the CPU meter "
    "(`cpu-live-tensors`) counts live tensor bytes, on smaller graphs."
)


def build_report(results_dir: pathlib.Path, out_dir: pathlib.Path,
                 draw_figures: bool = True) -> list[pathlib.Path]:  # fmt: skip
    """Write every table, figure and REPORT.md; return the paths written (sorted).
    ``draw_figures=False`` writes tables and REPORT.md only (seconds instead of tens)."""
    df = canonical_order(read_results(results_dir))
    _clear(out_dir)
    summary = summarise(df)
    stale = stale_configs(df)
    summary["code"] = summary["config_id"].map(lambda c: stale.get(c, ""))
    studies = evidence.study_evidence(df, results_dir, source_hash())
    findings = all_claims(evidence.judged(df, studies))
    written = _write_tables(df, summary, findings, out_dir / "tables", results_dir)
    figure_notes = {}
    figures.style()
    for fig in FIGURES:
        if not draw_figures:
            figure_notes[fig.key] = ([], "figures were not drawn (--no-figures)", df.iloc[0:0])
            continue
        paths, note, rows = _draw(fig, df, out_dir / "figures", gpu.read_gpu(results_dir))
        written += paths
        figure_notes[fig.key] = (paths, note, rows)
    drift_md = ""
    drift_csv = results_dir / "drift" / "drift.csv"
    if drift_csv.exists():
        drift_rows = drift.read_drift(drift_csv)
        paths = drift.drift_figure(drift_rows, out_dir / "figures") if draw_figures else []
        written += paths
        drift_md = drift.section(drift_rows, paths)
    gpu_rows = gpu.read_gpu(results_dir)
    predicted = gpu.paper_vs_predicted(gpu_rows)
    written += _write_pair(gpu.display(predicted), predicted, out_dir / "tables",
                           "paper_vs_predicted", "The paper's points: paper, prediction, GPU")  # fmt: skip
    report = _report_md(df, summary, findings, figure_notes, out_dir, results_dir, gpu_rows,
                        studies)  # fmt: skip
    earlier = gpu.read_gpu(results_dir, gpu.EARLIER_CSV)
    report += "\n" + gpu.section(predicted, gpu_rows, earlier) + drift_md
    (out_dir / "REPORT.md").write_text(report, encoding="utf-8")
    return sorted([*written, out_dir / "REPORT.md"])


def _clear(out_dir: pathlib.Path) -> None:
    """Remove what an earlier run wrote, so no stale figure outlives its data."""
    for sub, suffixes in (("figures", (".png", ".svg")), ("tables", (".csv", ".md"))):
        for path in sorted((out_dir / sub).glob("*")):
            if path.suffix in suffixes and path.is_file():
                path.unlink()
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)


def _write_pair(table: pd.DataFrame, raw: pd.DataFrame, folder: pathlib.Path, stem: str,
                title: str) -> list[pathlib.Path]:  # fmt: skip
    """``stem.md`` (display strings) and ``stem.csv`` (raw values)."""
    write_csv(raw, folder / f"{stem}.csv")
    (folder / f"{stem}.md").write_text(f"# {title}\n\n{markdown_table(table)}", encoding="utf-8")
    return [folder / f"{stem}.csv", folder / f"{stem}.md"]


def _write_tables(df: pd.DataFrame, summary: pd.DataFrame, findings: list[Finding],
                  folder: pathlib.Path, results_dir: pathlib.Path) -> list[pathlib.Path]:  # fmt: skip
    written = []
    sections = tables.summary_sections(summary)
    write_csv(summary, folder / "summary.csv")
    body = "".join(f"## {name}\n\n{markdown_table(t)}\n" for name, t in sections)
    (folder / "summary.md").write_text(
        "# Mean ± std over seeds, one row per configuration\n\n"
        "Means over `ok` trials only (n ok/trials); std with ddof=1, `n/a` for a single seed. "
        "The test score's 95% confidence interval is the Student t-interval of the mean over "
        "seeds (mean ± t(0.975, n−1)·std/√n; `n/a` for a single seed), n the seeds behind it.\n\n"
        + body, encoding="utf-8")  # fmt: skip
    written += [folder / "summary.csv", folder / "summary.md"]
    oom = oom_depths(df)
    written += _write_pair(tables.display_oom(oom), oom, folder, "oom", "Out-of-memory depths")
    groups = tables.groups_table(summary)
    written += _write_pair(groups, groups, folder, "groups", "Group ablation")
    gpu_rows = gpu.read_gpu(results_dir)
    pvm = tables.paper_vs_measured(df, summary, gpu_rows, board.gpu_commit(results_dir, gpu_rows))
    written += _write_pair(pvm, pvm, folder, "paper_vs_measured", "The paper's numbers beside ours")
    claims_df = tables.claims_table(findings)
    written += _write_pair(claims_df, claims_df, folder, "claims", "Claims and verdicts")
    tune = _tune(df)
    if tune is not None:
        front = tables.pareto_table(*tune)
        written += _write_pair(front, front, folder, "pareto", "Tuning: Pareto front")
    return written


def _tune(df: pd.DataFrame) -> tuple[pd.DataFrame, str, str] | None:
    """Tuning trials with a score column and a cost column named after their objectives
    (cost: the second objective; with a single objective, the record's peak memory)."""
    rows = tune_rows(df)
    if rows.empty:
        return None
    text = rows["objectives"].dropna() if "objectives" in rows else pd.Series(dtype=object)
    names = [n.strip() for n in str(text.iloc[0]).split(",")] if len(text) else ["valid_score"]
    score_idx = names.index("valid_score") if "valid_score" in names else 0
    score = names[score_idx]
    others = [i for i in range(len(names)) if i != score_idx and f"values_{i}" in rows]
    rows = rows.assign(**{score: rows[f"values_{score_idx}"]})
    cost = names[others[0]] if others else "peak_memory_bytes"
    if others:
        rows = rows.assign(**{cost: rows[f"values_{others[0]}"]})
    rows = rows[rows[cost].notna()]
    pareto = rows["is_pareto"].astype(str).str.lower().isin(("true", "1", "1.0"))
    return (rows.assign(pareto=pareto), cost, score) if len(rows) else None


def _draw(
    fig: FigureSpec, df: pd.DataFrame, folder: pathlib.Path, gpu_rows: pd.DataFrame | None
) -> tuple[list[pathlib.Path], str, pd.DataFrame]:
    """Draw one figure; (paths, note, trials behind it). No paths: the note says why."""
    if fig.key == "fig8":
        tune = _tune(df)
        if tune is None:
            return [], "no tuning exports (kind = tune) in the results", df.iloc[0:0]
        rows, memory_col, score_col = tune
        return cost_figures.pareto_figure(rows, fig, folder, memory_col, score_col), "", rows
    rows, note = ablation_rows(df, fig)
    if rows.empty:
        reason = note or f"no ablation trials of spec(s) {', '.join(fig.specs)}"
        return [], reason, rows
    draw: dict[str, Callable[..., list[pathlib.Path]]] = {
        "fig1": functools.partial(score_figure.score_vs_memory, gpu=gpu_rows),
        "fig6": cost_figures.groups_figure,
        "fig7": cost_figures.step_time_figure, "fig9": depth_figures.memory_vs_depth_per_conv,
        "fig10": accuracy_figure,
    }  # fmt: skip
    if fig.key in draw:
        paths = draw[fig.key](rows, fig, folder)
    else:
        x_label = (
            "layers (ResGNN) / max solver iterations (DEQ-GNN)" if fig.key == "fig4" else "layers"
        )
        paths = depth_figures.memory_vs_depth(rows, fig, folder, x_label=x_label)
    return paths, note if paths else (note or "no ok trials to draw"), rows


def _report_md(df: pd.DataFrame, summary: pd.DataFrame, findings: list[Finding],
               figure_notes: dict, out_dir: pathlib.Path, results_dir: pathlib.Path,
               gpu_rows: pd.DataFrame | None,
               studies: dict[str, evidence.StudyEvidence]) -> str:  # fmt: skip
    parts = [
        "# Reproduction report: *Training Graph Neural Networks with 1000 Layers*\n",
        f"Generated by `python -m bench report` from {len(df)} trials in "
        f"{df['source_file'].nunique()} result tables under `{results_dir.name}/` "
        f"({len(summary)} configurations); regenerate, never edit by hand.\n",
        scope.scope_md(df, gpu_rows),
        board.board_md(findings, gpu_rows, board.gpu_commit(results_dir, gpu_rows)),
        _slices_md(df, studies),
        _skipped_md(results_dir),
        _claims_md(findings, gpu_rows),
        _figures_md(figure_notes, out_dir),
        _tables_md(out_dir / "tables"),
    ]
    return "\n".join(part for part in parts if part)


def _slices_md(df: pd.DataFrame, studies: dict[str, evidence.StudyEvidence]) -> str:
    """Every slice named once: its graph in full, device, meter, code and whether its numbers
    are evidence at today's code; every other row, title and legend uses the name only."""
    table = slice_table(df)
    table["at today's code"] = table["slice"].map(evidence.slice_evidence(df, studies))
    stale = stale_configs(df)
    flagged = (f"\n**{len(stale)} configuration(s) mix code versions** ({stale_mark}): their "
               "trials ran on different commits, so their pooled numbers may mix measurements; "
               "`python -m bench reproduce --rerun-stale` reruns them on today's code.\n"
               if stale else "")  # fmt: skip
    dropped = {k: v for k, v in df.attrs.get("dropped", {}).items() if v}
    left_out = ("\nLeft out: " + ", ".join(f"{v} {k}" for k, v in sorted(dropped.items()))
                + ".\n") if dropped else ""  # fmt: skip
    return ("## Slices\n\nA slice is one graph (dataset and options) on one device and meter; "
            "numbers of different slices are never pooled, drawn on one axis or divided.\n\n"
            + markdown_table(table) + "\n" + markdown_table(device_table(df)) + flagged
            + _stale_md(studies) + left_out + "\n" + CAVEAT + "\n")  # fmt: skip


def _stale_md(studies: dict[str, evidence.StudyEvidence]) -> str:
    """The studies no claim is judged on, each with the command that measures it again."""
    stale = [e for e in studies.values() if not e.current]
    if not stale:
        return ""
    rows = pd.DataFrame([{"study": e.study, "why": e.how, "rerun with": f"`{e.rerun}`"}
                         for e in stale])  # fmt: skip
    return (f"\n**{len(stale)} of {len(studies)} studies are not evidence at today's code** (no "
            "claim is judged on them; figures and tables still show them): neither run at "
            "today's trial code nor verified by `python -m bench reproduce --verify`.\n\n"
            + markdown_table(rows) + "\n")  # fmt: skip


def _skipped_md(results_dir: pathlib.Path) -> str:
    """The studies the last ``reproduce`` could not run here, and why (nothing if none)."""
    from bench.harness.skipped import read_skipped

    skips = read_skipped(results_dir)
    if not skips:
        return ""
    rows = pd.DataFrame([{"study": s.study, "why it was skipped (and the fix)": reason}
                         for s in skips for reason in s.reasons])  # fmt: skip
    return ("## Skipped\n\nThe last `python -m bench reproduce` (`nox -s reproduce`) could not "
            "run these studies on its machine, so it stored nothing for them; earlier exports of "
            "them, if any, are what the report shows.\n\n" + markdown_table(rows))  # fmt: skip


def _claims_md(findings: list[Finding], gpu_rows: pd.DataFrame | None) -> str:
    text = ["## How claims are judged\n",
            "Memory, parameter and time thresholds give a case *supported* or *not supported*. "
            "Score comparisons use the 95% Student t-interval of the difference of test scores "
            "over seeds (paired by seed where both sides share the data split, else Welch's; "
            "`bench/stats.py`): *supported* above the claim's margin, *contradicted* below it, "
            "*inconclusive* when it contains the margin, *not enough data* with fewer than two "
            "seeds a side. Memory is read as *step memory*, what a training step adds to the "
            "memory alive before it (activations and gradients, `step_added_bytes`). A "
            f"configuration flagged {stale_mark} mixes code versions.\n"]  # fmt: skip
    papers, others = board.claim_groups()
    for claim in [*papers, *others]:
        cases = [f for f in findings if f.key == claim.key]
        evidence, notes = paper_notes([c.evidence for c in cases])
        table = pd.DataFrame([{"slice": c.slice, "case": c.case, "evidence": e,
                               "verdict": c.verdict} for c, e in zip(cases, evidence, strict=True)])  # fmt: skip
        kind = f" ({claim.kind})" if claim.kind != PAPER_CLAIM else ""
        text.append(f"\n### {claim.key}\n\n{claim.statement}{kind} Verdict: "
                    f"**{claim_verdict(findings, claim.key)}**. Figure {claim.figure_number}.\n\n"
                    f"{board.details_md(claim, findings, gpu_rows)}\n"
                    f"Threshold: {claim.threshold}. Where it comes from: "
                    f"{claim.threshold_source}.\n\n{notes}{markdown_table(table)}")  # fmt: skip
    return "\n".join(text)


# "(paper: 95%, 112->1001 layers)" after a clause of a case's evidence: the paper's value,
# the same in every row, said once above the table instead
_PAPER_NOTE = re.compile(r"([^;|]*?) \(paper: ([^()]*)\)")


def paper_notes(evidence: list[str]) -> tuple[list[str], str]:
    """The evidence without its "(paper: ...)" asides, and one line per distinct aside naming
    the clause it stands beside (its numbers left out: they differ per row)."""
    notes: dict[tuple[str, str], None] = {}
    for text in evidence:
        for clause, value in _PAPER_NOTE.findall(text):
            what = re.sub(r"[+-]?\d[\d.,]*", "…", clause.strip())
            notes[(what, value)] = None
    stripped = [_PAPER_NOTE.sub(r"\1", text) for text in evidence]
    lines = "".join(f"The paper, beside *{what}*: {value}.\n\n" for what, value in notes)
    return stripped, lines


def _figures_md(figure_notes: dict, out_dir: pathlib.Path) -> str:
    text = ["## Figures\n"]
    for fig in FIGURES:
        paths, note, rows = figure_notes[fig.key]
        text.append(f"### {fig.title}\n")
        png = [p for p in paths if p.suffix == ".png"]
        if not png:
            text.append(f"_Not drawn — not enough data: {note}._\n")
            continue
        text.append(f"![{fig.title}](figures/{png[0].name})\n")
        if note:
            text.append(f"Note: {note}.\n")
        text.append(f"Trials: {_trial_counts(rows)}.\n")
    return "\n".join(text)


def _trial_counts(rows: pd.DataFrame) -> str:
    """'depth-cpu on <slice>: 12 (oom 2)', one per study and slice."""
    out = []
    for (study, slice_), g in rows.groupby(["study", "slice"], sort=True):
        failures = g[g["status"] != "ok"]["status"]
        extra = f" ({status_counts(failures).replace(':', ' ')})" if len(failures) else ""
        out.append(f"{study} on {slice_}: {len(g)}{extra}")
    return "; ".join(out)


def _tables_md(folder: pathlib.Path) -> str:
    text = ["## Tables\n",
            "Every configuration, mean ± std over seeds and the test score's 95% t-interval: "
            "[tables/summary.md](tables/summary.md) "
            "([csv](tables/summary.csv)). Claims with all evidence: [tables/claims.md](tables/claims.md). "
            "The paper's ratios, points and parameter counts beside ours (GPU measurements with "
            "card and commit): [tables/paper_vs_measured.md](tables/paper_vs_measured.md).\n"]  # fmt: skip
    for stem in ("groups", "oom", "pareto"):
        path = folder / f"{stem}.md"
        if path.exists():
            title, _, body = path.read_text(encoding="utf-8").partition("\n")
            text.append(f"##{title}\n{body}([csv](tables/{stem}.csv))\n")
    return "\n".join(text)
