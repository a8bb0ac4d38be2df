"""REPORT.md's scope box, the first thing a reader sees: what ran where, what does not exist
yet, the baseline ours differs from the paper's in, and how many seeds and epochs stand behind
the numbers. Every number is computed from ``results/`` (the trials and the GPU check's rows),
never typed, so the box cannot drift from the data it introduces.

Why a box before the verdicts: a verdict on a CPU proxy reads like a verdict on the paper unless
the reader has been told, in the first minute, that no score at the paper's scale exists, that
the memory studies ran one seed for a couple of epochs, and that our ResGNN is lighter than the
paper's (so RevGNN's saving here is smaller than the paper's)."""

from __future__ import annotations

import pandas as pd

from bench import paper
from bench.report.fmt import fmt_num
from bench.report.load import device_short
from bench.report.select import FIGURE_BY_KEY

# the memory-vs-depth figures: the studies of their specs are the memory studies
MEMORY_FIGURES: tuple[str, ...] = ("fig2", "fig3", "fig4", "fig5", "fig9")
PAPER_DATASET = paper.point("ResGNN-64").dataset
AGGR_WORDS = {"fused": "the suite's fused max", "pyg": "PyG's max"}


def _span(values: pd.Series) -> str:
    """'1', '2-15': the range of a whole-number column."""
    values = values.dropna()
    if values.empty:
        return "?"
    lo, hi = fmt_num(values.min()), fmt_num(values.max())
    return lo if lo == hi else f"{lo}-{hi}"


def seeds_and_epochs(df: pd.DataFrame, specs: set[str]) -> str:
    """Studies of ``specs`` grouped by their seeds per configuration and epochs: 'depth-cpu,
    depth-real: 1 seed, 2 epochs; conv-cpu: 1 seed, 30 epochs'."""
    rows = df[df["spec"].isin(specs) & (df["kind"] == "ablation")]
    groups: dict[tuple[str, str], list[str]] = {}
    for study, g in rows.groupby("study", sort=True):
        seeds = _span(g.groupby("config_id")["seed"].nunique())
        groups.setdefault((seeds, _span(g["epochs"])), []).append(str(study))
    parts = [f"{', '.join(studies)}: {seeds} seed{'' if seeds == '1' else 's'}, {epochs} epochs"
             for (seeds, epochs), studies in groups.items()]  # fmt: skip
    return "; ".join(parts) if parts else "none"


def _where(df: pd.DataFrame, gpu: pd.DataFrame | None) -> str:
    devices = sorted({device_short(d) for d in df["device_name"]} - {"device not recorded"})
    graphs = ", ".join(sorted(df["dataset"].astype(str).unique()))
    cpu = df["device"].astype(str).str.startswith("cpu")
    text = (f"**What ran where.** {int(cpu.sum())} of {len(df)} trials ran on CPUs "
            f"({', '.join(devices)}), on small graphs standing in for {PAPER_DATASET} "
            f"({graphs}); their memory is the CPU meter's live tensor bytes.")  # fmt: skip
    if gpu is None or not (gpu["status"] == "ok").any():
        return text + " No GPU measurement is committed."
    ok = gpu[gpu["status"] == "ok"]
    cards = ", ".join(sorted({device_short(f"cuda ({d})") for d in ok["device"]}))
    return text + (f" On GPUs ({cards}) only `gpu-check` ran: {len(ok)} memory rows, one "
                   "training step each at the paper's shapes, no training and no score.")  # fmt: skip


def _no_score(df: pd.DataFrame) -> str:
    scored = df[(df["status"] == "ok") & df["score"].notna()]
    on_gpu = int(scored["device"].astype(str).str.startswith("cuda").sum())
    at_scale = int((scored["dataset"] == PAPER_DATASET).sum())
    if on_gpu == 0 and at_scale == 0:
        return (f"**No trained score at paper scale or on a GPU yet**: 0 of {len(scored)} scored "
                f"trials ran on a GPU or on {PAPER_DATASET}. Every score below is a short CPU "
                "training on a small graph, not comparable with the paper's ROC-AUC.")  # fmt: skip
    return (f"**Scores**: {on_gpu} of {len(scored)} scored trials ran on a GPU and {at_scale} on "
            f"{PAPER_DATASET}; the rest are short CPU trainings on small graphs.")  # fmt: skip


def _measured(gpu: pd.DataFrame, label: str) -> pd.Series | None:
    rows = gpu[(gpu["label"] == label) & (gpu["status"] == "ok")]
    return rows.iloc[0] if len(rows) else None


def _baseline(df: pd.DataFrame, gpu: pd.DataFrame | None) -> str:
    """Our ResGNN's aggregation against the paper's, and what it does to RevGNN's saving."""
    counts = df.loc[(df["arch"] == "res") & df["aggr_impl"].notna(), "aggr_impl"].value_counts()
    used = ", ".join(f"{int(v)} {AGGR_WORDS.get(str(k), k)}" for k, v in counts.items())
    text = ("**ResGNN is not the paper's ResGNN.** Its max aggregation is not the authors' code: "
            "the suite's fused max keeps less a layer, PyG's max more (ResGNN trials here: "
            f"{used or 'none'}).")  # fmt: skip
    res = _measured(gpu, "ResGNN-64") if gpu is not None else None
    rev = _measured(gpu, "RevGNN-64") if gpu is not None else None
    if res is None or rev is None:
        return text
    paper_res, paper_rev = (paper.point(k).peak_memory_gb for k in ("ResGNN-64", "RevGNN-64"))
    ours, theirs = res["peak_bytes"] / rev["peak_bytes"], paper_res / paper_rev
    aggr = AGGR_WORDS.get(str(res.get("aggr_impl")), str(res.get("aggr_impl")))
    return text + (
        f" On the GPU, ResGNN-64 at 112 layers with {aggr} needs {res['peak_bytes'] / 1e9:.2f} GB "
        f"against the paper's {paper_res:g} GB, so RevGNN-64 ({rev['peak_bytes'] / 1e9:.2f} GB) "
        f"saves {ours:.2g}× here against {theirs:.2g}× in the paper."
    )


def scope_md(df: pd.DataFrame, gpu: pd.DataFrame | None) -> str:
    """The scope box (a Markdown block quote of short paragraphs)."""
    memory_specs = {s for key in MEMORY_FIGURES for s in FIGURE_BY_KEY[key].specs}
    other_specs = set(df["spec"].dropna().astype(str)) - memory_specs
    minutes = df["wall_time_s"].sum() / 60 if "wall_time_s" in df else float("nan")
    figures = ", ".join(k.removeprefix("fig") for k in MEMORY_FIGURES)
    lines = [
        _where(df, gpu),
        _no_score(df),
        _baseline(df, gpu),
        f"**Seeds and epochs.** Memory studies (figures {figures}): "
        f"{seeds_and_epochs(df, memory_specs)}. Studies that compare scores: "
        f"{seeds_and_epochs(df, other_specs)}.",
        f"**Trial time**: {minutes:.0f} minutes summed over the {len(df)} trials (`wall_time_s`).",
    ]
    return "## Scope\n\n" + "\n>\n".join(f"> {line}" for line in lines) + "\n"
