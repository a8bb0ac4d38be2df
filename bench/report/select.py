"""Which trials feed which figure and claim. Each figure names the ablation specs it is drawn
from; when none of them was run, it falls back to every ablation trial of its archs (the
variant labels still keep different configurations apart) and says so."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.models import archs as registry


@dataclass(frozen=True)
class FigureSpec:
    """One figure: file stem, title, preferred ablation specs, archs drawn (None: every
    registered architecture, as registered when the figure is drawn)."""

    key: str
    stem: str
    title: str
    specs: tuple[str, ...]
    arch_names: tuple[str, ...] | None
    needs: str = ""  # a config column that must take >= 2 values (else: not enough data)
    compare: bool = True  # two archs drawn against each other: both must be there
    fallback: bool = True  # no trials of its specs: draw every ablation trial of its archs

    @property
    def archs(self) -> tuple[str, ...]:
        return self.arch_names if self.arch_names is not None else registry.names()


# the memory-efficient families against the baseline: fig4 DEQ, fig6 the grouped (reversible)
# archs, fig10 every arch whose activations do not grow with depth
_EQUILIBRIUM = registry.names(family="equilibrium")
FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("fig1", "fig1_score_vs_memory", "Figure 1: test score vs memory",
               ("overview", "width", "paper-proteins"), None),
    FigureSpec("fig2", "fig2_memory_res_vs_rev", "Figure 2: memory vs depth, ResGNN vs RevGNN",
               ("depth",), ("res", "rev"), "layers"),
    FigureSpec("fig3", "fig3_memory_wt_res_vs_wt_rev",
               "Figure 3: memory vs depth, weight-tied ResGNN vs RevGNN",
               ("weight-tying",), registry.names(tied=True), "layers"),
    FigureSpec("fig4", "fig4_memory_res_vs_deq",
               "Figure 4: memory vs layers / solver iterations, ResGNN vs DEQ-GNN",
               ("deq",), ("res", *_EQUILIBRIUM), "layers"),
    FigureSpec("fig5", "fig5_memory_full_vs_mini", "Figure 5: memory vs depth, full vs mini batch",
               ("full-vs-mini",), ("res", "rev"), "batching"),
    FigureSpec("fig6", "fig6_groups", "Groups: parameters, memory and score vs group count",
               ("groups",), registry.names(family="reversible"), "groups", compare=False),
    FigureSpec("fig7", "fig7_step_time", "Step time vs depth: what memory savings cost in time",
               ("depth",), ("res", "rev"), "layers"),
    FigureSpec("fig8", "fig8_pareto", "Tuning: Pareto front of score vs peak memory", (), None),
    FigureSpec("fig9", "fig9_memory_per_conv",
               "Memory and score vs depth per convolution, ResGNN vs RevGNN",
               ("conv",), ("res", "rev"), "layers"),
    FigureSpec("fig10", "fig10_accuracy_vs_depth",
               "Accuracy: test score vs depth under one memory budget (the paper's thesis)",
               ("accuracy",), ("res", *registry.names(flat_memory=True)), "layers", compare=False,
               fallback=False),
)  # fmt: skip
FIGURE_BY_KEY = {f.key: f for f in FIGURES}


def ablation_rows(df: pd.DataFrame, fig: FigureSpec) -> tuple[pd.DataFrame, str]:
    """The trials behind ``fig`` and a note on where they came from ('' when as specified)."""
    ablations = df[(df["kind"] == "ablation") & df["arch"].isin(fig.archs)]
    rows = ablations[ablations["spec"].isin(fig.specs)]
    note = ""
    if rows.empty and fig.specs and fig.fallback:
        rows = _fallback(ablations, fig)
        if not rows.empty:
            note = (f"no trials of spec(s) {', '.join(fig.specs)}; drawn from every ablation "
                    f"trial of arch(s) {', '.join(fig.archs)} instead")  # fmt: skip
    if fig.needs and not rows.empty and rows[fig.needs].nunique() < 2:
        return rows.iloc[0:0], f"`{fig.needs}` takes a single value in these trials"
    missing = [a for a in fig.archs if a not in set(rows["arch"])]
    if fig.compare and len(fig.archs) == 2 and missing and not rows.empty:
        return rows.iloc[0:0], f"no trials of arch {', '.join(missing)} to compare with"
    return rows, note


def _fallback(ablations: pd.DataFrame, fig: FigureSpec) -> pd.DataFrame:
    """Figure 1's fallback: the depth with the most archs; others: all ablation rows."""
    if fig.key != "fig1" or ablations.empty:
        return ablations
    per_depth = ablations.groupby("layers")["arch"].nunique()
    best = per_depth[per_depth == per_depth.max()].index.max()
    return ablations[ablations["layers"] == best] if per_depth.max() >= 2 else ablations.iloc[0:0]


def tune_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Trials of tuning studies that carry their objective values."""
    if not {"values_0", "is_pareto"} <= set(df.columns):
        return df.iloc[0:0]
    return df[(df["kind"] == "tune") & df["values_0"].notna()]
