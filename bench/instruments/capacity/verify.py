"""``capacity --verify``: a row's boundary points as real trials, each in its own process, and
the row's verdict: confirmed only where the measured points fall on the sides the model put
them (see the package)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from bench.config import TrialConfig
from bench.instruments.capacity.search import Row
from bench.units import format_bytes

#: the memory model's tested bound: predicted / measured within [1/1.5, 1.5]
#: (tests/test_memory_model.py; measured there within about 10%); on CPU a verified point runs
#: under a cap of this many times the larger of its prediction and the target
TOLERANCE = 1.5
#: depths at which a row flat in depth is verified (both at or above the DEQ solver's history)
FLAT_DEPTHS = (8, 32)
#: a flat row is confirmed when its deeper point measures at most this much above the shallower
FLAT_SLACK = 0.05


def verify_points(row: Row) -> list[tuple[str, TrialConfig]]:
    """The trials that check a row: (role, config); none for an invalid row or one at the
    search limit."""
    if row.error is not None or row.bound == "limit":
        return []
    if row.bound == "flat":
        assert row.config is not None
        return [(f"flat at {d}", dataclasses.replace(row.config, layers=d)) for d in FLAT_DEPTHS]
    points = [("fits", row.config)] if row.config is not None else []
    if row.over_config is not None:
        points.append(("does not fit", row.over_config))
    return points  # type: ignore[return-value]


def verify_epochs(config: TrialConfig) -> int:
    """Epochs that meter a step after the warm-up: one, unless an epoch is a single step."""
    return 1 if config.batching == "mini" and config.train_parts >= 2 else 2


def check_point(
    role: str, config: TrialConfig, predicted: int, budget: int, timeout: float
) -> dict[str, Any]:
    """Run one point for real (its own process): measured beside predicted, and whether it
    fits ``budget`` (``fits_measured``; an out-of-memory counts as not fitting)."""
    from bench.trial import run_trial_isolated

    # an OOM under this cap is a peak above the target too: either way the point is judged
    cap = math.ceil(TOLERANCE * max(predicted, budget)) if config.device == "cpu" else None
    trial = dataclasses.replace(
        config,
        epochs=verify_epochs(config),
        patience=None,
        min_delta=None,
        memory_cap_bytes=cap,
        timeout=timeout,
    )
    record = run_trial_isolated(trial)
    point: dict[str, Any] = {
        "arch": config.arch,
        "channels": config.channels,
        "layers": config.layers,
        "point": role,
        "predicted_peak_bytes": predicted,
        "status": record.status,
        "measured_peak_bytes": None,
        "error": None,
        "fits_measured": None,
        "confirmed": False,
        "metered_steps": record.metered_steps,
        "meter": record.memory_meter,
        "message": None,
    }
    if record.status == "ok" and record.peak_memory_bytes:
        measured = int(record.peak_memory_bytes)
        point.update(
            measured_peak_bytes=measured,
            error=predicted / measured - 1,
            fits_measured=measured <= budget,
        )
    elif record.status == "oom":
        over = "the device's memory" if cap is None else f"the verify cap {format_bytes(cap)}"
        point.update(fits_measured=False, message=f"out of memory (over {over})")
    else:
        point["message"] = (record.error or record.status).strip().splitlines()[0]
    point["confirmed"] = point["fits_measured"] is not None and point["fits_measured"] == (
        role != "does not fit"
    )
    return point


def verify(
    rows: list[Row], sizes: Any, budget: int, timeout: float, log: Callable[[str], None]
) -> None:
    """Run every row's boundary points (:func:`verify_points`), filling ``row.checks``, and
    judge each row (``row.verdict``, :func:`judge`)."""
    from bench.measure.memory_model import predict

    for row in rows:
        for role, config in verify_points(row):
            predicted = int(predict(config, sizes).total_bytes)
            log(
                f"verify: {config.arch} {config.layers} layers x {config.channels} channels "
                f"({role}, predicted {format_bytes(predicted)}) ..."
            )
            point = check_point(role, config, predicted, budget, timeout)
            row.checks.append(point)
            log(f"verify:   {describe(point)}")
        if row.checks:
            row.verdict = judge(row, budget)


def judge(row: Row, budget: int) -> dict[str, Any]:
    """A row's verdict from its measured points. Confirmed only when each fell on the side the
    model put it: the deepest (widest) point fits, the next does not (a flat row: both fit, the
    deeper within :data:`FLAT_SLACK` of the shallower). Otherwise where the measured boundary
    lies -- interpolated from the two points (peaks are affine in depth) -- and how far the
    model's boundary is from it."""
    checks = row.checks
    unmeasured = [c for c in checks if c["fits_measured"] is None]
    if unmeasured:
        c = unmeasured[0]
        return _verdict(False, f"not measured at {c['layers']} x {c['channels']}: {c['message']}")
    if row.bound == "flat":
        shallow, deep = (c["measured_peak_bytes"] for c in checks)
        flat = shallow is not None and deep is not None and deep <= shallow * (1 + FLAT_SLACK)
        fit = all(c["fits_measured"] for c in checks)
        grew = "" if flat else f"; grew {format_bytes(shallow)} -> {format_bytes(deep)}"
        text = "flat in depth and fits, as predicted" if flat and fit else (
            f"NOT confirmed: {'fits' if fit else 'does not fit'}{grew}")  # fmt: skip
        return _verdict(flat and fit, text)
    if all(c["confirmed"] for c in checks):
        return _verdict(True, _sides(row))
    return _off(row, budget)


