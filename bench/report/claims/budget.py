"""The memory budget of the accuracy ablation: which trials fit it, by one stated rule.

A budget is either of two kinds, and every case of ``depth-buys-accuracy`` says which:

* **a cap**: the spec set ``memory_cap_bytes`` and each trial stopped itself when its live
  memory crossed it (status ``oom``): a depth fits when its trials ran. The real-graph, ``gpu``
  and ``quick`` profiles keep caps: a cap is a stated choice (a 16 GB card, a cap between
  ResGNN's measured peaks at 4 and 8 layers), not a fact of the run.
* **computed in the same run** (:func:`computed_budget`): on a ground-truth task needing k hops
  whose trials ran without a cap (the ``cpu`` profile), the budget is midway between ResGNN's
  mean measured peak at k - 1 and at k layers, at the width being compared; a depth fits when
  every trial's measured peak is within it. The budget then cannot drift from the run it
  judges: a cap set 0.9% above a calibration run's peak once decided a case by itself.

An uncapped slice without a needed k, or without ResGNN at both k - 1 and k layers (the
``criteria`` and ``limits`` profiles), has no budget: no case of the claim, the figure only.
Example::

    budget = computed_budget(res_rows, k=4)   # None where the rule cannot apply
    budget.fitting(rev_rows)                  # hops -> does that depth fit
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from bench.units import format_bytes

PEAK = "peak_memory_bytes"
# the meter's own words when a trial crosses its cap (bench.measure.meters.MemoryCapExceeded)
_CROSSED = re.compile(r"live tensor memory ([\d,]+) B exceeds the cap")


@dataclass(frozen=True)
class Budget:
    """How many bytes a trial may hold, and whether the trials ran under it (a cap) or were
    measured without one and are held against it afterwards (computed)."""

    bytes: float
    rule: str  # how it was set, in words
    capped: bool

    def text(self) -> str:
        return f"a {format_bytes(int(self.bytes))} budget ({self.rule})"

    def fitting(self, rows: pd.DataFrame) -> pd.Series:
        """Per hops: True where that depth fits (an ok trial, and under a cap no OOM; computed:
        every ok trial's measured peak within the budget)."""
        out = {}
        for hops, at in rows.groupby("hops", sort=True):
            ok = at[at["status"] == "ok"]
            if self.capped:
                out[float(hops)] = len(ok) > 0 and not (at["status"] == "oom").any()
            else:
                peaks = pd.to_numeric(ok[PEAK], errors="coerce")
                out[float(hops)] = len(ok) > 0 and bool((peaks <= self.bytes).all())
        return pd.Series(out, dtype=bool)


def cap_budget(rows: pd.DataFrame) -> Budget | None:
    """The spec's cap, when the rows ran under one (None without, or with several)."""
    caps = pd.to_numeric(rows["memory_cap_bytes"], errors="coerce").dropna().unique()
    if len(caps) != 1 or rows["memory_cap_bytes"].isna().any():
        return None
    return Budget(float(caps[0]), "the spec's cap", capped=True)


def mean_peak(rows: pd.DataFrame, hops: float) -> float:
    ok = rows[(rows["status"] == "ok") & (rows["hops"] == hops)]
    return float(pd.to_numeric(ok[PEAK], errors="coerce").mean()) if len(ok) else math.nan


def computed_budget(res: pd.DataFrame, k: int | None) -> Budget | None:
    """Midway between res's mean peaks at k - 1 and k hops (res: one hop a layer), from the
    same run; None without a needed k or without ok res trials at both depths."""
    if k is None or k < 2:
        return None
    below, at = mean_peak(res, k - 1), mean_peak(res, k)
    if math.isnan(below) or math.isnan(at) or at <= below:
        return None
    rule = (f"midway between res's peaks at {k - 1} and {k} layers, {format_bytes(int(below))} "
            f"and {format_bytes(int(at))}, same run")  # fmt: skip
    return Budget((below + at) / 2, rule, capped=False)


def case_budget(both: pd.DataFrame, res: pd.DataFrame, k: int | None) -> Budget | None:
    """The budget a case (``both``: the two configurations compared) is judged under: the
    spec's cap where its trials ran under one, else the one computed from ``res`` (the ResGNN
    trials at the width compared)."""
    if both["memory_cap_bytes"].notna().any():
        return cap_budget(both)
    return computed_budget(res, k)


def need(rows: pd.DataFrame, hops: float, budget: Budget) -> str:
    """What the depth at ``hops`` needs: its mean measured peak, or, where it crossed a cap,
    the live memory at which it did (a lower bound: the trial stopped there)."""
    peak = mean_peak(rows, hops)
    if not math.isnan(peak):
        over = "over" if peak > budget.bytes else "within"
        return f"{format_bytes(int(peak))} ({over} the budget)"
    crossed = [int(m.group(1).replace(",", "")) for e in rows.loc[rows["hops"] == hops, "error"]
               if isinstance(e, str) and (m := _CROSSED.search(e))]  # fmt: skip
    if crossed:
        return f"more than {format_bytes(max(crossed))} (it crossed the cap there)"
    return "more than the budget (it ran out of memory there)"
