"""Fixed formatting (so regenerated tables are byte-identical) and Markdown tables by hand
(pandas' ``to_markdown`` needs an extra dependency for a few lines of code)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

UNITS: tuple[tuple[str, float], ...] = (("GiB", 1024.0**3), ("MiB", 1024.0**2), ("KiB", 1024.0))


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def byte_unit(max_bytes: float) -> tuple[str, float]:
    """The largest binary unit that keeps ``max_bytes`` at or above 1 (B below 1 KiB)."""
    for name, size in UNITS:
        if abs(max_bytes) >= size:
            return name, size
    return "B", 1.0


def fmt_bytes(value: Any, signed: bool = False) -> str:
    """'12.3 MiB' (or '—' when missing)."""
    if is_missing(value):
        return "—"
    if abs(float(value)) < 0.5:
        return "0 B"
    name, size = byte_unit(abs(float(value)))
    return f"{float(value) / size:{'+' if signed else ''}.3g} {name}"


def fmt_num(value: Any, digits: int = 4) -> str:
    """A float to ``digits`` significant figures; ints as ints; '—' when missing."""
    if is_missing(value):
        return "—"
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def fmt_mean_std(mean: Any, std: Any, scale: float = 1.0, digits: int = 4) -> str:
    """'m ± s'; a single seed has no std and says so ('m ± n/a'); no ok trial gives '—'."""
    if is_missing(mean):
        return "—"
    m = f"{float(mean) / scale:.{digits}g}"
    s = "n/a" if is_missing(std) else f"{float(std) / scale:.{digits - 1}g}"
    return f"{m} ± {s}"


def fmt_interval(lo: Any, hi: Any, n: Any, digits: int = 4) -> str:
    """'[lo, hi] (n=5)': a 95% t-interval of a mean; 'n/a (n=1)' where one seed gives none."""
    if is_missing(n) or int(n) == 0:
        return "—"
    if is_missing(lo) or is_missing(hi):
        return f"n/a (n={int(n)})"
    return f"[{float(lo):.{digits}g}, {float(hi):.{digits}g}] (n={int(n)})"


def fmt_ratio(value: Any) -> str:
    return "—" if is_missing(value) else f"{float(value):.3g}×"


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its longest head that ends at a clause
    (``; ``), else a phrase (``, ``), else a word, outside any parentheses, then '…' (the whole
    text is said elsewhere: a board cell's under its claim's anchor)."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    depth, cuts = 0, {"; ": [], ", ": [], " ": []}
    for i, char in enumerate(head):
        depth += {"(": 1, ")": -1, "[": 1, "]": -1}.get(char, 0)
        for sep in cuts:
            if depth == 0 and head.startswith(sep, i):
                cuts[sep].append(i)
    for positions in cuts.values():
        if positions and positions[-1] > limit // 3:
            return head[: positions[-1]].rstrip(" ;,:") + "…"
    return head.rstrip() + "…"


def markdown_table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``df`` (cells already strings or numbers; '|' escaped)."""
    columns = list(columns or df.columns)
    if df.empty:
        return "_(no rows)_\n"

    def cell(value: Any) -> str:
        text = (
            "—"
            if is_missing(value)
            else (fmt_num(value) if isinstance(value, float) else str(value))
        )
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for _, row in df.iterrows()]
    return "\n".join(lines) + "\n"


def write_csv(df: pd.DataFrame, path: Any) -> None:
    """CSV with a fixed float format and line ending, so equal data give equal bytes."""
    df.to_csv(path, index=False, float_format="%.10g", lineterminator="\n")
