"""Search-space files for ``python -m bench tune``: parsing, validation, sampling.

A file under ``ablations/tune/`` (TOML) has four parts::

    description = "what this study is for"
    [base]            # fixed TrialConfig fields (dataset, epochs, dataset_options, ...)
    [space]           # per TrialConfig field, one distribution:
    lr = { low = 1e-4, high = 1e-2, log = true }   # float range (log-uniform)
    layers = { low = 2, high = 16, step = 2 }       # int range, optional step (or log = true)
    arch = { choices = ["res", "rev"] }             # categorical
    [tune]            # study defaults, each overridable on the command line
    memory_budget = "2GiB"  n_trials = 20  timeout = 3600  objectives = [...]  seed = 0
    pruner = "median"  n_startup_trials = 5  n_warmup_steps = 1  trial_timeout = 600

Everything is checked when the file is read, before any trial runs, and each error names the
file and the key at fault. Distributions become standard Optuna distributions, so stored
studies open unchanged in optuna-dashboard.

Constraints the space must respect, handled here rather than left to crash a trial:
- ``groups`` only matters for reversible archs and is only sampled for them; channels that
  ``groups`` does not divide are moved to the nearest feasible value (recorded per trial);
- ``deq_*`` settings are only sampled when the arch is ``deq``;
- ``tie`` (weight tying) is only sampled for the weight-tied archs ``wt-res`` / ``wt-rev``;
- ``heads`` is only sampled when the convolution (``conv``) is ``gat``; channels are repaired to
  a multiple of groups x heads there (GAT concatenates heads of width/heads channels).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from bench.config import (
    ARCHS,
    CONVS,
    DEFAULT_HEADS,
    DEQ_GRADS,
    DEQ_SOLVERS,
    PRECISIONS,
    REVERSIBLE_ARCHS,
    TIED_ARCHS,
    TIES,
    TrialConfig,
)
from bench.errors import ConfigError
from bench.units import format_bytes, parse_bytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TUNE_DIR = Path(__file__).resolve().parent.parent / "ablations" / "tune"

# what a study can optimise: name -> (TrialRecord attribute, Optuna direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "valid_score": ("best_valid", "maximize"),
    "peak_memory_bytes": ("peak_memory_bytes", "minimize"),
    "step_time_s": ("step_time_s", "minimize"),
    "params": ("params", "minimize"),
}
PRUNERS = ("median", "hyperband", "none")
# settings the tuner owns or that cannot be sampled
UNTUNABLE = ("memory_cap_bytes", "data_root", "dataset_options", "device")
DEQ_FIELDS = ("deq_solver", "deq_tol", "deq_max_iter", "deq_grad")
TOP_LEVEL_KEYS = ("description", "base", "space", "tune")
_FIELD_TYPES: dict[str, str] = {
    f.name: str(f.type).replace(" | None", "") for f in dataclasses.fields(TrialConfig)
}
_KNOWN_CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ARCHS,
    "deq_solver": DEQ_SOLVERS,
    "deq_grad": DEQ_GRADS,
    "tie": TIES,
    "precision": PRECISIONS,
    "conv": CONVS,
}


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


def _parse_param(path: Path, name: str, raw: Any) -> Param:
    key = f"space.{name}"
    if name not in _FIELD_TYPES:
        known = ", ".join(sorted(set(_FIELD_TYPES) - set(UNTUNABLE)))
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
    ftype = _FIELD_TYPES[name]
    if "choices" in raw:
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
        return Param(name, "categorical", choices=tuple(choices))
    if "low" not in raw or "high" not in raw:
        raise SearchSpaceError(
            path, key, "a range needs both low and high (or give choices = [...])"
        )
    low, high, step, log = raw["low"], raw["high"], raw.get("step"), raw.get("log", False)
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


# --- settings ---------------------------------------------------------------------------
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


def _parse_settings(path: Path, raw: Any) -> TuneSettings:
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
            values[name] = _setting(name, value)
        except ConfigError as err:
            raise SearchSpaceError(path, key, err.message) from None
    return TuneSettings(**values)


def _setting(name: str, value: Any) -> Any:
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


# --- the space --------------------------------------------------------------------------
@dataclass(frozen=True)
class Suggestion:
    """A sampled configuration plus what had to be adjusted to make it valid."""

    config: TrialConfig
    params: dict[str, Any]
    adjusted: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (sampled, used)


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, validated search-space file."""

    name: str
    path: Path
    base: dict[str, Any]
    params: dict[str, Param]
    settings: TuneSettings
    description: str = ""

    def with_device(self, device: str) -> SearchSpace:
        """The same space on another device (``tune --device``)."""
        return dataclasses.replace(self, base={**self.base, "device": device})

    # --- sampling -----------------------------------------------------------------------
    def _order(self) -> list[str]:
        """Arch and conv first (others depend on them), groups and heads before channels
        (channels are repaired)."""
        first = [n for n in ("arch", "conv", "groups", "heads") if n in self.params]
        return first + [n for n in self.params if n not in first]

    def active(self, name: str, arch: str, conv: str | None = None) -> bool:
        """Whether a param matters for this arch and conv (conditional spaces keep TPE
        informed); ``conv`` None means the base's."""
        if name == "heads":
            return (conv or self.base.get("conv", TrialConfig.conv)) == "gat"
        if name in DEQ_FIELDS:
            return arch == "deq"
        if name == "groups":
            return arch in REVERSIBLE_ARCHS
        if name == "tie":
            return arch in TIED_ARCHS
        return True

    def suggest(self, trial: optuna.trial.BaseTrial) -> Suggestion:
        """Sample a configuration from ``trial``; never returns an invalid one."""
        params: dict[str, Any] = {}
        arch = self.base.get("arch", TrialConfig.arch)
        conv = self.base.get("conv", TrialConfig.conv)
        for name in self._order():
            param = self.params[name]
            if name not in ("arch", "conv") and not self.active(name, arch, conv):
                continue
            params[name] = _suggest(trial, param)
            if name == "arch":
                arch = params[name]
            if name == "conv":
                conv = params[name]
        return self.build(params)

    def build(self, params: dict[str, Any]) -> Suggestion:
        """The configuration for sampled ``params`` (also used to replay a stored trial)."""
        values = {**self.base, **params}
        arch = values.get("arch", TrialConfig.arch)
        for name in DEQ_FIELDS:
            if arch != "deq":
                values.pop(name, None)
        if arch not in TIED_ARCHS:
            values.pop("tie", None)
        if values.get("conv", TrialConfig.conv) != "gat":
            values.pop("heads", None)
        adjusted: dict[str, tuple[Any, Any]] = {}
        divisor = values.get("groups", TrialConfig.groups) if arch in REVERSIBLE_ARCHS else 1
        if values.get("conv", TrialConfig.conv) == "gat":
            divisor *= values.get("heads") or DEFAULT_HEADS
        if divisor > 1:
            channels = values.get("channels", TrialConfig.channels)
            if channels % divisor and "channels" in self.params:
                repaired = self._nearest_channels(channels, divisor)
                adjusted["channels"] = (channels, repaired)
                values["channels"] = repaired
        return Suggestion(TrialConfig.from_dict(values), dict(params), adjusted)

    def _nearest_channels(self, channels: int, groups: int) -> int:
        param = self.params["channels"]
        listed = param.values(limit=1 << 20)
        if listed is None:  # a huge range: nearest multiple inside it
            low, high = int(param.low), int(param.high)
            down, up = channels - channels % groups, channels - channels % groups + groups
            feasible = [c for c in (down, up) if low <= c <= high]
        else:
            feasible = [c for c in listed if c % groups == 0]
        return min(feasible, key=lambda c: (abs(c - channels), c))

    # --- checks -------------------------------------------------------------------------
    def corner_configs(self) -> Iterable[TrialConfig]:
        """Configurations at the extremes of every range (all combinations, or each alone)."""
        names = [n for n in self._order()]
        corners = [self.params[n].corners() for n in names]
        total = math.prod(len(c) for c in corners)
        if total <= 4096:
            combos: Iterable[tuple[Any, ...]] = itertools.product(*corners)
        else:  # too many: vary one setting at a time around the first corner
            first = tuple(c[0] for c in corners)
            combos = [first] + [
                first[:i] + (v,) + first[i + 1 :] for i, c in enumerate(corners) for v in c[1:]
            ]
        for combo in combos:
            params = dict(zip(names, combo, strict=True))
            arch = params.get("arch", self.base.get("arch", TrialConfig.arch))
            conv = params.get("conv", self.base.get("conv", TrialConfig.conv))
            params = {
                n: v
                for n, v in params.items()
                if n in ("arch", "conv") or self.active(n, arch, conv)
            }
            yield self.build(params).config

    def min_predicted_peak(
        self, predict: Callable[[TrialConfig], int | None]
    ) -> tuple[int, TrialConfig] | None:
        """The smallest predicted peak over the corner configurations (None: no prediction)."""
        best: tuple[int, TrialConfig] | None = None
        for config in self.corner_configs():
            peak = predict(config)
            if peak is not None and (best is None or peak < best[0]):
                best = (int(peak), config)
        return best

    def check_budget(
        self, budget: int | None, predict: Callable[[TrialConfig], int | None], key: str
    ) -> None:
        """Refuse a budget that even the smallest configuration of the space exceeds."""
        if budget is None:
            return
        smallest = self.min_predicted_peak(predict)
        if smallest is not None and smallest[0] > budget:
            peak, config = smallest
            shown = {n: getattr(config, n) for n in ("arch", "layers", "channels", "groups") if n}
            raise SearchSpaceError(
                self.path,
                key,
                f"nothing fits the memory budget {format_bytes(budget)}: the memory model predicts "
                f"{format_bytes(peak)} for the smallest configuration of the space ({shown}); "
                "raise the budget or shrink the space",
            )


