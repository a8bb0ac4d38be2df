"""Figure 1: test score against memory. Our panels (one per study and slice), the paper's
112-layer points, and, where the GPU check ran, its measured peak per paper model beside the
paper's.

Our points and the paper's are not alike, and the figure says how in its titles and caption
rather than leaving it to the reader: ours are CPU trainings of a few seeds and epochs on small
graphs (each title says how many), read as step memory (what a step adds); the paper's are
peak GPU memory and ROC-AUC after full training on ogbn-proteins. A configuration whose trials
ran on different commits is ringed. The bar panel says which max aggregation our ResGNN ran:
the suite's fused one keeps far less than the authors' code, so ResGNN's bar is far shorter
than the paper's."""

from __future__ import annotations

import pathlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from bench import paper
from bench.report import figures as look
from bench.report.load import device_short
from bench.report.scope import AGGR_WORDS
from bench.report.select import FigureSpec
from bench.report.stale import MARK, stale_configs
from bench.stats import SCORE_BOUNDS, summarize

LABEL_OFFSETS = ((6, 4), (6, -11), (-6, 4), (-6, -11))
# minor ticks of a log axis: label only 2x and 5x a power of ten (every one crowds the axis)
SPARSE = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".lstrip("0.")[:1] in ("2", "5") else "")


