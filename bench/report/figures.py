"""The report's figures: one look and the pieces every figure is drawn with (matplotlib on the
Agg backend, PNG and SVG). The figures themselves live one family a module:
:mod:`~bench.report.depth_figures` (memory vs depth, figures 2-5 and 9),
:mod:`~bench.report.score_figure` (figure 1), :mod:`~bench.report.cost_figures` (groups, step
time, tuning), :mod:`~bench.report.accuracy_figure` (figure 10) and :mod:`~bench.report.drift`.

The rules every figure keeps, so that a caption can state them and a reader can trust them:

* a panel holds one measurement slice (a graph on a device): numbers of two slices never share
  an axis;
* a point is the mean over seeds of ok trials; its bar is the 95% Student t-interval of the mean,
  drawn only where there are two seeds or more, and the caption says how many there are;
* a series is coloured by its model (the architecture registry's colour) and marked by its
  variant within the model (marker and line style), and the legend names both in the reader's
  words, so no two series look alike and no legend entry is blank;
* a configuration that ran out of memory is an ``x`` in the margin above its panel at the depth
  where it failed, in its model's colour, and the legend says from which depth;
* depth axes are logarithmic (base 2) once the depths span 8x, ticked at the depths that ran;
* a caption describes only what its figure drew: each figure assembles its caption from the
  pieces it actually drew.
"""

from __future__ import annotations

import pathlib
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms as mtransforms  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from bench.models import archs  # noqa: E402
from bench.report.fmt import byte_unit  # noqa: E402
from bench.report.load import variant_labels  # noqa: E402
from bench.stats import SCORE_BOUNDS, summarize  # noqa: E402

# each architecture's display name and colour, in registration order (bench.models.archs)
MODEL_NAMES = {a.name: a.display for a in archs.registered()}
MODEL_ORDER = list(MODEL_NAMES.values())
PALETTE = {a.display: mcolors.to_rgb(a.colour) for a in archs.registered()}
VARIANT_EXCLUDE = ("arch", "layers", "deq_max_iter", "dataset", "device")
RC = {"svg.hashsalt": "bench-report", "svg.fonttype": "path", "figure.dpi": 100}
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", ":", "-.")
STEP_LABEL = "step memory"  # what the claims read: the step's forward+backward peak - baseline
STEP_NOTE = ("Step memory: what one training step adds to the memory alive before it "
             "(activations and gradients).")  # fmt: skip
CAPTION_PT = 8
OOM_NOTE = "x above a panel: out of memory from that depth (legend)."
OOM_PAD = 22  # points between a panel and its title when OOM marks sit in the margin
MIN_SPAN = 0.2  # the least range of a score axis (scores are on 0..1)
SCORE_NOTE = f"Score axes lie inside [0, 1] and span at least {MIN_SPAN:g}."


def style() -> None:
    """One look for every figure (called once per report)."""
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.15, rc=RC)


