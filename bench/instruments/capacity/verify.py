"""``capacity --verify``: a row's boundary points as real trials, each in its own process,
judged against the memory model's tolerance (see the package)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from bench.config import TrialConfig
from bench.instruments.capacity.search import Row
from bench.units import format_bytes

#: the memory model's tested bound: predicted / measured within [1/1.5, 1.5]
#: (tests/test_memory_model.py; measured there within about 10%)
TOLERANCE = 1.5
#: depths at which a row flat in depth is verified (both at or above the DEQ solver's history)
FLAT_DEPTHS = (8, 32)


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
    """Run one point for real (its own process) and judge the model's prediction of it."""
    from bench.trial import run_trial_isolated

    cap = math.ceil(TOLERANCE * predicted) if config.device == "cpu" else None
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
        ratio = predicted / measured
        point.update(
            measured_peak_bytes=measured,
            error=ratio - 1,
            fits_measured=measured <= budget,
            confirmed=1 / TOLERANCE <= ratio <= TOLERANCE,
        )
    elif record.status == "oom" and config.device == "cuda" and role == "does not fit":
        point.update(confirmed=True, message="out of device memory, as predicted")
    elif record.status == "oom" and cap is not None:
        point["message"] = (
            f"over {TOLERANCE}x the prediction (the verify cap): outside the model's tolerance"
        )
    else:
        point["message"] = (record.error or record.status).strip().splitlines()[0]
    return point


def verify(
    rows: list[Row], sizes: Any, budget: int, timeout: float, log: Callable[[str], None]
) -> None:
    """Run every row's boundary points (:func:`verify_points`), filling ``row.checks``."""
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


def describe(point: dict[str, Any]) -> str:
    """One verified point in words: measured beside predicted, and the verdict."""
    if point["measured_peak_bytes"] is None:
        return f"{point['status']}: {point['message']}" + (
            " (confirmed)" if point["confirmed"] else ""
        )
    verdict = "confirmed" if point["confirmed"] else f"NOT within {TOLERANCE}x"
    return (
        f"measured {format_bytes(point['measured_peak_bytes'])}, predicted "
        f"{format_bytes(point['predicted_peak_bytes'])} ({point['error']:+.1%}): "
        f"{verdict}"
    )
