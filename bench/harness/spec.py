"""Ablation specs: ``ablations/<name>.toml`` files that expand into grids of TrialConfigs.

Format (TOML; every key but ``description`` is optional)::

    description = "what the ablation shows"        # required
    reproduces  = "paper figure 2"                 # which figure/table it regenerates
    seeds = 2                                      # a count (seeds 0..N-1) or a list [0, 7]

    [base]                 # TrialConfig fields shared by every point
    epochs = 3

    [grid]                 # TrialConfig field -> list of values; points = the Cartesian product
    arch   = ["res", "rev"]
    layers = [2, 8, 32]

    [[cases]]              # optional: named partial configs, each crossed with the grid
    label  = "RevGNN-Deep" # a free-text name carried into the results
    layers = 1001          # (a case may not set a field the grid varies)

    [applies]              # optional: a grid axis varies only where a condition holds;
    groups = { arch = ["rev", "wt-rev"] }   # elsewhere the field keeps its base/default value

    [[exclude]]            # optional: drop points matching every listed field
    arch = "res"
    layers = [512, 1001]

    [profiles.cpu]         # named profiles; only declared ones exist. Inside: description,
    base = { dataset = "synthetic-proteins" }   # seeds, base and grid (merged key by key over
    grid = { layers = [2, 4] }                  # the top level), cases, applies, exclude
                                                # (these three replace the top level's)

Profiles by convention: ``cpu`` (the default: minutes on this machine), ``real`` (the same
shapes on real graphs), ``paper`` (the paper's scale, for a GPU). ``seed`` is not a field here
(use ``seeds``), nor is ``device`` (the sweep picks it: ``ablate --device``). A graph file of
your own is a dataset like any other: ``dataset = "my-graph.pt"`` (relative to the working
directory; :mod:`bench.data.graph_file`); each point then carries the file's content hash.
The spec's name (its file's stem) and its profiles' names become file names
(``RESULTS/<spec>.db``, ``RESULTS/<spec>-<profile>.csv``): letters, digits, ``.``, ``_`` and ``-``
only (:mod:`bench.exports.paths`).

A spec is validated before anything runs: unknown keys, non-list grid values, empty grids and
any point a trial would refuse (``TrialConfig.from_dict`` raises ``ConfigError``) raise
:class:`SpecError`, whose message names the file and the key. So do sizes no study means:
more than ``MAX_SEEDS`` seeds, or a profile of more than ``MAX_POINTS`` trials (counted before
anything is expanded; ``ablate --max-points N`` lifts that one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import TrialConfig
from bench.data.paths import REPO_ROOT
from bench.errors import ConfigError
from bench.exports.paths import UnsafeName, check_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_KEYS = (
    "description",
    "reproduces",
    "seeds",
    "base",
    "grid",
    "cases",
    "applies",
    "exclude",
    "profiles",
)
PROFILE_KEYS = ("description", "seeds", "base", "grid", "cases", "applies", "exclude")
# not settable from a spec: seeds come from `seeds`, the device from the sweep
RESERVED_FIELDS = {
    "seed": "use the top-level 'seeds' key",
    "device": "chosen at run time (ablate --device)",
}
# fields that do not change what a trial measures, so not part of a point's identity
KEY_EXCLUDED_FIELDS = ("device", "data_root")
# the fields a point's key hashed when keys were made (frozen: never add to it). Any field added
# since is left out of the key at its default, so adding a field changes no stored point's key
KEYED_FIELDS = (
    "dataset", "dataset_hash", "arch", "layers", "channels", "groups", "tie", "dropout",
    "share_mask", "aggr", "heads", "norm", "lr", "epochs", "patience", "min_delta", "seed",
    "batching", "train_parts", "eval_parts", "eval_every", "grad_clip", "deterministic",
    "deq_solver", "deq_tol", "deq_max_iter", "deq_grad", "timeout", "memory_cap_bytes",
    "dataset_options",
)  # fmt: skip
# where a later field's value that keeps old keys is not its default: the trials stored before
# ``aggr_impl`` ran PyG's aggregation ("pyg" keeps their keys; the default "fused" gets new ones)
KEY_NEUTRAL = {"aggr_impl": "pyg"}
DEFAULT_PROFILE = "cpu"
#: the most seeds a spec or ``ablate --seeds`` may ask for: far above any study's (a verdict
#: needs 2 per side, the paper's tables use 10), far below what exhausts memory when expanded
#: (``seeds = 1000000000`` ended in a MemoryError after 11-16 s)
MAX_SEEDS = 1000
#: the most trials one profile may expand to unless lifted (``max_points``, ``ablate
#: --max-points``): a bigger grid is more often a typo than a plan (each point is validated,
#: about 0.3 ms, and listed by a dry run: a 10^6-point grid took 275 s to dry-run)
MAX_POINTS = 10_000
_FIELDS = tuple(TrialConfig.__dataclass_fields__)


class SpecError(ValueError):
    """An ablation spec is invalid; the message names the file and the key at fault."""

    def __init__(self, path: Path | str, key: str, message: str) -> None:
        self.path = Path(path)
        self.key = key
        self.message = message
        super().__init__(f"{self.path}: {key}: {message}")


@dataclass(frozen=True)
class Point:
    """One trial of a sweep: a grid point with one seed, and its stable identity ``key``."""

    index: int
    key: str
    config: TrialConfig
    label: str | None
    varying: dict[str, Any]  # the values of the fields that vary across the grid, and the seed


@dataclass(frozen=True)
class Profile:
    """A profile with the top level merged in: everything needed to expand its grid."""

    name: str
    description: str
    seeds: tuple[int, ...]
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    cases: tuple[dict[str, Any], ...]
    applies: dict[str, dict[str, list[Any]]]
    exclude: tuple[dict[str, list[Any]], ...]


@dataclass(frozen=True)
class Spec:
    name: str
    path: Path
    description: str
    reproduces: str
    profiles: dict[str, Profile] = field(default_factory=dict)

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            known = ", ".join(self.profiles) or "none"
            raise SpecError(
                self.path, f"profiles.{name}", f"no such profile (this spec has: {known})"
            )
        return self.profiles[name]

    def points(
        self,
        profile: str = DEFAULT_PROFILE,
        seeds: Sequence[int] | None = None,
        max_points: int = MAX_POINTS,
    ) -> list[Point]:
        """The validated trials of ``profile`` in a stable order (cases, grid, then seeds)."""
        return expand(self.path, self.profile(profile), seeds, max_points)


def point_key(config: TrialConfig) -> str:
    """A stable identity for a configuration (a hash of its settings, device excluded).

    Unset settings (``None``) are left out, and so is every field added after keys were made
    (not in ``KEYED_FIELDS``) while at its default, so a new field leaves every existing
    point's key, and so its stored trial, as it was. Weight-tied archs hash their resolved ``tie`` (``to_dict``), so their keys changed when
    the default tying became "after-first": the stored "all" trials are not reused. A graph
    file's content hash (``dataset_hash``, None for registered datasets) is hashed beside its
    path, so two different files of one name are two points, never one."""
    values = {
        k: v for k, v in config.to_dict().items() if k not in KEY_EXCLUDED_FIELDS and v is not None
    }
    for f in dataclasses.fields(config):
        if f.name not in KEYED_FIELDS and values.get(f.name) == KEY_NEUTRAL.get(f.name, f.default):
            values.pop(f.name, None)
    blob = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def spec_dirs() -> list[Path]:
    """Where spec names are looked up: ./ablations, then the checkout's ablations/."""
    here = Path("ablations")
    shipped = REPO_ROOT / "ablations"
    return [here] if here.resolve() == shipped else [here, shipped]


