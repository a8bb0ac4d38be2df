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

from bench.config import TrialConfig
from bench.data.paths import REPO_ROOT
from bench.errors import ConfigError
from bench.models import archs
from bench.models.conv_specs import conv_spec
from bench.units import format_bytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from bench.tuning.params import (
    FIELD_TYPES,
    Param,
    SearchSpaceError,
    known_choices,
    parse_param,
    suggest_value,
)
from bench.tuning.settings import TuneSettings, parse_settings

TUNE_DIR = REPO_ROOT / "ablations" / "tune"

TOP_LEVEL_KEYS = ("description", "base", "space", "tune")


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
            return _has_heads(conv or self.base.get("conv", TrialConfig.conv))
        if name in archs.OPTIONAL or name == "groups":
            return name in archs.get(arch).accepts()
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
            params[name] = suggest_value(trial, param)
            if name == "arch":
                arch = params[name]
            if name == "conv":
                conv = params[name]
        return self.build(params)

    def build(self, params: dict[str, Any]) -> Suggestion:
        """The configuration for sampled ``params`` (also used to replay a stored trial)."""
        values = {**self.base, **params}
        accepts = archs.get(values.get("arch", TrialConfig.arch)).accepts()
        for name in archs.OPTIONAL:
            if name not in accepts:
                values.pop(name, None)
        heads = _has_heads(values.get("conv", TrialConfig.conv))
        if not heads:
            values.pop("heads", None)
        adjusted: dict[str, tuple[Any, Any]] = {}
        divisor = values.get("groups", TrialConfig.groups) if "groups" in accepts else 1
        if heads:
            divisor *= values.get("heads") or 1
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
        if name not in FIELD_TYPES:
            raise SearchSpaceError(
                path, f"base.{name}", f"unknown setting; known: {', '.join(sorted(FIELD_TYPES))}"
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
    params = {name: parse_param(path, name, value) for name, value in space_raw.items()}
    both = sorted(set(params) & set(base))
    if both:
        raise SearchSpaceError(
            path, f"space.{both[0]}", "is both fixed in [base] and tuned in [space]; keep one"
        )
    settings = parse_settings(path, raw.get("tune", {}))
    space = SearchSpace(path.stem, path, dict(base), params, settings, description)
    # a GPU spec must be checkable on a machine without one: the device is checked at run time
    _check_consistency(space.with_device("cpu") if base.get("device") == "cuda" else space)
    return space


def _check_consistency(space: SearchSpace) -> None:
    """Reject spaces that would produce invalid configurations, naming the key at fault."""
    path, params, base = space.path, space.params, space.base
    for name, known in known_choices().items():
        if name in params and params[name].kind == "categorical":
            bad = [c for c in params[name].choices if c not in known]
            if bad:
                raise SearchSpaceError(
                    path, f"space.{name}.choices",
                    f"unknown value {bad[0]!r}; choose from {', '.join(known)}",
                )  # fmt: skip
    arch_names = (
        list(params["arch"].choices) if "arch" in params else [base.get("arch", TrialConfig.arch)]
    )
    try:
        taken = set().union(*(archs.get(a).accepts() for a in arch_names))
    except ConfigError as err:
        raise SearchSpaceError(path, "base.arch", err.message) from None
    for name in (n for n in params if n in archs.OPTIONAL and n not in taken):
        what, owners = archs.OPTIONAL[name]
        raise SearchSpaceError(path, f"space.{name}", f"is a {what} setting, but the arch is "
                               f"never {' or '.join(archs.names(**owners))}")  # fmt: skip
    convs = (
        list(params["conv"].choices) if "conv" in params else [base.get("conv", TrialConfig.conv)]
    )
    if "heads" in params and not any(_has_heads(c) for c in convs):
        raise SearchSpaceError(path, "space.heads", "is a GAT setting, but the conv is never 'gat'")
    if "groups" in taken:
        _check_groups(space)
    # every corner of the space must be a valid configuration (e.g. dropout high < 1)
    try:
        for _ in space.corner_configs():
            pass
    except ConfigError as err:
        key = f"space.{err.field}" if err.field in params else f"base.{err.field}"
        raise SearchSpaceError(path, key, err.message) from None


def _has_heads(conv: str) -> bool:
    """Whether a convolution has attention heads (a valid name; a bad one is caught later)."""
    try:
        return conv_spec(conv).heads
    except ConfigError:
        return False


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
