"""The benchmark's printed tables: one row per point, and step time per round."""

from __future__ import annotations

import math

import pandas as pd


def _mib(b: float) -> str:
    return "" if b is None or (isinstance(b, float) and math.isnan(b)) else f"{b / 2**20:,.1f}"


def format_table(df: pd.DataFrame) -> str:
    """A readable table (plain text: ``tabulate`` is not a dependency)."""
    view = pd.DataFrame({
        "graph": df.graph, "aggr": df.aggr_impl, "ch": df.channels,
        "compiled": df["compile"].map(lambda c: "yes" if c is True else "") if "compile" in df else "",
        "arch": df.arch, "depth": df.depth, "status": df.status,
        "peak MiB": df.peak_bytes.map(_mib), "activations MiB": df.activation_bytes.map(_mib),
        "state MiB": df.model_state_bytes.map(_mib), "step s": df.step_time_s.map(lambda t: f"{t:.3f}"),
        "compile s": df.get("compile_time_s", pd.Series(math.nan, index=df.index)).map(
            lambda t: "" if pd.isna(t) else f"{t:.1f}"),
        "params": df.params.map(lambda p: "" if pd.isna(p) else f"{int(p):,}"),
        "iters fwd/bwd": [("" if pd.isna(f) else f"{int(f)}/{int(b)}") for f, b in zip(df.fwd_iters, df.bwd_iters, strict=True)],
    })  # fmt: skip
    return view.to_string(index=False)


def format_rounds(df: pd.DataFrame) -> str:
    """Step seconds of the points that ran in several rounds, one column per round."""
    index = ["graph", "arch", "depth", "aggr_impl", *(["compile"] if "compile" in df else [])]
    table = df[df.status == "ok"].pivot_table(index=index, columns="round", values="step_time_s")
    table = table[table.notna().sum(axis=1) > 1]
    table.columns = [f"round {r} s" for r in table.columns]
    return "step time per round:\n" + table.map(lambda t: f"{t:.3f}").to_string()