def _verdict(
    confirmed: bool, text: str, boundary: int | None = None, off: float | None = None
) -> dict[str, Any]:
    return {"confirmed": confirmed, "text": text, "measured_boundary": boundary, "model_off": off}


def _axis(row: Row) -> tuple[str, int | None]:
    """What the row searched ("layers" or "channels") and the model's answer in it (None:
    nothing fits)."""
    if row.over is not None and "channels" in row.over:
        return "channels", row.channels
    return "layers", row.layers


def _sides(row: Row) -> str:
    axis, found = _axis(row)
    if found is None:
        return "confirmed: does not fit at the smallest size"
    assert row.over is not None
    return f"confirmed: {found} {axis} fit{'s' if found == 1 else ''}, {row.over[axis]} do not"


def _off(row: Row, budget: int) -> dict[str, Any]:
    """A boundary the measurements do not confirm: the measured one, interpolated between the
    two measured points (or extrapolated past them), and the model's distance from it."""
    axis, found = _axis(row)
    points = [(c[axis], c["measured_peak_bytes"]) for c in row.checks]
    measurable = len(points) == 2 and all(m is not None for _, m in points)
    if not measurable or points[1][1] <= points[0][1]:
        last = row.checks[-1]
        side = "fits" if last["fits_measured"] else "does not fit"
        return _verdict(False, f"NOT confirmed: {last[axis]} {axis} {side}, not as predicted")
    (a, m_a), (b, m_b) = points
    steps = math.floor((budget - m_a) / (m_b - m_a))  # whole steps of (b - a) that still fit
    measured = a + steps * (b - a)
    model = found if found is not None else 0
    if measured < 1:
        return _verdict(False, f"NOT confirmed: not even the smallest {axis} fits", 0, None)
    off = (model - measured) / measured
    if axis == "layers":
        way = "too shallow" if off < 0 else "too deep"
    else:
        way = "too narrow" if off < 0 else "too wide"
    text = (f"NOT confirmed: the measured boundary is about {measured} {axis}; the model's "
            f"{model} is {abs(off):.0%} {way}")  # fmt: skip
    return _verdict(False, text, measured, off)


def describe(point: dict[str, Any]) -> str:
    """One verified point in words: measured beside predicted, and which side it fell on."""
    side = {True: "fits", False: "does not fit", None: "not judged"}[point["fits_measured"]]
    as_predicted = " as predicted" if point["confirmed"] else " NOT as predicted"
    if point["measured_peak_bytes"] is None:
        return f"{point['status']}: {point['message']} ({side}{as_predicted})"
    return (
        f"measured {format_bytes(point['measured_peak_bytes'])}, predicted "
        f"{format_bytes(point['predicted_peak_bytes'])} ({point['error']:+.1%}): "
        f"{side}{as_predicted}"
    )