def _config_means(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per configuration: mean score and memory (``column``) over ok trials and the half-width
    of each one's 95% t-interval (NaN half-width for a single seed)."""
    out = []
    for config, g in rows[rows["status"] == "ok"].groupby("config_id", sort=True):
        score, memory = summarize(g["score"], bounds=SCORE_BOUNDS), summarize(g[column])
        first = g.iloc[0]
        out.append({"config_id": config, "model": first["model"], "channels": first["channels"],
                    "layers": first["layers"], "y": score.mean, "y_err": score.half_width,
                    "memory": memory.mean, "memory_err": memory.half_width, "n": score.n})  # fmt: skip
    frame = pd.DataFrame(out)
    return frame.sort_values(["model", "channels", "layers", "config_id"]) if len(frame) else frame


def _scatter(ax: plt.Axes, points: pd.DataFrame, ringed: set[str] = frozenset()) -> None:
    """Score vs memory, a marker per model, a label per point ('64ch', 'L112' if depths mix),
    a black ring around each configuration in ``ringed``."""
    for i, model in enumerate(m for m in look.MODEL_ORDER if m in set(points["model"])):
        p = points[points["model"] == model]
        ax.scatter(p["x"], p["y"], s=80, marker=look.MARKERS[i % len(look.MARKERS)],
                   color=look.PALETTE.get(model, "0.2"), label=model, zorder=3)  # fmt: skip
    if "x_err" in points:
        ax.errorbar(points["x"], points["y"], xerr=points["x_err"].fillna(0),
                    yerr=points["y_err"].fillna(0), fmt="none", ecolor="0.5", lw=1, zorder=2)  # fmt: skip
    ring = points[points.get("config_id", pd.Series(dtype=str)).isin(ringed)] if ringed else []
    if len(ring):
        ax.scatter(ring["x"], ring["y"], s=260, facecolors="none", edgecolors="black",
                   linewidths=1.2, zorder=4, label=f"{MARK} (ringed)")  # fmt: skip
    depth = points["layers"].nunique() > 1
    for i, (_, p) in enumerate(points.iterrows()):
        dx, dy = LABEL_OFFSETS[i % len(LABEL_OFFSETS)]  # alternate sides: fewer collisions
        ax.annotate(f"{p['channels']:g}ch" + (f" L{p['layers']:g}" if depth else ""),
                    (p["x"], p["y"]), xytext=(dx, dy), textcoords="offset points", fontsize=7.5,
                    ha="left" if dx >= 0 else "right")  # fmt: skip
    xs = points["x"][points["x"] > 0]
    if len(xs) and xs.max() / xs.min() >= 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(look.PLAIN)
        ax.xaxis.set_minor_formatter(SPARSE)


def _oom_box(ax: plt.Axes, labels: list[str]) -> None:
    if labels:
        ax.text(0.98, 0.03, "out of memory (OOM):\n" + "\n".join(labels), transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="firebrick",
                bbox={"boxstyle": "round", "fc": "white", "ec": "firebrick"})  # fmt: skip


def _our_panel(ax: plt.Axes, part: pd.DataFrame, column: str, stale: set[str]) -> bool:
    """One study on one slice; True when a ringed (mixed-code) point was drawn."""
    pts = _config_means(part, column)
    unit, scale = look.memory_scale(pts["memory"])
    pts = pts.assign(x=pts["memory"] / scale, x_err=pts["memory_err"] / scale)
    _scatter(ax, pts, stale)
    look.score_limits(ax, *look.data_range(pts.assign(mean=pts["y"], lo=pts["y"] - pts["y_err"],
                                                      hi=pts["y"] + pts["y_err"])))  # fmt: skip
    ok_ids = set(part.loc[part["status"] == "ok", "config_id"])
    oom = part[(part["status"] == "oom") & ~part["config_id"].isin(ok_ids)]
    oom = oom.drop_duplicates("config_id").sort_values(["model", "channels", "layers"])
    _oom_box(ax, [f"x {m} {c:g}ch L{n:g}"
                  for m, c, n in zip(oom["model"], oom["channels"], oom["layers"], strict=True)])  # fmt: skip
    metric = part["metric"].dropna()
    n = int(pts["n"].max()) if len(pts) else 0
    epochs = sorted(part["epochs"].dropna().unique())
    depths = sorted(pts["layers"].unique())
    title = (f"ours: {part['spec'].iloc[0]} — {part['slice'].iloc[0]}"
             + (f", {depths[0]:g} layers" if len(depths) == 1 else "")
             + f"\nCPU, {n} seed{'s' if n != 1 else ''} a point, "
             + "/".join(f"{e:g}" for e in epochs) + " epochs")  # fmt: skip
    ax.set_title(look.wrap(title), fontsize=9)
    ax.set_xlabel(f"{look.memory_label(column, unit)}{', log' if ax.get_xscale() == 'log' else ''}")
    ax.set_ylabel(f"test {metric.iloc[0] if len(metric) else 'score'} at best valid epoch")
    ax.legend(fontsize=8, loc="best")
    return bool(set(pts["config_id"]) & stale)


def score_vs_memory(rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path,
                    gpu: pd.DataFrame | None = None) -> list[pathlib.Path]:  # fmt: skip
    """Figure 1: our points (score vs step memory), one panel per (spec, slice); the paper's
    points; and, where the GPU check ran, its measured peak per model beside the paper's."""
    rows = look.prepare(rows)
    rows["panel"] = rows["spec"].astype(str) + " — " + rows["slice"]
    column = look.step_memory(rows)
    if rows[rows["status"] == "ok"].empty:
        return []
    names = sorted(rows["panel"].unique())
    extra = 1 + (gpu is not None)
    f, axes = look.panels(len(names) + extra, 3, 6.2, 5.4)
    stale = set(stale_configs(rows))
    ringed = [_our_panel(ax, rows[rows["panel"] == n], column, stale)
              for ax, n in zip(axes, names, strict=False)]  # fmt: skip
    _paper_panel(axes[len(names)])
    res_aggr = _gpu_panel(axes[len(names) + 1], gpu) if gpu is not None else None
    f.suptitle(fig.title, fontsize=12)
    look.caption(f, [
        "Our panels: CPU trainings on small graphs, each title giving the seeds behind a point "
        "and the epochs; some score near chance.",
        look.STEP_NOTE if column == "step_added_bytes" else "x: peak memory.",
        "Not comparable in bytes or in score with the paper's panel (peak GPU memory and ROC-AUC "
        "on ogbn-proteins after full training, its 112-layer points, transcribed): compare the "
        "order of the models, not the numbers.",
        "Bars: 95% Student t-interval of the mean where a point has 2 or more seeds.",
        look.SCORE_NOTE.replace("Score axes", "Our score axes"),
        f"Ringed: configurations whose trials ran on different commits ({MARK})." if any(ringed) else "",
        f"GPU panel: the GPU check's measured peak (max_memory_allocated) of each paper model at "
        f"its shape, beside the paper's; our ResGNN there runs {res_aggr}, which keeps far less "
        "per layer than the authors' code." if res_aggr else "",
    ])  # fmt: skip
    return look.save(f, out_dir, fig.stem)


def _gpu_panel(ax: plt.Axes, gpu: pd.DataFrame) -> str | None:
    """Measured peak GB per paper model (the GPU check) beside the paper's, like for like: the
    same shape on one ogbn-proteins-sized training part. Returns our ResGNN's aggregation."""
    labels, ours, theirs, cards = [], [], [], []
    res_aggr = None
    for pt in (*paper.FIGURE1, *paper.HEADLINE):
        row = gpu[(gpu["label"] == pt.label) & (gpu["status"] == "ok")]
        if row.empty:
            continue
        if pt.arch == "res" and "aggr_impl" in row:
            res_aggr = AGGR_WORDS.get(str(row["aggr_impl"].iloc[0]), str(row["aggr_impl"].iloc[0]))
        labels.append(pt.label)
        ours.append(float(row["peak_bytes"].iloc[0]) / 1e9)
        theirs.append(np.nan if pt.oom or pt.peak_memory_gb is None else pt.peak_memory_gb)
        cards.append(device_short(f"cuda ({row['device'].iloc[0]})").removesuffix(" GPU"))
    y = np.arange(len(labels))
    ax.barh(y - 0.2, theirs, height=0.4, color="0.7", label=f"paper ({paper.V100})")
    colours = [look.PALETTE.get(look.MODEL_NAMES[paper.point(lb).arch], "0.3") for lb in labels]
    ax.barh(y + 0.2, ours, height=0.4, color=colours, label="measured (GPU check)")
    for i, (t, card) in enumerate(zip(theirs, cards, strict=True)):
        if np.isnan(t):
            ax.text(
                0.05, i - 0.2, "paper: out of memory", va="center", fontsize=7, color="firebrick"
            )
        ax.text(ours[i], i + 0.2, f" {ours[i]:.2f} ({card})", va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("peak GPU memory (GB), one training part")
    title = "GPU check vs paper: peak per model"
    ax.set_title(title + (f"\nour ResGNN: {res_aggr} (lighter than the paper's)" if res_aggr else ""),
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7.5, loc="lower right")
    return res_aggr


def _paper_panel(ax: plt.Axes) -> None:
    pts = [p for p in paper.FIGURE1 if not p.oom]
    frame = pd.DataFrame({
        "x": [p.peak_memory_gb for p in pts], "y": [p.test_score for p in pts],
        "model": [look.MODEL_NAMES[p.arch] for p in pts], "channels": [p.channels for p in pts],
        "layers": [p.layers for p in pts],
    })  # fmt: skip
    _scatter(ax, frame)
    _oom_box(ax, [f"x {p.label} L{p.layers}" for p in paper.FIGURE1 if p.oom])
    ax.set(xlabel="peak GPU memory (GB, log)", ylabel="test ROC-AUC (%)")
    ax.set_title(f"paper: ogbn-proteins, 112 layers, {paper.V100}", fontsize=9)
    ax.legend(fontsize=8, loc="best")
