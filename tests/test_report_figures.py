"""The report's figures draw what their captions say and nothing they do not (issue 34): log
depth axes, slopes outside the data, OOM marks in the margin, a look per variant, score axes in
[0, 1], the step-time verdict's threshold, no t-bars on one or two seeds, mixed-code points
ringed. Each figure is drawn on hand-made trials and its matplotlib objects are inspected."""

from __future__ import annotations

import pathlib

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from test_report import accuracy_rows, depth_rows, row

from bench.report import cost_figures, depth_figures, figures, score_figure
from bench.report.accuracy_figure import accuracy_figure
from bench.report.claims.step_time import TIME_RATIO
from bench.report.load import derive
from bench.report.select import FIGURE_BY_KEY


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[plt.Figure]:
    """The figures the report draws, kept open after they are saved."""
    kept: list[plt.Figure] = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, *a: kept.append(fig) or save(fig, *a))
    figures.style()
    return kept


def caption_of(fig: plt.Figure) -> str:
    """The caption: the figure-level text under everything else."""
    texts = [t for t in fig.texts if t.get_va() == "top"]
    return " ".join(t.get_text().replace("\n", " ") for t in texts)


def data_axes(fig: plt.Figure) -> list[plt.Axes]:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_memory_figure_has_log_depth_slopes_in_the_legend_and_oom_in_the_margin(
    drawn: list, tmp_path: pathlib.Path
) -> None:
    rows = derive(pd.DataFrame(depth_rows("depth", ("res", "rev"), [1, 4, 16, 64, 256],
                                          oom_from=256)))  # fmt: skip
    depth_figures.memory_vs_depth(rows, FIGURE_BY_KEY["fig2"], tmp_path)
    (ax,) = data_axes(drawn[0])
    assert ax.get_xscale() == "log"
    assert [t for t in ax.get_xticks()] == [1, 4, 16, 64, 256]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lb.startswith("ResGNN: +") and "/layer" in lb for lb in labels), labels
    assert any(lb.startswith("RevGNN: ") and "gradients" in lb for lb in labels), labels
    assert "ResGNN: out of memory from 256" in labels
    legend_top = ax.get_legend().get_window_extent().y1
    assert legend_top < ax.get_window_extent().y0, "the legend sits under the panel, not on data"
    oom = [c for c in ax.collections if c.get_offsets().size and c.get_transform() != ax.transData]
    assert oom and all(c.get_offsets()[0][1] > 1 for c in oom), "OOM marks above the axes"
    text = caption_of(drawn[0])
    assert "x above a panel: out of memory" in text and "gradients" in text
    assert "Dashed" not in text and "dashed" not in text, "no fit lines are drawn or promised"


def test_memory_figure_caption_leaves_out_what_it_did_not_draw(
    drawn: list, tmp_path: pathlib.Path
) -> None:
    rows = derive(pd.DataFrame(depth_rows("depth", ("res", "rev"), [2, 4])))
    depth_figures.memory_vs_depth(rows, FIGURE_BY_KEY["fig2"], tmp_path)
    text = caption_of(drawn[0])
    assert "out of memory" not in text and "least-squares" not in text.split("Legend")[0]
    assert "one trial each" not in text and "n = 2" in text


def test_deq_solvers_are_told_apart_by_marker_and_line_style(
    drawn: list, tmp_path: pathlib.Path
) -> None:
    rows = depth_rows("deq", ("res",), [4, 16, 64])
    for solver in ("anderson", "broyden", "fixed_point"):
        rows += depth_rows("deq", ("deq",), [4, 16, 64], deq_solver=solver)
    depth_figures.memory_vs_depth(derive(pd.DataFrame(rows)), FIGURE_BY_KEY["fig4"], tmp_path)
    (ax,) = data_axes(drawn[0])
    lines = [h for h in ax.get_legend().legend_handles]
    labels = [t.get_text().split(":")[0] for t in ax.get_legend().get_texts()]
    assert labels == ["ResGNN", "DEQ-GNN, Anderson", "DEQ-GNN, Broyden", "DEQ-GNN, fixed-point"]
    deq = [(h.get_marker(), h.get_linestyle()) for h in lines[1:]]
    assert len(set(deq)) == 3, deq


def test_step_time_threshold_is_the_verdicts(drawn: list, tmp_path: pathlib.Path) -> None:
    rows = derive(pd.DataFrame(depth_rows("depth", ("res", "rev"), [1, 4, 16])))
    cost_figures.step_time_figure(rows, FIGURE_BY_KEY["fig7"], tmp_path)
    relative = data_axes(drawn[0])[1]
    levels = [line.get_ydata()[0] for line in relative.get_lines() if line.get_linestyle() == ":"]
    assert levels == [TIME_RATIO]
    assert all("DEQ" not in ax.get_xlabel() for ax in data_axes(drawn[0]))
    assert f"{TIME_RATIO:g}×" in caption_of(drawn[0])


