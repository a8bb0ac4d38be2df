"""One tuned setting of a search space and its distribution (an int or float range, or
categorical choices), parsed from its ``[space]`` entry and sampled through an Optuna trial."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from bench.config import PRECISIONS, TrialConfig
from bench.errors import ConfigError
from bench.models import archs

# settings the tuner owns or that cannot be sampled
UNTUNABLE = ("memory_cap_bytes", "data_root", "dataset_options", "dataset_hash", "device")

FIELD_TYPES: dict[str, str] = {
    f.name: str(f.type).replace(" | None", "") for f in dataclasses.fields(TrialConfig)
}


def known_choices() -> dict[str, tuple[str, ...]]:
    """The values a categorical setting can take, where they are a closed set (a conv may be
    a factory ``module:function``: every corner of a space is validated instead)."""
    return {"arch": archs.names(), "deq_solver": archs.DEQ_SOLVERS, "deq_grad": archs.DEQ_GRADS,
            "tie": archs.TIES, "precision": PRECISIONS}  # fmt: skip


class SearchSpaceError(ConfigError):
    """A search-space file is invalid; names the file and the key (``space.lr.low``)."""

    def __init__(self, path: Path | str, key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        super().__init__(key, message)
        self.args = (f"{self.path}: [{key}] {message}",)

    def __str__(self) -> str:
        return self.args[0]

    def for_cli(self) -> str:
        return str(self)


# --- parameters -------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One tuned setting and its distribution (``int``/``float`` range or ``categorical``)."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The standard Optuna distribution (what the dashboard and samplers understand)."""
        if self.kind == "categorical":
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return optuna.distributions.FloatDistribution(
            float(self.low), float(self.high), log=self.log, step=self.step
        )

    def values(self, limit: int = 4096) -> list[Any] | None:
        """Every value the distribution can take, if few enough to list (else None)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            step = int(self.step or 1)
            count = (int(self.high) - int(self.low)) // step + 1
            return list(range(int(self.low), int(self.high) + 1, step)) if count <= limit else None
        return None

    def corners(self) -> list[Any]:
        """The extreme values: what the budget and validity checks try."""
        listed = self.values()
        if self.kind == "categorical":
            return list(self.choices)
        if listed is not None:
            return sorted({listed[0], listed[-1]})
        if self.kind == "float" and self.step:
            top = self.low + math.floor((self.high - self.low) / self.step + 1e-9) * self.step
            return [self.low, top]
        return [self.low, self.high]


def parse_param(path: Path, name: str, raw: Any) -> Param:
    """One ``[space]`` entry as a Param: categorical choices, or an int or float range."""
    key = f"space.{name}"
    _check_tunable(path, name, raw)
    if "choices" in raw:
        return Param(name, "categorical", choices=_choices(path, key, raw))
    return _range(path, name, raw)


def _check_tunable(path: Path, name: str, raw: Any) -> None:
    """A setting the tuner may sample, given as a table of known options."""
    key = f"space.{name}"
    if name not in FIELD_TYPES:
        known = ", ".join(sorted(set(FIELD_TYPES) - set(UNTUNABLE)))
        raise SearchSpaceError(path, key, f"unknown setting {name!r}; tunable settings: {known}")
    if name == "memory_cap_bytes":
        raise SearchSpaceError(
            path, key, "the tuner sets it from the memory budget ([tune] memory_budget)"
        )
    if name in UNTUNABLE:
        raise SearchSpaceError(
            path, key, f"{name!r} cannot be tuned; set it in [base] or on the command line"
        )
    if not isinstance(raw, dict):
        raise SearchSpaceError(
            path,
            key,
            "expected a table: { low = .., high = .. [, log = true] [, step = ..] } or { choices = [..] }",
        )
    allowed = {"low", "high", "step", "log", "choices"}
    extra = sorted(set(raw) - allowed)
    if extra:
        raise SearchSpaceError(
            path, f"{key}.{extra[0]}", f"unknown option; allowed: {', '.join(sorted(allowed))}"
        )


def _choices(path: Path, key: str, raw: dict[str, Any]) -> tuple[Any, ...]:
    if set(raw) - {"choices"}:
        raise SearchSpaceError(path, key, "use either choices or low/high, not both")
    choices = raw["choices"]
    if not isinstance(choices, list) or not choices:
        raise SearchSpaceError(path, f"{key}.choices", "must be a non-empty list")
    if len(set(map(repr, choices))) != len(choices):
        raise SearchSpaceError(path, f"{key}.choices", f"has duplicates: {choices}")
    for choice in choices:
        if not isinstance(choice, (str, int, float, bool)):
            raise SearchSpaceError(
                path, f"{key}.choices", f"values must be strings or numbers, got {choice!r}"
            )
    return tuple(choices)


def _range(path: Path, name: str, raw: dict[str, Any]) -> Param:
    """``{ low, high [, step] [, log] }`` of an int or float setting (Optuna's rules)."""
    key = f"space.{name}"
    if "low" not in raw or "high" not in raw:
        raise SearchSpaceError(
            path, key, "a range needs both low and high (or give choices = [...])"
        )
    low, high, step, log = raw["low"], raw["high"], raw.get("step"), raw.get("log", False)
    ftype = FIELD_TYPES[name]
    if ftype not in ("int", "float"):
        raise SearchSpaceError(path, key, f"{name!r} is not numeric; give choices = [...]")
    for part, value in (("low", low), ("high", high), ("step", step)):
        if value is None and part == "step":
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise SearchSpaceError(path, f"{key}.{part}", f"must be a finite number, got {value!r}")
        if ftype == "int" and not isinstance(value, int):
            raise SearchSpaceError(
                path, f"{key}.{part}", f"{name!r} is an integer setting, got {value!r}"
            )
    _check_bounds(path, key, low, high, step, log)
    if ftype == "int":
        if step is not None and (high - low) % step:
            raise SearchSpaceError(
                path,
                f"{key}.high",
                f"high ({high}) is not low ({low}) plus a multiple of step ({step})",
            )
        return Param(name, "int", int(low), int(high), step=step, log=log)
    return Param(
        name, "float", float(low), float(high), step=None if step is None else float(step), log=log
    )


def _check_bounds(path: Path, key: str, low: float, high: float, step: float | None,
                  log: Any) -> None:  # fmt: skip
    if not isinstance(log, bool):
        raise SearchSpaceError(path, f"{key}.log", f"must be true or false, got {log!r}")
    if low >= high:
        raise SearchSpaceError(
            path,
            key,
            f"empty range: low ({low}) must be below high ({high}); a fixed value belongs in [base]",
        )
    if log and low <= 0:
        raise SearchSpaceError(
            path, f"{key}.low", f"a log range needs positive bounds, got low = {low}"
        )
    if step is not None:
        if log:
            raise SearchSpaceError(
                path, f"{key}.step", "step and log cannot be combined (Optuna's rule)"
            )
        if step <= 0:
            raise SearchSpaceError(path, f"{key}.step", f"must be positive, got {step}")
        if step > high - low:
            raise SearchSpaceError(
                path, f"{key}.step", f"step ({step}) is wider than the range [{low}, {high}]"
            )


def suggest_value(trial: optuna.trial.BaseTrial, param: Param) -> Any:
    if param.kind == "categorical":
        return trial.suggest_categorical(param.name, list(param.choices))
    if param.kind == "int":
        return trial.suggest_int(
            param.name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log
        )
    return trial.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log)
