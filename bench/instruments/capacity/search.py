"""The boundary search of ``python -m bench capacity``: per arch, the deepest depth (or widest
width) whose predicted peak fits, with both sides of the answer predicted (see the package)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.models import archs
from bench.units import format_bytes


@dataclass
class Row:
    """One arch at one width (depth search) or one depth (width search): what fits."""

    arch: str
    channels: int | None
    layers: int | None
    bound: str  # "boundary" | "none" (nothing fits) | "limit" (fits at the limit) | "flat"
    params: int | None = None
    peak_bytes: int | None = None
    over: dict[str, int] | None = None  # the first point that does not fit: layers/channels/peak
    note: str = ""
    error: str | None = None  # the configuration is invalid for this arch
    config: TrialConfig | None = None  # the point that fits (the search's answer)
    over_config: TrialConfig | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)  # --verify: the points run
    verdict: dict[str, Any] | None = None  # --verify: confirmed, or the measured boundary

    def to_dict(self, target: int) -> dict[str, Any]:
        share = None if self.peak_bytes is None else self.peak_bytes / target
        return {
            "arch": self.arch,
            "channels": self.channels,
            "layers": self.layers,
            "bound": self.bound,
            "depth_costs_memory": self.bound != "flat",
            "params": self.params,
            "predicted_peak_bytes": self.peak_bytes,
            "share_of_target": share,
            "over": self.over,
            "note": self.note,
            "error": self.error,
            **({"verify": self.checks} if self.checks else {}),
            **({"verdict": self.verdict} if self.verdict else {}),
        }


def largest_fitting(peak: Callable[[int], int], budget: int, low: int, high: int) -> int | None:
    """The largest v in [low, high] with ``peak(v) <= budget`` (``peak`` non-decreasing), or
    None when even ``low`` does not fit. Interpolation between the bracket's ends (exact in a
    step or two where ``peak`` is affine), a bisection step whenever the same end moved twice."""
    if peak(low) > budget:
        return None
    if peak(high) <= budget:
        return high
    lo, hi, last = low, high, ""  # peak(lo) <= budget < peak(hi)
    while hi - lo > 1:
        p_lo, p_hi = peak(lo), peak(hi)
        guess = lo + (hi - lo) // 2
        if last != "both":
            guess = lo + int((budget - p_lo) * (hi - lo) // max(1, p_hi - p_lo))
        guess = min(max(guess, lo + 1), hi - 1)
        moved = "lo" if peak(guess) <= budget else "hi"
        if moved == "lo":
            lo = guess
        else:
            hi = guess
        last = "both" if moved == last else moved
    return lo


def _cached(fn: Callable[[int], Any]) -> Callable[[int], Any]:
    memo: dict[int, Any] = {}

    def call(v: int) -> Any:
        if v not in memo:
            memo[v] = fn(v)
        return memo[v]

    return call


def _flat_note(arch: str) -> str:
    from bench.measure.memory_model import DEQ_HISTORY

    if archs.get(arch).depth_unit == "iteration":
        return f"iterations cost no memory (implicit gradients; flat from {DEQ_HISTORY} on)"
    return "depth costs no memory (one shared block, activations rebuilt)"


def _with(base: TrialConfig, **changes: Any) -> TrialConfig:
    """``base`` with ``changes``, validated; the device need not be here (a GPU predicted from
    any machine)."""
    return dataclasses.replace(base, **changes).validated(check_device=False)


def depth_row(
    base: TrialConfig, arch: str, channels: int, sizes: Any, budget: int, max_layers: int
) -> Row:
    """The deepest depth of ``arch`` at ``channels`` whose predicted peak fits ``budget``."""
    from bench.measure.memory_model import predict

    try:
        config = _with(base, arch=arch, channels=channels, layers=1)
    except ConfigError as exc:
        return Row(arch, channels, None, "none", error=exc.for_cli())
    at = _cached(lambda layers: predict(dataclasses.replace(config, layers=layers), sizes))
    best = largest_fitting(lambda layers: at(layers).total_bytes, budget, 1, max_layers)
    if best is None:
        return Row(
            arch,
            channels,
            None,
            "none",
            over={"layers": 1, "predicted_peak_bytes": at(1).total_bytes},
            over_config=config,
            note="does not fit at 1 layer",
        )
    row = Row(
        arch,
        channels,
        best,
        "boundary",
        at(best).params,
        at(best).total_bytes,
        config=dataclasses.replace(config, layers=best),
    )
    if best < max_layers:
        row.over = {"layers": best + 1, "predicted_peak_bytes": at(best + 1).total_bytes}
        row.over_config = dataclasses.replace(config, layers=best + 1)
        row.note = f"{best + 1} does not fit ({format_bytes(at(best + 1).total_bytes)})"
    elif at(max_layers).total_bytes == at(max_layers // 2).total_bytes:
        row.layers, row.bound, row.note = None, "flat", _flat_note(arch)
    else:
        row.bound, row.note = "limit", f"fits at the search limit (--max-layers {max_layers})"
    return row


def width_unit(base: TrialConfig, arch: str, step: int) -> int:
    """Widths searched: multiples of ``step`` that the arch's groups (and GAT's heads) divide."""
    divisor = base.groups if "groups" in archs.get(arch).accepts() else 1
    if base.model.conv_spec.heads:
        divisor *= base.heads or 1
    return math.lcm(step, divisor)


def width_row(
    base: TrialConfig, arch: str, layers: int, sizes: Any, budget: int, step: int, max_channels: int
) -> Row:
    """The widest width of ``arch`` at ``layers`` whose predicted peak fits ``budget``."""
    from bench.measure.memory_model import predict

    unit = width_unit(base, arch, step)
    try:
        config = _with(base, arch=arch, layers=layers, channels=unit)
    except ConfigError as exc:
        return Row(arch, None, layers, "none", error=exc.for_cli())
    at = _cached(lambda k: predict(dataclasses.replace(config, channels=k * unit), sizes))
    top = max(1, max_channels // unit)
    best = largest_fitting(lambda k: at(k).total_bytes, budget, 1, top)
    if best is None:
        return Row(
            arch,
            None,
            layers,
            "none",
            over={"channels": unit, "predicted_peak_bytes": at(1).total_bytes},
            over_config=config,
            note=f"does not fit at {unit} channels",
        )
    row = Row(
        arch,
        best * unit,
        layers,
        "boundary",
        at(best).params,
        at(best).total_bytes,
        config=dataclasses.replace(config, channels=best * unit),
    )
    if best < top:
        wider = (best + 1) * unit
        row.over = {"channels": wider, "predicted_peak_bytes": at(best + 1).total_bytes}
        row.over_config = dataclasses.replace(config, channels=wider)
        row.note = f"{wider} does not fit ({format_bytes(at(best + 1).total_bytes)})"
    else:
        row.bound, row.note = "limit", f"fits at the search limit (--max-channels {max_channels})"
    return row