def test_groups_figure_draws_seeds_not_t_bars(drawn: list, tmp_path: pathlib.Path) -> None:
    rows = [row("groups", "rev", layers, s, groups=g, channels=64)
            for g in (2, 3, 4) for layers in (8, 16) for s in (0, 1)]  # fmt: skip
    cost_figures.groups_figure(derive(pd.DataFrame(rows)), FIGURE_BY_KEY["fig6"], tmp_path)
    for ax in data_axes(drawn[0]):
        assert not [c for c in ax.collections if isinstance(c, LineCollection)], ax.get_title()
    labels = [t.get_text() for t in drawn[0].axes[2].get_legend().get_texts()]
    assert "RevGNN, 8 layers" in labels and "RevGNN, 16 layers" in labels
    assert "Seeds per configuration: 2" in caption_of(drawn[0])


def test_accuracy_figure_scores_stay_in_0_1_and_labels_are_legend_entries(
    drawn: list, tmp_path: pathlib.Path
) -> None:
    accuracy_figure(derive(pd.DataFrame(accuracy_rows())), FIGURE_BY_KEY["fig10"], tmp_path)
    (ax,) = data_axes(drawn[0])
    lo, hi = ax.get_ylim()
    assert lo >= 0 and hi <= 1 and hi - lo >= figures.MIN_SPAN - 1e-12
    assert not ax.texts, "no label is written on the data"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "ResGNN: out of budget from 3 hops" in labels
    assert "hops the task needs: 3" in labels
    text = caption_of(drawn[0])
    assert "several tasks" not in text and "chance" not in text
    assert "[0, 1]" in text


def test_score_axis_spans_at_least_min_span() -> None:
    fig, ax = plt.subplots()
    figures.score_limits(ax, 0.944, 0.956)
    lo, hi = ax.get_ylim()
    assert hi <= 1.0 and hi - lo == pytest.approx(figures.MIN_SPAN) and lo < 0.944
    figures.score_limits(ax, 0.45, 1.0001)
    assert ax.get_ylim()[1] == 1.0
    plt.close(fig)


def test_conv_figure_legend_names_models_and_titles_name_settings(
    drawn: list, tmp_path: pathlib.Path
) -> None:
    rows = []
    for conv, aggr, impl in (
        ("gen", "max", "fused"),
        ("gcn", "max", "pyg"),
        ("sage", "mean", "pyg"),
    ):
        rows += depth_rows("conv", ("res", "rev"), [2, 8, 32], seeds=(0,), conv=conv, aggr=aggr,
                           aggr_impl=impl)  # fmt: skip
    depth_figures.memory_vs_depth_per_conv(derive(pd.DataFrame(rows)), FIGURE_BY_KEY["fig9"],
                                           tmp_path)  # fmt: skip
    labels = [t.get_text() for t in drawn[0].legends[0].get_texts()]
    assert labels == ["ResGNN", "RevGNN"]
    titles = " ".join(ax.get_title() for ax in drawn[0].axes)
    assert "GENConv\nmax aggregation, fused max" in titles
    assert "GraphSAGE\nmean aggregation, PyG's max" in titles


def test_figure_1_says_what_its_scores_are_and_rings_mixed_code(
    drawn: list, tmp_path: pathlib.Path
) -> None:
    rows = [row("overview", a, 16, s, channels=c, epochs=12)
            for a in ("res", "rev") for c in (16, 32) for s in (0, 1)]  # fmt: skip
    rows[0]["commit"] = "fff0000aaa"  # res 16ch: its seeds ran on two commits
    gpu = pd.DataFrame({"label": ["ResGNN-64", "RevGNN-64"], "status": "ok",
                        "device": "NVIDIA H100 80GB HBM3", "aggr_impl": "fused",
                        "peak_bytes": [4.48e9, 1.09e9]})  # fmt: skip
    score_figure.score_vs_memory(derive(pd.DataFrame(rows)), FIGURE_BY_KEY["fig1"], tmp_path,
                                 gpu=gpu)  # fmt: skip
    ours, _, bars = data_axes(drawn[0])
    assert "2 seeds a point, 12 epochs" in ours.get_title()
    assert any("mixed code" in t.get_text() for t in ours.get_legend().get_texts())
    assert "fused max" in bars.get_title()
    lo, hi = ours.get_ylim()
    assert lo >= 0 and hi <= 1
    text = caption_of(drawn[0])
    assert "Ringed" in text and "Not comparable" in text


def test_figure_10_marks_what_a_computed_budget_leaves_out() -> None:
    """Without a cap the run measures every depth; the budget computed afterwards (midway
    between res's peaks at k - 1 and k) still leaves res out from k hops: the figure marks it
    there, as it marks an OOM under a cap, and marks nothing for the archs that fit."""
    from bench.report.accuracy_figure import _over_budget
    from bench.report.claims.accuracy import panel_budget, with_hops

    rows = [dict(r, memory_cap_bytes=None) for r in accuracy_rows(res_oom_from=None)]
    uncapped = with_hops(figures.prepare(derive(pd.DataFrame(rows))))
    marks = _over_budget(uncapped, panel_budget(uncapped))
    assert [(label.split(",")[0], hops) for label, hops, _ in marks] == [("ResGNN", 3.0)]
    capped = with_hops(figures.prepare(derive(pd.DataFrame(accuracy_rows()))))
    found = _over_budget(capped, panel_budget(capped))
    assert [(label, hops) for label, hops, _ in found] == [("ResGNN", 3.0)]