def find_spec(name_or_path: str | Path) -> Path:
    """A spec file from a name (``depth``) or a path (``ablations/depth.toml``)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(path, "file", "no such spec file")
        return path
    for folder in spec_dirs():
        candidate = folder / f"{path.name}.toml"
        if candidate.is_file():
            return candidate
    raise SpecError(
        Path(f"ablations/{path.name}.toml"),
        "file",
        f"no such spec; known: {', '.join(available_specs()) or 'none'}",
    )


def available_specs() -> list[str]:
    """The names of the spec files in the folders :func:`find_spec` searches."""
    return sorted({p.stem for d in spec_dirs() if d.is_dir() for p in d.glob("*.toml")})


# --- parsing ----------------------------------------------------------------------------------
def load_spec(
    name_or_path: str | Path, validate: bool = True, max_points: int = MAX_POINTS
) -> Spec:
    """Parse a spec; with ``validate`` (the default) expand every profile and check every point
    (each profile at most ``max_points`` trials)."""
    path = find_spec(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(path, "toml", str(exc)) from exc
    _no_unknown(path, "", raw, TOP_KEYS)
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise SpecError(path, "description", "required: say what the ablation shows")
    reproduces = raw.get("reproduces", "")
    if not isinstance(reproduces, str):
        raise SpecError(path, "reproduces", "must be a string")
    profiles_raw = raw.get("profiles", {})
    if not isinstance(profiles_raw, dict) or not profiles_raw:
        raise SpecError(path, "profiles", "declare at least one profile, e.g. [profiles.cpu]")
    _file_name(path, "file", path.stem, "spec")
    profiles = {}
    for pname, praw in profiles_raw.items():
        where = f"profiles.{pname}"
        _file_name(path, where, pname, "profile")
        if not isinstance(praw, dict):
            raise SpecError(path, where, "must be a table")
        _no_unknown(path, where, praw, PROFILE_KEYS)
        profiles[pname] = _merge(path, pname, raw, praw, description)
    spec = Spec(path.stem, path, description.strip(), reproduces, profiles)
    if validate:
        for pname in profiles:
            spec.points(pname, max_points=max_points)
    return spec


def _file_name(path: Path, key: str, name: str, what: str) -> None:
    """A spec's and a profile's names name files (``RESULTS/<spec>-<profile>.csv``): refuse
    one that would not be a plain file name there (:mod:`bench.exports.paths`)."""
    try:
        check_name(name, what)
    except UnsafeName as exc:
        raise SpecError(path, key, f"the {what} name {exc.message}") from None


def _no_unknown(path: Path, where: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            name = f"{where}.{key}" if where else key
            raise SpecError(path, name, f"unknown key; known keys here: {', '.join(known)}")


def _check_fields(path: Path, where: str, table: Any, allow_label: bool = False) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise SpecError(path, where, "must be a table of TrialConfig fields")
    for key in table:
        if key == "label" and allow_label:
            if not isinstance(table[key], str):
                raise SpecError(path, f"{where}.label", "must be a string")
            continue
        if key in RESERVED_FIELDS:
            raise SpecError(
                path, f"{where}.{key}", f"not allowed in a spec: {RESERVED_FIELDS[key]}"
            )
        if key not in _FIELDS:
            raise SpecError(
                path, f"{where}.{key}", f"unknown TrialConfig field; known: {', '.join(_FIELDS)}"
            )
    return dict(table)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _seeds(path: Path, where: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise SpecError(path, where, f"must be a count or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise SpecError(path, where, f"the seed count must be positive, got {value}")
        if value > MAX_SEEDS:
            raise SpecError(path, where, f"{value:,} seeds: at most {MAX_SEEDS:,}")
        return tuple(range(value))
    if not value or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value):
        raise SpecError(path, where, f"must list non-negative integer seeds, got {value!r}")
    if len(set(value)) != len(value):
        raise SpecError(path, where, f"repeats a seed: {value!r}")
    return tuple(value)


def _merge(
    path: Path, pname: str, top: dict[str, Any], prof: dict[str, Any], description: str
) -> Profile:
    """Merge a profile over the top level and check the shape of every part."""
    where = f"profiles.{pname}"

    def pick(key: str) -> tuple[str, Any]:
        if key in prof:
            return f"{where}.{key}", prof[key]
        return key, top.get(key)

    base = _check_fields(path, "base", top.get("base", {}))
    base.update(_check_fields(path, f"{where}.base", prof.get("base", {})))
    grid: dict[str, list[Any]] = {}
    for source, table in (("grid", top.get("grid", {})), (f"{where}.grid", prof.get("grid", {}))):
        for key, values in _check_fields(path, source, table).items():
            if not isinstance(values, list):
                raise SpecError(
                    path, f"{source}.{key}", f"grid values must be a list, got {values!r}"
                )
            if not values:
                raise SpecError(
                    path, f"{source}.{key}", "empty list: the grid would have no points"
                )
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise SpecError(path, f"{source}.{key}", f"repeats a value: {values!r}")
            grid[key] = values

    key, seeds_raw = pick("seeds")
    seeds = _seeds(path, key, 1 if seeds_raw is None else seeds_raw)

    key, cases_raw = pick("cases")
    cases: list[dict[str, Any]] = []
    if cases_raw is not None:
        if not isinstance(cases_raw, list) or not cases_raw:
            raise SpecError(path, key, "must be a non-empty array of tables ([[cases]])")
        for i, case in enumerate(cases_raw):
            case = _check_fields(path, f"{key}[{i}]", case, allow_label=True)
            overlap = sorted(set(case) & set(grid))
            if overlap:
                raise SpecError(
                    path, f"{key}[{i}].{overlap[0]}", "also varied by the grid; set it in one place"
                )
            cases.append(case)

    key, applies_raw = pick("applies")
    applies: dict[str, dict[str, list[Any]]] = {}
    if applies_raw is not None:
        if not isinstance(applies_raw, dict):
            raise SpecError(path, key, "must be a table: grid field -> {field = values}")
        for axis, condition in applies_raw.items():
            if axis not in grid:
                raise SpecError(path, f"{key}.{axis}", "not a grid axis of this profile")
            condition = _check_fields(path, f"{key}.{axis}", condition)
            if not condition:
                raise SpecError(path, f"{key}.{axis}", "empty condition")
            applies[axis] = {f: _as_list(v) for f, v in condition.items()}

    key, exclude_raw = pick("exclude")
    exclude: list[dict[str, list[Any]]] = []
    if exclude_raw is not None:
        if not isinstance(exclude_raw, list):
            raise SpecError(path, key, "must be an array of tables ([[exclude]])")
        for i, rule in enumerate(exclude_raw):
            rule = _check_fields(path, f"{key}[{i}]", rule)
            if not rule:
                raise SpecError(path, f"{key}[{i}]", "empty rule would exclude every point")
            exclude.append({f: _as_list(v) for f, v in rule.items()})

    return Profile(
        name=pname,
        description=str(prof.get("description", description)),
        seeds=seeds,
        base=base,
        grid=grid,
        cases=tuple(cases) or ({},),
        applies=applies,
        exclude=tuple(exclude),
    )


# --- expansion --------------------------------------------------------------------------------
def _check_size(path: Path, profile: Profile, seeds: int, max_points: int) -> None:
    """Refuse a profile of more than ``max_points`` trials, counted from its parts (cases x
    grid values x seeds, before exclusions) without expanding it."""
    sizes = [len(profile.cases), *(len(v) for v in profile.grid.values()), seeds]
    if math.prod(sizes) <= max_points:
        return
    parts = [f"{len(profile.cases)} cases"] if len(profile.cases) > 1 else []
    parts += [f"{len(v)} {axis}" for axis, v in profile.grid.items()] + [f"{seeds} seeds"]
    total = math.prod(sizes)
    raise SpecError(path, f"profiles.{profile.name}.grid",
                    f"{total:,} trials ({' x '.join(parts)}): more than {max_points:,}; "
                    f"ablate --max-points {total} runs them all")  # fmt: skip


def _matches(values: dict[str, Any], condition: dict[str, list[Any]]) -> bool:
    return all(values.get(f, _default(f)) in allowed for f, allowed in condition.items())


def _default(name: str) -> Any:
    f = TrialConfig.__dataclass_fields__[name]
    return f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]


def expand(
    path: Path,
    profile: Profile,
    seeds: Sequence[int] | None = None,
    max_points: int = MAX_POINTS,
) -> list[Point]:
    """Every (case, grid combination, seed) of ``profile`` as a validated :class:`Point`;
    a SpecError, before anything is expanded, past ``MAX_SEEDS`` seeds or ``max_points`` trials."""
    where = f"profiles.{profile.name}"
    if seeds is not None and len(seeds) > MAX_SEEDS:
        raise SpecError(path, f"{where}.seeds", f"{len(seeds):,} seeds: at most {MAX_SEEDS:,}")
    seed_list = tuple(seeds) if seeds is not None else profile.seeds
    if not seed_list:
        raise SpecError(path, f"{where}.seeds", "no seeds")
    _check_size(path, profile, len(seed_list), max_points)
    axes = list(profile.grid)
    points: list[Point] = []
    seen: set[str] = set()
    for case in profile.cases:
        label = case.get("label")
        fixed = {**profile.base, **{k: v for k, v in case.items() if k != "label"}}
        for combo in itertools.product(*(profile.grid[a] for a in axes)):
            values = dict(fixed)
            chosen = dict(zip(axes, combo, strict=True))
            values.update(chosen)
            # an axis that does not apply here falls back to the base/default value
            for axis, condition in profile.applies.items():
                if not _matches(values, condition):
                    if axis in fixed:
                        values[axis] = fixed[axis]
                    else:
                        values.pop(axis, None)
            if any(_matches(values, rule) for rule in profile.exclude):
                continue
            for seed in seed_list:
                try:
                    config = TrialConfig.from_dict({**values, "seed": seed})
                except ConfigError as exc:
                    shown = ", ".join(f"{k}={v}" for k, v in chosen.items())
                    at = (
                        f" (at {label or ''}{' ' if label and shown else ''}{shown})"
                        if label or shown
                        else ""
                    )
                    raise SpecError(path, f"{where}: {exc.field}", f"{exc.message}{at}") from exc
                key = point_key(config)
                if key in seen:  # an axis that did not apply collapsed two points into one
                    continue
                seen.add(key)
                varying = {a: config.to_dict()[a] for a in axes}
                varying["seed"] = seed
                points.append(Point(len(points), key, config, label, varying))
    if not points:
        raise SpecError(path, f"{where}.grid", "the grid is empty (every point was excluded)")
    return points