def _suggest(trial: optuna.trial.BaseTrial, param: Param) -> Any:
    if param.kind == "categorical":
        return trial.suggest_categorical(param.name, list(param.choices))
    if param.kind == "int":
        return trial.suggest_int(
            param.name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log
        )
    return trial.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log)


# --- loading ----------------------------------------------------------------------------
def resolve_path(spec: str | Path, directory: Path = TUNE_DIR) -> Path:
    """A spec name (``proteins-small``) in ``ablations/tune/``, or a path to a TOML file."""
    candidate = Path(spec)
    if candidate.suffix == ".toml" or candidate.exists() or len(candidate.parts) > 1:
        if not candidate.is_file():
            raise ConfigError("spec", f"no search-space file at {candidate}")
        return candidate
    named = directory / f"{spec}.toml"
    if not named.is_file():
        known = sorted(p.stem for p in directory.glob("*.toml")) if directory.is_dir() else []
        raise ConfigError(
            "spec",
            f"no search space named {spec!r} in {directory}; known: {', '.join(known) or 'none'}",
        )
    return named


def load_search_space(spec: str | Path, directory: Path = TUNE_DIR) -> SearchSpace:
    """Read and validate a search-space file (a name in ``ablations/tune/`` or a path)."""
    path = resolve_path(spec, directory)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SearchSpaceError(path, "toml", f"not valid TOML: {err}") from None
    return parse_search_space(raw, path)


