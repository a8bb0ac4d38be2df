"""How a tuning study runs (the ``[tune]`` table: budget, trials, objectives, pruner, seed),
each value validated the same way from the file and from the command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.tuning.params import SearchSpaceError
from bench.units import parse_bytes

# what a study can optimise: name -> (TrialRecord attribute, Optuna direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "valid_score": ("best_valid", "maximize"),
    "peak_memory_bytes": ("peak_memory_bytes", "minimize"),
    "step_time_s": ("step_time_s", "minimize"),
    "params": ("params", "minimize"),
}
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class TuneSettings:
    """How the study runs; every field can be overridden on the command line."""

    memory_budget: int | None = None  # bytes; None = no budget
    n_trials: int = 20  # total finished trials the study should hold
    timeout: float | None = None  # seconds for this invocation (no new trial after it)
    objectives: tuple[str, ...] = ("valid_score", "peak_memory_bytes")  # multi-objective mode
    seed: int = 0
    pruner: str = "median"
    n_startup_trials: int = 5  # random trials before TPE (and before the pruner prunes)
    n_warmup_steps: int = 1  # epochs a trial runs before the pruner may stop it
    trial_timeout: float | None = None  # hard limit per trial process (seconds)

    def directions(self, multi: bool) -> list[str]:
        names = self.objective_names(multi)
        return [OBJECTIVES[name][1] for name in names]

    def objective_names(self, multi: bool) -> tuple[str, ...]:
        return self.objectives if multi else ("valid_score",)


def parse_settings(path: Path, raw: Any) -> TuneSettings:
    if not isinstance(raw, dict):
        raise SearchSpaceError(path, "tune", "must be a table")
    known = {f.name for f in dataclasses.fields(TuneSettings)}
    extra = sorted(set(raw) - known)
    if extra:
        raise SearchSpaceError(
            path, f"tune.{extra[0]}", f"unknown key; known: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"tune.{name}"
        try:
            values[name] = parse_setting(name, value)
        except ConfigError as err:
            raise SearchSpaceError(path, key, err.message) from None
    return TuneSettings(**values)


def parse_setting(name: str, value: Any) -> Any:
    """Validate one [tune] value (also used for command-line overrides)."""
    if name == "memory_budget":
        return None if value in (None, "none", "") else parse_bytes(value, name)
    if name in ("n_trials", "n_startup_trials", "seed", "n_warmup_steps"):
        low = 1 if name == "n_trials" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(name, f"must be an integer >= {low}, got {value!r}")
        return value
    if name in ("timeout", "trial_timeout"):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(name, f"must be a positive number of seconds, got {value!r}")
        return float(value)
    if name == "pruner":
        if value not in PRUNERS:
            raise ConfigError(name, f"unknown pruner {value!r}; choose one of {', '.join(PRUNERS)}")
        return value
    if name == "objectives":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or len(value) < 2:
            raise ConfigError(
                name, f"multi-objective tuning needs at least two objectives, got {value!r}"
            )
        unknown = [v for v in value if v not in OBJECTIVES]
        if unknown:
            raise ConfigError(
                name, f"unknown objective {unknown[0]!r}; choose from {', '.join(OBJECTIVES)}"
            )
        if len(set(value)) != len(value):
            raise ConfigError(name, f"has duplicates: {value}")
        return tuple(value)
    raise ConfigError(name, "unknown setting")  # pragma: no cover - guarded by callers