def save(fig: plt.Figure, out_dir: pathlib.Path, stem: str) -> list[pathlib.Path]:
    """PNG and SVG without dates (SVG ids salted), so equal data give equal files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return [png, svg]


def panels(count: int, ncols: int, width: float, height: float) -> tuple[plt.Figure, list]:
    """A figure of ``count`` panels in rows of ``ncols`` (constrained layout, so legends
    outside a panel keep their room); the panels left over are hidden."""
    ncols = max(1, min(ncols, count))
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False, layout="constrained")  # fmt: skip
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def step_memory(rows: pd.DataFrame) -> str:
    """The column figures read: step memory, or the peak for exports from before it existed."""
    ok = rows.loc[rows["status"] == "ok", "step_added_bytes"]
    return "step_added_bytes" if len(ok) and ok.notna().all() else "peak_memory_bytes"


def memory_label(column: str, unit: str) -> str:
    return f"{STEP_LABEL} ({unit})" if column == "step_added_bytes" else f"peak memory ({unit})"


def prepare(rows: pd.DataFrame, exclude: tuple[str, ...] = VARIANT_EXCLUDE) -> pd.DataFrame:
    """Model display names and a variant label per slice (the config columns that differ within
    the slice besides ``exclude``: what differs between slices is the slice's business)."""
    rows = rows.copy()
    rows["model"] = rows["arch"].map(MODEL_NAMES).fillna(rows["arch"])
    rows["variant"] = ""
    for _, part in rows.groupby("slice", sort=True):
        rows.loc[part.index, "variant"] = variant_labels(part, exclude=exclude)
    return rows


@dataclass(frozen=True)
class Look:
    """How one series is drawn: its model's colour, its variant's marker and line style."""

    color: tuple[float, float, float] | str
    marker: str
    ls: str


def series_keys(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(model, variant) of every series in ``rows``, models in registry order."""
    order = {m: i for i, m in enumerate(MODEL_ORDER)}
    keys = {(str(m), str(v)) for m, v in zip(rows["model"], rows["variant"], strict=True)}
    return sorted(keys, key=lambda mv: (order.get(mv[0], 99), mv[0], mv[1]))


def looks(keys: list[tuple[str, str]]) -> dict[tuple[str, str], Look]:
    """A look per series: the model's colour; the i-th variant of a model the i-th marker and
    line style (so a model's variants differ in two ways, not in colour alone)."""
    out, seen = {}, {}
    for model, variant in keys:
        i = seen[model] = seen.get(model, -1) + 1
        out[(model, variant)] = Look(PALETTE.get(model, "0.2"), MARKERS[i % len(MARKERS)],
                                     LINESTYLES[i % len(LINESTYLES)])  # fmt: skip
    return out


def series_label(model: str, variant: str) -> str:
    return f"{model}, {variant}" if variant else model


SCORES = ("score", "best_valid", "test_at_best_valid")  # bounded metrics: intervals in [0, 1]


def interval_points(rows: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per value of ``x``: mean of ``y`` over the ok trials, its 95% t-interval (a score's cut
    to [0, 1], as the claims cut it) and n."""
    ok = rows[(rows["status"] == "ok") & rows[y].notna()]
    out = []
    for xv, g in ok.groupby(x, sort=True):
        iv = summarize(g[y], bounds=SCORE_BOUNDS if y in SCORES else None)
        out.append({"x": float(xv), "mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n})
    return pd.DataFrame(out, columns=["x", "mean", "lo", "hi", "n"])


def draw_series(ax: plt.Axes, pts: pd.DataFrame, look: Look, label: str, scale: float = 1.0,
                dodge: float = 1.0) -> Line2D:  # fmt: skip
    """A line through the means, and bars (t-interval) only where n >= 2. ``dodge`` multiplies
    x, so the bars of series at the same x stand apart on a log axis."""
    x, y = pts["x"].to_numpy() * dodge, pts["mean"].to_numpy() / scale
    (line,) = ax.plot(x, y, color=look.color, marker=look.marker, ls=look.ls, lw=1.5, ms=5.5,
                      label=label, zorder=3)  # fmt: skip
    bars = (pts["n"] >= 2).to_numpy() & pts["lo"].notna().to_numpy()
    if bars.any():
        err = np.vstack([y[bars] - pts["lo"].to_numpy()[bars] / scale,
                         pts["hi"].to_numpy()[bars] / scale - y[bars]])  # fmt: skip
        ax.errorbar(x[bars], y[bars], yerr=err, fmt="none", ecolor=look.color, elinewidth=1,
                    capsize=3, zorder=2)  # fmt: skip
    return line


def depth_axis(ax: plt.Axes, values: Iterable[float]) -> None:
    """Log2 x once the depths span 8x (1-1001 would squash 1-64 into a sliver on a linear
    axis), else linear; ticks at the depths that ran."""
    values = sorted({float(v) for v in values if np.isfinite(v) and v > 0})
    if not values:
        return
    if values[-1] / values[0] >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xlim(values[0] / 1.35, values[-1] * 1.35)
    else:
        pad = 0.06 * (values[-1] - values[0] or 1)
        ax.set_xlim(values[0] - pad, values[-1] + pad)
    shown = values if len(values) <= 10 else values[:: len(values) // 8 + 1]
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.xaxis.set_major_formatter(PLAIN)
    ax.xaxis.set_minor_locator(NullLocator())


def oom_marks(ax: plt.Axes, marks: list[tuple[float, object]]) -> None:
    """An ``x`` per (depth, colour) in the margin above the panel (never on the data); marks
    at one depth are stacked upwards."""
    blend = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    stacked: dict[float, int] = {}
    for depth, color in dict.fromkeys(marks):  # one mark per depth and colour
        level = stacked[depth] = stacked.get(depth, -1) + 1
        ax.scatter([depth], [1.04 + 0.06 * level], marker="x", s=60, linewidths=2.2, color=color,
                   transform=blend, clip_on=False, zorder=6)  # fmt: skip


def oom_handle(color: object, text: str) -> Line2D:
    """The legend entry of an OOM mark."""
    return Line2D([], [], marker="x", ls="none", color=color, mew=2.2, ms=7, label=text)


def interval_note(ns: Iterable[int], what: str = "Points") -> str:
    """What the points and bars are, with the seeds behind them ('n = 1' says: no interval)."""
    ns = sorted({int(n) for n in ns if n > 0})
    if not ns:
        return ""
    span = f"{ns[0]}" if ns[0] == ns[-1] else f"{ns[0]}-{ns[-1]}"
    if ns[-1] < 2:
        return f"{what}: one trial each (n = 1 seed), so no interval."
    return (f"{what}: mean over seeds of ok trials (n = {span}); bars: 95% Student t-interval "
            "of the mean, where n >= 2.")  # fmt: skip


def score_limits(ax: plt.Axes, lo: float, hi: float) -> None:
    """A score axis inside [0, 1] spanning at least MIN_SPAN around the data (a 0.944-0.956
    axis makes a 0.003 difference look large)."""
    lo, hi = max(0.0, lo), min(1.0, hi)
    pad = max((MIN_SPAN - (hi - lo)) / 2, 0.03 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    if hi > 1.0:
        lo, hi = max(0.0, lo - (hi - 1.0)), 1.0
    if lo < 0.0:
        lo, hi = 0.0, min(1.0, hi - lo)
    ax.set_ylim(lo, hi)


def data_range(pts: pd.DataFrame) -> tuple[float, float]:
    """Lowest and highest mean or interval bound of ``pts`` (NaN bounds ignored)."""
    values = pts[["mean", "lo", "hi"]].to_numpy(dtype=float).ravel()
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)


def caption(fig: plt.Figure, parts: Iterable[str]) -> None:
    """The caption under everything the figure drew (its layout is run first, so no legend
    under a panel can sit on it), wrapped to the figure's width."""
    text = " ".join(p for p in parts if p)
    fig.canvas.draw()
    below = fig.get_tightbbox(fig.canvas.get_renderer()).y0 / fig.get_figheight()
    chars = int(fig.get_figwidth() * 72 / (CAPTION_PT * 0.5))
    fig.text(0.005, below - 0.01, textwrap.fill(text, chars), fontsize=CAPTION_PT, ha="left",
             va="top", transform=fig.transFigure)  # fmt: skip


def wrap(label: str) -> str:
    """Slice labels are long: put the device and meter on their own line in panel titles."""
    return re.sub(r" · ((?:cpu|cuda) \()", r"\n\1", label).replace(") [", ")\n[")


def memory_scale(values: pd.Series) -> tuple[str, float]:
    """Unit and divisor for a memory axis (the panel's largest value decides)."""
    finite = values.dropna().abs()
    return byte_unit(float(finite.max()) if len(finite) else 1.0)