def parse_search_space(raw: dict[str, Any], path: Path | str = "<memory>") -> SearchSpace:
    """Validate the parsed TOML of a search-space file; errors name ``path`` and the key."""
    path = Path(path)
    extra = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if extra:
        raise SearchSpaceError(
            path, extra[0], f"unknown top-level key; known: {', '.join(TOP_LEVEL_KEYS)}"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SearchSpaceError(path, "description", "must be a string")
    base = raw.get("base", {})
    if not isinstance(base, dict):
        raise SearchSpaceError(path, "base", "must be a table of TrialConfig settings")
    for name in base:
        if name not in _FIELD_TYPES:
            raise SearchSpaceError(
                path, f"base.{name}", f"unknown setting; known: {', '.join(sorted(_FIELD_TYPES))}"
            )
    if "memory_cap_bytes" in base:
        raise SearchSpaceError(
            path,
            "base.memory_cap_bytes",
            "the tuner sets this from the memory budget ([tune] memory_budget)",
        )
    space_raw = raw.get("space", {})
    if not isinstance(space_raw, dict) or not space_raw:
        raise SearchSpaceError(
            path,
            "space",
            "needs at least one tuned setting, e.g. lr = { low = 1e-4, high = 1e-2, log = true }",
        )
    params = {name: _parse_param(path, name, value) for name, value in space_raw.items()}
    both = sorted(set(params) & set(base))
    if both:
        raise SearchSpaceError(
            path, f"space.{both[0]}", "is both fixed in [base] and tuned in [space]; keep one"
        )
    settings = _parse_settings(path, raw.get("tune", {}))
    space = SearchSpace(path.stem, path, dict(base), params, settings, description)
    # a GPU spec must be checkable on a machine without one: the device is checked at run time
    _check_consistency(space.with_device("cpu") if base.get("device") == "cuda" else space)
    return space


def _check_consistency(space: SearchSpace) -> None:
    """Reject spaces that would produce invalid configurations, naming the key at fault."""
    path, params, base = space.path, space.params, space.base
    for name in _KNOWN_CHOICES:
        if name in params and params[name].kind == "categorical":
            bad = [c for c in params[name].choices if c not in _KNOWN_CHOICES[name]]
            if bad:
                raise SearchSpaceError(
                    path, f"space.{name}.choices",
                    f"unknown value {bad[0]!r}; choose from {', '.join(_KNOWN_CHOICES[name])}",
                )  # fmt: skip
    archs = (
        list(params["arch"].choices) if "arch" in params else [base.get("arch", TrialConfig.arch)]
    )
    deq_tuned = [n for n in DEQ_FIELDS if n in params]
    if deq_tuned and "deq" not in archs:
        raise SearchSpaceError(
            path, f"space.{deq_tuned[0]}", "is a DEQ setting, but the arch is never 'deq'"
        )
    if "tie" in params and not any(a in TIED_ARCHS for a in archs):
        raise SearchSpaceError(
            path,
            "space.tie",
            f"is a weight-tying setting, but the arch is never {' or '.join(TIED_ARCHS)}",
        )
    convs = (
        list(params["conv"].choices) if "conv" in params else [base.get("conv", TrialConfig.conv)]
    )
    if "heads" in params and "gat" not in convs:
        raise SearchSpaceError(path, "space.heads", "is a GAT setting, but the conv is never 'gat'")
    if any(a in REVERSIBLE_ARCHS for a in archs):
        _check_groups(space)
    # every corner of the space must be a valid configuration (e.g. dropout high < 1)
    try:
        for _ in space.corner_configs():
            pass
    except ConfigError as err:
        key = f"space.{err.field}" if err.field in params else f"base.{err.field}"
        raise SearchSpaceError(path, key, err.message) from None


def _check_groups(space: SearchSpace) -> None:
    """Reversible archs: groups >= 2, and each groups value divides some channel count."""
    path, params, base = space.path, space.params, space.base
    groups_param = params.get("groups")
    key = "space.groups" if groups_param else "base.groups"
    group_values = (
        groups_param.values() if groups_param else [base.get("groups", TrialConfig.groups)]
    )
    if group_values is None:
        raise SearchSpaceError(path, key, "too many values to check; give choices = [...]")
    if min(group_values) < 2:
        raise SearchSpaceError(
            path, key, f"a reversible arch needs groups >= 2, got {min(group_values)}"
        )
    channel_param = params.get("channels")
    for groups in group_values:
        if channel_param is None:
            channels = base.get("channels", TrialConfig.channels)
            if channels % groups:
                raise SearchSpaceError(
                    path, key, f"groups = {groups} does not divide channels = {channels} ([base])"
                )
            continue
        listed = channel_param.values(limit=1 << 20)
        if listed is None:
            ok = int(channel_param.high) // groups * groups >= int(channel_param.low)
        else:
            ok = any(c % groups == 0 for c in listed)
        if not ok:
            raise SearchSpaceError(
                path, "space.channels", f"no value is divisible by groups = {groups}"
            )
